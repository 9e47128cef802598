"""`metrics.jsonl`: one JSON record per finished epoch, written by rank 0.

A resumed run first trims the records of epochs after its checkpoint, so the log never
holds an epoch twice.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS = "metrics.jsonl"


def trim_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs after the checkpoint, so a resumed log has no duplicates."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epochs_done]
    path.write_text("".join(ln + "\n" for ln in kept))


def format_record(r: dict) -> str:
    spaces = " ".join(
        f"{k[6:]}={v:.4f}"
        for k, v in r.items()
        if k.startswith("train_") and k not in ("train_loss", "train_kl")
    )
    val = f" val={r['val_loss']:.4f}" if "val_loss" in r else ""
    return (
        f"epoch {r['epoch']:>3} step {r['step']:>6} loss={r['train_loss']:.4f}{val} "
        f"[{spaces}] {r['epoch_seconds']:.1f}s {r['molecules_per_second']:.0f} mol/s"
    )


def read_metrics(out: Path) -> list[dict]:
    path = Path(out) / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
