"""`python -m train.image_mae`, the older entry point of the MAE recipe, is now an alias of
`python -m train vit --method mae` with the Cell Painting channels: it reads stain-named
fields, resumes exactly (refusing changed settings, never logging a step twice), and
writes a model folder that `embedkit.load` uses."""

from __future__ import annotations

import os
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

TINY = ["--crop-size", "32", "--depth", "1", "--embed-dim", "48", "--num-heads", "3"]
TINY += ["--batch-size", "2", "--checkpoint-every", "1", "--no-bf16", "--workers", "0"]
TINY += ["--decoder-dim", "32", "--decoder-depth", "1", "--decoder-heads", "2"]


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


def _run(out: Path, data: Path, *args: str):
    """The alias in this process (fast); returns click's result."""
    argv = ["--data", str(data / "f1"), "--data", str(data / "f2"), "--out", str(out)]
    return CliRunner().invoke(main, [*argv, *TINY, *args])


def test_the_alias_trains_cell_painting_fields_into_a_loadable_model(tmp_path, plate):
    out = tmp_path / "run"
    result = _run(out, plate, "--steps", "3", "--log-every", "1")
    assert result.exit_code == 0, result.output
    assert "data: 2 imaged sites, 2 used (no metadata)" in result.output
    assert "images/s" in result.output
    written = sorted(p.name for p in out.iterdir() if p.name != "tensorboard")  # if installed
    assert written == ["checkpoint.pt", "metrics.jsonl", "model"]
    embedder = load(f"local-dir:{out / 'model'}")
    assert embedder.model.channels == ["DNA", "ER", "RNA", "AGP", "Mito"]
    card = (out / "model" / "README.md").read_text()
    assert "pretrained with mae" in card and "**real** images" in card
    assert "SIMULATED" not in card
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, plate):
    full, split = tmp_path / "full", tmp_path / "split"
    assert _run(full, plate, "--steps", "4").exit_code == 0
    assert _run(split, plate, "--steps", "4", "--max-steps", "2").exit_code == 0
    (split / "model").rename(tmp_path / "half")
    result = _run(split, plate, "--steps", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed at step 2" in result.output
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    half = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert any(not torch.equal(half[k], a[k]) for k in a)  # training moved the weights


def test_resume_refuses_changed_settings_naming_each_with_both_values(tmp_path, plate):
    out = tmp_path / "run"
    assert _run(out, plate, "--steps", "2").exit_code == 0
    before = (out / "checkpoint.pt").read_bytes()
    lr = _run(out, plate, "--steps", "2", "--lr", "0.01", "--resume")
    assert lr.exit_code == 2, lr.output  # a usage error, not silence and not a traceback
    assert "lr=0.001" in lr.output and "lr=0.01" in lr.output
    both = _run(out, plate, "--steps", "2", "--lr", "0.01", "--embed-dim", "24", "--resume")
    assert both.exit_code == 2, both.output
    message = " ".join(both.output.split())
    assert "it was made with embed_dim=48 and lr=0.001" in message
    assert "this run asks for embed_dim=24 and lr=0.01" in message
    assert (out / "checkpoint.pt").read_bytes() == before
    ok = _run(out, plate, "--steps", "2", "--checkpoint-every", "5", "--workers", "1", "--resume")
    assert ok.exit_code == 0, ok.output  # checkpoint frequency and workers do not change it


class Killed(Exception):
    pass


def test_a_run_killed_and_resumed_logs_each_record_once(tmp_path, plate, monkeypatch):
    """A record per step, an epoch of one step (2 fields, 2 per batch) and a checkpoint at
    each: killed while writing the checkpoint of step 3, the run resumes from step 2 and
    logs step 3 once."""
    args = ("--steps", "5")
    assert _run(tmp_path / "full", plate, *args).exit_code == 0
    real_replace, landed = os.replace, []

    def replace(src, dst):
        if Path(dst).name == "checkpoint.pt":
            landed.append(dst)
            if len(landed) == 3:  # the checkpoint of step 3 never lands
                raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    killed = _run(tmp_path / "cut", plate, *args)
    assert isinstance(killed.exception, Killed)
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == [1, 2, 3]
    monkeypatch.setattr(os, "replace", real_replace)
    resumed = _run(tmp_path / "cut", plate, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 2" in resumed.output

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(tmp_path / run)]

    assert losses("cut") == losses("full") and [s for s, _ in losses("full")] == [1, 2, 3, 4, 5]


def test_a_record_cut_short_by_a_crash_does_not_block_the_resume(tmp_path, plate):
    """A crash in the middle of writing a metrics record leaves half a JSON line: the
    resume drops it (the step is trained again and logged once), never a JSONDecodeError."""
    args = ("--steps", "4")
    assert _run(tmp_path / "full", plate, *args).exit_code == 0
    cut = tmp_path / "cut"
    assert _run(cut, plate, *args, "--max-steps", "2").exit_code == 0
    metrics = cut / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "lo')  # the crash mid-write
    assert [r["step"] for r in read_metrics(cut)] == [1, 2]
    resumed = _run(cut, plate, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    steps = [(r["step"], r["loss"]) for r in read_metrics(cut)]
    assert steps == [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "full")]
