""".h5ad outputs straight into scanpy and anndata: feature names as var_names, row names that
survive `anndata.concat` of several plates, invalid rows out of X (listed in uns), any
feature prefix. The layout is documented in `embedkit/h5ad.py` and docs/ecosystem.md."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import nci_smiles

from embedkit.cli import main
from embedkit.h5ad import INVALID_KEY, obs_names

anndata = pytest.importorskip("anndata", reason="the anndata extra is not installed")
sc = pytest.importorskip("scanpy", reason="scanpy (dev extra) is not installed")


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_image_model(tmp_path_factory):
    import torch
    from test_images import tiny_config

    from embedkit.images.model import ImageModel

    torch.manual_seed(0)
    return ImageModel(tiny_config()).save_pretrained(tmp_path_factory.mktemp("tiny_vit"))


def test_embed_smiles_h5ad_goes_through_neighbors_and_umap(tmp_path, tiny_model_dir):
    """Invalid molecules (NaN rows in Parquet) broke sc.pp.neighbors: they are kept out of X
    and listed with their input row and reason."""
    smiles = nci_smiles(30)
    rows = [(f"mol{i:02d}", s) for i, s in enumerate(smiles)]
    rows.insert(4, ("bad1", "this is not a molecule"))
    rows.insert(20, ("bad2", "C1CC"))  # unclosed ring
    source = tmp_path / "mols.csv"
    pd.DataFrame(rows, columns=["compound_id", "smiles"]).to_csv(source, index=False)
    out = tmp_path / "mols.h5ad"
    result = run_cli(
        "embed-smiles", source, "-o", out, "--id-column", "compound_id", "-m",
        f"local-dir:{tiny_model_dir}", "-n", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "invalid rows left out of X, listed in uns['embedkit_invalid']" in result.output
    adata = anndata.read_h5ad(out)
    assert adata.shape == (30, 16) and np.isfinite(adata.X).all()
    assert list(adata.obs_names) == [f"mol{i:02d}" for i in range(30)]
    assert list(adata.var_names) == [f"Emb_{i:04d}" for i in range(16)]
    invalid = adata.uns[INVALID_KEY]
    assert invalid["row"].tolist() == [4, 20]
    assert invalid["obs_name"].tolist() == ["bad1", "bad2"]
    assert invalid["Metadata_SMILES"].tolist() == ["this is not a molecule", "C1CC"]
    assert all("RDKit" in r or "parse" in r for r in invalid["reason"])
    sc.pp.neighbors(adata, n_neighbors=5, use_rep="X")
    sc.tl.umap(adata, random_state=0)
    assert adata.obsm["X_umap"].shape == (30, 2) and np.isfinite(adata.obsm["X_umap"]).all()


def test_two_plates_concat_without_index_unique_and_scanpy_runs(tmp_path, tiny_image_model):
    """Each plate aggregated to wells as .h5ad; `anndata.concat` needs no `index_unique`
    (row names are Plate/Well), and a well with no valid site stays out of X."""
    from test_images import write_rxrx_plate

    root = tmp_path / "exp"
    for seed, plate in enumerate(["U2OS-01_Plate1", "U2OS-01_Plate2"]):
        write_rxrx_plate(root, plate, ["B02", "B03", "B04"], sites=2, size=32, seed=seed)
    for site in (1, 2):  # every site of Plate2/B04 unreadable: a NaN well
        (root / "U2OS-01_Plate2" / f"B04_s{site}_w3.png").write_bytes(b"not a png")
    emb = tmp_path / "emb"
    result = run_cli("embed-images", root, "-o", emb, "-m", f"local-dir:{tiny_image_model}",
                     "-n", 0, "--channels", "w1,w2,w3,w4,w5")  # fmt: skip
    assert result.exit_code == 0, result.output
    plates = []
    for plate in ["U2OS-01_Plate1", "U2OS-01_Plate2"]:
        out = tmp_path / f"{plate}.h5ad"
        agg = run_cli("aggregate", emb / "plates" / f"{plate}.parquet", "-o", out)
        assert agg.exit_code == 0, agg.output
        plates.append(anndata.read_h5ad(out))
    assert plates[1].uns[INVALID_KEY]["obs_name"].tolist() == ["U2OS-01_Plate2/B04"]
    assert plates[1].uns[INVALID_KEY]["reason"].tolist() == ["non-finite features"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anndata warns when concatenated names repeat
        both = anndata.concat(plates, merge="same")
    assert both.obs_names.is_unique
    assert list(both.obs_names) == [
        "U2OS-01_Plate1/B02", "U2OS-01_Plate1/B03", "U2OS-01_Plate1/B04",
        "U2OS-01_Plate2/B02", "U2OS-01_Plate2/B03",
    ]  # fmt: skip
    assert list(both.var_names) == [f"Emb_{i:04d}" for i in range(48)]
    sc.pp.neighbors(both, n_neighbors=3, use_rep="X")
    assert both.obsp["connectivities"].shape == (5, 5)


def test_tvn_output_of_any_prefix_is_an_anndata_for_scanpy(tmp_path):
    """TVN writes PC_ features: refused as .h5ad before; now they are the var_names."""
    from embedkit.datasets.synthetic import synthetic_profiles

    source = tmp_path / "wells.parquet"
    synthetic_profiles(batches=2, plates_per_batch=1, features=8).to_parquet(source)
    out = tmp_path / "tvn.h5ad"
    result = run_cli("normalize", source, "-o", out, "--method", "tvn", "--controls",
                     "Metadata_PertType == 'negcon'", "--by", "Metadata_Plate")  # fmt: skip
    assert result.exit_code == 0, result.output
    adata = anndata.read_h5ad(out)
    assert list(adata.var_names) == [f"PC_{i:04d}" for i in range(8)]
    assert adata.obs_names.is_unique and adata.obs_names[0].count("/") == 1  # Plate/Well
    sc.pp.neighbors(adata, n_neighbors=5, use_rep="X")
    assert adata.obsp["distances"].nnz > 0


def test_obs_names_prefer_plate_well_site_crop_then_id_then_a_unique_column():
    both = pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1"],
            "Metadata_Well": ["A01", "A01"],
            "Metadata_Site": [1, 1],
            "Metadata_Crop": [0, 1],
            "Metadata_ID": ["x", "y"],
        }
    )
    assert list(obs_names(both)) == ["P1/A01/1/0", "P1/A01/1/1"]
    nested = both.assign(Metadata_Plate="U2OS-01/Plate1").drop(columns="Metadata_Crop")
    assert list(obs_names(nested)) == ["U2OS-01_Plate1/A01/1#1", "U2OS-01_Plate1/A01/1#2"]
    assert list(obs_names(both.drop(columns="Metadata_Plate"))) == ["x", "y"]
    text = pd.DataFrame({"Metadata_SMILES": ["CCO", "CCN"], "Metadata_Valid": [True, True]})
    assert list(obs_names(text)) == ["CCO", "CCN"]
    assert list(obs_names(pd.DataFrame({"Metadata_Dose": [1.0, 1.0]}))) == ["row1", "row2"]
    repeated = pd.DataFrame({"Metadata_ID": ["a", "b", "a", ""]})
    assert list(obs_names(repeated)) == ["a#1", "b", "a#3", "#4"]


def test_h5ad_run_info_round_trips_through_read_run_info(tmp_path):
    from embedkit.io import read_run_info, write_table

    table = pd.DataFrame({"Metadata_ID": ["a", "b"], "Emb_0000": [1.0, 2.0]})
    info = {"steps": [{"step": "x", "by": None}], "k": 3, "model_id": "m", "flag": True}
    write_table(table, tmp_path / "t.h5ad", info)
    back = read_run_info(tmp_path / "t.h5ad")
    assert {k: back[k] for k in info} == info
    assert anndata.read_h5ad(tmp_path / "t.h5ad").uns["embedkit"]["software"]["embedkit"]
