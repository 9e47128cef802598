"""Property-prediction benchmark on frozen features (InfoAlign's Tables 2 and 3 protocol).

For ChEMBL2K, Broad6K and Biogen ADME (and any InfoAlign-format assay file, `--assays`),
score: the given model (and `--extra-model`s) + MLP probe, the same architecture with
random weights + MLP, ECFP4 + MLP and ECFP4 + random forest, under two protocols: 10 runs
on one fixed scaffold split (the paper's) and 3 seeds that each draw a new split and head.
Prints markdown tables beside the paper's numbers (with the share of tasks at AUC ≥ 80/85/
90), the model's margin over random-init in standard deviations, and writes every row to
JSON. The same report is `embedkit evaluate property`; this script adds the benchmark's
defaults and output path.

    python benchmarks/bench_property.py --data-dir ../shared/data            # full
    python benchmarks/bench_property.py --data-dir ../shared/data --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from embedkit.cli.options import DEFAULT_MOLECULE_MODEL
from embedkit.data_dir import DATA_DIR_ENV
from embedkit.evaluation import BENCHMARKS
from embedkit.evaluation.report import (
    FIXED_RUNS,
    FULL,
    PROTOCOLS,
    QUICK,
    merge_reports,
    run_property_report,
    write_report,
)

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
    p.add_argument(
        "--assays",
        action="append",
        default=[],
        help="an InfoAlign-format assay file scored like the benchmarks (repeatable)",
    )
    p.add_argument("--task-type", choices=["auto", "classification", "regression"], default="auto")
    p.add_argument("--protocol", choices=PROTOCOLS, default="both")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument("--runs", type=int, default=None, help="fixed-split runs (default 10)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the fixed split")
    p.add_argument(
        "--extra-model",
        action="append",
        default=[],
        help="another model scored in the same run (e.g. the previous default)",
    )
    p.add_argument("--no-forest", action="store_true", help="skip the ECFP4 random forest")
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="score the models only, to --merge with a report that has the baselines",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="merge these report JSONs (same protocol) into --out and print the table",
    )
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
    if args.runs is None:
        args.runs = FIXED_RUNS["quick" if args.quick else "full"]
    if args.out is None:
        args.out = RESULTS / ("property_quick.json" if args.quick else "property.json")
    if not args.data_dir and not args.merge:
        p.error(f"pass --data-dir or set {DATA_DIR_ENV}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    if args.merge:
        report = merge_reports([json.loads(p.read_text()) for p in args.merge])
        _print(report)
        write_report(report, args.out)
        print(f"\nmerged {len(args.merge)} reports; wrote {args.out}")
        return 0
    report = run_property_report(
        args.model,
        args.data_dir,
        [*(args.datasets.split(",") if args.datasets else []), *args.assays],
        seeds=args.seeds,
        max_molecules=args.max_molecules,
        max_epochs=args.max_epochs,
        patience=args.patience,
        rf_trees=args.rf_trees,
        precision=args.precision,
        probe_precision=args.probe_precision,
        jobs=args.jobs,
        protocol=args.protocol,
        fixed_split_runs=args.runs,
        fixed_split_seed=args.split_seed,
        task_type=args.task_type,
        extra_models=args.extra_model,
        forest=not args.no_forest,
        baselines=not args.no_baselines,
    )
    report["config"]["quick"] = args.quick
    _print(report)
    print(
        "\nThe paper column beside the model is InfoAlign's published score for its own "
        "checkpoint (mean of 10 runs), a target, not this model's result."
    )
    write_report(report, args.out)
    print(f"\n{len(report['results'])} runs in {report['elapsed_s']:.0f}s; wrote {args.out}")
    return 0


def _print(report: dict) -> None:
    print(report["table_markdown"])
    print()
    for m in report["margins"]:
        print(
            f"{m['dataset']} {m['protocol']}: {m['model']} vs {m['baseline']}: "
            f"{m['gain']:+.2f} ({m['gain_in_sd']} sd)"
        )


if __name__ == "__main__":
    sys.exit(main())
