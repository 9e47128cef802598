"""`--platemap`: the pycytominer annotate-style join of `embed-images` and `aggregate`
(embedkit.profiles.platemap), its counts, its errors and its provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from embedkit.cli import main
from embedkit.errors import InputError
from embedkit.io import read_run_info
from embedkit.profiles.platemap import annotate, read_platemap
from embedkit.zoo import sha256_of


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def sites_table() -> pd.DataFrame:
    """Two plates x three wells x two sites, with 4-d features."""
    rng = np.random.default_rng(0)
    rows = [
        {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site}
        for plate in ("P1", "P2")
        for well in ("B02", "B03", "B04")
        for site in (1, 2)
    ]
    table = pd.DataFrame(rows)
    for i in range(4):
        table[f"Emb_{i:04d}"] = rng.normal(size=len(table)).astype(np.float32)
    return table


def test_pycytominer_columns_are_prefixed_and_joined_on_plate_and_well(tmp_path):
    path = tmp_path / "platemap.csv"
    path.write_text(
        "plate_map_name,well_position,broad_sample,pert_type,mmoles_per_liter\n"
        "P1,B2,BRD-1,trt,10\n"  # B2 is the well B02
        "P1,B03,DMSO,negcon,0\n"
        "P1,B04,BRD-2,trt,5\n"
        "P2,B02,BRD-3,trt,10\n"
        "P2,B03,DMSO,negcon,0\n"
        "P2,B04,BRD-4,trt,2.5\n"
    )
    plate_map = read_platemap(path)
    table = sites_table()
    out, report = annotate(table, plate_map)
    added = ["Metadata_broad_sample", "Metadata_pert_type", "Metadata_mmoles_per_liter"]
    assert list(out.columns) == [*table.columns[:3], *added, *table.columns[3:]]
    assert len(out) == len(table)
    pd.testing.assert_frame_equal(out[table.columns], table)  # nothing of the table changed
    expected = {
        ("P1", "B02"): "BRD-1",
        ("P1", "B03"): "DMSO",
        ("P1", "B04"): "BRD-2",
        ("P2", "B02"): "BRD-3",
        ("P2", "B03"): "DMSO",
        ("P2", "B04"): "BRD-4",
    }
    got = zip(out.Metadata_Plate, out.Metadata_Well, out.Metadata_broad_sample, strict=True)
    assert all(expected[(p, w)] == s for p, w, s in got)
    assert out.Metadata_mmoles_per_liter.dtype == np.float64  # typed as pandas reads a CSV
    assert out.query("Metadata_mmoles_per_liter == 0").Metadata_pert_type.eq("negcon").all()
    assert report.wells == 6 and report.unmatched == []
    assert report.note("platemap.csv") == "plate map platemap.csv: 6 of 6 wells annotated"


def test_a_well_missing_from_the_plate_map_keeps_empty_metadata_and_is_counted(tmp_path):
    path = tmp_path / "platemap.tsv"
    path.write_text("Well\tPertType\nB02\ttrt\nB03\tnegcon\nH12\ttrt\n")  # no plate column
    out, report = annotate(sites_table(), read_platemap(path))
    missing = out.Metadata_Well == "B04"
    assert out.loc[missing, "Metadata_PertType"].isna().all()  # empty, never invented
    assert out.loc[~missing, "Metadata_PertType"].notna().all()  # every plate gets the layout
    assert report.wells == 6 and report.unmatched == [("P1", "B04"), ("P2", "B04")]
    assert report.note("platemap.tsv") == (
        "plate map platemap.tsv: 4 of 6 wells annotated, 2 not in it (P1 B04, P2 B04)"
    )


def test_plates_that_match_nothing_are_named(tmp_path):
    path = tmp_path / "platemap.csv"
    path.write_text("Metadata_Plate,Metadata_Well,Metadata_Gene\nSQ1,B02,TP53\n")
    _, report = annotate(sites_table(), read_platemap(path))
    assert len(report.unmatched) == 6
    assert "none of its plates (SQ1) is a plate of the table" in report.note("platemap.csv")


def test_a_plate_map_without_a_well_column_is_one_clear_error(tmp_path):
    path = tmp_path / "platemap.csv"
    path.write_text("plate_map_name,position,broad_sample\nP1,B02,BRD-1\n")
    with pytest.raises(InputError, match="no well column: expected Metadata_Well"):
        read_platemap(path)
    sites = tmp_path / "sites.parquet"
    sites_table().to_parquet(sites)
    result = run_cli("aggregate", sites, "-o", tmp_path / "wells.parquet", "--platemap", path)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "Metadata_Well" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "wells.parquet").exists()


def test_a_per_site_plate_map_is_collapsed_to_wells_and_varying_columns_are_named(tmp_path):
    path = tmp_path / "metadata.csv"
    rows = ["Metadata_Plate,Metadata_Well,Metadata_Site,Metadata_Gene,Metadata_Focus"]
    for plate in ("P1", "P2"):
        for well, gene in (("B02", "TP53"), ("B03", "EMPTY"), ("B04", "KRAS")):
            rows += [f"{plate},{well},1,{gene},0.5", f"{plate},{well},2,{gene},0.9"]
    path.write_text("\n".join(rows) + "\n")
    plate_map = read_platemap(path)
    assert len(plate_map.table) == 6 and plate_map.left_out == ["Metadata_Site", "Metadata_Focus"]
    out, report = annotate(sites_table(), plate_map)
    assert "Metadata_Focus" not in out.columns
    assert out.groupby("Metadata_Well").Metadata_Gene.first().to_dict() == {
        "B02": "TP53",
        "B03": "EMPTY",
        "B04": "KRAS",
    }
    assert "left out, varying within a well: Metadata_Site, Metadata_Focus" in report.note("m")


def test_aggregate_platemap_annotates_counts_and_records_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sites = tmp_path / "sites.csv"
    sites_table().to_csv(sites, index=False)
    platemap = tmp_path / "maps" / "platemap.parquet"
    platemap.parent.mkdir()
    pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1", "P2", "P2"],
            "Metadata_Well": ["B02", "B03", "B02", "B03"],
            "Metadata_PertType": ["trt", "negcon", "trt", "negcon"],
            "Metadata_Batch": [1, 1, 2, 2],
        }
    ).to_parquet(platemap)
    out = tmp_path / "wells.parquet"
    result = run_cli("aggregate", sites, "-o", out, "--platemap", platemap)
    assert result.exit_code == 0, result.output
    assert "plate map platemap.parquet: 4 of 6 wells annotated, 2 not in it (P1 B04, P2 B04)" in (
        result.output
    )
    wells = pd.read_parquet(out)
    assert len(wells) == 6  # every well, annotated or not
    assert wells.set_index(["Metadata_Plate", "Metadata_Well"]).Metadata_PertType.to_dict() == {
        ("P1", "B02"): "trt",
        ("P1", "B03"): "negcon",
        ("P1", "B04"): None,
        ("P2", "B02"): "trt",
        ("P2", "B03"): "negcon",
        ("P2", "B04"): None,
    }
    step = read_run_info(out)["profile_steps"][-1]
    record = step["platemap"]
    assert record["file"] == "maps/platemap.parquet"  # relative: no local absolute path
    assert record["sha256"] == sha256_of(platemap)
    assert record["unmatched_wells"] == 2 and record["wells"] == 6
    assert record["columns_added"] == ["Metadata_PertType", "Metadata_Batch"]
    # plate-map columns can be strata: one profile per treatment type and batch
    by_type = tmp_path / "by_type.parquet"
    result = run_cli(
        "aggregate",
        sites,
        "-o",
        by_type,
        "--platemap",
        platemap,
        "--strata",
        "Metadata_Batch,Metadata_PertType",
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(by_type)) == 5  # 2 batches x (trt, negcon) + unannotated


@pytest.fixture(scope="module")
def tiny_image_model(tmp_path_factory) -> Path:
    from embedkit.images.model import ImageModel
    from embedkit.images.vit import ViTConfig

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_vit")
    config = ViTConfig(img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2)
    return ImageModel(config).save_pretrained(folder)


def test_embed_images_platemap_then_normalize_against_negative_controls(tmp_path, tiny_image_model):
    """The README's flow: a simulated plate, embedded with its metadata.csv as the plate map,
    aggregated, then normalized against the wells the plate map calls negcon."""
    synth = tmp_path / "synth"
    result = run_cli(
        "datasets", "synth-plate", synth, "--cell-lines", "U2OS", "--batches", "1",
        "--wells", "6", "--sites", "2", "--size", "64",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = pd.read_csv(synth / "metadata.csv")
    meta = meta[meta.Metadata_Well != "B02"]  # one treated well left unlisted
    platemap = tmp_path / "platemap.csv"
    meta.to_csv(platemap, index=False)
    emb = tmp_path / "emb"
    model = f"local-dir:{tiny_image_model}"
    args = ["embed-images", synth, "-o", emb, "-m", model, "-n", 0, "--platemap", platemap]
    result = run_cli(*args, "--channels", "w1,w2,w4,w3,w5")
    assert result.exit_code == 0, result.output
    assert "plate map platemap.csv: 5 of 6 wells annotated, 1 not in it (U2OS-01/Plate1 B02)" in (
        result.output
    )
    table = pd.read_parquet(emb / "plates" / "U2OS-01_Plate1.parquet")
    assert table.Metadata_PertType.isna().sum() == 2  # the unlisted well's two sites
    assert table.Metadata_Site.tolist() == [1, 2] * 6  # the table's own sites are kept
    settings = json.loads((emb / "plates" / "U2OS-01_Plate1.json").read_text())
    assert settings["settings"]["platemap"]["sha256"] == sha256_of(platemap)
    assert settings["platemap"]["unmatched_wells"] == 1
    info = read_run_info(emb / "plates" / "U2OS-01_Plate1.parquet")
    assert info["platemap"]["wells"] == 5 and info["platemap_file"] == "platemap.csv"
    # the same plate map at another path (a resume from elsewhere) is the same setting
    moved = tmp_path / "elsewhere" / "map.csv"
    moved.parent.mkdir()
    moved.write_bytes(platemap.read_bytes())
    same = run_cli(*args[:-1], moved, "--channels", "w1,w2,w4,w3,w5", "--resume")
    assert same.exit_code == 0, same.output
    # another plate map is another setting: --resume does not keep these plates
    other = tmp_path / "other.csv"
    meta.head(4).to_csv(other, index=False)
    again = run_cli(*args[:-1], other, "--channels", "w1,w2,w4,w3,w5", "--resume")
    assert again.exit_code == 2 and "platemap" in again.output

    wells = tmp_path / "wells.parquet"
    result = run_cli("aggregate", emb / "plates" / "U2OS-01_Plate1.parquet", "-o", wells)
    assert result.exit_code == 0, result.output
    assert "Metadata_PertType" in pd.read_parquet(wells).columns  # constant per well: kept
    out = tmp_path / "wells_norm.parquet"
    result = run_cli(
        "normalize", wells, "-o", out, "--method", "standardize",
        "--controls", "Metadata_PertType == 'negcon'",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    normalized = pd.read_parquet(out)
    controls = normalized[normalized.Metadata_PertType == "negcon"].filter(like="Emb_")
    assert len(controls) >= 2
    np.testing.assert_allclose(controls.mean().to_numpy(), 0, atol=1e-5)
