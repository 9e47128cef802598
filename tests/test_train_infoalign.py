"""InfoAlign trainer on a tiny hand-built context graph: loss, learning, resume, DDP, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from embedkit.errors import InputError
from embedkit.molecules.feature_spaces import FeatureSpaceSpec
from embedkit.molecules.featurize import smiles_to_graph
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo.hub_card import check_card_text
from train.context_graph import ContextGraph, FeatureSpace
from train.dataset import featurize_cached, split_molecules
from train.infoalign import run_training
from train.loop import read_metrics
from train.loss import SpaceTargets, infoalign_loss
from train.publish import publish
from train.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SMILES = [
    "CCO",
    "CC(=O)O",
    "c1ccccc1",
    "Cc1ccccc1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CCN(CC)CC",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "CC(=O)Nc1ccc(O)cc1",
    "c1ccc2ccccc2c1",
    "OC(=O)c1ccccc1",
    "CCCCCC",
    "CCOC(=O)C",
    "NCCO",
    "c1ccncc1",
    "Clc1ccccc1",
    "CC(C)O",
    "OCC(O)CO",
    "CS(C)=O",
    "C1CCCCC1",
    "O=C1CCCCC1",
    "c1ccoc1",
    "CCN",
    "FC(F)(F)c1ccccc1",
]
TINY = {"emb_dim": 16, "num_layer": 2, "batch_size": 8, "lr": 3e-3, "val_fraction": 0.2}


def tiny_graph(seed: int = 0) -> ContextGraph:
    """24 molecules, 8 Cell Painting-like profiles (6-d, some NaN), 2 genes, a few sim edges."""
    rng = np.random.default_rng(seed)
    n_mol, n_prof, n_gene = len(SMILES), 8, 2
    n = n_mol + n_gene + n_prof
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=4, fpSize=1024)
    bits = np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in SMILES])
    m_rows = np.full(n, -1)
    m_rows[:n_mol] = np.arange(n_mol)
    profiles = rng.uniform(size=(n_prof, 6)).astype(np.float32)
    profiles[0, 2] = np.nan
    p_rows = np.full(n, -1)
    p_rows[n_mol + n_gene :] = np.arange(n_prof)
    spaces = {
        "morgan": FeatureSpace(
            FeatureSpaceSpec.fingerprint([f"b{i}" for i in range(1024)]),
            bits.astype(np.uint8),
            m_rows,
            binary=True,
        ),
        "cp_test": FeatureSpace(
            FeatureSpaceSpec([f"Cells_{i}" for i in range(6)], np.zeros(6), np.full(6, 2.0)),
            profiles,
            p_rows,
        ),
    }
    src = list(range(n_prof)) + [0, 1, 2, 3, 4, 5] + [0, 2]
    dst = [n_mol + n_gene + i for i in range(n_prof)] + [n_mol] * 3 + [n_mol + 1] * 3 + [1, 3]
    etype = [0] * n_prof + [1] * 6 + [2] * 2
    weight = [1.0] * (n_prof + 6) + [0.9, 0.85]
    types = [0] * n_mol + [1] * n_gene + [2] * n_prof
    keys = (
        [f"molecule:{i}" for i in range(n_mol)]
        + [f"gene:G{i}" for i in range(n_gene)]
        + [f"cp_test:{i}" for i in range(n_prof)]
    )
    meta = {
        "node_types": ["molecule", "gene", "cp_test"],
        "edge_types": ["mol-profile", "mol-gene:target", "sim:morgan"],
        "config": {},
        "files": {},
        "data_dir": None,
    }
    return ContextGraph(
        np.array(types, np.int8),
        np.array(keys),
        np.array(SMILES),
        np.array(src),
        np.array(dst),
        np.array(weight, np.float32),
        np.array(etype, np.int8),
        spaces,
        meta,
    )


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory) -> Path:
    return tiny_graph().save(tmp_path_factory.mktemp("graph") / "g.npz")


def _train(out: Path, graph: Path, resume: bool = False, **overrides) -> Path:
    cfg = TrainConfig(**{**TINY, "epochs": 3, "checkpoint_every": 2, **overrides})
    return run_training(cfg, out, graph, resume=resume, log=lambda m: None)


def test_loss_is_alpha_weighted_nan_masked_bce_plus_kl():
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    logits = {"s": torch.tensor([[0.3, -0.2, 1.0], [2.0, 0.0, -1.0]])}
    values = torch.tensor([[1.0, 0.0, float("nan")], [0.5, 0.25, 1.0]])
    targets = {
        "s": SpaceTargets(values, torch.tensor([0, -1, 1, -1])),
        "unreached": SpaceTargets(values, torch.tensor([-1, -1, -1, -1])),
    }
    logits["unreached"] = logits["s"].clone().requires_grad_()
    nodes = torch.tensor([[0, 1, 2], [3, 2, -1]])  # node 1 and 3 have no feature; -1 is stuck
    alpha = torch.tensor([[1.0, 0.5, 0.25], [1.0, 0.8, 0.0]])
    total, parts = infoalign_loss(mu, sigma, logits, nodes, alpha, targets, beta=0.1)

    def bce(x, y):
        return F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(y)).item()

    entries = [  # (alpha, logit, target) for every valid element
        (1.0, 0.3, 1.0),
        (1.0, -0.2, 0.0),  # molecule 0 meets node 0 (NaN masked)
        (0.25, 0.3, 0.5),
        (0.25, -0.2, 0.25),
        (0.25, 1.0, 1.0),  # ... and node 2 at step 2
        (0.8, 2.0, 0.5),
        (0.8, 0.0, 0.25),
        (0.8, -1.0, 1.0),  # molecule 1 meets node 2
    ]
    expected = sum(a * bce(x, y) for a, x, y in entries) / len(entries)
    kl = 0.5 * (sigma**2 + mu**2 - 1 - 2 * sigma.log()).sum(1).mean()
    assert parts["s"].item() == pytest.approx(expected, rel=1e-6)
    assert parts["kl"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert total.item() == pytest.approx(expected + 0.1 * kl.item(), rel=1e-6)
    assert "unreached" not in parts  # not reported as a zero loss ...
    total.backward()
    assert torch.equal(logits["unreached"].grad, torch.zeros(2, 3))  # ... but in the graph


def test_embedding_max_norm_is_torchs_lookup_renorm_on_every_row():
    """One max-norm rule (embedkit.molecules.gin) for training and inference: rows above
    max_norm are scaled as nn.Embedding's lookup scales them; a row at exactly max_norm is
    left alone (train/distributed.py's copy shrank it by 1e-7 after every step)."""
    from embedkit.molecules.gin import apply_embedding_max_norm

    torch.manual_seed(0)
    emb = torch.nn.Embedding(6, 4, max_norm=1.0)
    with torch.no_grad():
        emb.weight.mul_(3.0)
        emb.weight[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        emb.weight[1] = torch.tensor([0.0, 0.5, 0.0, 0.0])
    looked_up = emb.weight.detach().clone()
    F.embedding(torch.arange(6), looked_up, max_norm=1.0)  # torch renormalizes in place
    apply_embedding_max_norm(emb)
    torch.testing.assert_close(emb.weight.detach(), looked_up, rtol=0, atol=1e-7)
    assert emb.weight[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert emb.weight[1].tolist() == [0.0, 0.5, 0.0, 0.0]
    assert emb.weight.norm(dim=1).max() <= 1.0 + 1e-6


def test_featurize_cache_round_trip(tmp_path):
    featurize_cached(SMILES[:5], tmp_path / "c.npz")
    cached = featurize_cached(SMILES[:5], tmp_path / "c.npz")  # read back from the file
    for smiles, graph in zip(SMILES[:5], cached, strict=True):
        fresh = smiles_to_graph(smiles)[0]
        for name in ("x", "edge_index", "edge_attr"):
            assert getattr(graph, name).dtype == np.int64
            np.testing.assert_array_equal(getattr(graph, name), getattr(fresh, name))
    other = featurize_cached(SMILES[5:8], tmp_path / "c.npz")  # another list rebuilds the cache
    assert len(other) == 3


def test_a_failed_cache_write_leaves_no_file_behind(tmp_path, monkeypatch):
    def crash(handle, **arrays):
        handle.write(b"half a cache")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        featurize_cached(SMILES[:3], tmp_path / "c.npz")
    assert list(tmp_path.iterdir()) == []


def test_training_decreases_loss_and_writes_a_loadable_folder(tmp_path, graph_file):
    folder = _train(tmp_path / "run", graph_file, epochs=6, drop_ratio=0.0, decoder_dropout=0.0)
    metrics = read_metrics(tmp_path / "run")
    assert [m["epoch"] for m in metrics] == list(range(1, 7))
    assert metrics[-1]["train_loss"] < 0.8 * metrics[0]["train_loss"]
    assert metrics[-1]["train_morgan"] < metrics[0]["train_morgan"]
    assert {"val_loss", "val_morgan", "val_cp_test", "train_kl"} <= set(metrics[-1])

    model = InfoAlignModel.from_pretrained(folder)
    assert set(model.decoders) == {"morgan", "cp_test"}
    spaces = json.loads((folder / "config.json").read_text())["extra"]["feature_spaces"]
    assert spaces["cp_test"]["columns"][0] == "Cells_0" and spaces["cp_test"]["max"] == [2.0] * 6
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: embedkit" in front and "license:" in front and "tags:" in front
    assert check_card_text(card, "card")["pipeline_tag"] == "feature-extraction"
    assert "embedkit embed-smiles molecules.csv -m local-dir:" in card  # its own task's usage
    assert "## Metrics" in card and "| 6 |" in card.split("## Metrics")[1]
    result = publish(folder, None, push=False, log=lambda m: None)
    assert not result["pushed"] and set(result["files"]) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "model.safetensors.sha256",
    }


def _losses(run: Path) -> list[dict]:
    return [
        {k: v for k, v in m.items() if k in ("epoch", "step") or k.startswith(("train_", "val_"))}
        for m in read_metrics(run)
    ]


def test_resume_retraces_the_uninterrupted_run(tmp_path, graph_file):
    _train(tmp_path / "full", graph_file)
    n_train = len(split_molecules(tiny_graph(), TINY["val_fraction"])[0])
    per_epoch = -(-n_train // TINY["batch_size"])
    _train(tmp_path / "cut", graph_file, max_steps=per_epoch + 1)  # stops inside epoch 2
    state = torch.load(tmp_path / "cut/checkpoint.pt", weights_only=True)
    assert state["step"] == per_epoch + 1 and state["step_in_epoch"] == 1
    _train(tmp_path / "cut", graph_file, resume=True)
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut")
    assert len(_losses(tmp_path / "full")) == 3
    full = InfoAlignModel.from_pretrained(tmp_path / "full/model").state_dict()
    cut = InfoAlignModel.from_pretrained(tmp_path / "cut/model").state_dict()
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_resume_refuses_a_changed_recipe(tmp_path, graph_file):
    import click

    _train(tmp_path / "run", graph_file, max_steps=2)
    cfg = TrainConfig(**{**TINY, "epochs": 3, "lr": 1e-2})
    with pytest.raises(click.UsageError, match=r"made with lr=0\.003, this run asks for lr=0\.01"):
        run_training(cfg, tmp_path / "run", graph_file, resume=True, log=lambda m: None)


class Killed(Exception):
    pass


def test_a_kill_right_after_an_epoch_checkpoint_loses_no_record(tmp_path, graph_file, monkeypatch):
    """An epoch's record is written before the checkpoint that covers it: killed right after
    that checkpoint lands, the resumed run still logs every epoch, once."""
    _train(tmp_path / "full", graph_file)
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "checkpoint.pt":
            state = torch.load(dst, weights_only=True)
            if (state["epoch"], state["step_in_epoch"]) == (1, 0):  # epoch 1 is done
                raise Killed

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        _train(tmp_path / "cut", graph_file)
    monkeypatch.setattr(os, "replace", real_replace)
    state = torch.load(tmp_path / "cut/checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)
    _train(tmp_path / "cut", graph_file, resume=True)
    assert [m["epoch"] for m in read_metrics(tmp_path / "cut")] == [1, 2, 3]
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path, graph_file):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "train.infoalign",
        "train",
        "--graph",
        str(graph_file),
        "--out",
        str(tmp_path / "ddp"),
        "--emb-dim",
        "16",
        "--num-layer",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--save-dtype",
        "float16",
        "--push",
        "someone/model",
        "--dry-run",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout and "dry run" in proc.stdout
    assert "molecules/s" in proc.stdout  # progress with items/s
    metrics = read_metrics(tmp_path / "ddp")
    assert len(metrics) == 2 and all(np.isfinite(m["train_loss"]) for m in metrics)
    model = InfoAlignModel.from_pretrained(tmp_path / "ddp/model")
    assert model.embedding_dim == 16
    assert "torchrun --nproc_per_node=2" in (tmp_path / "ddp/model/README.md").read_text()


def test_publish_push_uses_upload_folder(tmp_path, graph_file, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls["create"] = (repo_id, kwargs)

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls["upload"] = (folder_path, repo_id, kwargs)
            return type("Commit", (), {"oid": "abc123"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    folder = _train(tmp_path / "run", graph_file, epochs=1)
    result = publish(folder, "org/embedkit-infoalign", push=True, log=lambda m: None)
    assert result["revision"] == "abc123" and result["pushed"]
    assert calls["upload"][:2] == (str(folder), "org/embedkit-infoalign")
    assert calls["create"][1]["repo_type"] == "model"
    (folder / "README.md").unlink()
    with pytest.raises(InputError, match="README.md"):
        publish(folder, "org/x", push=True)


def test_warm_start_copies_the_encoder_and_decoders_with_unchanged_columns(tmp_path):
    """--init-from: the encoder whole; `morgan` (same columns) copied; `cp_test` (columns
    renamed) and the new `orf` space start fresh; another encoder shape is refused."""
    from embedkit.molecules.gin import GINConfig
    from train.warm_start import warm_start

    def spaces(cp_columns: list[str]) -> dict:
        return {
            "morgan": {"columns": [f"b{i}" for i in range(8)]},
            "cp_test": {"columns": cp_columns},
            "orf": {"columns": ["L1", "L2"]},
        }

    torch.manual_seed(0)
    old = InfoAlignModel(
        GINConfig(num_layer=2, emb_dim=16),
        {"morgan": 8, "cp_test": 3},
        extra={"feature_spaces": spaces(["a", "b", "c"])},
    )
    old.save_pretrained(tmp_path / "old")
    torch.manual_seed(1)
    new = InfoAlignModel(GINConfig(num_layer=2, emb_dim=16), {"morgan": 8, "cp_test": 3, "orf": 2})
    before = {k: v.clone() for k, v in new.state_dict().items()}
    report = warm_start(new, str(tmp_path / "old"), spaces(["a", "b", "z"]))
    assert report["decoders_copied"] == ["morgan"] and report["decoders_new"] == ["cp_test", "orf"]
    assert report["source"] == f"local-dir:{tmp_path / 'old'}" and len(report["sha256"]) == 64
    ref, got = old.state_dict(), new.state_dict()
    for key in got:
        if key.startswith(("encoder.", "decoders.morgan.")):
            torch.testing.assert_close(got[key], ref[key])
        else:
            torch.testing.assert_close(got[key], before[key])
    wide = InfoAlignModel(GINConfig(num_layer=2, emb_dim=24), {"morgan": 8})
    with pytest.raises(ValueError, match="encoder"):
        warm_start(wide, str(tmp_path / "old"), spaces(["a"]))
