"""`embedkit embed-smiles`: one row per input row, in order; clear errors; nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import nci_smiles

from embedkit.io import read_run_info

EXAMPLE = Path(__file__).resolve().parents[1] / "embedkit" / "data" / "example_molecules.csv"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedkit.cli", "embed-smiles", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.fixture
def model_arg(tiny_model_dir) -> list[str]:
    return ["-m", f"local-dir:{tiny_model_dir}"]


def test_example_with_default_model_keeps_every_row(tmp_path):
    out = tmp_path / "mols.parquet"
    result = run(str(EXAMPLE), "-o", str(out), "--id-column", "compound_id")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    source = pd.read_csv(EXAMPLE, keep_default_na=False)
    assert len(table) == len(source)
    assert table["Metadata_ID"].tolist() == source["compound_id"].tolist()
    invalid = ~table["Metadata_Valid"]
    assert invalid.sum() == 3
    assert table.loc[invalid, "Metadata_Error"].str.len().gt(0).all()
    features = table.filter(like="Emb_").to_numpy()
    assert features.shape[1] == 300
    assert np.isnan(features[invalid.to_numpy()]).all()
    assert not np.isnan(features[~invalid.to_numpy()]).any()
    assert "rows in" in result.stdout and "molecules/s" in result.stdout
    info = read_run_info(out)
    assert info["model_id"] == "infoalign-gin-lincs-small" and len(info["weights_sha256"]) == 64


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".npz", ".h5ad"])
def test_output_formats(tmp_path, model_arg, suffix):
    src = tmp_path / "in.csv"
    src.write_text("name,SMILES\na,CCO\nb,nope\nc,c1ccccc1\n")
    out = tmp_path / f"out{suffix}"
    result = run(str(src), "-o", str(out), *model_arg)
    assert result.returncode == 0, result.stderr
    if suffix in (".csv", ".tsv"):
        table = pd.read_csv(out, sep="," if suffix == ".csv" else "\t")
        assert table["Metadata_SMILES"].tolist() == ["CCO", "nope", "c1ccccc1"]
        assert table["Metadata_Valid"].tolist() == [True, False, True]
        assert read_run_info(out)["model_id"].startswith("local-dir:")
    elif suffix == ".npz":
        with np.load(out, allow_pickle=False) as data:
            assert data["embeddings"].shape == (3, 16)
            assert data["obs/Metadata_Valid"].tolist() == [True, False, True]
    else:
        import anndata

        adata = anndata.read_h5ad(out)
        assert adata.X.shape == (2, 16)  # the invalid molecule is kept out of X…
        assert list(adata.obs["Metadata_name"]) == ["a", "c"]
        assert list(adata.var_names) == [f"Emb_{i:04d}" for i in range(16)]
        invalid = adata.uns["embedkit_invalid"]  # …and listed with its position and reason
        assert invalid["row"].tolist() == [1] and invalid["Metadata_name"].tolist() == ["b"]
        assert "could not parse" in invalid["reason"].iloc[0]
        assert "model_id" in adata.uns["embedkit"]


def test_on_error_raise_writes_nothing_and_keeps_old_output(tmp_path, model_arg):
    src = tmp_path / "in.csv"
    src.write_text("smiles\nCCO\nnot_a_smiles\n")
    out = tmp_path / "out.parquet"
    out.write_text("previous good output")
    result = run(str(src), "-o", str(out), "--on-error", "raise", "--overwrite", *model_arg)
    assert result.returncode == 2
    assert "row 2" in result.stderr and "not_a_smiles" in result.stderr
    assert out.read_text() == "previous good output"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_on_error_drop(tmp_path, model_arg):
    src = tmp_path / "in.csv"
    src.write_text("smiles\nCCO\nbad(\nCCN\n")
    out = tmp_path / "out.csv"
    result = run(str(src), "-o", str(out), "--on-error", "drop", *model_arg)
    assert result.returncode == 0
    assert pd.read_csv(out)["Metadata_SMILES"].tolist() == ["CCO", "CCN"]
    assert "1 dropped" in result.stdout


@pytest.mark.parametrize(
    ("content", "name", "args", "message"),
    [
        ("smiles\nCCO\n", "in.csv", ["-s", "structure"], "no column 'structure'"),
        ("", "empty.csv", [], "empty"),
        ("smiles\n", "header.csv", [], "no rows"),
        ("\x89PNG\r\n\x1a\n\x00\x00binary", "picture.parquet", [], "not a readable"),
        ("smiles\nCCO\n", "in.xlsx", [], "unsupported table format"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, model_arg, content, name, args, message):
    src = tmp_path / name
    src.write_text(content)
    result = run(str(src), "-o", str(tmp_path / "out.parquet"), *model_arg, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_unknown_model_and_missing_file(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("smiles\nCCO\n")
    unknown = run(str(src), "-o", str(tmp_path / "o.parquet"), "-m", "gin-that-does-not-exist")
    assert unknown.returncode == 2 and "no model named" in unknown.stderr
    missing = run(str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.parquet"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_worker_processes_give_identical_rows_in_order(tiny_model_dir, tmp_path):
    from embedkit.api import load

    smiles = nci_smiles(2600)
    smiles[5] = "garbage"
    embedder = load(f"local-dir:{tiny_model_dir}", device="cpu")
    serial = embedder.embed(smiles, batch_size=128, num_workers=0)
    parallel = embedder.embed(smiles, batch_size=128, num_workers=2)
    np.testing.assert_array_equal(serial.valid, parallel.valid)
    np.testing.assert_allclose(serial.embeddings, parallel.embeddings, equal_nan=True)
    assert serial.errors == parallel.errors and "garbage" in serial.errors[5]


def test_smi_input_and_first_column_default(tmp_path, model_arg):
    smi = tmp_path / "mols.smi"
    smi.write_text("CCO ethanol\nc1ccccc1 benzene\n")
    out = tmp_path / "out.csv"
    assert run(str(smi), "-o", str(out), *model_arg).returncode == 0
    assert pd.read_csv(out)["Metadata_name"].tolist() == ["ethanol", "benzene"]
    csv = tmp_path / "nosmiles.csv"
    csv.write_text("structure,id\nCCO,1\n")
    assert run(str(csv), "-o", str(out), "--overwrite", *model_arg).returncode == 0
    assert pd.read_csv(out)["Metadata_SMILES"].tolist() == ["CCO"]
