"""`hf-hub:org/repo@main` resolves to a commit, offline from a Hub-layout cache; an
unreachable Hub is one sentence at once, not huggingface_hub's retries (issue 12 §4).

The cache is a local folder in the Hugging Face layout; the "unreachable" Hub is a closed
local port (HF_ENDPOINT=http://127.0.0.1:9): no test touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from embedkit.zoo import sha256_of

COMMIT = "c0ffee" + "0" * 34
REPO = "embedkit-test/tiny-gin"
CLOSED_PORT = "http://127.0.0.1:9"


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, "-m", "embedkit.cli", *args],
        capture_output=True,
        text=True,
        env={**base, "HF_HUB_DISABLE_TELEMETRY": "1", **env},
    )


@pytest.fixture
def cache(tmp_path, tiny_model_dir):
    """models--embedkit-test--tiny-gin with refs/main → COMMIT and its snapshot."""
    root = tmp_path / "hub"
    repo = root / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


@pytest.mark.parametrize("spec", [f"hf-hub:{REPO}@main", f"hf-hub:{REPO}"])
def test_a_branch_is_recorded_as_the_commit_it_resolved_to(cache, tmp_path, spec):
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    shown = run_cli("zoo", "download", spec, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"hf-hub:{REPO}@{COMMIT}: verified")  # the pinned spec

    smiles = tmp_path / "in.csv"
    smiles.write_text("smiles\nCCO\n")
    out = tmp_path / "out.parquet"
    done = run_cli("embed-smiles", str(smiles), "-m", spec, "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    text = json.dumps(_run_info(out))
    assert COMMIT in text and '"revision": "main"' not in text


def _run_info(path) -> dict:
    """Everything the parquet file's metadata says (wherever the run info is kept)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode(errors="replace") for k, v in meta.items()}


def test_the_python_api_records_the_commit_too(cache, monkeypatch):
    import huggingface_hub.constants as hf

    import embedkit

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    model = embedkit.load(f"hf-hub:{REPO}@main", device="cpu")
    assert model.run_info["revision"] == COMMIT
    assert model.run_info["model_id"] == f"hf-hub:{REPO}@main"


def test_a_cached_branch_still_loads_when_the_hub_is_unreachable(cache):
    env = {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": CLOSED_PORT}
    shown = run_cli("zoo", "download", f"hf-hub:{REPO}@main", env=env)
    assert shown.returncode == 0, shown.stderr
    assert COMMIT in shown.stdout


@pytest.mark.parametrize("spec", ["hf-hub:nobody/nothing@main", "tiny-gin"])
def test_an_unreachable_hub_is_one_sentence_without_retries(tmp_path, tiny_model_dir, spec):
    cards = tmp_path / "cards"
    cards.mkdir()
    card = {
        "name": "tiny-gin",
        "task": "molecules",
        "architecture": "infoalign-gin",
        "embedding_dim": 16,
        "hub_repo": REPO,
        "revision": COMMIT,
        "files": {n: sha256_of(tiny_model_dir / n) for n in ("config.json", "model.safetensors")},
        "license": "mit",
        "summary": "test card",
    }
    (cards / "tiny-gin.card.json").write_text(json.dumps(card))
    env = {
        "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
        "HF_ENDPOINT": CLOSED_PORT,
        "EMBEDKIT_EXTRA_CARDS": str(cards),
    }
    result = run_cli("zoo", "download", spec, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no "Retrying in 1s [Retry 1/5]" lines
    repo = "nobody/nothing@main" if spec.startswith("hf-hub:") else f"{REPO}@{COMMIT}"
    assert lines[0].startswith(f"error: cannot reach the Hugging Face Hub to resolve {repo}")
    assert "HF_HUB_OFFLINE=1" in lines[0] and "Retry" not in result.stderr
