"""Batch correction: how much batch each `normalize` method removes, how much biology it keeps.

For raw features and each method (statistics from negative controls, per batch), a
cross-validated logistic-regression probe reports batch accuracy (stratified k-fold on all rows;
lower is better, chance = the largest batch's share) and perturbation accuracy on treated rows
with whole batches held out (higher is better), plus seconds per method. A second pass times
each method on a larger random table (default 100,000 × 384 float32), embedding-sized.

The default input is a seeded synthetic table (`embedkit.datasets.synthetic.profiles`) with strong
per-batch additive and multiplicative effects; `--input` points it at any profile table
(e.g. image embeddings of plates), with the column names given below.

    python benchmarks/bench_normalize.py                      # synthetic; writes JSON
    python benchmarks/bench_normalize.py --input wells.parquet --batch-col Metadata_Plate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.datasets.synthetic import synthetic_profiles
from embedkit.io import atomic_path, coerce_numeric_text, read_table
from embedkit.profiles import NORMALIZERS, normalize
from embedkit.profiles.diagnostics import batch_effect_report

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, default=None, help="profile table [default: synthetic]")
    p.add_argument("--batch-col", default="Metadata_Batch")
    p.add_argument("--label-col", default="Metadata_Perturbation")
    p.add_argument("--controls", default="Metadata_PertType == 'negcon'")
    p.add_argument("--label-rows", default="Metadata_PertType == 'trt'")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--perturbations", type=int, default=20)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--timing-rows", type=int, default=100_000, help="0 skips the timing pass")
    p.add_argument("--timing-dim", type=int, default=384)
    p.add_argument("--out", type=Path, default=RESULTS / "bench_normalize.json")
    return p.parse_args(argv)


def load_table(args: argparse.Namespace) -> tuple[pd.DataFrame, dict]:
    if args.input is not None:
        return coerce_numeric_text(read_table(args.input)), {"input": str(args.input)}
    spec = {
        "batches": args.batches,
        "plates_per_batch": 2,
        "controls_per_plate": 32,
        "perturbations": args.perturbations,
        "replicates": 4,
        "features": args.features,
        "seed": args.seed,
    }
    return synthetic_profiles(**spec), {"synthetic": spec}


def quality(table: pd.DataFrame, args: argparse.Namespace) -> list[dict]:
    rows = []
    for method in ["raw", *NORMALIZERS]:
        start = time.perf_counter()
        if method == "raw":
            out = table
        else:
            out = normalize(table, method, controls=args.controls, by=args.batch_col)
        seconds = time.perf_counter() - start
        report = batch_effect_report(
            out, args.batch_col, args.label_col, label_rows=args.label_rows, folds=args.folds
        )
        rows.append({"method": method, "normalize_seconds": seconds, **report})
    return rows


def timing(n: int, dim: int, batches: int, seed: int) -> list[dict]:
    """Seconds per method on an embedding-sized random table (10% controls)."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "Metadata_Batch": rng.integers(0, batches, n).astype(str),
            "Metadata_PertType": np.where(rng.random(n) < 0.1, "negcon", "trt"),
        }
    )
    feats = pd.DataFrame(
        rng.standard_normal((n, dim), dtype=np.float32),
        columns=[f"Emb_{i:04d}" for i in range(dim)],
    )
    table = pd.concat([meta, feats], axis=1)
    out = []
    for method in NORMALIZERS:
        start = time.perf_counter()
        normalize(table, method, controls="Metadata_PertType == 'negcon'", by="Metadata_Batch")
        seconds = time.perf_counter() - start
        out.append({"method": method, "rows": n, "dim": dim, "seconds": seconds})
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    table, source = load_table(args)
    results = quality(table, args)
    first = results[0]
    print(
        f"{first['rows']} rows, {first['features']} features, {first['batches']} batches "
        f"(batch chance {first['batch_chance']:.2f}), {first['labels']} labels on "
        f"{first['label_rows']} rows (chance {first['label_chance']:.2f}, leave-batch-out)"
    )
    print(f"{'method':<16} {'batch acc ↓':>11} {'label acc ↑':>11} {'normalize s':>11}")
    for r in results:
        print(
            f"{r['method']:<16} {r['batch_accuracy']:>11.3f} {r['label_accuracy']:>11.3f} "
            f"{r['normalize_seconds']:>11.3f}"
        )
    times = timing(args.timing_rows, args.timing_dim, 10, args.seed) if args.timing_rows else []
    for t in times:
        print(f"timing {t['method']:<16} {t['rows']:,} × {t['dim']}: {t['seconds']:.2f} s")
    payload = {
        "source": source,
        "controls": args.controls,
        "batch_col": args.batch_col,
        "label_col": args.label_col,
        "label_rows": args.label_rows,
        "results": results,
        "timing": times,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
