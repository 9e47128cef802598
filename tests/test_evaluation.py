"""Property-prediction evaluation: scaffold split, metrics, MLP probe, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import nci_smiles
from sklearn.metrics import mean_absolute_error, roc_auc_score

from embedkit.evaluation import (
    ProbeConfig,
    PropertyDataset,
    ecfp4,
    ecfp_methods,
    evaluate_property,
    fit_mlp_probe,
    load_dataset,
    mean_mae,
    mean_roc_auc,
    murcko_scaffold,
    random_init_method,
    scaffold_split,
)
from embedkit.evaluation.probe import ProbeMLP, to_features
from embedkit.evaluation.property import RESULT_COLUMNS
from embedkit.evaluation.splits import scaffold_groups
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small models on a shared 2-core box run several times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smiles() -> list[str]:
    return nci_smiles(600)


# --- scaffold split ------------------------------------------------------------------------


def test_scaffold_split_disjoint_sized_and_deterministic(smiles):
    groups = scaffold_groups(smiles)
    biggest = max(len(g) for g in groups)
    split = scaffold_split(smiles, seed=0, groups=groups)
    parts = [split.train, split.valid, split.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(smiles)))
    scaffolds = [{murcko_scaffold(smiles[i]) for i in part} for part in parts]
    assert not scaffolds[0] & scaffolds[1]
    assert not scaffolds[0] & scaffolds[2]
    assert not scaffolds[1] & scaffolds[2]
    for part, fraction in zip(parts, (0.6, 0.15, 0.25), strict=True):
        assert abs(len(part) - fraction * len(smiles)) <= biggest
    assert len(split.train) >= 0.55 * len(smiles)

    again = scaffold_split(smiles, seed=0)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(parts, [again.train, again.valid, again.test], strict=True)
    )
    other = scaffold_split(smiles, seed=1, groups=groups)
    assert not np.array_equal(split.test, other.test)


def test_murcko_scaffold_drops_side_chains():
    assert murcko_scaffold("CCc1ccccc1") == murcko_scaffold("OCc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCCC") == ""
    assert murcko_scaffold("not a smiles").startswith("<unparsable>")


# --- metrics -------------------------------------------------------------------------------


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < 0.3).astype(np.float32)
    score = np.round(rng.random((200, 4)), 1)  # rounding makes ties
    y[rng.random((200, 4)) < 0.2] = np.nan
    y[:, 3] = np.where(np.isnan(y[:, 3]), np.nan, 0.0)  # one class only: not scorable
    expected = np.mean(
        [roc_auc_score(y[~np.isnan(y[:, t]), t], score[~np.isnan(y[:, t]), t]) for t in range(3)]
    )
    assert mean_roc_auc(y, score) == pytest.approx(expected, abs=1e-12)

    target = rng.normal(size=(200, 3))
    pred = target + rng.normal(size=(200, 3))
    target[rng.random((200, 3)) < 0.3] = np.nan
    expected = np.mean(
        [
            mean_absolute_error(
                target[~np.isnan(target[:, t]), t], pred[~np.isnan(target[:, t]), t]
            )
            for t in range(3)
        ]
    )
    assert mean_mae(target, pred) == pytest.approx(expected, abs=1e-12)


# --- probe ---------------------------------------------------------------------------------


def _synthetic(seed: int, shuffle: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    y = (x @ rng.normal(size=(32, 3)) > 0).astype(np.float32)
    y[rng.random(y.shape) < 0.2] = np.nan
    if shuffle:
        y = y[rng.permutation(len(y))]
    return [x[:360], y[:360], x[360:450], y[360:450], x[450:], y[450:]]


def test_probe_learns_a_separable_task():
    config = ProbeConfig(max_epochs=60, patience=20)
    result = fit_mlp_probe(*_synthetic(0, shuffle=False), "classification", seed=0, config=config)
    assert result.test_score > 90.0
    assert 0 <= result.best_epoch < 60


def test_probe_cannot_learn_shuffled_labels():
    config = ProbeConfig(max_epochs=60, patience=20)
    result = fit_mlp_probe(*_synthetic(0, shuffle=True), "classification", seed=0, config=config)
    assert abs(result.test_score - 50.0) < 10.0


def test_sparse_first_layer_equals_dense():
    rng = np.random.default_rng(0)
    x = (rng.random((40, 256)) < 0.05).astype(np.float32) * rng.random((40, 256)).astype(np.float32)
    x[3] = 0.0
    torch.manual_seed(0)
    model = ProbeMLP(256, 4, ProbeConfig()).eval()
    dense, sparse = model(to_features(x, False)), model(to_features(x, True))
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-5)


# --- end to end ----------------------------------------------------------------------------


def _tiny_random_method():
    """A small random GIN, standing in for a zoo model so the test stays fast."""
    torch.manual_seed(0)
    embedder = MoleculeEmbedder(InfoAlignModel(GINConfig(num_layer=2, emb_dim=32)), device="cpu")
    return random_init_method("random-init", like=embedder)


def test_invalid_smiles_dropped_for_every_method(smiles):
    rng = np.random.default_rng(0)
    rows = smiles[:200] + ["not a smiles", ""]
    labels = (rng.random((len(rows), 2)) < 0.4).astype(np.float32)
    data = PropertyDataset("toy", rows, labels, ["a", "b"], "classification")
    assert ecfp4(rows)[1].sum() == 200
    table = evaluate_property(
        data,
        [*ecfp_methods(("mlp", "rf")), _tiny_random_method()],
        seeds=[0],
        probe=ProbeConfig(max_epochs=5, patience=5),
        rf_trees=10,
    )
    assert (table["n_dropped"] == 2).all()
    assert (table[["n_train", "n_valid", "n_test"]].sum(axis=1) == 200).all()
    assert table[["n_train", "n_test"]].nunique().max() == 1  # same split for every method


def test_parallel_fits_give_identical_results(smiles):
    rng = np.random.default_rng(1)
    labels = (rng.random((150, 2)) < 0.4).astype(np.float32)
    data = PropertyDataset("toy", smiles[:150], labels, ["a", "b"], "classification")
    kwargs = dict(seeds=[0, 1], probe=ProbeConfig(max_epochs=5, patience=5), rf_trees=10)
    serial = evaluate_property(data, ecfp_methods(("mlp", "rf")), n_jobs=1, **kwargs)
    parallel = evaluate_property(data, ecfp_methods(("mlp", "rf")), n_jobs=2, **kwargs)
    np.testing.assert_allclose(serial["test_score"], parallel["test_score"], rtol=1e-6)


def test_evaluate_property_on_real_biogen_subset(real_data):
    data = load_dataset("biogenadme", real_data)
    assert (len(data), data.labels.shape[1], data.task_type) == (3521, 6, "regression")
    methods = [*ecfp_methods(("mlp", "rf")), _tiny_random_method()]
    table = evaluate_property(
        "biogenadme",
        methods,
        seeds=[0, 1],
        data_dir=real_data,
        max_molecules=300,
        probe=ProbeConfig(max_epochs=20, patience=10),
        rf_trees=20,
    )
    assert list(table.columns) == RESULT_COLUMNS
    assert table.shape == (len(methods) * 2, len(RESULT_COLUMNS))
    assert set(table["method"]) == {"ecfp4-mlp", "ecfp4-rf", "random-init"}
    assert (table["metric"] == "mae_x100").all()
    assert np.isfinite(table["test_score"]).all()
    # MAE x100 of log-unit ADME endpoints: well above 0, far below predicting nothing useful
    assert table["test_score"].between(10, 300).all()
    assert (table[["n_train", "n_valid", "n_test"]].sum(axis=1) == 300).all()


def test_evaluate_property_cli_on_real_data(tmp_path):
    """`embedkit evaluate property` runs the model beside its three baselines and reports."""
    import json
    import os
    import subprocess
    import sys

    from conftest import shared_data_dir

    data = shared_data_dir()
    if data is None:
        pytest.skip("real data not present (set EMBEDKIT_DATA_DIR or place ../shared/data)")
    out = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedkit.cli",
            "evaluate",
            "property",
            "--quick",
            "--datasets",
            "biogenadme",
            "--data-dir",
            str(data),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    methods = {row["method"] for row in report["summary"]}
    assert methods == {"infoalign-gin-lincs-small", "random-init", "ecfp4-mlp", "ecfp4-rf"}
    assert all(0 < row["mean"] < 200 for row in report["summary"])
    assert "| random-init |" in result.stdout


def test_evaluate_property_cli_without_data_dir_is_one_line():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "EMBEDKIT_DATA_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "embedkit.cli", "evaluate", "property", "--quick"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: no data directory: pass --data-dir or set $EMBEDKIT_DATA_DIR"
    )


# --- assay files by path, the paper's protocol, task shares ---------------------------------


def _assay_frame(smiles: list[str], seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(smiles)
    a = (rng.random(n) < 0.4).astype(float)
    b = np.where(rng.random(n) < 0.3, np.nan, (rng.random(n) < 0.5).astype(float))
    return pd.DataFrame(
        {"Compound ID": [f"C{i}" for i in range(n)], "SMILES": smiles, "tox_a": a, "tox_b": b}
    )


def test_load_assay_file_reads_any_infoalign_format_file(smiles, tmp_path):
    import json

    from embedkit.evaluation.datasets import load_assay_file, resolve_dataset

    path = tmp_path / "panel.csv.gz"
    _assay_frame(smiles[:50]).to_csv(path, index=False)
    data = load_assay_file(path)
    assert (data.name, data.task_names, data.task_type) == (
        "panel",
        ["tox_a", "tox_b"],
        "classification",
    )
    assert data.smiles == smiles[:50] and np.isnan(data.labels[:, 1]).any()
    assert resolve_dataset(str(path)).task_names == ["tox_a", "tox_b"]

    frame = _assay_frame(smiles[:50]).assign(logS=np.linspace(-3, 1, 50))
    folder = tmp_path / "custom"
    folder.mkdir()
    frame.to_csv(folder / "assays.csv", index=False)
    assert load_assay_file(folder / "assays.csv").task_type == "regression"  # logS is real
    (folder / "meta.json").write_text(json.dumps({"start_column": 4, "num_tasks": 1}))
    data = load_assay_file(folder / "assays.csv", name="sol")
    assert (data.name, data.task_names, data.task_type) == ("sol", ["logS"], "regression")


def test_bad_assay_files_are_one_sentence(smiles, tmp_path):
    from embedkit.errors import InputError
    from embedkit.evaluation.datasets import load_assay_file, resolve_dataset

    no_smiles = tmp_path / "no_smiles.csv"
    _assay_frame(smiles[:20]).rename(columns={"SMILES": "structure"}).to_csv(no_smiles)
    with pytest.raises(InputError, match=r"no_smiles.csv: no SMILES column \(columns: "):
        load_assay_file(no_smiles)
    graded = tmp_path / "graded.csv"
    _assay_frame(smiles[:20]).assign(tox_b=[0.0, 1.0, 2.5] + [1.0] * 17).to_csv(graded)
    with pytest.raises(InputError, match=r"column 'tox_b' has non-binary labels \(e.g. 2.5\)"):
        load_assay_file(graded, task_type="classification")
    assert load_assay_file(graded).task_type == "regression"  # auto: the reference's rule
    with pytest.raises(InputError, match="unknown benchmark 'tox21'"):
        resolve_dataset("tox21")


def test_task_shares_count_tasks_at_each_auc_level():
    from embedkit.evaluation.property import task_shares

    y = np.array([[0, 0, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0], [1, 1, np.nan, 0]], float)
    pred = np.array(
        [[0.1, 0.2, 0.5, 0.1], [0.2, 0.9, 0.5, 0.2], [0.8, 0.3, 0.5, 0.9], [0.9, 0.25, 0.5, 0.8]]
    )
    # task AUCs: 1.0, 0.75 (one of four pairs inverted), none (one class), 0.0
    shares = task_shares("classification", y, pred)
    assert shares["n_scored_tasks"] == 3
    assert shares["tasks_auc_ge_80"] == pytest.approx(100 / 3)
    assert shares["tasks_auc_ge_90"] == pytest.approx(100 / 3)
    assert np.isnan(task_shares("regression", y, pred)["tasks_auc_ge_90"])


def test_fixed_split_runs_beside_per_seed_splits(smiles):
    from embedkit.evaluation.property import FIXED_SPLIT, PER_SEED
    from embedkit.evaluation.report import margins, markdown_table, summarize

    rng = np.random.default_rng(2)
    labels = (rng.random((160, 2)) < 0.4).astype(np.float32)
    data = PropertyDataset("toy", smiles[:160], labels, ["a", "b"], "classification")
    methods = [*ecfp_methods(("mlp",)), _tiny_random_method()]
    table = evaluate_property(
        data,
        methods,
        seeds=[0, 1],
        probe=ProbeConfig(max_epochs=5, patience=5),
        fixed_split_runs=3,
        fixed_split_seed=7,
    )
    assert list(table.columns) == RESULT_COLUMNS
    fixed = table[table["protocol"] == FIXED_SPLIT]
    per_seed = table[table["protocol"] == PER_SEED]
    assert len(fixed) == 3 * len(methods) and len(per_seed) == 2 * len(methods)
    assert (fixed["split_seed"] == 7).all() and sorted(set(fixed["seed"])) == [0, 1, 2]
    assert fixed[["n_train", "n_valid", "n_test"]].nunique().max() == 1  # one split
    assert (per_seed["split_seed"] == per_seed["seed"]).all()  # a split per seed
    random_fixed = fixed[fixed["method"] == "random-init"]["test_score"]
    assert random_fixed.nunique() == 3  # new random weights (and head) per run
    shares = table[[f"tasks_auc_ge_{v}" for v in (80, 85, 90)]]
    assert shares.notna().all().all() and shares.ge(0).all().all() and shares.le(100).all().all()
    assert (table["tasks_auc_ge_80"] >= table["tasks_auc_ge_90"]).all()

    summary = summarize(table)
    text = markdown_table(summary, "random-init")
    assert (
        "**fixed-split**: 3 runs on one scaffold split" in text and "**per-seed**: 2 seeds" in text
    )
    assert text.count("| ecfp4-mlp |") == 2 and "toy tasks ≥ AUC 80/85/90 %" in text
    gains = margins(summary, ["random-init"])
    assert {(g["protocol"], g["baseline"]) for g in gains} == {
        (FIXED_SPLIT, "ecfp4-mlp"),
        (PER_SEED, "ecfp4-mlp"),
    }


def test_evaluate_property_cli_scores_an_assay_file_by_path(smiles, tmp_path):
    """--assays PATH with a tiny local model: both protocols, the random twin and ECFP4."""
    import json

    from click.testing import CliRunner

    from embedkit.cli import main

    torch.manual_seed(0)
    InfoAlignModel(GINConfig(num_layer=2, emb_dim=16)).save_pretrained(tmp_path / "tiny")
    path = tmp_path / "panel.csv"
    _assay_frame(smiles[:120]).to_csv(path, index=False)
    out = tmp_path / "report.json"
    args = ["evaluate", "property", "-m", f"local-dir:{tmp_path / 'tiny'}", "--assays", str(path)]
    result = CliRunner().invoke(main, [*args, "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["config"]["fixed_split_runs"] == 2
    assert report["config"]["datasets"] == ["panel.csv"]  # portable: no local absolute path
    protocols = {(r["protocol"], r["method"]) for r in report["summary"]}
    assert {p for p, _ in protocols} == {"per-seed", "fixed-split"}
    assert {m for _, m in protocols} >= {"random-init", "ecfp4-mlp", "ecfp4-rf"}
    assert "panel tasks ≥ AUC 80/85/90 %" in result.output

    bad = tmp_path / "bad.csv"
    _assay_frame(smiles[:20]).drop(columns="SMILES").to_csv(bad, index=False)
    result = CliRunner().invoke(main, [*args[:4], "--assays", str(bad), "--quick"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"error: {bad}: no SMILES column")


def test_merge_reports_puts_a_model_scored_alone_beside_the_baselines(smiles):
    """A model scored without baselines merges with a run that has them (same protocol);
    a run with other settings is refused."""
    import pandas as pd

    from embedkit.errors import InputError
    from embedkit.evaluation.report import merge_reports

    rng = np.random.default_rng(3)
    labels = (rng.random((120, 2)) < 0.4).astype(np.float32)
    data = PropertyDataset("toy", smiles[:120], labels, ["a", "b"], "classification")
    kwargs = dict(seeds=[0], probe=ProbeConfig(max_epochs=5, patience=5), fixed_split_runs=2)
    with_baselines = evaluate_property(
        data, [*ecfp_methods(("mlp",)), _tiny_random_method()], **kwargs
    )
    model = _tiny_random_method()
    model.name, model.features_key = "new-model", "new-model"
    alone = evaluate_property(data, [model], **kwargs)
    config = {"protocol": "both", "seeds": [0], "fixed_split_runs": 2, "fixed_split_seed": 0}

    def report(table: pd.DataFrame, model_id: str) -> dict:
        records = table.to_dict(orient="records")
        return {
            "config": config,
            "model": {"model_id": model_id},
            "elapsed_s": 1.0,
            "results": records,
        }

    merged = merge_reports([report(with_baselines, "old"), report(alone, "new-model")])
    assert len(merged["results"]) == len(with_baselines) + len(alone)
    assert (
        "| new-model |" in merged["table_markdown"]
        and "| random-init |" in merged["table_markdown"]
    )
    assert {m["model"] for m in merged["margins"]} == {"new-model"}
    assert {m["baseline"] for m in merged["margins"]} == {"random-init", "ecfp4-mlp"}
    other = {**report(alone, "new-model"), "config": {**config, "fixed_split_runs": 10}}
    with pytest.raises(InputError, match="different fixed_split_runs: 2 vs 10"):
        merge_reports([report(with_baselines, "old"), other])


def test_the_property_report_carries_software_versions_and_no_absolute_path(tmp_path):
    import json

    from embedkit.evaluation.report import write_report

    report = {"data_dir": str(tmp_path / "data"), "model": f"local-dir:{tmp_path}/m"}
    text = write_report(report, tmp_path / "r.json").read_text()
    written = json.loads(text)
    assert str(tmp_path) not in text
    assert written["data_dir"] == "data" and written["model"] == f"local-dir:{tmp_path.name}/m"
    assert written["software"]["embedkit"] and "torch" in written["software"]
