"""`python -m train vit`: the five methods on the shared loop, on simulated RxRx plates.

Every method trains under torchrun with 2 gloo processes (one launch, the methods in
sequence, with cell-line tokens and, when `embedkit.graph` is present, the graph loss);
one process: the command line end to end (model folder → `embed-images`, `ship`,
`publish`), exact resume of MoCo v3, refusal of a changed recipe, and every bad input
the issue lists. Tiny ViTs (32 px crops, depth 1, 48-d) and 2–6 steps keep it fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import embedkit
from embedkit.cli import main as embedkit_main
from embedkit.zoo.hub_card import check_card_text
from train.__main__ import cli
from train.loop import read_metrics
from train.vit import METHODS, recipe_for
from train.vit_common import augment, load_recipe, method_defaults

REPO = Path(__file__).resolve().parents[1]
TINY = {"crop_size": 32, "depth": 1, "embed_dim": 48, "num_heads": 3, "bf16": False, "workers": 0}
HEADS = {  # small heads so that a step takes milliseconds
    "wsl": {"head_hidden": 32},
    "simclr": {"projector_hidden": 64, "projector_dim": 16},
    "byol": {"projector_hidden": 64, "projector_dim": 16, "predictor_hidden": 64},
    "mocov3": {"projector_hidden": 64, "projector_dim": 16, "predictor_hidden": 64},
    "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
}
LINES = ["HUVEC", "RPE", "U2OS", "HepG2", "ARPE-19"]


def tiny_args(method: str, **extra) -> list[str]:
    settings = {**TINY, **HEADS[method], **extra}
    return [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> Path:
    """Two simulated cell lines, 4 wells × 2 sites each, 64 px (16 sites, 96 PNGs)."""
    root = tmp_path_factory.mktemp("synth") / "screen"
    args = ["datasets", "synth-plate", str(root), "--cell-lines", "HUVEC,RPE", "--wells", "4"]
    args += ["--sites", "2", "--size", "64", "--batches", "1"]
    result = CliRunner().invoke(embedkit_main, args)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def cell_table(tmp_path_factory) -> Path:
    """A cell-line embedding table (name column + 8 values) with a de novo line (U2OS)."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(len(LINES), 8)), columns=[f"e{i}" for i in range(8)])
    table.insert(0, "cell_line", LINES)
    path = tmp_path_factory.mktemp("lines") / "lines.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def graph(tmp_path_factory, plates) -> Path | None:
    """A perturbation graph over the plates' genes, one gene left out (absent from it)."""
    try:
        import embedkit.graph.losses  # noqa: F401
    except ImportError:
        return None
    genes = sorted(set(pd.read_csv(plates / "metadata.csv")["Metadata_Gene"]))
    folder = tmp_path_factory.mktemp("graph")
    kept = genes[:-1]
    pd.DataFrame({"perturbation": kept, "gene": kept}).to_csv(folder / "perts.csv", index=False)
    edges = pd.DataFrame({"source": kept[:-1], "target": kept[1:]})
    edges.to_csv(folder / "edges.csv", index=False)
    args = ["graph", "build", "--perturbations", str(folder / "perts.csv")]
    args += ["--edges", str(folder / "edges.csv"), "-o", str(folder / "graph.npz")]
    result = CliRunner().invoke(embedkit_main, args)
    assert result.exit_code == 0, result.output
    return folder / "graph.npz"


def train(out: Path, plates: Path, method: str, *args: str, **settings):
    """`python -m train vit` in this process; returns click's result."""
    argv = ["vit", "--method", method, "--data", str(plates)]
    argv += ["--metadata", str(plates / "metadata.csv"), "-o", str(out)]
    argv += ["--batch-size", "4", *tiny_args(method, **settings), *args]
    return CliRunner().invoke(cli, argv)


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- the recipes ---------------------------------------------------------------------------


def test_the_shipped_recipes_hold_the_papers_hyperparameters():
    r = {m: recipe_for(m) for m in METHODS}
    for m, recipe in r.items():  # ViT-S/16, AdamW (0.9, 0.95), bf16, global batch 3200
        assert (recipe.embed_dim, recipe.depth, recipe.num_heads, recipe.patch_size) == (
            384,
            12,
            6,
            16,
        ), m
        assert (recipe.beta1, recipe.beta2, recipe.bf16, recipe.batch_size) == (
            0.9,
            0.95,
            True,
            3200,
        )
    assert (r["wsl"].head_hidden, r["wsl"].head_dropout, r["wsl"].lr) == (1024, 0.1, 1e-3)
    assert (r["wsl"].weight_decay, r["wsl"].epochs, r["wsl"].cell_line_tokens) == (0.05, 200, 1)
    simclr = r["simclr"]
    assert (simclr.projector_hidden, simclr.projector_dim, simclr.temperature) == (2048, 128, 0.1)
    assert simclr.weight_decay == 1e-6 and simclr.cell_line_tokens == 4
    byol = r["byol"]
    assert (byol.projector_hidden, byol.projector_dim, byol.ema_start) == (2048, 256, 0.996)
    assert byol.weight_decay == 0.1
    moco = r["mocov3"]
    assert (moco.projector_dim, moco.momentum_start, moco.temperature) == (256, 0.99, 0.1)
    assert (moco.lr, moco.weight_decay, moco.cell_line_tokens) == (1.5625e-4, 0.1, 4)
    mae = r["mae"]
    assert (mae.mask_ratio, mae.decoder_dim, mae.decoder_depth, mae.decoder_heads) == (
        0.75,
        256,
        8,
        16,
    )
    assert mae.norm_pix_loss and mae.weight_decay == 0.05 and mae.cell_line_tokens == 8
    assert mae.blur_prob == [0.0] and mae.gain_prob == 0.0  # MAE: crops, flips, rotations
    assert all(r[m].epochs == 400 for m in ("simclr", "byol", "mocov3", "mae"))


def test_settings_come_from_files_then_the_command_line(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('temperature = 0.2\nsteps = 50\nchannels = "cell-painting"\n')
    recipe = load_recipe(type(recipe_for("simclr")), "simclr", user, {"batch_size": "64"})
    assert (recipe.temperature, recipe.steps, recipe.epochs, recipe.batch_size) == (
        0.2,
        50,
        None,
        64,
    )
    assert set(method_defaults("mae")) >= {"mask_ratio", "lr", "crop_size"}
    result = CliRunner().invoke(
        cli, ["vit", "--method", "mocov3", "--print-config", "--steps", "7"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["steps"] == 7 and printed["epochs"] is None and printed["temperature"] == 0.1


def test_augmentations_are_seeded_and_keep_the_crop_shape():
    recipe = recipe_for("simclr", overrides={"crop_size": 32})
    site = torch.rand(6, 70, 90)
    a = augment(site, recipe, torch.Generator().manual_seed(1), 1.0)
    b = augment(site, recipe, torch.Generator().manual_seed(1), 1.0)
    c = augment(site, recipe, torch.Generator().manual_seed(2), 1.0)
    assert a.shape == (6, 32, 32) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- distributed ---------------------------------------------------------------------------


DRIVER = """
import json, sys
from pathlib import Path
import torch.distributed as dist
from train.distributed import setup_runtime
from train.vit import recipe_for, train_vit
from train.vit_common import DataSpec

jobs, spec, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
rt = setup_runtime(1)

# The losses on 2 ranks equal the one-process loss of the whole batch: MoCo v3's keys and
# SimCLR's views are gathered from every rank (SimCLR's with gradients).
import torch
import torch.nn.functional as F
from train.vit_mocov3 import infonce
from train.vit_simclr import nt_xent

g = torch.Generator().manual_seed(0)
a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
mine = slice(4 * rt.rank, 4 * rt.rank + 4)
moco = infonce(a[mine], b[mine], 0.1).detach()
dist.all_reduce(moco)
qa, kb = F.normalize(a, dim=1), F.normalize(b, dim=1)
whole = F.cross_entropy(qa @ kb.T / 0.1, torch.arange(8)) * 0.2
assert torch.allclose(moco / 2, whole, atol=1e-6), (moco / 2, whole)
z1, z2 = a[mine].clone().requires_grad_(), b[mine].clone().requires_grad_()
nt_xent(z1, z2, 0.1).backward()
full1, full2 = a.clone().requires_grad_(), b.clone().requires_grad_()
z = F.normalize(torch.cat([full1, full2]), dim=1)
logits = (z @ z.T / 0.1).fill_diagonal_(float("-inf"))
F.cross_entropy(logits, torch.cat([torch.arange(8, 16), torch.arange(8)])).backward()
assert torch.allclose(z1.grad / 2, full1.grad[mine], atol=1e-6)
assert torch.allclose(z2.grad / 2, full2.grad[mine], atol=1e-6)
if rt.main:
    print("gathered losses match the whole batch", flush=True)
for method, overrides in jobs.items():
    if rt.main:
        print(f"== {method}", flush=True)
    recipe = recipe_for(method, None, overrides)
    train_vit(method, recipe, DataSpec(**spec), out / method, rt=rt, log=print, log_every=1,
              command=f"torchrun --nproc-per-node 2 -m train vit --method {method}")
dist.barrier()
dist.destroy_process_group()
"""


def test_every_method_trains_under_torchrun_with_two_gloo_processes(
    tmp_path, plates, cell_table, graph
):
    """One torchrun launch, the five methods in sequence: cell-line tokens for every one,
    the graph loss when embedkit.graph is present, gradient accumulation for BYOL."""
    jobs = {m: {**TINY, **HEADS[m], "steps": 3, "batch_size": 4} for m in METHODS}
    jobs["byol"] |= {"batch_size": 8, "accumulate": 2}
    spec = {
        "data": [str(plates)],
        "metadata": str(plates / "metadata.csv"),
        "label_column": "Metadata_Gene",
        "cell_line_embeddings": str(cell_table),
        "graph": str(graph) if graph else None,
    }
    for m in jobs:
        jobs[m]["cell_line_tokens"] = 2
        if graph:
            jobs[m]["graph_weight"] = 0.5
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), json.dumps(jobs), json.dumps(spec), str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "gathered losses match the whole batch" in result.stdout
    assert result.stdout.count("2 process(es)") == 5 and "images/s" in result.stdout
    if graph:
        assert "1 of 7 training perturbations are not in the graph" in result.stdout
    for method in METHODS:
        run = tmp_path / "runs" / method
        records = read_metrics(run)
        assert [r["step"] for r in records] == [1, 2, 3], method
        assert all(np.isfinite(r["loss"]) and f"{method}_loss" in r for r in records)
        assert ("graph_loss" in records[-1]) == bool(graph)
        model = embedkit.load(f"local-dir:{run / 'model'}").model
        assert model.encoder.config.cell_line_tokens == 2 and "U2OS" in model.cell_lines
        card = (run / "model" / "README.md").read_text()
        assert "SIMULATED" in card and "torchrun --nproc-per-node 2" in card
        assert (
            json.loads((run / "model" / "config.json").read_text())["extra"]["training"][
                "processes"
            ]
            == 2
        )
    byol = json.loads((tmp_path / "runs/byol/model/config.json").read_text())
    assert byol["extra"]["recipe"]["accumulate"] == 2


# -- one process, the command line ---------------------------------------------------------


def test_the_command_line_writes_a_model_that_embed_images_ship_and_publish_take(
    tmp_path, plates, cell_table, graph, monkeypatch
):
    out = tmp_path / "run"
    extra = ["--label-column", "Metadata_Gene", "--cell-line-embeddings", str(cell_table)]
    extra += ["--cell-line-tokens", "3", "--steps", "2"]
    if graph:
        extra += ["--graph", str(graph), "--graph-loss", "contrastive", "--graph-weight", "0.1"]
    result = train(out, plates, "wsl", *extra)
    assert result.exit_code == 0, result.output
    assert "data: 16 imaged sites, 16 listed in metadata.csv, 16 used" in result.output
    assert "cell-line tokens: 3 per image from 8-d embeddings" in result.output
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architecture"] == "embedkit-vit"
    assert (config["encoder"]["cell_line_tokens"], config["encoder"]["cell_line_dim"]) == (3, 8)
    assert set(config["cell_lines"]) == set(LINES)
    assert not any(k.startswith("head") for k in load_file(str(out / "model/model.safetensors")))
    card = (out / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: embedkit") and "SIMULATED" in card
    assert check_card_text(card, "card")["pipeline_tag"] == "image-feature-extraction"
    assert "## Use with timm" in card and "reg_tokens=3" in card  # the tokens baked per line
    assert "python -m train vit --method wsl" in card and "--cell-line-tokens 3" in card
    assert "Cell-line tokens: 3" in card and "| wsl_loss |" in card
    if graph:
        assert "1 of 7 training perturbations are not in the graph" in result.output
        assert "contrastive" in card and '"covered": 6' in card
        assert "graph_loss" in read_metrics(out)[-1]

    # embed-images reproduces the tokens: a training line and a de novo one from the table
    for line in ("RPE", "u2os"):
        emb = tmp_path / f"emb-{line}"
        args = ["embed-images", str(plates / "RPE-01"), "-m", f"local-dir:{out / 'model'}"]
        args += ["-o", str(emb), "--cell-line", line]
        done = CliRunner().invoke(embedkit_main, args)
        assert done.exit_code == 0, done.output
        table = pd.read_parquet(next((emb / "plates").glob("*.parquet")))
        features = table.filter(like="Emb_").to_numpy()
        assert len(table) == 8 and features.shape[1] == 48 and np.isfinite(features).all()
    missing = CliRunner().invoke(
        embedkit_main,
        ["embed-images", str(plates / "RPE-01"), "-m", f"local-dir:{out / 'model'}"]
        + ["-o", str(tmp_path / "no-line")],
    )
    assert missing.exit_code == 2 and "--cell-line" in missing.output

    from train.ship import ship

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    card_path = ship(out, "tiny-vit", "a tiny ViT", "CC-BY-4.0", "org/tiny", zoo_dir=zoo)
    shipped = json.loads(card_path.read_text())
    assert shipped["task"] == "images" and "simulated" in shipped["provenance"]
    published = CliRunner().invoke(cli, ["publish", str(out), "--repo-id", "org/tiny"])
    assert published.exit_code == 0 and "dry run" in published.output, published.output


def test_mocov3_resume_retraces_the_uninterrupted_run(tmp_path, plates):
    """6 steps (an epoch is 4): stopped at 3, resumed across the epoch end, equal to the
    end; the momentum encoder is in the checkpoint, so the keys match too."""
    full, split = tmp_path / "full", tmp_path / "split"
    assert train(full, plates, "mocov3", "--steps", "6").exit_code == 0
    first = train(split, plates, "mocov3", "--steps", "6", "--max-steps", "3")
    assert first.exit_code == 0 and "stopped at step 3 of 6" in first.output
    resumed = train(split, plates, "mocov3", "--steps", "6", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 3" in resumed.output
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)

    def losses(run):
        return [(r["step"], round(r["loss"], 6), r["momentum"]) for r in read_metrics(run)]

    assert losses(full) == losses(split) and len(losses(full)) == 6
    changed = train(split, plates, "mocov3", "--steps", "6", "--resume", "--set", "temperature=1")
    assert changed.exit_code == 2, changed.output
    message = one_line(changed.output)
    assert "temperature=0.1" in message and "temperature=1.0" in message


def test_tensorboard_gets_every_record_when_installed(tmp_path, plates, monkeypatch):
    import types

    written = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            written.append(("open", Path(log_dir).name, purge_step))

        def add_scalar(self, key, value, step):
            written.append((key, step))

        def close(self):
            written.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    assert train(tmp_path / "tb", plates, "simclr", "--steps", "2").exit_code == 0
    assert written[0] == ("open", "tensorboard", 0) and written[-1] == ("close",)
    assert ("simclr_loss", 1) in written and ("images_per_second", 2) in written


# -- bad input -----------------------------------------------------------------------------


def test_a_metadata_file_missing_a_column_is_named(tmp_path, plates):
    result = train(tmp_path / "r", plates, "wsl", "--label-column", "Metadata_Sirna")
    assert result.exit_code == 2
    assert "has no column 'Metadata_Sirna' (--label-column)" in one_line(result.output)
    table = pd.read_csv(plates / "metadata.csv").drop(columns=["Metadata_Well"])
    table.to_csv(tmp_path / "meta.csv", index=False)
    argv = ["vit", "--method", "simclr", "--data", str(plates), "--metadata"]
    result = CliRunner().invoke(cli, [*argv, str(tmp_path / "meta.csv"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "has no column Metadata_Well" in one_line(result.output)


def test_sites_without_images_are_counted_skipped_and_reported(tmp_path, plates):
    import shutil

    data = tmp_path / "screen"
    shutil.copytree(plates, data)
    (data / "HUVEC-01" / "Plate1" / "B02_s1_w3.png").unlink()  # one site misses a channel
    table = pd.read_csv(data / "metadata.csv")
    ghost = table.iloc[:2].assign(Metadata_Well="P24")  # two listed sites never imaged
    pd.concat([table, ghost]).to_csv(data / "metadata.csv", index=False)
    result = train(tmp_path / "run", data, "mae", "--steps", "1")
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert "16 imaged sites, 18 listed in metadata.csv, 15 used" in text
    assert "2 listed sites have no images; skipped (e.g. HUVEC-01/Plate1 P24 s1" in text
    assert "1 sites miss a channel file; skipped (e.g. HUVEC-01/Plate1 B02 s1)" in text
    sites = json.loads((tmp_path / "run/model/config.json").read_text())["extra"]["training"]
    assert sites["sites"]["missing_images"] == 2 and sites["sites"]["missing_a_channel"] == 1


def test_a_cell_line_missing_from_the_table_lists_close_names(tmp_path, plates):
    table = pd.DataFrame({"name": ["HUVEC", "RPE-1", "ARPE-19", "U2OS"], "a": 1.0, "b": 2.0})
    table.to_csv(tmp_path / "lines.csv", index=False)
    result = train(
        tmp_path / "r", plates, "simclr", "--cell-line-embeddings", str(tmp_path / "lines.csv")
    )
    assert result.exit_code == 2
    message = one_line(result.output)
    assert "cell line 'RPE' (metadata column Metadata_CellLine) is not in" in message
    assert "close names: RPE-1, ARPE-19" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--set", "temprature=0.2"],
            "unknown setting 'temprature' in the command line for "
            "--method simclr (did you mean temperature",
        ),
        (["--set", "mask_ratio=0.5"], "valid settings: seed, bf16,"),
        (["--depht", "2"], "unknown setting 'depht'"),
        (["--steps", "2", "--epochs", "2"], "--steps and --epochs exclude each other"),
        (["--cell-line-tokens", "2"], "--cell-line-tokens needs --cell-line-embeddings"),
        (["--set", "flips=maybe"], "setting flips='maybe' is not a valid bool"),
        (["--batch-size", "3", "--accumulate", "2"], "does not split into 1 process(es) × 2"),
    ],
)
def test_bad_settings_are_one_error_each(tmp_path, plates, args, expected):
    result = train(tmp_path / "r", plates, "simclr", *args)
    assert result.exit_code == 2, result.output
    if expected:
        assert expected in one_line(result.output)
    assert not (tmp_path / "r").exists()


def test_an_unknown_method_lists_the_valid_ones(tmp_path, plates):
    result = CliRunner().invoke(cli, ["vit", "--method", "dino", "--data", str(plates)])
    assert result.exit_code == 2
    assert "'dino' is not one of 'wsl', 'simclr', 'byol', 'mocov3', 'mae'" in result.output


def test_wsl_without_labels_and_graph_without_labels_are_refused(tmp_path, plates, graph):
    result = train(tmp_path / "r", plates, "wsl")
    assert result.exit_code == 2 and "--method wsl needs --label-column" in result.output
    if graph:
        result = train(tmp_path / "r", plates, "mae", "--graph", str(graph))
        assert result.exit_code == 2 and "--graph needs --label-column" in result.output
