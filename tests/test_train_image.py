"""The MAE recipe: runs under torchrun (2 gloo processes), resumes exactly, and writes a
model folder that `embedkit.load` and `embed-images` use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from embedkit.api import load

TINY = [
    "--crop-size",
    "32",
    "--depth",
    "1",
    "--embed-dim",
    "48",
    "--num-heads",
    "3",
    "--batch-size",
    "4",
    "--checkpoint-every",
    "1",
]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    """Five stain-named channels (matched by the model's aliases), two fields."""
    root = tmp_path_factory.mktemp("fields")
    rng = np.random.default_rng(0)
    for field in ("f1", "f2"):
        folder = root / field
        folder.mkdir()
        for stain in ("Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"):
            image = rng.integers(0, 65535, (80, 96), dtype=np.uint16)
            Image.fromarray(image).save(folder / f"{stain}.tif")
    return root


def train(out: Path, data: Path, steps: int, *extra: str, nproc: int = 1):
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "train.image_mae",
        "--data",
        str(data / "f1"),
        "--data",
        str(data / "f2"),
        "--out",
        str(out),
        "--steps",
        str(steps),
        *TINY,
        *extra,
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_torchrun_two_processes_write_a_loadable_model(tmp_path, plate):
    out = tmp_path / "ddp"
    result = train(out, plate, 4, nproc=2)
    assert "2 process(es)" in result.stdout
    embedder = load(f"local-dir:{out / 'model'}")
    assert embedder.model.channels == ["DNA", "ER", "RNA", "AGP", "Mito"]
    card = (out / "model" / "README.md").read_text()
    assert "demo model, not a production model" in card and "**real** field" in card
    losses = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 1 and '"step": 4' in losses[0]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, plate):
    full, split = tmp_path / "full", tmp_path / "split"
    train(full, plate, 4)
    train(split, plate, 2)
    (split / "model").rename(tmp_path / "half")
    result = train(split, plate, 4, "--resume")
    assert "resumed at step 2" in result.stdout
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    half = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert any(not torch.equal(half[k], a[k]) for k in a)  # training moved the weights
