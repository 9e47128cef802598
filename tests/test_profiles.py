"""`embedkit aggregate` / `normalize`: hand-computed references, batch-effect removal, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embedkit.cli import aggregate_cmd, normalize_cmd
from embedkit.datasets.synthetic import synthetic_profiles
from embedkit.errors import InputError
from embedkit.io import read_run_info, write_table
from embedkit.profiles import aggregate, infer_features, normalize

NEGCON = "Metadata_PertType == 'negcon'"


def crops() -> pd.DataFrame:
    """Two plates; wells appear in the order C, A, B (not sorted); 2–3 crops per well."""
    return pd.DataFrame(
        {
            "Metadata_Plate": ["p1"] * 7 + ["p2"] * 2,
            "Metadata_Well": ["C", "C", "A", "A", "A", "B", "B", "C", "C"],
            "Metadata_Site": [1, 2, 1, 1, 2, 1, 2, 1, 1],
            "Metadata_Compound": ["x", "x", "y", "y", "y", "z", "z", "x", "x"],
            "Emb_0000": [1.0, 3.0, 10.0, 20.0, 60.0, 5.0, np.nan, 2.0, 4.0],
            "Emb_0001": [0.0, 1.0, 1.0, 2.0, 3.0, np.nan, np.nan, 7.0, 7.0],
        }
    )


# ---------------------------------------------------------------- features


def test_features_default_skips_metadata_text_bool_and_cellprofiler_ids():
    table = pd.DataFrame(
        {
            "Metadata_Dose": [1.0, 2.0],
            "ImageNumber": [1, 2],
            "ObjectNumber": [1, 1],
            "FileName_DNA": ["a.tif", "b.tif"],
            "Flag": [True, False],
            "Cells_Area": [10, 20],
            "Nuclei_Area": [1.5, 2.5],
        }
    )
    assert infer_features(table) == ["Cells_Area", "Nuclei_Area"]


def test_features_explicit_names_and_patterns():
    table = pd.DataFrame({"Cells_A": [1.0], "Cells_B": [2.0], "Nuclei_A": [3.0], "x": [4.0]})
    assert infer_features(table, ["Nuclei_*", "x"]) == ["Nuclei_A", "x"]
    with pytest.raises(InputError, match="not found: Cyto_\\*"):
        infer_features(table, ["Cells_*", "Cyto_*"])


def test_no_features_is_a_clear_error():
    table = pd.DataFrame({"Metadata_Well": ["A01"], "note": ["text"]})
    with pytest.raises(InputError, match="no feature columns"):
        infer_features(table)


# ---------------------------------------------------------------- aggregate


def test_aggregate_median_by_hand_in_first_appearance_order():
    out = aggregate(crops())
    assert out[["Metadata_Plate", "Metadata_Well"]].values.tolist() == [
        ["p1", "C"],
        ["p1", "A"],
        ["p1", "B"],
        ["p2", "C"],
    ]
    # NaN skipped per column; an all-NaN column in a group stays NaN
    assert out["Emb_0000"].tolist() == [2.0, 20.0, 5.0, 3.0]
    np.testing.assert_array_equal(out["Emb_0001"], [0.5, 2.0, np.nan, 7.0])
    assert out["Metadata_Object_Count"].tolist() == [2, 3, 2, 2]


def test_aggregate_mean_matches_pandas_on_random_table():
    rng = np.random.default_rng(1)
    n = 300
    table = pd.DataFrame(
        {
            "Metadata_Plate": rng.choice(["p1", "p2", "p3"], n),
            "Metadata_Well": rng.choice([f"W{i}" for i in range(12)], n),
        }
    )
    values = rng.normal(size=(n, 5))
    values[rng.random((n, 5)) < 0.1] = np.nan
    for j in range(5):
        table[f"Emb_{j:04d}"] = values[:, j]
    out = aggregate(table, method="mean")
    expected = table.groupby(["Metadata_Plate", "Metadata_Well"], sort=False).mean()
    np.testing.assert_allclose(out.filter(like="Emb_").to_numpy(), expected.to_numpy())
    sizes = table.groupby(["Metadata_Plate", "Metadata_Well"], sort=False).size()
    assert out["Metadata_Object_Count"].tolist() == sizes.tolist()


def test_aggregate_keeps_constant_metadata_and_drops_varying():
    out = aggregate(crops())
    assert "Metadata_Compound" in out.columns  # constant within every well
    assert out["Metadata_Compound"].tolist() == ["x", "y", "z", "x"]
    assert "Metadata_Site" not in out.columns  # varies within wells
    by_site = aggregate(crops(), strata=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
    assert len(by_site) == 7


def test_aggregate_crop_site_well_keeps_object_count():
    sites = aggregate(crops(), strata=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
    wells = aggregate(sites)
    assert wells["Metadata_Object_Count"].tolist() == [2, 3, 2, 2]


def test_aggregate_keeps_float32_and_missing_strata_values_form_a_group():
    table = pd.DataFrame(
        {
            "Metadata_Well": ["A", None, "A", None],
            "Emb_0000": np.array([1, 2, 3, 4], dtype=np.float32),
        }
    )
    out = aggregate(table, strata="Metadata_Well")
    assert out["Emb_0000"].dtype == np.float32
    assert out["Emb_0000"].tolist() == [2.0, 3.0]
    assert out["Metadata_Object_Count"].tolist() == [2, 2]


def test_aggregate_missing_strata_names_them_and_lists_metadata():
    with pytest.raises(InputError) as err:
        aggregate(crops(), strata=["Metadata_Plate", "Metadata_Field"])
    assert "Metadata_Field" in str(err.value)
    assert "Metadata_Compound" in str(err.value)  # available columns listed


def test_aggregate_rejects_unknown_method():
    with pytest.raises(InputError, match="median, mean"):
        aggregate(crops(), method="max")


# ---------------------------------------------------------------- normalize


def plates(seed: int = 0) -> pd.DataFrame:
    """Three plates × 12 wells (4 negcon), different offsets and scales per plate."""
    rng = np.random.default_rng(seed)
    rows = []
    for p, (shift, scale) in enumerate([(0.0, 1.0), (5.0, 3.0), (-2.0, 0.5)]):
        for w in range(12):
            rows.append(
                {
                    "Metadata_Plate": f"plate{p}",
                    "Metadata_Well": f"W{w:02d}",
                    "Metadata_PertType": "negcon" if w % 3 == 0 else "trt",
                    **{f"Emb_{j:04d}": shift + scale * rng.normal() for j in range(4)},
                }
            )
    table = pd.DataFrame(rows)
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # interleave


def hand_reference(table: pd.DataFrame, robust: bool, controls: bool) -> np.ndarray:
    feats = [c for c in table.columns if c.startswith("Emb_")]
    out = np.empty((len(table), len(feats)))
    for plate in table["Metadata_Plate"].unique():
        rows = (table["Metadata_Plate"] == plate).to_numpy()
        ref_rows = rows & (table["Metadata_PertType"] == "negcon").to_numpy() if controls else rows
        for j, f in enumerate(feats):
            ref = table.loc[ref_rows, f].to_numpy()
            if robust:
                median = np.median(ref)
                mad = np.median(np.abs(ref - median))
                out[rows, j] = (table.loc[rows, f] - median) / (1.4826 * mad + 1e-18)
            else:
                mean = ref.sum() / len(ref)
                std = np.sqrt(((ref - mean) ** 2).sum() / len(ref))
                out[rows, j] = (table.loc[rows, f] - mean) / std
    return out


@pytest.mark.parametrize("method", ["standardize", "mad_robustize"])
@pytest.mark.parametrize("controls", [None, NEGCON])
def test_per_plate_methods_match_hand_formulas(method, controls):
    table = plates()
    out = normalize(table, method, controls=controls, by="Metadata_Plate")
    expected = hand_reference(table, robust=method == "mad_robustize", controls=bool(controls))
    np.testing.assert_allclose(out.filter(like="Emb_").to_numpy(), expected, rtol=1e-10)


def test_controls_end_up_mean0_std1_per_plate_and_treated_do_not():
    table = plates()
    out = normalize(table, "standardize", controls=NEGCON, by="Metadata_Plate")
    for _, group in out.groupby("Metadata_Plate"):
        ctrl = group[group["Metadata_PertType"] == "negcon"].filter(like="Emb_")
        np.testing.assert_allclose(ctrl.mean(), 0, atol=1e-12)
        np.testing.assert_allclose(ctrl.std(ddof=0), 1, atol=1e-12)
    whole = normalize(table, "standardize", controls=NEGCON)  # one set of stats: plates differ
    plate_means = whole.groupby("Metadata_Plate")["Emb_0000"].mean()
    assert plate_means.max() - plate_means.min() > 1.0


def test_metadata_row_order_and_index_are_kept():
    table = plates()
    table.index = np.arange(100, 100 + len(table))[::-1]
    for method in ["standardize", "tvn"]:
        out = normalize(table, method, controls=NEGCON, by="Metadata_Plate")
        assert out.index.equals(table.index)
        meta = [c for c in table.columns if c.startswith("Metadata_")]
        pd.testing.assert_frame_equal(out[meta], table[meta])


@pytest.mark.parametrize("method", ["standardize", "mad_robustize", "pca_centerscale", "tvn"])
def test_constant_columns_give_zeros_not_nan(method):
    table = plates()
    table["Emb_0004"] = 0.1  # the float mean of three 0.1s is not 0.1: a naive std is ~1e-17
    table["Emb_0005"] = 0.0
    three = "Metadata_Well in ['W00', 'W03', 'W06']"
    out = normalize(table, method, controls=three, by="Metadata_Plate")
    values = out.drop(columns=[c for c in out.columns if c.startswith("Metadata_")])
    assert np.isfinite(values.to_numpy()).all()
    if method in ("standardize", "mad_robustize"):
        assert (out[["Emb_0004", "Emb_0005"]] == 0).all().all()


def test_feature_constant_in_controls_only_is_shifted_not_scaled():
    table = plates()
    table["Emb_0000"] = np.where(table["Metadata_PertType"] == "negcon", 2.0, 3.5)
    out = normalize(table, "standardize", controls=NEGCON, by="Metadata_Plate")
    trt = out["Metadata_PertType"] == "trt"
    assert (out.loc[trt, "Emb_0000"] == 1.5).all()
    assert (out.loc[~trt, "Emb_0000"] == 0.0).all()


def test_nan_features_are_ignored_in_statistics_and_stay_nan():
    table = plates()
    ctrl_rows = np.flatnonzero(
        (table["Metadata_PertType"] == "negcon") & (table["Metadata_Plate"] == "plate1")
    )
    table.loc[ctrl_rows[0], "Emb_0001"] = np.nan
    out = normalize(table, "standardize", controls=NEGCON, by="Metadata_Plate")
    assert np.isnan(out.loc[ctrl_rows[0], "Emb_0001"])
    assert out["Emb_0001"].isna().sum() == 1
    ref = table.loc[ctrl_rows[1:], "Emb_0001"]
    treated = table.index[
        (table["Metadata_Plate"] == "plate1") & (table["Metadata_PertType"] == "trt")
    ][0]
    expected = (table.loc[treated, "Emb_0001"] - ref.mean()) / ref.std(ddof=0)
    assert out.loc[treated, "Emb_0001"] == pytest.approx(expected, rel=1e-12)

    pca = normalize(table, "tvn", controls=NEGCON, by="Metadata_Plate")
    pcs = pca.filter(like="PC_").to_numpy()
    assert np.isnan(pcs[ctrl_rows[0]]).all()
    assert np.isfinite(np.delete(pcs, ctrl_rows[0], axis=0)).all()


def test_pca_methods_name_components_and_scale_controls():
    """tvn standardizes each batch's controls; pca_centerscale only the pooled controls."""
    table = plates()
    for method in ["pca_centerscale", "tvn"]:
        out = normalize(table, method, controls=NEGCON, by="Metadata_Plate")
        pcs = [c for c in out.columns if not c.startswith("Metadata_")]
        assert pcs == ["PC_0000", "PC_0001", "PC_0002", "PC_0003"]
        groups = (
            [out] if method == "pca_centerscale" else [g for _, g in out.groupby("Metadata_Plate")]
        )
        for group in groups:
            ctrl = group[group["Metadata_PertType"] == "negcon"][pcs]
            np.testing.assert_allclose(ctrl.mean(), 0, atol=1e-10)
            np.testing.assert_allclose(ctrl.std(ddof=0), 1, atol=1e-10)
    two = normalize(table, "tvn", controls=NEGCON, n_components=2)
    assert two.filter(like="PC_").shape[1] == 2


def test_pca_keeps_only_the_components_controls_span():
    table = plates()
    table["Emb_0004"] = table["Emb_0000"] + table["Emb_0001"]  # linearly dependent
    out = normalize(table, "tvn", controls=NEGCON)
    assert out.filter(like="PC_").shape[1] == 4
    assert np.isfinite(out.filter(like="PC_").to_numpy()).all()
    with pytest.raises(InputError, match="span only 4"):
        normalize(table, "tvn", controls=NEGCON, n_components=5)


def test_float32_stays_float32():
    table = plates()
    for c in table.filter(like="Emb_"):
        table[c] = table[c].astype(np.float32)
    assert normalize(table, "standardize")["Emb_0000"].dtype == np.float32
    assert normalize(table, "tvn")["PC_0000"].dtype == np.float32


def test_tvn_removes_batch_effect_and_keeps_biology():
    pytest.importorskip("sklearn")
    from embedkit.profiles.diagnostics import batch_effect_report

    table = synthetic_profiles(seed=3)
    args = ("Metadata_Batch", "Metadata_Perturbation")
    trt = "Metadata_PertType == 'trt'"
    raw = batch_effect_report(table, *args, label_rows=trt)
    out = normalize(table, "tvn", controls=NEGCON, by="Metadata_Batch")
    fixed = batch_effect_report(out, *args, label_rows=trt)
    assert raw["batch_chance"] == fixed["batch_chance"] == 0.25
    assert raw["batch_accuracy"] > 0.95
    assert fixed["batch_accuracy"] < fixed["batch_chance"] + 0.15
    assert fixed["label_chance"] == 0.125
    assert fixed["label_accuracy"] > 0.7  # unseen batches, 8 perturbations


def test_tvn_fits_pca_on_controls_pooled_over_batches():
    table = synthetic_profiles(seed=1)
    out = normalize(table, "tvn", controls=NEGCON)  # no by: whitened controls, globally
    ctrl = out[out["Metadata_PertType"] == "negcon"].filter(like="PC_").to_numpy()
    np.testing.assert_allclose(np.cov(ctrl, rowvar=False, ddof=0), np.eye(ctrl.shape[1]), atol=1e-5)


def test_tvn_pca_step_whitens_the_controls():
    from embedkit.profiles.normalize import _pca_transform

    table = synthetic_profiles(seed=2)
    x = table.filter(like="Emb_").to_numpy(dtype=np.float64)
    ctrl = (table["Metadata_PertType"] == "negcon").to_numpy()
    white = _pca_transform(x, ctrl, None, whiten=True)[ctrl]
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(x.shape[1]), atol=1e-8)
    plain = _pca_transform(x, ctrl, None, whiten=False)[ctrl]
    variances = plain.var(axis=0, ddof=1)
    assert (np.diff(variances) <= 1e-9).all() and variances[0] > 2 * variances[-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "zca"}, "unknown normalization method 'zca'"),
        ({"method": "tvn", "controls": "Metadata_PertType == 'poscon'"}, "selects no rows"),
        ({"method": "tvn", "controls": "Metadata_Pert == 'negcon'"}, "Metadata_PertType"),
        ({"method": "standardize", "by": "Metadata_Batch"}, "Metadata_Batch"),
        ({"method": "standardize", "n_components": 3}, "n_components applies"),
        ({"method": "standardize", "features": ["Emb_9999"]}, "Emb_9999"),
    ],
)
def test_normalize_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        normalize(plates(), **kwargs)


def test_group_with_one_control_is_named():
    table = plates()
    lone = (table["Metadata_Plate"] == "plate2") & (table["Metadata_PertType"] == "negcon")
    table.loc[lone[lone].index[1:], "Metadata_PertType"] = "trt"
    with pytest.raises(InputError, match="the group Metadata_Plate = plate2 has 1 control rows"):
        normalize(table, "standardize", controls=NEGCON, by="Metadata_Plate")


# ---------------------------------------------------------------- CLI


def test_cli_aggregate_csv_in_parquet_out(tmp_path):
    source = tmp_path / "crops.csv"
    crops().to_csv(source, index=False)
    out = tmp_path / "wells.parquet"
    result = CliRunner().invoke(aggregate_cmd, [str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "9 rows → 4 rows (9 objects), 2 features, median" in result.output
    table = pd.read_parquet(out)
    assert table["Emb_0000"].tolist() == [2.0, 20.0, 5.0, 3.0]  # numbers, not text
    assert read_run_info(out)["profile_steps"][0]["step"] == "aggregate"


def test_cli_normalize_keeps_run_info_and_writes_by_suffix(tmp_path):
    source = tmp_path / "wells.parquet"
    write_table(plates(), source, run_info={"model": "vit-s16-demo"})
    out = tmp_path / "norm.csv"
    args = [str(source), "-o", str(out), "--method", "tvn", "--controls", NEGCON]
    result = CliRunner().invoke(normalize_cmd, [*args, "--by", "Metadata_Plate"])
    assert result.exit_code == 0, result.output
    assert "36 rows → 36 rows, 4 features → 4 PCs, tvn on 12 control rows, 3 groups" in (
        result.output
    )
    table = pd.read_csv(out)
    assert table.filter(like="PC_").shape == (36, 4)
    info = json.loads((tmp_path / "norm.csv.json").read_text())
    assert info["model"] == "vit-s16-demo"
    assert info["profile_steps"] == [
        {
            "step": "normalize",
            "method": "tvn",
            "controls": NEGCON,
            "by": ["Metadata_Plate"],
            "n_components": None,
            "input": "wells.parquet",  # not the tmp folder's absolute path: it is outside cwd
            "input_sha256": info["profile_steps"][0]["input_sha256"],
        }
    ]
    assert len(info["profile_steps"][0]["input_sha256"]) == 64


@pytest.mark.parametrize("suffix", [".npz", ".h5ad"])
def test_cli_writes_pc_features_as_the_matrix_of_npz_and_h5ad(tmp_path, suffix):
    """TVN output (PC_ features) was refused for .npz/.h5ad; any prefix is the matrix."""
    source = tmp_path / "wells.parquet"
    plates().to_parquet(source)
    out = tmp_path / f"norm{suffix}"
    result = CliRunner().invoke(normalize_cmd, [str(source), "-o", str(out), "--method", "tvn"])
    assert result.exit_code == 0, result.output
    names = [f"PC_{i:04d}" for i in range(4)]
    if suffix == ".npz":
        with np.load(out, allow_pickle=False) as data:
            assert data["embeddings"].shape == (36, 4)
            assert data["feature_names"].tolist() == names
    else:
        import anndata

        adata = anndata.read_h5ad(out)
        assert adata.shape == (36, 4) and list(adata.var_names) == names


def test_cli_errors_are_one_line_exit_2(tmp_path):
    source = tmp_path / "crops.csv"
    crops().to_csv(source, index=False)
    result = CliRunner().invoke(
        aggregate_cmd, [str(source), "-o", str(tmp_path / "o.parquet"), "--strata", "Plate"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: strata column(s) not in the table: Plate")
    missing = CliRunner().invoke(normalize_cmd, ["nope.csv", "-o", "x.csv", "--method", "tvn"])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_cli_help_has_examples():
    for command in (aggregate_cmd, normalize_cmd):
        result = CliRunner().invoke(command, ["--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.output and "embedkit " in result.output
