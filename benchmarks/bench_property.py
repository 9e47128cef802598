"""Property-prediction benchmark on frozen features (InfoAlign's Tables 2 and 3 protocol).

For ChEMBL2K, Broad6K and Biogen ADME, and several seeds (each seed is a new scaffold split
and a new head initialization), score: the given model + MLP probe, the same architecture
with random weights + MLP, ECFP4 + MLP and ECFP4 + random forest. Prints a markdown table
beside the paper's numbers and writes every row to JSON. The same report is
`embedkit evaluate property`; this script adds the benchmark's defaults and output path.

    python benchmarks/bench_property.py --data-dir ../shared/data            # full, 3 seeds
    python benchmarks/bench_property.py --data-dir ../shared/data --quick    # smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from embedkit.cli.options import DEFAULT_MOLECULE_MODEL
from embedkit.data_dir import DATA_DIR_ENV
from embedkit.evaluation import BENCHMARKS
from embedkit.evaluation.report import FULL, QUICK, run_property_report, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default=DEFAULT_MOLECULE_MODEL,
        help=f"zoo name or local-dir:PATH (default: {DEFAULT_MOLECULE_MODEL})",
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get(DATA_DIR_ENV),
        help=f"folder holding benchmarks/<dataset>/assays.csv.gz (default: ${DATA_DIR_ENV})",
    )
    p.add_argument(
        "--datasets", default=",".join(BENCHMARKS), help="comma-separated (default: %(default)s)"
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument(
        "--max-molecules",
        type=int,
        default=None,
        help="fixed random subset per dataset (default: all)",
    )
    p.add_argument("--max-epochs", type=int, default=None, help="MLP epochs (default 300)")
    p.add_argument(
        "--patience", type=int, default=None, help="early-stopping patience in epochs (default 50)"
    )
    p.add_argument("--rf-trees", type=int, default=None, help="trees per forest (default 200)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="encoder precision for embedding (default: fp32)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="parallel single-threaded probe/forest fits (default: 2)",
    )
    p.add_argument(
        "--probe-precision",
        choices=["fp32", "bf16"],
        default="bf16",
        help="MLP probe autocast (default: bf16, ~1.8x faster, scores within noise)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: scatter-heavy GIN code slows down badly with "
        "2 threads when other processes share the cores)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 seed, 600 molecules, 100 epochs, 100 trees",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: benchmarks/results/property.json, or "
        "property_quick.json with --quick so a smoke run keeps real results)",
    )
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = RESULTS / ("property_quick.json" if args.quick else "property.json")
    if not args.data_dir:
        p.error(f"pass --data-dir or set {DATA_DIR_ENV}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    report = run_property_report(
        args.model,
        args.data_dir,
        args.datasets.split(","),
        seeds=args.seeds,
        max_molecules=args.max_molecules,
        max_epochs=args.max_epochs,
        patience=args.patience,
        rf_trees=args.rf_trees,
        precision=args.precision,
        probe_precision=args.probe_precision,
        jobs=args.jobs,
    )
    report["config"]["quick"] = args.quick
    print(report["table_markdown"])
    print(
        "\nThe paper column beside the model is InfoAlign's published score for its own "
        "checkpoint (mean of 10 runs), a target, not this model's result."
    )
    write_report(report, args.out)
    print(f"\n{len(report['results'])} runs in {report['elapsed_s']:.0f}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
