"""The public-dataset registry (embedkit.datasets.registry, `embedkit datasets list|fetch`).

No network: downloads are `file://` URLs to files written in the test, registered through
$EMBEDKIT_DATASETS (a JSON file of extra entries), cached in a folder of the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embedkit.cli import main
from embedkit.data_dir import resolve_data_dir
from embedkit.datasets import registry as reg
from embedkit.errors import ChecksumError, InputError, UntrustedFormatError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """Two files 'published' in a folder and a registry entry for them; the data folder is
    $EMBEDKIT_DATA_DIR = tmp_path/data."""
    src = tmp_path / "upstream"
    src.mkdir()
    files = {"pairs.txt": b"entity1,entity2\nTP53,MDM2\n", "nodes.tsv": b"id\tname\n1\tTP53\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    entry = {
        "tiny-kg": {
            "description": "two tiny files",
            "licence": "CC0",
            "source": "a test",
            "files": [
                {
                    "path": f"kg/{name}",
                    "url": (src / name).as_uri(),
                    "sha256": sha256(data),
                    "size": len(data),
                }
                for name, data in files.items()
            ],
        }
    }
    registry_file = tmp_path / "registry.json"
    registry_file.write_text(json.dumps(entry))
    monkeypatch.setenv(reg.REGISTRY_ENV, str(registry_file))
    monkeypatch.setenv("EMBEDKIT_DATA_DIR", str(tmp_path / "data"))
    return {"src": src, "data": tmp_path / "data", "files": files, "registry": registry_file}


def test_fetch_downloads_verifies_and_places_files_in_the_data_layout(upstream):
    summary = reg.fetch("tiny-kg")
    assert summary.folder == upstream["data"]
    assert [p.relative_to(upstream["data"]).as_posix() for p in summary.paths] == [
        "kg/pairs.txt",
        "kg/nodes.tsv",
    ]
    for path in summary.paths:
        assert path.read_bytes() == upstream["files"][path.name]
    assert summary.downloaded == 2 and summary.cached == 0
    assert not [p for p in (upstream["data"] / "kg").iterdir() if p.name.startswith("tmp")]
    assert summary.line().startswith("tiny-kg: 2 files (2 downloaded); sha256 verified")


def test_a_second_fetch_is_a_cache_hit_without_the_network(upstream):
    reg.fetch("tiny-kg")
    for name in upstream["files"]:
        (upstream["src"] / name).unlink()  # upstream gone: only the cache can answer
    summary = reg.fetch("tiny-kg")
    assert summary.downloaded == 0 and summary.cached == 2
    assert "(2 cached)" in summary.line()


def test_a_corrupted_cached_file_is_one_sentence_naming_its_path(upstream):
    reg.fetch("tiny-kg")
    cached = upstream["data"] / "kg" / "pairs.txt"
    cached.write_bytes(b"entity1,entity2\nTP53,MDM4\n")
    with pytest.raises(ChecksumError) as err:
        reg.fetch("tiny-kg")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{cached}: sha256 ")
    assert "a corrupted or changed copy); delete it and run `embedkit datasets fetch tiny-kg`" in (
        message
    )
    assert cached.read_bytes().endswith(b"MDM4\n")  # not replaced behind the user's back
    result = run("datasets", "fetch", "tiny-kg")
    assert result.exit_code == 2 and result.stderr == f"error: {message}\n"


def test_a_download_whose_sha256_differs_is_refused_and_not_kept(upstream):
    (upstream["src"] / "nodes.tsv").write_bytes(b"id\tname\n1\tTP63\n")  # upstream changed
    with pytest.raises(ChecksumError, match="nothing was kept") as err:
        reg.fetch("tiny-kg")
    assert (upstream["src"] / "nodes.tsv").as_uri() in str(err.value)
    assert not (upstream["data"] / "kg" / "nodes.tsv").exists()
    assert sorted(p.name for p in (upstream["data"] / "kg").iterdir()) == ["pairs.txt"]


def test_an_unreachable_uncached_file_says_which_file_and_how_to_get_it(upstream):
    (upstream["src"] / "pairs.txt").unlink()
    target = upstream["data"] / "kg" / "pairs.txt"
    url = (upstream["src"] / "pairs.txt").as_uri()
    with pytest.raises(reg.DatasetUnavailableError) as err:
        reg.fetch("tiny-kg")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{target} is not cached and {url} cannot be downloaded (")
    assert message.endswith(f"download it by hand from that URL and save it as {target}")
    result = run("datasets", "fetch", "tiny-kg")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1


def test_an_unknown_dataset_suggests_close_names(upstream):
    with pytest.raises(InputError, match="did you mean tiny-kg"):
        reg.fetch("tiny-kgs")


def test_cli_list_and_fetch(upstream, tmp_path):
    listed = run("datasets", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith("tiny-kg "))
    assert re.match(r"tiny-kg\s+2\s+41 B\s+no\s+CC0$", row)
    assert f"data folder: {upstream['data']} ($EMBEDKIT_DATA_DIR)" in listed.stdout
    assert "rxrx1-u2os-split" in listed.stdout and "scvi-cell-line-embeddings" in listed.stdout
    fetched = run("datasets", "fetch", "tiny-kg")
    assert fetched.exit_code == 0, fetched.output
    lines = fetched.stdout.splitlines()
    assert lines[:2] == [str(upstream["data"] / "kg" / n) for n in ("pairs.txt", "nodes.tsv")]
    assert lines[2].endswith(f"→ {upstream['data']}")
    listed = run("datasets", "list", "--files")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("tiny-kg "))
    assert re.match(r"tiny-kg\s+2\s+41 B\s+yes\s+CC0$", row)
    assert (upstream["src"] / "pairs.txt").as_uri() in listed.stdout
    elsewhere = tmp_path / "elsewhere"
    other = run("datasets", "fetch", "tiny-kg", "--data-dir", elsewhere)
    assert other.exit_code == 0 and (elsewhere / "kg" / "pairs.txt").is_file()


def test_a_bad_registry_file_is_one_line(upstream):
    upstream["registry"].write_text('{"x": {"files": [{"path": "../../etc/passwd", "url": "u"}]}}')
    with pytest.raises(InputError, match="leaves the folder"):
        reg.registry()
    upstream["registry"].write_text("{not json")
    result = run("datasets", "list")
    assert result.exit_code == 2 and "not a readable JSON file" in result.stderr


def test_without_env_the_cache_is_pooch_user_cache_and_data_dir_falls_back_to_it(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("EMBEDKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = reg.data_folder()
    assert folder == tmp_path / "cache" / "embedkit"
    with pytest.raises(FileNotFoundError, match="EMBEDKIT_DATA_DIR"):
        resolve_data_dir(None)  # no cache yet: the same sentence as before
    folder.mkdir(parents=True)
    assert resolve_data_dir(None) == folder  # once `datasets fetch` made it
    assert resolve_data_dir(tmp_path) == tmp_path


# --- the built-in entries -------------------------------------------------------------------


def test_every_builtin_entry_is_pinned_checksummed_and_licensed():
    paths = set()
    for dataset in reg.BUILTIN:
        assert dataset.description and dataset.licence and dataset.source
        for file in (*dataset.files, *dataset.raw):
            assert re.fullmatch(
                r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", file.url
            ), file.url
            assert file.path not in paths
            paths.add(file.path)
        for file in dataset.files:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256) and file.size > 0
    names = {d.name for d in reg.BUILTIN}
    for wanted in (
        "rxrx1-u2os-split",
        "scvi-cell-line-embeddings",
        "string-gene-pairs",
        "humap-gene-pairs",
        "reactome-gene-pairs",
        "hetionet-ppi",
        "infoalign-benchmarks",
    ):
        assert wanted in names
    scvi = reg.get_dataset("scvi-cell-line-embeddings")
    assert [f.path.split("_")[-1] for f in scvi.files] == [
        "64.parquet",
        "128.parquet",
        "256.parquet",
        "512.parquet",
    ]


def test_a_copy_of_the_public_files_is_a_verified_cache(real_data, monkeypatch):
    """The project's copy of the public files (../shared/data) has the registry's layout
    and checksums: every built-in dataset is a cache hit there, and nothing is written."""
    monkeypatch.delenv(reg.REGISTRY_ENV, raising=False)
    for dataset in reg.BUILTIN:
        summary = reg.fetch(dataset.name, real_data)
        assert summary.cached == len(dataset.files) and summary.downloaded == 0


# --- files built from upstream's raw files (the scVI pickle) -----------------------------------


def _scvi_registry(tmp_path, monkeypatch, pickle_bytes: bytes, tables: dict) -> None:
    from embedkit.cell_lines import table_digest

    raw = tmp_path / "scvi.pkl"
    raw.write_bytes(pickle_bytes)
    files = [
        {
            "path": f"cell_lines/scvi_cell_line_embeddings_{dim}.parquet",
            "url": raw.as_uri(),
            "sha256": "0" * 64,  # the bytes of a Parquet file depend on its writer …
            "content_sha256": table_digest(tables[dim]),  # … its values do not
        }
        for dim in tables
    ]
    entry = {
        "scvi-test": {
            "licence": "none stated",
            "build": "scvi-pickle",
            "files": files,
            "raw": [{"path": "cell_lines/raw/scvi.pkl", "url": raw.as_uri(), "sha256": None}],
        }
    }
    (tmp_path / "registry.json").write_text(json.dumps(entry))
    monkeypatch.setenv(reg.REGISTRY_ENV, str(tmp_path / "registry.json"))


def test_the_scvi_tables_are_built_from_the_pickle_and_checked_by_value(tmp_path, monkeypatch):
    from embedkit.cell_lines import read_cell_line_table

    rng = np.random.default_rng(0)
    tables = {
        dim: {name: rng.standard_normal(dim).astype(np.float32) for name in ("U2OS", "A549")}
        for dim in (4, 8)
    }
    _scvi_registry(tmp_path, monkeypatch, pickle.dumps(tables), tables)
    data = tmp_path / "data"
    summary = reg.fetch("scvi-test", data)
    assert summary.built == 2 and "2 built from scvi.pkl (downloaded)); values verified" in (
        summary.line()
    )
    table = pd.read_parquet(data / "cell_lines/scvi_cell_line_embeddings_8.parquet")
    assert list(table.columns) == ["cell_line", *[f"scvi_{i}" for i in range(8)]]
    built = read_cell_line_table(data / "cell_lines/scvi_cell_line_embeddings_8.parquet")
    np.testing.assert_array_equal(built["A549"], tables[8]["A549"])
    again = reg.fetch("scvi-test", data)  # cached: accepted by value though not by bytes
    assert again.cached == 2 and again.built == 0


def test_a_pickle_with_other_values_is_built_then_refused(tmp_path, monkeypatch):
    tables = {4: {"U2OS": np.ones(4, np.float32)}}
    changed = {4: {"U2OS": np.full(4, 2.0, np.float32)}}
    _scvi_registry(tmp_path, monkeypatch, pickle.dumps(changed), tables)
    with pytest.raises(ChecksumError, match="does not hold the registered values"):
        reg.fetch("scvi-test", tmp_path / "data")
    assert not (tmp_path / "data/cell_lines/scvi_cell_line_embeddings_4.parquet").exists()


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _scvi_registry(tmp_path, monkeypatch, pickle.dumps({4: {"U2OS": _Boom()}}), {4: {"U2OS": []}})
    with pytest.raises(UntrustedFormatError, match=r"holds (posix|os)\.system, not only numpy"):
        reg.fetch("scvi-test", tmp_path / "data")
    assert not (tmp_path / "pwned").exists()
