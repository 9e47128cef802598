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
