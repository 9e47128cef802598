"""The MAE recipe on the shared loop: runs under torchrun (2 gloo processes), resumes
exactly (refusing changed settings, never logging a step twice), and writes a model folder
that `embedkit.load` and `embed-images` use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from embedkit.api import load
from train.image_mae import main
from train.loop import read_metrics

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
    assert "2 process(es)" in result.stdout and "crops/s" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "model"]
    embedder = load(f"local-dir:{out / 'model'}")
    assert embedder.model.channels == ["DNA", "ER", "RNA", "AGP", "Mito"]
    card = (out / "model" / "README.md").read_text()
    assert "demo model, not a production model" in card and "**real** field" in card
    losses = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 1 and '"step": 4' in losses[0]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, plate):
    full, split = tmp_path / "full", tmp_path / "split"
    train(full, plate, 4)
    train(split, plate, 4, "--max-steps", "2")
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


def _run(out: Path, data: Path, *args: str):
    """The MAE command in this process (fast); returns click's result."""
    argv = ["--data", str(data / "f1"), "--data", str(data / "f2"), "--out", str(out)]
    return CliRunner().invoke(main, [*argv, *TINY, *args])


def test_resume_refuses_changed_settings_naming_each_with_both_values(tmp_path, plate):
    out = tmp_path / "run"
    assert _run(out, plate, "--steps", "2").exit_code == 0
    before = (out / "checkpoint.pt").read_bytes()
    lr = _run(out, plate, "--steps", "2", "--lr", "0.01", "--resume")
    assert lr.exit_code == 2, lr.output  # a usage error, not silence and not a traceback
    assert "lr=7.5e-05" in lr.output and "lr=0.01" in lr.output
    both = _run(out, plate, "--steps", "2", "--lr", "0.01", "--embed-dim", "24", "--resume")
    assert both.exit_code == 2, both.output
    message = " ".join(both.output.split())
    assert "it was made with embed_dim=48 and lr=7.5e-05" in message
    assert "this run asks for embed_dim=24 and lr=0.01" in message
    assert (out / "checkpoint.pt").read_bytes() == before
    ok = _run(out, plate, "--steps", "2", "--checkpoint-every", "5", "--resume")
    assert ok.exit_code == 0, ok.output  # checkpoint frequency does not change the run


class Killed(Exception):
    pass


def test_a_run_killed_and_resumed_logs_each_record_once(tmp_path, plate, monkeypatch):
    """Records every 20 steps, checkpoints every 15: killed while writing the checkpoint of
    step 30, the run resumes from step 15 and must not log step 20 twice."""
    args = ("--steps", "40", "--checkpoint-every", "15")
    assert _run(tmp_path / "full", plate, *args).exit_code == 0
    real_replace, landed = os.replace, []

    def replace(src, dst):
        if Path(dst).name == "checkpoint.pt":
            landed.append(dst)
            if len(landed) == 2:  # the checkpoint of step 30 never lands
                raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    killed = _run(tmp_path / "cut", plate, *args)
    assert isinstance(killed.exception, Killed)
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == [20]
    monkeypatch.setattr(os, "replace", real_replace)
    resumed = _run(tmp_path / "cut", plate, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 15" in resumed.output

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(tmp_path / run)]

    assert losses("cut") == losses("full") and [s for s, _ in losses("full")] == [20, 40]
