"""`embedkit evaluate map`: phenotypic activity and consistency with copairs' mAP.

Simulated plates (controls around a baseline, compounds shifted along a direction their
mechanism shares) check the behaviour; the real A549 plate checks that the numbers are
those of copairs' own recipe called directly. Needs copairs (the dev extra)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embedkit.cli import main
from embedkit.errors import InputError

pytest.importorskip("copairs", reason="copairs is not installed (pip install -e '.[dev]')")

from embedkit.evaluation.phenotypic import (  # noqa: E402
    DISTANCES,
    MAP_COLUMNS,
    MapSettings,
    phenotypic_activity,
    phenotypic_consistency,
)

A549 = "profiles/lincs_a549_SQ00015054_normalized_feature_select.csv.gz"
DMSO = "Metadata_broad_sample == 'DMSO'"
NULL = 2000  # small nulls keep the simulated tests fast; p-values bottom out at 1/2001


def plate(seed: int = 0, features: int = 24) -> pd.DataFrame:
    """SIMULATED: 24 DMSO wells; 4 mechanisms x 2 compounds x 4 replicates, each compound
    shifted along its mechanism's direction; one inactive compound (no shift) with its own
    mechanism; one compound with a single well (no replicate)."""
    rng = np.random.default_rng(seed)
    rows, values = [], []
    baseline = rng.normal(0, 1, features)

    def add(compound, moa, shift, n, dose):
        for _ in range(n):
            rows.append((compound, moa, dose))
            values.append(baseline + shift + rng.normal(0, 1, features))

    add("DMSO", None, 0.0, 24, 0.0)
    for m in range(4):
        direction = rng.normal(0, 1, features)
        direction *= 4 / np.linalg.norm(direction) * np.sqrt(features) / 2
        for c in range(2):
            add(f"cpd_{m}{c}", f"moa_{m}", direction + rng.normal(0, 0.3, features), 4, 1.0)
    add("inactive", "moa_x", 0.0, 4, 1.0)
    add("lonely", "moa_0", 0.0, 1, 1.0)
    table = pd.DataFrame(rows, columns=["Metadata_broad_sample", "Metadata_moa", "Metadata_dose"])
    feats = pd.DataFrame(np.array(values), columns=[f"Emb_{i:04d}" for i in range(features)])
    table["Metadata_Well"] = [f"W{i:03d}" for i in range(len(table))]
    return pd.concat([table, feats], axis=1)


def settings(tmp_path, **kwargs) -> MapSettings:
    return MapSettings(null_size=NULL, cache_dir=str(tmp_path / "copairs-cache"), **kwargs)


def run(*args):
    return CliRunner().invoke(main, ["evaluate", "map", *map(str, args)])


# ---------------------------------------------------------------- activity / consistency


def test_activity_scores_each_group_against_the_controls(tmp_path):
    result = phenotypic_activity(
        plate(), "Metadata_broad_sample", DMSO, settings=settings(tmp_path)
    )
    table = result.table.set_index("Metadata_broad_sample")
    assert list(result.table.columns) == ["Metadata_broad_sample", *MAP_COLUMNS]
    assert "DMSO" not in table.index and "lonely" not in table.index  # controls; no replicate
    assert len(table) == 9
    shifted = [f"cpd_{m}{c}" for m in range(4) for c in range(2)]
    assert table.loc[shifted, "below_corrected_p"].all()
    assert (table.loc[shifted, "mean_average_precision"] > 0.9).all()
    assert not table.loc["inactive", "below_corrected_p"]
    assert result.active == 8 and result.rows == 37
    assert result.notes == ["1 group with a single profile not scored"]


def test_consistency_scores_mechanisms_over_active_groups(tmp_path):
    table = plate()
    config = settings(tmp_path)
    activity = phenotypic_activity(table, "Metadata_broad_sample", DMSO, settings=config)
    result = phenotypic_consistency(
        table, "Metadata_broad_sample", "Metadata_moa", activity, DMSO, settings=config
    )
    assert list(result.table.columns) == ["Metadata_moa", *MAP_COLUMNS]
    assert sorted(result.table["Metadata_moa"]) == ["moa_0", "moa_1", "moa_2", "moa_3"]
    assert result.rows == 8  # one median profile per active compound; inactive one left out
    assert (result.table["mean_average_precision"] == 1.0).all()


def test_consistency_splits_multilabel_values(tmp_path):
    table = plate()
    table.loc[table["Metadata_broad_sample"] == "cpd_00", "Metadata_moa"] = "moa_0|moa_1"
    config = settings(tmp_path)
    activity = phenotypic_activity(table, "Metadata_broad_sample", DMSO, settings=config)
    result = phenotypic_consistency(
        table, "Metadata_broad_sample", "Metadata_moa", activity, DMSO, settings=config
    )
    assert "moa_0|moa_1" not in set(result.table["Metadata_moa"])
    assert {"moa_0", "moa_1"} <= set(result.table["Metadata_moa"])
    whole = phenotypic_consistency(
        table,
        "Metadata_broad_sample",
        "Metadata_moa",
        activity,
        DMSO,
        settings=config,
        label_separator=None,
    )
    assert "moa_0|moa_1" not in set(whole.table["Metadata_moa"])  # alone: no positive pair
    assert "moa_0" not in set(whole.table["Metadata_moa"])  # cpd_01 has no partner left


def test_consistency_with_nothing_shared_is_an_empty_table_and_a_note(tmp_path):
    table = plate()
    table["Metadata_moa"] = table["Metadata_broad_sample"]  # every compound its own label
    config = settings(tmp_path)
    activity = phenotypic_activity(table, "Metadata_broad_sample", DMSO, settings=config)
    result = phenotypic_consistency(
        table, "Metadata_broad_sample", "Metadata_moa", activity, DMSO, settings=config
    )
    assert result.table.empty and list(result.table.columns) == ["Metadata_moa", *MAP_COLUMNS]
    assert "no two active groups share a Metadata_moa" in result.notes[0]


def test_rows_with_missing_features_or_groups_are_left_out_and_counted(tmp_path):
    table = plate()
    table.loc[30, "Emb_0003"] = np.nan
    table.loc[31, "Metadata_broad_sample"] = np.nan
    result = phenotypic_activity(table, "Metadata_broad_sample", DMSO, settings=settings(tmp_path))
    assert "1 row with missing features left out" in result.notes
    assert "1 row without a Metadata_broad_sample left out" in result.notes
    assert result.rows == 35


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": "Metadata_nope"}, "group column 'Metadata_nope' is not in the table"),
        ({"controls": "Metadata_broad_sample == 'PBS'"}, "selects no rows"),
        ({"controls": "Metadata_dose >= 0"}, "selects every row"),
        ({"controls": "Metadata_dose +"}, r"controls query 'Metadata_dose \+' failed"),
        ({"group_by": "Metadata_Well"}, "no Metadata_Well group has two rows"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, kwargs, message):
    args = {"group_by": "Metadata_broad_sample", "controls": DMSO, **kwargs}
    with pytest.raises(InputError, match=message):
        phenotypic_activity(
            plate(), args["group_by"], args["controls"], settings=settings(tmp_path)
        )


def test_settings_are_checked():
    with pytest.raises(InputError, match="unknown distance 'cosinus'"):
        MapSettings(distance="cosinus")
    with pytest.raises(InputError, match="threshold must be in"):
        MapSettings(threshold=1.5)


def test_cli_distance_choices_match_the_library():
    from embedkit.cli.evaluate import MAP_DISTANCES

    assert MAP_DISTANCES == DISTANCES


# ---------------------------------------------------------------- command line


def test_cli_writes_tables_plot_run_info_and_summary(tmp_path):
    source = tmp_path / "wells.csv"
    plate().to_csv(source, index=False)
    out = tmp_path / "activity.csv"
    result = run(
        source,
        "--group-by",
        "Metadata_broad_sample",
        "--controls",
        "Metadata_dose == 0",  # numeric metadata of a CSV, as in pandas
        "-o",
        out,
        "--consistency-by",
        "Metadata_moa",
        "--plot",
        tmp_path / "map.png",
        "--null-size",
        NULL,
        "--cache-dir",
        tmp_path / "cache",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        "activity by Metadata_broad_sample: 9 groups (37 profiles vs the controls), "
        f"mean mAP {pd.read_csv(out)['mean_average_precision'].mean():.3f}, 8 active at "
        "corrected p < 0.05"
    )
    assert lines[1].startswith("consistency by Metadata_moa: 4 labels (8 consensus profiles")
    assert "4 consistent at corrected p < 0.05" in lines[1]
    assert lines[2].startswith("9 groups, mean mAP ")
    assert (
        "8 active at 0.05; 1 group with a single profile not scored; null size 2,000" in (lines[2])
    )
    assert lines[2].endswith(
        f"→ {out}, {tmp_path / 'activity_consistency.csv'}, {tmp_path}/map.png"
    )
    activity = pd.read_csv(out)
    assert list(activity.columns) == ["Metadata_broad_sample", *MAP_COLUMNS]
    assert len(pd.read_csv(tmp_path / "activity_consistency.csv")) == 4
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((tmp_path / "activity.csv.json").read_text())
    assert info["step"] == "evaluate map" and info["null_size"] == NULL
    assert info["input"] == "wells.csv" and len(info["input_sha256"]) == 64
    assert info["controls"] == "Metadata_dose == 0" and info["copairs"].startswith("0.5")


def test_cli_refuses_existing_outputs_before_any_work(tmp_path):
    source = tmp_path / "wells.parquet"
    plate().to_parquet(source)
    out = tmp_path / "activity.parquet"
    out.write_text("keep me")
    args = [source, "--group-by", "Metadata_broad_sample", "--controls", DMSO, "-o", out]
    result = run(*args, "--null-size", NULL, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2
    assert f"error: {out} exists; pass --overwrite to replace it" in result.output
    assert out.read_text() == "keep me" and not (tmp_path / "cache").exists()
    result = run(*args, "--null-size", NULL, "--cache-dir", tmp_path / "cache", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "map.xlsx"], "map.xlsx: a plot is"),
        (["-o", "activity.h5ad"], "write the mAP table as .csv, .tsv, .parquet"),
        (["--consistency-output", "c.csv"], "--consistency-output needs --consistency-by"),
        (["--group-by", "Metadata_nope"], "group column 'Metadata_nope' is not in the table"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plate().to_csv("wells.csv", index=False)
    base = ["wells.csv", "--group-by", "Metadata_broad_sample", "--controls", DMSO]
    result = run(*base, "-o", "activity.csv", "--null-size", NULL, "--cache-dir", "cache", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "activity.csv").exists()


def test_without_copairs_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "copairs", None)  # as if it were not installed
    with pytest.raises(InputError, match=r"pip install 'embedkit\[copairs\]'"):
        phenotypic_activity(plate(), "Metadata_broad_sample", DMSO, settings=settings(tmp_path))


# ---------------------------------------------------------------- the real A549 plate


def _copairs_activity(df: pd.DataFrame, cache) -> tuple[pd.DataFrame, pd.DataFrame]:
    """copairs' activity recipe, as its phenotypic_analysis.py example runs it."""
    from copairs import map as copairs_map
    from copairs.matching import assign_reference_index

    reference = "Metadata_reference_index"
    df_activity = assign_reference_index(df, DMSO, reference_col=reference, default_value=-1)
    pos_sameby = ["Metadata_broad_sample", reference]
    neg_diffby = ["Metadata_broad_sample", reference]
    metadata = df_activity.filter(regex="^Metadata")
    profiles = df_activity.filter(regex="^(?!Metadata)").values
    ap = copairs_map.average_precision(
        metadata, profiles, pos_sameby, [], [], neg_diffby, progress_bar=False
    )
    ap = ap[~ap.index.isin(df_activity.query(DMSO).index)]
    scores = copairs_map.mean_average_precision(
        ap, ["Metadata_broad_sample"], null_size=10000, threshold=0.05, seed=0,
        progress_bar=False, cache_dir=cache,
    )  # fmt: skip
    return scores, ap


def _copairs_consistency(df: pd.DataFrame, activity: pd.DataFrame, cache) -> pd.DataFrame:
    """copairs' consistency recipe: active compounds, median replicates, multilabel MoAs."""
    from copairs import map as copairs_map

    active = activity.query("below_corrected_p")["Metadata_broad_sample"]
    df = df[df["Metadata_broad_sample"].isin(active)].dropna(subset=["Metadata_moa"])
    feats = [c for c in df.columns if not c.startswith("Metadata")]
    df = df.groupby(["Metadata_broad_sample", "Metadata_moa"], as_index=False)[feats].median()
    multilabel = df["Metadata_moa"].str.contains("|", regex=False).any()
    if multilabel:
        df["Metadata_moa"] = df["Metadata_moa"].str.split("|")
    metadata = df.filter(regex="^Metadata")
    profiles = df.filter(regex="^(?!Metadata)").values
    args = (["Metadata_moa"], [], [], ["Metadata_moa"])
    if multilabel:
        aps = copairs_map.multilabel.average_precision(
            metadata, profiles, *args, multilabel_col="Metadata_moa", progress_bar=False
        )
    else:
        aps = copairs_map.average_precision(metadata, profiles, *args, progress_bar=False)
    return copairs_map.mean_average_precision(
        aps, ["Metadata_moa"], null_size=10000, threshold=0.05, seed=0,
        progress_bar=False, cache_dir=cache,
    )  # fmt: skip


def test_real_a549_plate_agrees_with_copairs_called_directly(real_data, tmp_path, monkeypatch):
    """The CLI on the real plate, and copairs' own recipe on `pd.read_csv` of it (each with
    its own null cache): the same groups, mAPs, p-values and calls."""
    monkeypatch.chdir(tmp_path)
    result = run(
        real_data / A549,
        "--group-by",
        "Metadata_broad_sample",
        "--controls",
        DMSO,
        "-o",
        "activity.csv",
        "--consistency-by",
        "Metadata_moa",
        "--null-size",
        10000,
        "--cache-dir",
        "ours",
    )
    assert result.exit_code == 0, result.output
    ours = pd.read_csv("activity.csv")
    df = pd.read_csv(real_data / A549)
    theirs, _ = _copairs_activity(df, tmp_path / "theirs")
    theirs = theirs[["Metadata_broad_sample", *MAP_COLUMNS]]
    assert len(ours) == len(theirs) == 58
    pd.testing.assert_frame_equal(
        ours.sort_values("Metadata_broad_sample").reset_index(drop=True),
        theirs.sort_values("Metadata_broad_sample").reset_index(drop=True),
        check_exact=False,
        rtol=1e-12,
        check_dtype=False,
    )
    assert ours["below_corrected_p"].sum() == 31

    consistency = pd.read_csv("activity_consistency.csv")
    expected = _copairs_consistency(df, theirs, tmp_path / "theirs")
    pd.testing.assert_frame_equal(
        consistency.reset_index(drop=True),
        expected[["Metadata_moa", *MAP_COLUMNS]].reset_index(drop=True),
        check_exact=False,
        rtol=1e-12,
        check_dtype=False,
    )
