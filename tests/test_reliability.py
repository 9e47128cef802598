"""Issue 11: no lost data, no silent wrong results, hostile input fails fast in one sentence.

Each test reproduces one fault the probe found (concurrent writers, a writer killed
mid-swap, blank or NUL-carrying rows, wrong columns, non-finite outputs, tampered files…)
and checks what embedkit does with it now. docs/reliability.md lists them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from test_retrieval import make_model, profiles

from embedkit.api import load
from embedkit.cli import main
from embedkit.errors import ChecksumError
from embedkit.io import atomic_dir
from embedkit.retrieval import ProfileIndex, build_index
from embedkit.retrieval.jobs import add_to_index_file


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("reliability_model"), seed=1)


@pytest.fixture(scope="module")
def embedder(model_dir):
    return load(f"local-dir:{model_dir}", with_heads=True)


def _index(folder: Path, embedder, n: int = 10) -> Path:
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    return build_index(profiles(n), spaces, info, "first", metric="likelihood")[0].save(folder)


# §1 data loss ----------------------------------------------------------------------------


def _add_in_child(path: str, index_dir: str) -> None:
    try:
        add_to_index_file(path, index_dir, "error")
    except BaseException:  # noqa: BLE001 - the parent reads the exit code
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_concurrent_index_adds_keep_every_row(tmp_path, embedder, monkeypatch):
    """Two `index add` at once both reported success and the index held one of them: each
    read the index, appended, and swapped its folder in over the other's."""
    folder = _index(tmp_path / "idx", embedder)
    for name, n, seed in (("a", 5, 1), ("b", 6, 2)):
        profiles(n, seed, keys=[f"{name}{i}" for i in range(n)]).to_csv(
            tmp_path / f"{name}.csv", index=False
        )
    real_add = ProfileIndex.add

    def slow_add(self, *args, **kwargs):  # widen the read-append-write window
        out = real_add(self, *args, **kwargs)
        time.sleep(0.4)
        return out

    monkeypatch.setattr(ProfileIndex, "add", slow_add)
    context = mp.get_context("fork")
    children = [
        context.Process(target=_add_in_child, args=(str(tmp_path / f"{n}.csv"), str(folder)))
        for n in ("a", "b")
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [c.exitcode for c in children] == [0, 0]
    keys = ProfileIndex.load(folder).metadata.Metadata_Key.tolist()
    assert len(keys) == 21 and {"a0", "a4", "b0", "b5", "p9"} <= set(keys)


def _swap_killed_between_renames(folder: str) -> None:
    """A child that rewrites `folder` with atomic_dir and is killed -9 between the renames."""
    import signal

    real_replace = os.replace

    def replace(src, dst):
        if ".tmp-" in Path(src).name:  # about to move the new folder in
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = replace
    with atomic_dir(Path(folder)) as staging:
        (staging / "partial").write_text("new")
    os._exit(0)


def test_a_writer_killed_between_the_renames_is_recovered_on_next_open(tmp_path, embedder):
    """The swap renamed the old index away, then the new one in: a kill -9 between the two
    left no index at its path, and its hidden copies were never recovered nor cleaned."""
    folder = _index(tmp_path / "idx", embedder)
    child = mp.get_context("fork").Process(target=_swap_killed_between_renames, args=(folder,))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    assert not folder.exists()  # the window the issue describes
    orphan = tmp_path / ".idx.tmp-99999999-killed"  # an older killed run's staging folder
    orphan.mkdir()
    (orphan / "index.faiss").write_bytes(b"\0" * 1000)
    result = run_cli("index", "info", folder)
    assert result.exit_code == 0, result.output
    assert "profiles:      10" in result.output  # the last good index, back at its path
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")]
    profiles(4, 3, keys=["x0", "x1", "x2", "x3"]).to_csv(tmp_path / "more.csv", index=False)
    result = run_cli("index", "add", tmp_path / "more.csv", "-i", folder)
    assert result.exit_code == 0 and "the index now holds 14" in result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")] == [".idx.lock"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "kept").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if ".tmp-" in Path(src).name:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(folder) as staging:
            (staging / "new").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (folder / "kept").read_text() == "old"


def test_index_build_over_an_existing_index_or_file_is_refused(tmp_path, embedder, model_dir):
    folder = _index(tmp_path / "idx", embedder)
    before = (folder / "manifest.json").read_bytes()
    profiles(6).to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "file").write_text("x")
    for target in (folder, tmp_path / "file"):
        result = run_cli(
            "index", "build", tmp_path / "p.csv", "-o", target, "-m", f"local-dir:{model_dir}"
        )
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
    assert (folder / "manifest.json").read_bytes() == before


def test_index_add_of_the_same_file_twice_skips_the_duplicates(tmp_path, embedder):
    folder = _index(tmp_path / "idx", embedder)
    table = profiles(5, 4, keys=[f"d{i}" for i in range(5)])
    table = pd.concat([table, table.iloc[[1]]], ignore_index=True)  # one repeat inside
    table.to_csv(tmp_path / "more.csv", index=False)
    first = run_cli("index", "add", tmp_path / "more.csv", "-i", folder)
    assert first.exit_code == 0, first.output
    assert "added 5 of 6" in first.output and "1 already in the index skipped" in first.output
    again = run_cli("index", "add", tmp_path / "more.csv", "-i", folder)
    assert again.exit_code == 0, again.output
    assert "added 0 of 6" in again.output and "the index now holds 15" in again.output
    forced = run_cli("index", "add", tmp_path / "more.csv", "-i", folder, "--allow-duplicates")
    assert forced.exit_code == 0 and "the index now holds 21" in forced.output


# §2 silent wrong results -----------------------------------------------------------------


def _tamper(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m.__setitem__("files", {}), "lists nothing"),
        (lambda m: m["files"].__setitem__("../x", "0" * 64), "'../x'"),
        (lambda m: m["files"].pop("index.faiss"), "not exactly"),
        (lambda m: m.pop("files"), 'no "files" checksums'),
        (lambda m: m["files"].__setitem__("index.faiss", None), "not a sha256"),
    ],
)
def test_an_index_manifest_must_pin_exactly_its_own_files(tmp_path, embedder, edit, words):
    """`"files": {}` turned verification off (a tampered vector then won every query),
    entries could point outside the folder, and a missing key was a KeyError traceback."""
    folder = _index(tmp_path / "idx", embedder)
    _tamper(folder, edit)
    with pytest.raises(ChecksumError, match="tampered"):
        ProfileIndex.load(folder)
    result = run_cli("index", "info", folder)
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.count("\n") == 1


def test_a_tampered_vector_is_caught_even_with_a_rewritten_manifest(tmp_path, embedder):
    folder = _index(tmp_path / "idx", embedder)
    data = bytearray((folder / "index.faiss").read_bytes())
    data[-8:-4] = np.float32(1e6).tobytes()
    (folder / "index.faiss").write_bytes(bytes(data))
    _tamper(folder, lambda m: m["files"].pop("index.faiss"))
    with pytest.raises(ChecksumError):
        ProfileIndex.load(folder)


# §1 rows kept in place, §2 NUL bytes, §3 .smi without names -------------------------------


@pytest.fixture(scope="module")
def gin(tiny_model_dir):
    return load(f"local-dir:{tiny_model_dir}")


def _embed(tmp_path, gin, name: str, data: bytes, **kwargs) -> tuple[pd.DataFrame, str]:
    from embedkit.molecules.jobs import embed_smiles_file

    (tmp_path / name).write_bytes(data)
    out = tmp_path / f"{name}.parquet"
    summary = embed_smiles_file(tmp_path / name, out, gin, overwrite=True, **kwargs)
    return pd.read_parquet(out), summary.line()


def test_a_blank_line_in_a_one_column_csv_is_an_invalid_row_in_its_place(tmp_path, gin):
    """`printf 'smiles\\nCCO\\n\\nc1ccccc1\\n'` gave "2 rows in": the blank row vanished and
    every later row moved up one."""
    for name, data in [
        ("one.csv", b"smiles\nCCO\n\nc1ccccc1\n\n"),
        ("two.csv", b"smiles,name\nCCO,a\n\nc1ccccc1,c\n"),
        ("one.smi", b"CCO a\n\nc1ccccc1 c\n"),
    ]:
        table, line = _embed(tmp_path, gin, name, data)
        assert line.startswith("3 rows in, 2 embedded, 1 invalid"), (name, line)
        assert table.Metadata_SMILES.tolist() == ["CCO", "", "c1ccccc1"]
        assert table.Metadata_Valid.tolist() == [True, False, True]
        assert table.Metadata_Error[1] == "empty SMILES"


def test_a_nul_byte_makes_its_smiles_invalid_in_every_reader(tmp_path, gin):
    """pandas' C parser ended the field at the NUL: `CC\\0O` was embedded as `CC`, valid."""
    frame = pd.DataFrame({"smiles": ["CC\0O", "CCO"], "id": ["a\0b", "c"]})
    frame.to_parquet(tmp_path / "in.parquet")
    files = {
        "in.csv": b"smiles,id\nCC\0O,a\0b\nCCO,c\n",
        "in.tsv": b"smiles\tid\nCC\0O\ta\0b\nCCO\tc\n",
        "in.smi": b"CC\0O a\0b\nCCO c\n",
        "in.parquet": (tmp_path / "in.parquet").read_bytes(),
    }
    for name, data in files.items():
        table, line = _embed(tmp_path, gin, name, data)
        assert line.startswith("2 rows in, 1 embedded, 1 invalid"), (name, line)
        assert table.Metadata_SMILES[0] == "CC\0O", name  # read whole, not cut at the NUL
        assert "NUL byte at position 3" in table.Metadata_Error[0], name
        assert table.Metadata_Valid.tolist() == [False, True]


def test_a_smi_file_with_smiles_only_is_read(tmp_path, gin):
    """The README says a .smi name is optional; a file of SMILES alone was a traceback."""
    table, line = _embed(tmp_path, gin, "only.smi", b"CCO\nc1ccccc1\n")
    assert line.startswith("2 rows in, 2 embedded"), line
    assert table.Metadata_SMILES.tolist() == ["CCO", "c1ccccc1"]


def test_input_columns_are_never_overwritten_by_embedkits_own(tmp_path, gin):
    """`Valid`, `Metadata_Model`, or `ID` beside `--id-column name` were replaced (or
    dropped) by embedkit's own Metadata_ columns."""
    data = b"smiles,name,ID,Valid,Metadata_Model,Error\nCCO,a,id1,yes,mine,none\nxx,b,id2,no,m2,e\n"
    table, line = _embed(tmp_path, gin, "cols.csv", data, id_column="name")
    assert table.Metadata_ID.tolist() == ["a", "b"]
    assert table.Metadata_ID_input.tolist() == ["id1", "id2"]
    assert table.Metadata_Valid.tolist() == [True, False]
    assert table.Metadata_Valid_input.tolist() == ["yes", "no"]
    assert table.Metadata_Model_input.tolist() == ["mine", "m2"]
    assert table.Metadata_Error_input.tolist() == ["none", "e"]
    assert (table.Metadata_Model != "mine").all()
    assert "ID as Metadata_ID_input" in line and "Valid as Metadata_Valid_input" in line


def test_the_smiles_column_is_found_by_name_then_by_content_and_named(tmp_path, gin):
    """A ChEMBL export embedded its ID column ("0 embedded"), `name,value` embedded `B` as
    boron; both exit 0."""
    chembl = b"molecule_chembl_id,canonical_smiles\nCHEMBL25,CC(=O)Oc1ccccc1C(=O)O\nCHEMBL1,CCO\n"
    table, line = _embed(tmp_path, gin, "chembl.csv", chembl)
    assert table.Metadata_SMILES.tolist() == ["CC(=O)Oc1ccccc1C(=O)O", "CCO"]
    assert "2 embedded" in line and "SMILES from column 'canonical_smiles' (by name)" in line
    content = b"compound,structure\nA,CCO\nB,c1ccccc1\nC,CC(=O)O\n"
    table, line = _embed(tmp_path, gin, "content.csv", content)
    assert table.Metadata_SMILES.tolist() == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert "column 'structure' (by content: 3 of 3 sampled rows parse)" in line


@pytest.mark.parametrize("command", ["embed-smiles", "retrieve"])
def test_a_table_without_smiles_is_refused_with_its_columns(tmp_path, model_dir, command):
    (tmp_path / "in.csv").write_text("name,value\nA,1.5\nB,2\nX,3\nY,4\n")
    args = ["-i", tmp_path / "idx"] if command == "retrieve" else []
    if command == "retrieve":
        _index(tmp_path / "idx", load(f"local-dir:{model_dir}", with_heads=True))
    result = run_cli(
        command,
        tmp_path / "in.csv",
        *args,
        "-o",
        tmp_path / "o.csv",
        "-m",
        f"local-dir:{model_dir}",
    )
    assert result.exit_code == 2, result.output
    assert "no column holds SMILES" in result.output and "columns are: name, value" in result.output
    assert "--smiles-column" in result.output and not (tmp_path / "o.csv").exists()


# §2 non-finite outputs; a run where every row failed ---------------------------------------


def _poison(folder: Path, out: Path) -> Path:
    """A copy of a model folder whose first encoder weight is all NaN."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, out)
    weights = load_file(str(out / "model.safetensors"))
    name = next(k for k in sorted(weights) if k.startswith("encoder.") and k.endswith("weight"))
    weights[name].fill_(float("nan"))
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    from embedkit.zoo import sha256_of  # saved so (a diverged run), not damaged afterwards

    digest = sha256_of(out / "model.safetensors")
    (out / "model.safetensors.sha256").write_text(f"{digest}  model.safetensors\n")
    return out


def test_non_finite_molecule_embeddings_are_invalid_and_a_run_of_no_valid_row_exits_2(
    tmp_path, tiny_model_dir
):
    """A NaN in the weights gave all-NaN vectors with Metadata_Valid=True, exit 0."""
    model = _poison(tiny_model_dir, tmp_path / "nan_model")
    (tmp_path / "in.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    out = tmp_path / "o.parquet"
    result = run_cli("embed-smiles", tmp_path / "in.csv", "-o", out, "-m", f"local-dir:{model}")
    assert result.exit_code == 2, result.output
    assert "2 rows in, 0 embedded, 2 invalid" in result.output
    assert "none of the 2 rows could be embedded" in result.output
    table = pd.read_parquet(out)  # every row kept, with its reason
    assert not table.Metadata_Valid.any()
    assert table.Metadata_Error.str.contains("non-finite").all()


def test_non_finite_image_embeddings_are_invalid_and_a_plate_of_failures_exits_2(tmp_path):
    from test_images import tiny_config, write_rxrx_plate

    from embedkit.images.model import ImageModel

    torch.manual_seed(0)
    good = ImageModel(tiny_config()).save_pretrained(tmp_path / "vit")
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02", "B03"], sites=1)
    model = _poison(good, tmp_path / "nan_vit")
    result = run_cli("embed-images", root, "-o", tmp_path / "o", "-m", f"local-dir:{model}")
    assert result.exit_code == 2, result.output
    assert "2 sites, 0 embedded, 2 skipped" in result.output
    table = pd.read_parquet(tmp_path / "o" / "plates" / "Plate1.parquet")
    assert not table.Metadata_Valid.any()
    assert table.Metadata_Error.str.contains("non-finite").all()
    ok = run_cli("embed-images", root, "-o", tmp_path / "ok", "-m", f"local-dir:{good}")
    assert ok.exit_code == 0, ok.output
    for png in (root / "Plate1").glob("*.png"):  # a plate of only corrupt files
        png.write_bytes(b"not an image")
    bad = run_cli("embed-images", root, "-o", tmp_path / "bad", "-m", f"local-dir:{good}")
    assert bad.exit_code == 2 and "none of the 2 sites could be embedded" in bad.output


# §2 unverified weights ---------------------------------------------------------------------


def _flip_weights(folder: Path) -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # a tensor's last byte: still a readable file, other numbers
    (folder / "model.safetensors").write_bytes(bytes(data))


def test_local_dir_weights_are_verified_against_the_checksum_save_pretrained_wrote(
    tmp_path, tiny_model_dir, caplog
):
    """`local-dir:` never checked its weights: changed bytes loaded silently."""
    from embedkit.errors import ChecksumError

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    line = (folder / "model.safetensors.sha256").read_text()
    assert line.endswith("  model.safetensors\n") and len(line.split()[0]) == 64
    load(f"local-dir:{folder}")
    _flip_weights(folder)
    with pytest.raises(ChecksumError, match="differs from the .* in model.safetensors.sha256"):
        load(f"local-dir:{folder}")
    (tmp_path / "in.csv").write_text("smiles\nCCO\n")
    result = run_cli(
        "embed-smiles", tmp_path / "in.csv", "-o", tmp_path / "o.csv", "-m", f"local-dir:{folder}"
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    (folder / "model.safetensors.sha256").unlink()  # absent: loads, and says so
    with caplog.at_level("WARNING", logger="embedkit"):
        load(f"local-dir:{folder}")
    assert "weights are not verified" in caplog.text


def test_a_cached_hub_blob_is_verified_against_the_name_it_is_stored_by(
    tmp_path, tiny_model_dir, monkeypatch
):
    """`hf-hub:` loaded a cached blob whose bytes differ from the sha256 it is named by."""
    import hashlib

    import huggingface_hub.constants

    from embedkit.errors import ChecksumError
    from embedkit.zoo import sha256_of

    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    commit = "a" * 40
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    config = (tiny_model_dir / "config.json").read_bytes()
    sha1 = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    (repo / "blobs" / sha1).write_bytes(config)
    weights = repo / "blobs" / sha256_of(tiny_model_dir / "model.safetensors")
    shutil.copy(tiny_model_dir / "model.safetensors", weights)
    (snapshot / "config.json").symlink_to(f"../../blobs/{sha1}")
    (snapshot / "model.safetensors").symlink_to(f"../../blobs/{weights.name}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load("hf-hub:org/tiny")  # intact: loads
    _flip_weights(snapshot)
    with pytest.raises(ChecksumError, match="cache stores them as blob"):
        load("hf-hub:org/tiny")


# §2 normalization ---------------------------------------------------------------------------


def _low_rank_plate(dtype) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    controls = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 40))  # 20 controls, 3 dims
    treated = rng.normal(size=(5, 3)) @ rng.normal(size=(3, 40)) + rng.normal(0, 0.1, (5, 40))
    table = pd.DataFrame(np.vstack([controls, treated]).astype(dtype))
    table.columns = [f"Cells_F{i:02d}" for i in range(40)]
    table.insert(0, "Metadata_PertType", ["negcon"] * 20 + ["trt"] * 5)
    return table


@pytest.mark.parametrize("method", ["tvn", "pca_centerscale"])
def test_pca_methods_on_float32_input_keep_no_rounding_noise_as_signal(method):
    """20 controls spanning 3 dimensions gave 19 PCs on float32 input (the rank tolerance used
    float64's epsilon) and treatment values up to 1.27e4; float64 gave 3."""
    from embedkit.profiles.normalize import normalize

    query = "Metadata_PertType == 'negcon'"
    out64 = normalize(_low_rank_plate(np.float64), method, controls=query)
    out32 = normalize(_low_rank_plate(np.float32), method, controls=query)
    pcs = [c for c in out32.columns if c.startswith("PC_")]
    assert len(pcs) == 3 == len([c for c in out64.columns if c.startswith("PC_")])
    np.testing.assert_allclose(out32[pcs].to_numpy(), out64[pcs].to_numpy(), atol=1e-2)
    assert np.abs(out32[pcs].to_numpy()).max() < 100


def test_mad_robustize_counts_features_constant_among_controls_only(tmp_path):
    """A feature constant among controls only was divided by 1e-18 (5e17), silently."""
    from embedkit.profiles.jobs import normalize_file

    table = pd.DataFrame(
        {
            "Metadata_PertType": ["negcon"] * 4 + ["trt"] * 2,
            "Cells_ok": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "Cells_flat": [1.0, 1.0, 1.0, 1.0, 1.5, 2.0],
        }
    )
    table.to_parquet(tmp_path / "in.parquet")
    summary = normalize_file(
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        "mad_robustize",
        controls="Metadata_PertType == 'negcon'",
    )
    assert "1 features are constant among the control rows (MAD 0)" in summary.line()
    assert "reach 1e+18" in summary.line()
    help_text = run_cli("normalize", "--help").output
    assert "1e-18" in " ".join(help_text.split())


def test_normalize_features_leaves_no_other_feature_raw_in_the_output(tmp_path):
    """`--features 'Cells_*,Nuclei_*'` kept the other feature columns raw, unmarked."""
    from embedkit.profiles.jobs import normalize_file

    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.normal(size=(6, 3)), columns=["Cells_a", "Nuclei_b", "Image_c"])
    table.insert(0, "Metadata_Well", list("ABCDEF"))
    table.to_csv(tmp_path / "in.csv", index=False)
    summary = normalize_file(
        tmp_path / "in.csv",
        tmp_path / "out.parquet",
        "standardize",
        features=["Cells_*", "Nuclei_*"],
    )
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.columns.tolist() == ["Metadata_Well", "Cells_a", "Nuclei_b"]
    assert "1 numeric columns not in --features left out of the output (e.g. Image_c)" in (
        summary.line()
    )


# §2 non-finite pixels; §3 image bombs --------------------------------------------------------


def _bomb_tiff(path: Path, side: int = 60000) -> None:
    """A 200-byte TIFF whose header claims a side x side uint8 plane (3.6 GB at 60000)."""
    import struct

    tags = [  # (tag, type, count, value): SHORT=3, LONG=4
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, side),  # RowsPerStrip
        (279, 4, 1, side * side % (1 << 32)),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, k, n) + struct.pack("<I", v) for t, k, n, v in tags
    )
    path.write_bytes(struct.pack("<2sHI", b"II", 42, 16) + bytes(8) + ifd + struct.pack("<I", 0))


def test_an_image_bomb_is_one_invalid_site_refused_from_its_header(tmp_path, monkeypatch):
    """A TIFF header claiming 60000x60000 raised MemoryError and aborted the whole run (the
    plate was never written); a deflate bomb decoded to 3.6 GB before being refused."""
    from test_images import tiny_config, write_rxrx_plate

    from embedkit.images.model import ImageModel
    from embedkit.images.reading import ImageReadError, read_image

    torch.manual_seed(0)
    model = ImageModel(tiny_config()).save_pretrained(tmp_path / "vit")
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02", "B03"], sites=1)
    (root / "Plate1" / "B02_s1_w1.png").unlink()
    _bomb_tiff(root / "Plate1" / "B02_s1_w1.tif")
    result = run_cli("embed-images", root, "-o", tmp_path / "o", "-m", f"local-dir:{model}")
    assert result.exit_code == 0, result.output
    assert "2 sites, 1 embedded, 1 skipped" in result.output
    table = pd.read_parquet(tmp_path / "o" / "plates" / "Plate1.parquet")
    assert table.Metadata_Valid.tolist() == [False, True]
    assert "60000 x 60000 = 3,600,000,000 pixels" in table.Metadata_Error[0]
    png = tmp_path / "big.png"  # Pillow: the same check, from the PNG header; overridable
    from PIL import Image

    Image.new("L", (40, 30)).save(png)
    assert read_image(png).shape == (30, 40)
    monkeypatch.setenv("EMBEDKIT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageReadError, match="1,200 pixels, more than the 1,000"):
        read_image(png)


def test_a_nan_pixel_marks_its_site_invalid_instead_of_blanking_a_channel(tmp_path):
    """One NaN pixel made the crop's instance normalization NaN for the whole channel, and
    the site stayed valid."""
    import tifffile

    from embedkit.images.reading import SiteError, read_site

    paths = []
    for c in range(2):
        plane = np.random.default_rng(c).random((32, 32), dtype=np.float32)
        if c == 1:
            plane[3, 4] = np.nan
        tifffile.imwrite(tmp_path / f"c{c}.tif", plane)
        paths.append(tmp_path / f"c{c}.tif")
    assert read_site(paths[:1]).shape == (1, 32, 32)
    with pytest.raises(SiteError, match="c1.tif: 1 non-finite pixels"):
        read_site(paths)


# §3 huge inputs ------------------------------------------------------------------------------


def test_an_overlong_smiles_is_an_invalid_row_refused_before_rdkit(tmp_path, gin, monkeypatch):
    """A 157 KB SMILES ran for minutes inside RDKit (its parse time grows faster than the
    length); a 100 MB field reached 4.6 GB before an Arrow traceback."""
    from embedkit.molecules import featurize

    rings = "c1ccccc1" * 20_000  # 160,000 characters: minutes in RDKit
    data = f"smiles\nCCO\n{rings}\n{'C' * 12_000_000}\n".encode()
    table, line = _embed(tmp_path, gin, "long.csv", data)
    assert line.startswith("3 rows in, 1 embedded, 2 invalid"), line
    assert "SMILES of 160,000 characters, longer than the 10,000" in table.Metadata_Error[1]
    assert "EMBEDKIT_MAX_SMILES_LENGTH" in table.Metadata_Error[2]
    monkeypatch.setattr(featurize, "MAX_SMILES_LENGTH", 2)  # the limit is the user's to move
    table, _ = _embed(tmp_path, gin, "short.csv", b"smiles\nCC\nCCO\n")
    assert table.Metadata_Valid.tolist() == [True, False]


def test_a_table_of_10000_columns_is_carried_in_one_step(tmp_path, gin):
    """A one-row table with 10,000 columns took 12.5 s (columns inserted one at a time,
    flooding PerformanceWarnings); 30,000 took 192 s. Inserting them one at a time raises
    pandas' PerformanceWarning, made an error here (no wall-clock limit: the machine is
    shared; `benchmarks/bench_reliability.py` times it)."""
    import warnings

    columns = [f"c{i}" for i in range(10_000)]
    data = "smiles," + ",".join(columns) + "\nCCO," + ",".join("x" * len(columns)) + "\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        table, line = _embed(tmp_path, gin, "wide.csv", data.encode())
    assert line.startswith("1 rows in, 1 embedded"), line
    assert table.shape[1] == 10_000 + 4 + gin.embedding_dim
    assert table.columns[1] == "Metadata_c0" and table.Metadata_c9999[0] == "x"


# §3 tracebacks left: each is one sentence, exit 2 --------------------------------------------


def test_a_pickle_named_model_safetensors_is_one_sentence(tmp_path, tiny_model_dir):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors.sha256").unlink(missing_ok=True)
    torch.save({"w": torch.zeros(2)}, folder / "model.safetensors")
    (tmp_path / "in.csv").write_text("smiles\nCCO\n")
    result = run_cli(
        "embed-smiles", tmp_path / "in.csv", "-o", tmp_path / "o.csv", "-m", f"local-dir:{folder}"
    )
    assert result.exit_code == 2 and "not a readable safetensors file" in result.output
    assert result.output.count("\n") == 1


def test_output_paths_of_the_wrong_kind_are_one_sentence(tmp_path, tiny_model_dir):
    """`-o` an existing folder named x.parquet; a CSV whose sidecar path is a folder (the CSV
    was written, its sidecar was not); `embed-images -o EXISTING_FILE`; `--n-crops 0`."""
    (tmp_path / "in.csv").write_text("smiles\nCCO\n")
    (tmp_path / "x.parquet").mkdir()
    (tmp_path / "o.csv.json").mkdir()
    (tmp_path / "a_file").write_text("mine")
    model = ["-m", f"local-dir:{tiny_model_dir}"]
    for output, words in [("x.parquet", "is a folder"), ("o.csv", "o.csv.json is a folder")]:
        result = run_cli("embed-smiles", tmp_path / "in.csv", "-o", tmp_path / output, *model)
        assert result.exit_code == 2 and words in result.output, result.output
        assert result.output.count("\n") == 1
    assert not (tmp_path / "o.csv").exists()  # refused before anything was written
    result = run_cli("embed-images", tmp_path, "-o", tmp_path / "a_file")
    assert result.exit_code == 2 and "a_file is a file" in result.output, result.output
    result = run_cli("embed-images", tmp_path, "-o", tmp_path / "out", "--n-crops", "0")
    assert result.exit_code == 2 and "--n-crops" in result.output, result.output
    assert (tmp_path / "a_file").read_text() == "mine"


def _write_killed(path: str) -> None:
    """A child killed -9 while writing `path` through atomic_path."""
    import signal

    from embedkit.io import atomic_path

    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(b"half a plate")
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_runs_temp_files_are_removed_by_the_next_write(tmp_path):
    from embedkit.io import atomic_path, remove_stale_temp_files_in

    target = tmp_path / "plates" / "P1.parquet"
    child = mp.get_context("fork").Process(target=_write_killed, args=(str(target),))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    left = [p.name for p in target.parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(".P1.parquet.tmp-")
    with atomic_path(tmp_path / "plates" / "live.json") as tmp:  # a live writer's is kept
        tmp.write_text("{}")
        assert remove_stale_temp_files_in(target.parent)[0].name == left[0]
        assert tmp.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["live.json"]


def test_resume_from_a_pickle_checkpoint_is_one_sentence(tmp_path):
    """A trainer's `--resume` from a pickle checkpoint.pt was an UnpicklingError traceback."""
    import datetime

    from PIL import Image
    from test_train_image import TINY

    from train.image_mae import main

    rng = np.random.default_rng(0)
    (tmp_path / "f1").mkdir()
    for stain in ("Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"):
        image = rng.integers(0, 65535, (40, 40), dtype=np.uint16)
        Image.fromarray(image).save(tmp_path / "f1" / f"{stain}.tif")
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"when": datetime.datetime(2020, 1, 1)}, out / "checkpoint.pt")  # not weights
    argv = ["--data", str(tmp_path / "f1"), "--out", str(out), *TINY, "--steps", "1", "--resume"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "cannot resume from" in result.output and "train into a new --out" in result.output
    assert "Traceback" not in result.output
