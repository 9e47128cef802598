"""Run info in every output (`embedkit.provenance`, stamped by `embedkit.io.write_table`):
software versions, the model's config sha256, inputs as portable path + sha256, never an
absolute local path; Parquet outputs carry it in `df.attrs` through `pd.read_parquet`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import nci_smiles

from embedkit.cli import main
from embedkit.io import read_run_info, write_table
from embedkit.provenance import portable_path, stamp

NEGCON = "Metadata_PertType == 'negcon'"


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_bytes(path: Path) -> bytes:
    """Every byte an output and its sidecar hold (where an absolute path could hide)."""
    sidecar = path.with_name(path.name + ".json")
    return path.read_bytes() + (sidecar.read_bytes() if sidecar.exists() else b"")


def assert_software(info: dict) -> None:
    software = info["software"]
    assert software["embedkit"] == info["embedkit_version"] and software["python"]
    for library in ("torch", "rdkit", "timm", "numpy", "pandas"):
        if find_spec(library) is not None:
            assert software[library], library


@pytest.fixture
def molecules_csv(tmp_path) -> Path:
    rows = [(f"m{i}", s) for i, s in enumerate(nci_smiles(12))] + [("bad", "nope")]
    path = tmp_path / "in" / "mols.csv"
    path.parent.mkdir()
    pd.DataFrame(rows, columns=["id", "smiles"]).to_csv(path, index=False)
    return path


def test_every_table_output_carries_provenance_and_no_absolute_path(
    tmp_path, molecules_csv, tiny_model_dir
):
    """embed-smiles (every format), aggregate and normalize, run from another folder: the
    tmp folder's absolute path appears in no output, though the inputs and the model
    (`local-dir:/tmp/…`) were given by absolute path."""
    model = f"local-dir:{tiny_model_dir}"
    outputs = {}
    for suffix in (".parquet", ".csv", ".h5ad", ".npz"):
        out = tmp_path / f"emb{suffix}"
        result = run_cli("embed-smiles", molecules_csv, "-o", out, "-m", model, "--id-column",
                         "id", "-n", 0)  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[out] = "embed-smiles"
    agg = tmp_path / "agg.parquet"
    result = run_cli("aggregate", tmp_path / "emb.parquet", "-o", agg, "--strata", "Metadata_ID")
    assert result.exit_code == 0, result.output
    norm = tmp_path / "norm.csv"
    result = run_cli("normalize", agg, "-o", norm, "--method", "standardize")
    assert result.exit_code == 0, result.output
    outputs.update({agg: "aggregate", norm: "normalize"})
    config_sha = sha256(tiny_model_dir / "config.json")
    for out, command in outputs.items():
        info = read_run_info(out)
        assert_software(info)
        assert info["config_sha256"] == config_sha, out  # travels from the embedding run
        parent_and_name = f"{tiny_model_dir.parent.name}/{tiny_model_dir.name}"
        assert info["model_id"] == f"local-dir:{parent_and_name}", out
        if command == "embed-smiles":
            assert info["input"] == "mols.csv"  # outside the working folder: its name…
            assert info["input_sha256"] == sha256(molecules_csv)  # …and its sha256
        else:
            step = info["profile_steps"][-1]
            assert step["step"] == command
            assert step["input_sha256"] == sha256(tmp_path / "emb.parquet" if out == agg else agg)
        for root in {str(tmp_path), os.path.realpath(tmp_path), str(tiny_model_dir)}:
            assert root.encode() not in stored_bytes(out), (out, root)


def test_inputs_inside_the_working_folder_are_recorded_relative(
    tmp_path, molecules_csv, tiny_model_dir, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "emb.parquet"
    result = run_cli("embed-smiles", molecules_csv.resolve(), "-o", out, "-m",
                     f"local-dir:{tiny_model_dir}", "-n", 0)  # fmt: skip
    assert result.exit_code == 0, result.output
    info = read_run_info(out)
    assert info["input"] == "in/mols.csv" and info["input_sha256"] == sha256(molecules_csv)


def test_parquet_run_info_is_df_attrs_after_pd_read_parquet(tmp_path):
    table = pd.DataFrame({"Metadata_Well": ["A01", "A02"], "Emb_0000": [0.5, 1.5]})
    path = tmp_path / "t.parquet"
    write_table(table, path, {"model_id": "m", "steps": [{"by": None}]})
    assert table.attrs == {}  # the caller's frame is not changed
    back = pd.read_parquet(path)
    assert back.attrs == {"embedkit": read_run_info(path)}
    assert back.attrs["embedkit"]["model_id"] == "m"
    assert back.attrs["embedkit"]["steps"] == [{"by": None}]
    assert_software(back.attrs["embedkit"])
    import pyarrow.parquet as pq

    assert pq.read_table(path).to_pandas().attrs == back.attrs  # pyarrow's own reader too
    pd.testing.assert_frame_equal(back, table)


def test_embed_images_plates_carry_provenance(tmp_path):
    import torch
    from test_images import tiny_config, write_rxrx_plate

    from embedkit.images.model import ImageModel

    torch.manual_seed(0)
    model = ImageModel(tiny_config()).save_pretrained(tmp_path / "vit")
    write_rxrx_plate(tmp_path / "exp", "Plate1", ["B02"], sites=1, size=32)
    out = tmp_path / "emb"
    result = run_cli("embed-images", tmp_path / "exp", "-o", out, "-m", f"local-dir:{model}",
                     "-n", 0, "--channels", "w1,w2,w3,w4,w5")  # fmt: skip
    assert result.exit_code == 0, result.output
    plate = out / "plates" / "Plate1.parquet"
    info = pd.read_parquet(plate).attrs["embedkit"]
    assert info == read_run_info(plate)
    assert_software(info)
    assert info["config_sha256"] == sha256(Path(model) / "config.json")
    assert info["input"] == "Plate1"  # the plate's image folder, by name (outside the cwd)
    assert str(tmp_path).encode() not in plate.read_bytes()


def test_stamp_makes_every_absolute_path_portable_and_keeps_other_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = stamp(
        {
            "input": str(tmp_path / "sub" / "a.csv"),
            "model_id": "local-dir:/home/someone/models/vit",
            "nested": {"paths": ["/data/x/plate.parquet", "../up/b.csv", "~/c.csv"]},
            "controls": "Metadata_Path == '/a/b'",
            "n": 3,
        }
    )
    assert info["input"] == "sub/a.csv"
    assert info["model_id"] == "local-dir:models/vit"  # the parent keeps RUN/model apart
    assert info["nested"]["paths"] == ["plate.parquet", "b.csv", "c.csv"]
    assert info["controls"] == "Metadata_Path == '/a/b'" and info["n"] == 3
    assert portable_path(tmp_path) == "."
    two_runs = stamp({"a": "local-dir:/tmp/curve/run_0/model", "b": "local-dir:/x/run_1/model"})
    assert two_runs["a"] == "local-dir:run_0/model" and two_runs["b"] == "local-dir:run_1/model"


def test_versions_are_read_without_importing_the_libraries():
    code = (
        "import sys, json; from embedkit.provenance import software_versions as v; "
        "heavy = sorted(m for m in ('torch', 'timm', 'rdkit') if m in sys.modules); "
        "print(json.dumps([v(), heavy]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    versions, imported = json.loads(done.stdout)
    assert imported == [] and versions["torch"]


def test_npz_and_csv_outputs_carry_the_same_stamped_run_info(tmp_path):
    table = pd.DataFrame({"Metadata_ID": ["a"], "Emb_0000": [1.0]})
    infos = []
    for suffix in (".csv", ".tsv", ".npz", ".parquet", ".h5ad"):
        write_table(table, tmp_path / f"t{suffix}", {"input": str(tmp_path / "x.csv")})
        infos.append(read_run_info(tmp_path / f"t{suffix}"))
    assert all(i == infos[0] for i in infos) and infos[0]["input"] == "x.csv"
    with np.load(tmp_path / "t.npz") as data:
        assert data["feature_names"].tolist() == ["Emb_0000"]
