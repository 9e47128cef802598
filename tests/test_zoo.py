"""Zoo resolution: shipped files, the HF cache at a pinned revision, offline errors, checksums."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from embedkit.api import load
from embedkit.errors import ChecksumError, ModelNotFoundError, UntrustedFormatError
from embedkit.zoo import list_cards, resolve, sha256_of

REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO = "embedkit-test/tiny-gin"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def hub_cache(tmp_path, tiny_model_dir) -> dict:
    """A Hugging Face cache (models--org--name/snapshots/<rev>/…) and a card pinning it."""
    cache = tmp_path / "hub"
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, snapshot / name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION)
    cards = tmp_path / "cards"
    cards.mkdir()
    card = {
        "name": "tiny-gin",
        "task": "molecules",
        "architecture": "infoalign-gin",
        "embedding_dim": 16,
        "hub_repo": REPO,
        "revision": REVISION,
        "files": {n: sha256_of(snapshot / n) for n in ("config.json", "model.safetensors")},
        "license": "CC0-1.0",
        "summary": "test card",
    }
    (cards / "tiny-gin.card.json").write_text(json.dumps(card))
    return {
        "env": {
            "HF_HUB_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1",
            "EMBEDKIT_EXTRA_CARDS": str(cards),
        },
        "snapshot": snapshot,
    }


def test_default_model_is_listed_offline():
    result = run_cli("zoo", "list", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0
    assert "infoalign-gin-lincs-small" in result.stdout
    assert any(card.shipped_dir for card in list_cards())


def test_shipped_model_verifies_and_show_has_usage():
    assert run_cli("zoo", "verify").returncode == 0
    shown = run_cli("zoo", "show", "infoalign-gin-lincs-small")
    assert shown.returncode == 0
    assert "embedkit.load('infoalign-gin-lincs-small')" in shown.stdout
    raw = run_cli("zoo", "show", "infoalign-gin-lincs-small", "--json")
    assert json.loads(raw.stdout)["files"]["model.safetensors"]


def test_model_resolves_from_hf_cache_at_pinned_revision(hub_cache, tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_text("smiles\nCCO\nc1ccccc1\n")
    out = tmp_path / "out.parquet"
    result = run_cli(
        "embed-smiles", str(csv), "-o", str(out), "-m", "tiny-gin", env=hub_cache["env"]
    )
    assert result.returncode == 0, result.stderr
    assert "2 embedded" in result.stdout
    download = run_cli("zoo", "download", "tiny-gin", env=hub_cache["env"])
    assert download.returncode == 0 and str(hub_cache["snapshot"]) in download.stdout


def test_offline_and_uncached_is_one_clear_sentence(hub_cache, tmp_path):
    result = run_cli("zoo", "download", f"tiny-gin@{'f' * 40}", env=hub_cache["env"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "config.json" in lines[0] and "offline" in lines[0]
    hf = run_cli("zoo", "download", "hf-hub:nobody/nothing", env=hub_cache["env"])
    assert hf.returncode == 2 and len(hf.stderr.strip().splitlines()) == 1


def test_tampered_cached_file_fails_checksum(hub_cache, monkeypatch):
    weights = hub_cache["snapshot"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = run_cli("zoo", "verify", "tiny-gin", env=hub_cache["env"])
    assert result.returncode == 2
    assert "sha256" in result.stderr and "model.safetensors" in result.stderr


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="infoalign-gin-lincs-small"):
        resolve("no-such-model")


def test_local_dir_and_missing_files(tiny_model_dir, tmp_path):
    embedder = load(f"local-dir:{tiny_model_dir}", device="cpu")
    emb, valid = embedder.embed_smiles(["CCO", "bad("])
    assert valid.tolist() == [True, False]
    assert np.isnan(emb[1]).all() and not np.isnan(emb[0]).any()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        load(f"local-dir:{tmp_path / 'empty'}")


def test_pickle_only_folder_is_refused_with_convert_hint(tiny_model_dir, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(UntrustedFormatError, match="embedkit zoo convert infoalign"):
        load(f"local-dir:{folder}")


def test_checksum_error_names_file(tmp_path):
    from embedkit.zoo import verify_file

    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    with pytest.raises(ChecksumError, match=str(Path(path).name)):
        verify_file(path, "0" * 64)
