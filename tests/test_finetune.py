"""Few-shot fine-tuning (`embedkit finetune`) and classification (`embedkit predict`).

Splits are checked on small arrays (and on the paper's released U2OS split when
../shared is present); the protocol runs end to end on a tiny SIMULATED screen
(`embedkit datasets synth-plate`) from a tiny random ViT, and on small profile tables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import shared_data_dir
from safetensors.torch import load_file

import embedkit
from embedkit.cli import main
from embedkit.errors import InputError
from embedkit.finetune.image_classifier import ImageClassifierEmbedder
from embedkit.finetune.splits import (
    PAPER_SEEDS,
    check_seeds,
    make_splits,
    parse_roles,
    splits_from_roles,
)
from embedkit.images.model import ImageModel
from embedkit.images.vit import ViTConfig
from embedkit.zoo import get_card

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data_dir() or REPO.parent / "shared" / "data"  # $EMBEDKIT_DATA_DIR first
U2OS_SPLIT = SHARED / "rxrx1" / "u2os_data.csv"
TINY_VIT = {"img_size": 32, "in_chans": 6, "depth": 1, "embed_dim": 48, "num_heads": 3}
FAST = ["--epochs", "2", "--patience", "2", "--seeds", "1"]


def invoke(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# --- splits ----------------------------------------------------------------------------------


def _screen(per_label: int = 8, labels: int = 4, plates: int = 4, batches: int = 2):
    """Rows spread round-robin over plates; plate p belongs to batch p % batches."""
    names, plate, batch = [], [], []
    for i in range(labels):
        for j in range(per_label):
            names.append(f"si{i}")
            plate.append(f"P{(i + j) % plates}")
            batch.append(f"B{(i + j) % plates % batches}")
    return names, plate, batch


def test_splits_give_k_shots_validation_and_the_rest_for_testing():
    names, plates, batches = _screen()
    splits = make_splits(names, plates, batches, shots=2, validation=2, seeds=PAPER_SEEDS)
    assert splits.seeds == list(PAPER_SEEDS) and splits.labels == ["si0", "si1", "si2", "si3"]
    names = np.array(names)
    for seed in splits.seeds:
        role = splits.roles[seed]
        for label in splits.labels:
            mine = role[names == label]
            assert (mine == "train").sum() == 2 and (mine == "val").sum() == 2
            assert (mine == "test").sum() == 4
    again = make_splits(list(names), plates, batches, shots=2, validation=2, seeds=PAPER_SEEDS)
    for seed in splits.seeds:  # the same seed draws the same split; another seed another
        np.testing.assert_array_equal(again.roles[seed], splits.roles[seed])
    assert any(
        not np.array_equal(splits.roles[a], splits.roles[b])
        for a, b in zip(splits.seeds, splits.seeds[1:], strict=False)
    )
    assert check_seeds(2) == [42, 229]
    with pytest.raises(InputError, match="1 to 5"):
        check_seeds(6)


def test_a_perturbation_draw_does_not_depend_on_the_others():
    names, plates, batches = _screen()
    whole = make_splits(names, plates, batches, 1, 2, [42])
    keep = np.array(names) != "si0"
    part = make_splits(
        list(np.array(names)[keep]), list(np.array(plates)[keep]), list(np.array(batches)[keep]),
        1, 2, [42],
    )  # fmt: skip
    np.testing.assert_array_equal(whole.roles[42][keep], part.roles[42])


def test_perturbations_with_too_few_sites_are_excluded_counted_and_listed():
    names, plates, batches = _screen(per_label=6)
    names += ["siRare"] * 3 + [None]
    plates += ["P0", "P1", "P2", "P3"]
    batches += ["B0", "B1", "B0", "B1"]
    splits = make_splits(names, plates, batches, shots=2, validation=2, seeds=[42, 229])
    assert splits.summary()["excluded_count"] == 1
    assert "3 site(s), fewer than --shots 2 + --validation 2" in splits.excluded["siRare"]
    assert "siRare" not in splits.labels
    assert (splits.roles[42][-4:] == "excluded").all()  # its rows and the unlabelled row
    with pytest.raises(InputError, match="no perturbation can be split"):
        make_splits(names, plates, batches, shots=9, validation=2, seeds=[42])


def test_same_plate_takes_the_shots_from_one_plate_and_tests_on_the_others():
    names, plates, batches = _screen(per_label=12)
    splits = make_splits(names, plates, batches, 3, 2, [42, 229], condition="same-plate")
    names, plates = np.array(names), np.array(plates)
    for seed in splits.seeds:
        role = splits.roles[seed]
        for label in splits.labels:
            mine = names == label
            train_plates = set(plates[mine & (role == "train")])
            assert len(train_plates) == 1 and (mine & (role == "train")).sum() == 3
            held = plates[mine & np.isin(role, ["val", "test"])]
            assert train_plates.isdisjoint(held)
            assert set(plates[mine & (role == "unused")]) <= train_plates


def test_across_batches_spreads_the_shots_and_tests_off_the_training_plates():
    names, plates, batches = _screen(per_label=12, plates=4, batches=2)
    splits = make_splits(names, plates, batches, 2, 2, [42, 229], condition="across-batches")
    names, plates, batches = np.array(names), np.array(plates), np.array(batches)
    for seed in splits.seeds:
        role = splits.roles[seed]
        for label in splits.labels:
            train = (names == label) & (role == "train")
            assert len(set(batches[train])) == 2  # one shot in each batch
            held = (names == label) & np.isin(role, ["val", "test"])
            assert set(plates[train]).isdisjoint(plates[held])


def test_a_perturbation_a_condition_cannot_serve_is_excluded_for_every_seed():
    names = ["siA"] * 6 + ["siB"] * 6
    plates = ["P0"] * 6 + ["P0", "P0", "P1", "P1", "P2", "P2"]  # siA: one plate only
    splits = make_splits(names, plates, ["B"] * 12, 1, 2, [42, 229], condition="same-plate")
    assert splits.labels == ["siB"] and "same-plate" in splits.excluded["siA"]
    assert all((splits.roles[s][:6] == "excluded").all() for s in splits.seeds)


def test_split_roles_read_from_a_file():
    roles = parse_roles(["train", "Valid", "TEST", "val", "training"], "f.csv", "split")
    assert list(roles) == ["train", "val", "test", "val", "train"]
    with pytest.raises(InputError, match="train, valid"):
        parse_roles(["train", "holdout"], "f.csv", "split")
    splits = splits_from_roles(
        ["a", "a", "a", "b", "b"], {None: np.array(["train", "val", "test", "val", "test"])},
        [42, 229], "f.csv",
    )  # fmt: skip
    assert splits.labels == ["a"] and "no training site" in splits.excluded["b"]
    np.testing.assert_array_equal(splits.roles[42], splits.roles[229])


@pytest.mark.skipif(
    not U2OS_SPLIT.is_file(),
    reason="real data not present: rxrx1/u2os_data.csv (set EMBEDKIT_DATA_DIR or place "
    "../shared/data)",
)
def test_the_papers_released_u2os_split_reads_as_a_one_shot_split():
    table = pd.read_csv(U2OS_SPLIT)
    roles = parse_roles(table["split1"], U2OS_SPLIT, "split1")
    splits = splits_from_roles(table["sirna"].tolist(), {None: roles}, PAPER_SEEDS, "u2os")
    assert len(splits.labels) == 1138 and not splits.excluded
    assert (splits.shots, splits.validation) == (1, 2)
    assert splits.counts(42) == {"train": 1138, "val": 2276, "test": 8842}


# --- the protocol on a tiny simulated screen -------------------------------------------------


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    """SIMULATED: one line, 2 batches × 2 plates, 8 wells × 3 sites of 32 px, 4 genes."""
    root = tmp_path_factory.mktemp("screen")
    code, out, err = invoke(
        "datasets", "synth-plate", root / "plates", "--cell-lines", "U2OS", "--batches", 2,
        "--plates", 2, "--wells", 8, "--sites", 3, "--size", 32, "--genes", 4,
    )  # fmt: skip
    assert code == 0, err
    return root / "plates"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "vit"
    ImageModel(ViTConfig(**TINY_VIT)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, screen, tiny) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    code, stdout, stderr = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 2,
        "--seeds", 2, "--epochs", 3, "--patience", 3, "-o", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "pretrained top-1" in stdout and "random-init top-1" in stdout
    return out


def test_a_run_writes_the_report_the_splits_and_one_model_per_seed(run):
    report = json.loads((run / "report.json").read_text())
    runs = report["runs"]
    assert [(r["condition"], r["seed"]) for r in runs] == [
        ("pretrained", 42), ("pretrained", 229), ("random-init", 42), ("random-init", 229),
    ]  # fmt: skip
    for r in runs:
        assert 0 <= r["top1"] <= r["top5"] <= r["top10"] <= 1
        assert r["train_sites"] == 2 * 5 and r["val_sites"] == 2 * 5
        assert 1 <= r["best_epoch"] <= r["epochs"] <= 3
    assert set(report["summary"]) == {"pretrained", "random-init"}
    assert report["labels"]["classes"] == 5 and report["splits"]["seeds"] == [42, 229]
    assert report["best"]["seed"] in (42, 229) and report["best"]["condition"] == "pretrained"
    assert "report.png" in (run / "report.md").read_text() and (run / "report.png").stat().st_size
    splits = pd.read_csv(run / "splits.csv")
    assert len(splits) == 2 * 96 and set(splits["Metadata_Seed"]) == {42, 229}
    assert set(splits["Metadata_Split"]) <= {"train", "val", "test"}
    history = pd.read_csv(run / "history.csv")
    assert {"condition", "seed", "epoch", "loss", "val_top1"} <= set(history.columns)
    for seed in (42, 229):
        config = json.loads((run / "seeds" / f"seed-{seed}" / "config.json").read_text())
        assert config["architecture"] == "embedkit-vit-classifier"
        assert config["labels"] == report["labels"]["vocabulary"]
    best = run / "seeds" / f"seed-{report['best']['seed']}" / "model.safetensors"
    assert (run / "model" / "model.safetensors").read_bytes() == best.read_bytes()


def test_the_best_model_has_a_card_that_publish_accepts(run, tiny, tmp_path):
    """Before, RUN_DIR/model had no README.md and `train.publish` refused it."""
    from embedkit.finetune.card import base_license
    from embedkit.zoo.hub_card import check_card_text, write_card
    from train.publish import check_folder

    files = check_folder(run / "model")  # front matter parsed by the Hub, weights load
    assert "README.md" in files
    text = (run / "model" / "README.md").read_text()
    meta = check_card_text(text, "card")
    assert meta["pipeline_tag"] == "image-classification"
    assert "fine-tuned" in meta["tags"] and "simulated-data" in meta["tags"]
    assert meta["license"] == "other"  # the tiny base has no card to inherit from
    assert "**SIMULATED data**" in text and f"local-dir:{tiny}" in text
    assert "| pretrained | 2 |" in text and "| random-init | 2 |" in text

    # a base with a card passes its licence on to the fine-tuned weights
    shutil.copytree(tiny, tmp_path / "base")
    write_card(tmp_path / "base", "embedkit-vit", "CC-BY-4.0", [], "# base\n")
    assert base_license(f"local-dir:{tmp_path / 'base'}") == "cc-by-4.0"
    assert base_license("vit-s16-cellpaint-demo") == get_card("vit-s16-cellpaint-demo").license


def test_each_seed_starts_again_from_the_pretrained_weights(run, tiny, tmp_path, monkeypatch):
    report = json.loads((run / "report.json").read_text())
    pretrained = [
        r["start_weights_sha256"] for r in report["runs"] if r["condition"] == "pretrained"
    ]
    random = [r["start_weights_sha256"] for r in report["runs"] if r["condition"] == "random-init"]
    assert pretrained == [report["model"]["pretrained_weights_sha256"]] * 2
    assert len(set(random)) == 2 and not set(random) & set(pretrained)

    # and directly: the encoder handed to every pretrained run holds the loaded tensors
    from embedkit.finetune import training

    original = load_file(str(tiny / "model.safetensors"))
    seen = []
    fit = training.fit

    def spy(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.encoder.state_dict().items()})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(training, "fit", spy)
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", _screen_of(run), "--labels",
        _screen_of(run) / "metadata.csv",
        "--label-column", "Metadata_Gene", "--shots", 1, "--seeds", 3, "--epochs", 2,
        "--baselines", "none", "-o", tmp_path / "again",
    )  # fmt: skip
    assert code == 0, err
    assert len(seen) == 3
    for state in seen:
        for name, tensor in state.items():
            assert torch.equal(tensor, original[f"encoder.{name}"]), name


def _screen_of(run: Path) -> Path:
    report = json.loads((run / "report.json").read_text())
    return Path(report["data"]["data"][0])


def test_the_best_model_loads_embeds_and_predicts(run, tmp_path):
    embedder = embedkit.load(f"local-dir:{run / 'model'}")
    assert isinstance(embedder, ImageClassifierEmbedder) and embedder.model.head is None
    full = embedkit.load(f"local-dir:{run / 'model'}", with_heads=True, task="image-classification")
    labels = json.loads((run / "report.json").read_text())["labels"]["vocabulary"]
    assert full.model.labels == labels and full.model.head.out_features == 5
    crops = torch.randn(2, 6, 32, 32)
    probabilities = full.probabilities(full.embed_crops(crops))
    assert probabilities.shape == (2, 5) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    screen = _screen_of(run)
    code, _, err = invoke(
        "embed-images", screen, "-m", f"local-dir:{run / 'model'}", "-o", tmp_path / "emb"
    )
    assert code == 0, err
    embedded = pd.concat(
        pd.read_parquet(p) for p in (tmp_path / "emb" / "plates").glob("*.parquet")
    )
    assert len(embedded) == 96 and embedded["Metadata_Valid"].all()

    code, out, err = invoke(
        "predict", screen, "-m", f"local-dir:{run / 'model'}", "-o", tmp_path / "p.parquet"
    )
    assert code == 0, err and "96 sites classified" in out
    predictions = pd.read_parquet(tmp_path / "p.parquet")
    assert len(predictions) == 96 and predictions["Metadata_Valid"].all()
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site"} <= set(predictions.columns)
    assert set(predictions["Metadata_Prediction"]) <= set(labels)
    assert (predictions["Metadata_Prediction"] == predictions["Metadata_Top1"]).all()
    scores = predictions[[f"Metadata_Top{k}Score" for k in range(1, 6)]].to_numpy()
    assert (np.diff(scores, axis=1) <= 1e-7).all() and (scores.sum(axis=1) <= 1 + 1e-5).all()


def test_a_split_file_reproduces_a_run(run, tiny, tmp_path):
    screen = _screen_of(run)
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--split-file",
        run / "splits.csv", "--seeds", 2, "--epochs", 1, "--baselines", "none",
        "-o", tmp_path / "again",
    )  # fmt: skip
    assert code == 0, err
    before = pd.read_csv(run / "splits.csv")
    after = pd.read_csv(tmp_path / "again" / "splits.csv")
    pd.testing.assert_frame_equal(before, after)


def test_the_rxrx_split_file_layout_is_read(screen, tiny, tmp_path):
    """The columns of the paper's u2os_data.csv: experiment, plate, well, site, split1."""
    meta = pd.read_csv(screen / "metadata.csv")
    experiment, plate = meta["Metadata_Plate"].str.split("/Plate", expand=True).T.to_numpy()
    rng = np.random.default_rng(0)
    split = np.where(
        rng.random(len(meta)) < 0.3, "train", np.where(rng.random(len(meta)) < 0.5, "valid", "test")
    )
    table = pd.DataFrame(
        {"experiment": experiment, "plate": plate.astype(int), "well": meta["Metadata_Well"],
         "site": meta["Metadata_Site"], "sirna": meta["Metadata_Gene"], "split1": split}
    )  # fmt: skip
    table.to_csv(tmp_path / "u2os_like.csv", index=False)
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
        tmp_path / "u2os_like.csv", "--label-column", "sirna", "--split-file",
        tmp_path / "u2os_like.csv", *FAST, "--baselines", "none", "-o", tmp_path / "r",
    )  # fmt: skip
    assert code == 0, err
    written = pd.read_csv(tmp_path / "r" / "splits.csv")
    want = pd.Series(split).map({"train": "train", "valid": "val", "test": "test"})
    assert (written["Metadata_Split"].to_numpy() == want.to_numpy()).all()


def test_linear_probe_leaves_the_encoder_unchanged(screen, tiny, tmp_path):
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 2,
        "--linear-probe", *FAST, "--baselines", "none", "-o", tmp_path / "probe",
    )  # fmt: skip
    assert code == 0, err
    before = load_file(str(tiny / "model.safetensors"))
    after = load_file(str(tmp_path / "probe" / "model" / "model.safetensors"))
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    assert {n for n in after if n.startswith("head.")} == {"head.weight", "head.bias"}
    assert json.loads((tmp_path / "probe" / "report.json").read_text())["settings"]["linear_probe"]


def test_graph_loss_and_cell_line_tokens_run(screen, tmp_path):
    from embedkit.graph import PerturbationGraph

    genes = ["SIMG01", "SIMG02", "SIMG03", "OTHER"]  # SIMG04 and EMPTY are not in it
    PerturbationGraph.from_edges(genes, [0, 1, 2], [1, 2, 3], [1.0, 0.5, 1.0]).save(
        tmp_path / "g.npz"
    )
    torch.manual_seed(0)
    lines = {"HUVEC": [0.1] * 8, "RPE": [0.2] * 8}
    model = ImageModel(ViTConfig(**TINY_VIT, cell_line_tokens=2, cell_line_dim=8), cell_lines=lines)
    model.save_pretrained(tmp_path / "tokens")
    table = pd.DataFrame(
        {"cell_line": ["U2OS", "HUVEC"], **{f"d{i}": [0.5, 0.1] for i in range(8)}}
    )
    table.to_csv(tmp_path / "lines.csv", index=False)
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tmp_path / 'tokens'}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 2, *FAST,
        "--graph", tmp_path / "g.npz", "--graph-loss", "contrastive", "--graph-weight", 0.1,
        "--cell-line", "U2OS", "--cell-line-embeddings", tmp_path / "lines.csv",
        "-o", tmp_path / "r",
    )  # fmt: skip
    assert code == 0, err
    assert "the graph covers 3 of 5 labels" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["graph"]["coverage"]["covered"] == 3 and report["graph"]["loss"] == "contrastive"
    assert report["cell_line"]["name"] == "U2OS"
    config = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert config["cell_line"] == "U2OS" and config["cell_lines"]["U2OS"] == [0.5] * 8
    # predict finds the line it was fine-tuned on without being told
    code, _, err = invoke(
        "predict", screen, "-m", f"local-dir:{tmp_path / 'r' / 'model'}", "-o", tmp_path / "p.csv"
    )
    assert code == 0, err

    # a cell line the table lacks: one line naming close names
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tmp_path / 'tokens'}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 2, *FAST,
        "--cell-line", "U2-OS-X", "--cell-line-embeddings", tmp_path / "lines.csv",
        "-o", tmp_path / "bad",
    )  # fmt: skip
    assert code == 2 and "U2-OS-X" in one_line(err) and not (tmp_path / "bad").exists()


def test_cell_line_embedding_from_expression(screen, tmp_path):
    cell_lines = pytest.importorskip("embedkit.cell_lines")
    if not hasattr(cell_lines, "embed_expression"):
        pytest.skip("embedkit.cell_lines has no embed_expression yet")
    anndata = pytest.importorskip("anndata")
    pytest.importorskip("scanpy")
    rng = np.random.default_rng(0)
    names = ["U2OS", "HUVEC", "RPE", "HEPG2", "A549", "MCF7"]
    counts = rng.negative_binomial(5, 0.3, size=(6, 300)).astype(np.float32)
    adata = anndata.AnnData(counts)
    adata.obs_names = names
    adata.var_names = [f"GENE{i}" for i in range(300)]
    adata.write_h5ad(tmp_path / "cells.h5ad")
    torch.manual_seed(0)
    ImageModel(ViTConfig(**TINY_VIT, cell_line_tokens=1, cell_line_dim=3)).save_pretrained(
        tmp_path / "m"
    )
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tmp_path / 'm'}", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 2, *FAST,
        "--baselines", "none", "--cell-line", "U2OS", "--expression", tmp_path / "cells.h5ad",
        "-o", tmp_path / "r",
    )  # fmt: skip
    assert code == 0, err
    config = json.loads((tmp_path / "r" / "model" / "config.json").read_text())
    assert len(config["cell_lines"]["U2OS"]) == 3


# --- bad input -------------------------------------------------------------------------------


def test_missing_sites_are_counted_and_rare_perturbations_excluded(screen, tiny, tmp_path):
    meta = pd.read_csv(screen / "metadata.csv")
    ghost = meta.head(4).assign(Metadata_Well="P24")  # listed, never imaged
    rare = meta["Metadata_Gene"] == "SIMG01"
    meta.loc[rare, "Metadata_Gene"] = ["SIMG99"] * 3 + ["SIMG01"] * (rare.sum() - 3)
    pd.concat([meta, ghost]).to_csv(tmp_path / "labels.csv", index=False)
    code, _, err = invoke(
        "finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
        tmp_path / "labels.csv", "--label-column", "Metadata_Gene", "--shots", 2, *FAST,
        "--baselines", "none", "-o", tmp_path / "r",
    )  # fmt: skip
    assert code == 0, err
    assert "4 listed sites have no images" in err and "P24" in err
    assert "1 perturbation(s) excluded: SIMG99 (3 site(s)" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["data"]["missing_images"] == 4
    assert report["splits"]["excluded_count"] == 1 and "SIMG99" in report["splits"]["excluded"]
    assert "SIMG99" not in report["labels"]["vocabulary"]


def test_a_model_of_the_wrong_kind_is_one_sentence(screen, tiny, tmp_path):
    code, _, err = invoke(
        "finetune", "-m", "infoalign-gin-lincs-small", "--data", screen, "--labels",
        screen / "metadata.csv", "--label-column", "Metadata_Gene", "--shots", 1,
        "-o", tmp_path / "r",
    )  # fmt: skip
    assert code == 2 and "needs a model for images" in one_line(err)
    code, _, err = invoke(
        "predict", screen, "-m", f"local-dir:{tiny}", "-o", tmp_path / "p.parquet"
    )
    assert code == 2 and "needs a model for image-classification" in one_line(err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.parquet").exists()


def test_a_graph_covering_no_label_and_bad_options_are_one_line(screen, tiny, tmp_path):
    from embedkit.graph import PerturbationGraph

    PerturbationGraph.from_edges(["x", "y"], [0], [1], [1.0]).save(tmp_path / "g.npz")
    base = ["finetune", "-m", f"local-dir:{tiny}", "--data", screen, "--labels",
            screen / "metadata.csv", "--label-column", "Metadata_Gene", *FAST]  # fmt: skip
    code, _, err = invoke(*base, "--shots", 1, "--graph", tmp_path / "g.npz", "-o", tmp_path / "a")
    assert code == 2 and "covers none of the 5 labels" in one_line(err)
    code, _, err = invoke(*base, "-o", tmp_path / "b")
    assert code == 2 and "--shots" in one_line(err)
    code, _, err = invoke(*base, "--shots", 1, "--cell-line", "U2OS", "-o", tmp_path / "c")
    assert code == 2 and "no cell-line tokens" in one_line(err)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("mine")
    code, _, err = invoke(*base, "--shots", 1, "-o", tmp_path / "d")
    assert code == 2 and "--overwrite" in one_line(err)
    assert (tmp_path / "d" / "x").read_text() == "mine"


# --- profiles --------------------------------------------------------------------------------


def _profiles(path: Path, rows_per_class: int = 8, classes: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(classes, 20))
    x = np.concatenate([c + rng.normal(0, 1, size=(rows_per_class, 20)) for c in centers])
    table = pd.DataFrame(x, columns=[f"Cells_F{i:02d}" for i in range(20)])
    table.insert(
        0, "Metadata_Compound", np.repeat([f"cpd{i}" for i in range(classes)], rows_per_class)
    )
    table.insert(0, "Metadata_Well", [f"A{i:02d}" for i in range(len(table))])
    table.insert(0, "Metadata_Plate", "P1")
    table.loc[3, "Cells_F05"] = np.nan  # a row with a missing feature
    table.to_csv(path, index=False)
    return path


def test_profiles_fine_tune_beside_baselines_and_predict(tmp_path):
    table = _profiles(tmp_path / "profiles.csv")
    code, out, err = invoke(
        "finetune", "--profiles", table, "--label-column", "Metadata_Compound", "--shots", 2,
        "--seeds", 2, "--epochs", 40, "--batch-size", 4, "--hidden", "32,16", "--baselines",
        "random,nearest-centroid", "-o", tmp_path / "scratch",
    )  # fmt: skip
    assert code == 0, err
    assert "1 rows have missing or infinite features; skipped" in err
    report = json.loads((tmp_path / "scratch" / "report.json").read_text())
    assert set(report["summary"]) == {"random-init", "nearest-centroid"}
    assert report["summary"]["random-init"]["top1_mean"] > 0.5  # chance is 1/6
    assert report["summary"]["nearest-centroid"]["top1_mean"] > 0.5

    # that model is a pretrained profile encoder for another table with the same features
    other = _profiles(tmp_path / "other.csv", seed=1)
    code, _, err = invoke(
        "finetune", "--profiles", other, "-m", f"local-dir:{tmp_path / 'scratch' / 'model'}",
        "--label-column", "Metadata_Compound", "--shots", 1, "--seeds", 2, "--epochs", 5,
        "-o", tmp_path / "adapted",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "adapted" / "report.json").read_text())
    pretrained = [r for r in report["runs"] if r["condition"] == "pretrained"]
    assert [r["start_weights_sha256"] for r in pretrained] == [
        report["model"]["pretrained_weights_sha256"]
    ] * 2

    code, out, err = invoke(
        "predict", "--profiles", other, "-m", f"local-dir:{tmp_path / 'adapted' / 'model'}",
        "-o", tmp_path / "p.csv",
    )  # fmt: skip
    assert code == 0, err
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 48 and list(predictions["Metadata_Well"][:2]) == ["A00", "A01"]
    assert predictions["Metadata_Valid"].sum() == 47  # the row with a missing feature
    assert predictions.loc[~predictions["Metadata_Valid"], "Metadata_Prediction"].isna().all()
    from embedkit.io import read_run_info

    info = read_run_info(tmp_path / "p.csv")  # the input by name + sha256, no tmp path
    assert info["input"] == "other.csv" and len(info["input_sha256"]) == 64
    assert info["software"]["torch"] and str(tmp_path) not in json.dumps(info)

    # a table lacking the model's features: one sentence naming them
    pd.read_csv(other).drop(columns=["Cells_F07"]).to_csv(tmp_path / "less.csv", index=False)
    code, _, err = invoke(
        "predict", "--profiles", tmp_path / "less.csv", "-m",
        f"local-dir:{tmp_path / 'adapted' / 'model'}", "-o", tmp_path / "q.csv",
    )  # fmt: skip
    assert code == 2 and "Cells_F07" in one_line(err)


def test_the_commands_import_no_torch_to_parse():
    code = (
        "import sys; from click.testing import CliRunner; from embedkit.cli import main\n"
        "for c in ('finetune', 'predict'):\n"
        "    assert CliRunner().invoke(main, [c, '--help']).exit_code == 0\n"
        "print([m for m in ('torch', 'timm') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
