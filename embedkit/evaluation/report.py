"""Property-prediction report: run the protocol for a model and its baselines, summarize.

Shared by `embedkit evaluate property` and `benchmarks/bench_property.py`, so the command a
user runs and the benchmark the docs quote are the same code.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

import embedkit
from embedkit.evaluation.datasets import BENCHMARKS
from embedkit.evaluation.probe import ProbeConfig
from embedkit.evaluation.property import (
    ecfp_methods,
    embedder_method,
    evaluate_property,
    random_init_method,
)
from embedkit.io import atomic_path

METRIC_LABEL = {"auc_pct": "ROC-AUC % ↑", "mae_x100": "MAE×100 ↓"}
# The paper's Tables 2-3 (mean over 10 runs). Its Biogen ECFP-MLP average is garbled in
# the text we have, so it is left out rather than guessed.
PAPER = {
    "model": {name: info.paper_infoalign for name, info in BENCHMARKS.items()},
    "ecfp4-mlp": {"chembl2k": 76.8, "broad6k": 63.3},
    "ecfp4-rf": {"chembl2k": 54.7, "broad6k": 55.5, "biogenadme": 52.8},
}
FULL = {"seeds": 3, "max_molecules": None, "max_epochs": 300, "patience": 50, "rf_trees": 200}
QUICK = {"seeds": 1, "max_molecules": 600, "max_epochs": 100, "patience": 20, "rf_trees": 100}


def run_property_report(
    model: str,
    data_dir: str | Path | None,
    datasets: list[str],
    seeds: int = 3,
    max_molecules: int | None = None,
    max_epochs: int = 300,
    patience: int = 50,
    rf_trees: int = 200,
    precision: str = "fp32",
    probe_precision: str = "bf16",
    jobs: int = 2,
) -> dict:
    """Score `model`, the same architecture with random weights, ECFP4 + MLP and ECFP4 + RF.

    Returns a JSON-ready report with every run, a mean ± std summary and a markdown table.
    """
    # loky recycles a worker whose memory grew (torch's allocator cache); jobs are resubmitted
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs")
    start = time.perf_counter()
    embedder = embedkit.load(
        model, device="cpu", precision=precision, task="molecules", command="evaluate property"
    )
    model_name = str(embedder.run_info.get("model_id", model))
    methods = [
        embedder_method(model_name, embedder),
        random_init_method("random-init", like=embedder, precision=precision),
        *ecfp_methods(("mlp", "rf")),
    ]
    probe = ProbeConfig(max_epochs=max_epochs, patience=patience, precision=probe_precision)
    seed_list = list(range(seeds))
    tables = [
        evaluate_property(
            name,
            methods,
            seed_list,
            data_dir,
            probe=probe,
            max_molecules=max_molecules,
            rf_trees=rf_trees,
            n_jobs=jobs,
        )
        for name in datasets
    ]
    results = pd.concat(tables, ignore_index=True)
    summary = summarize(results)
    return {
        "benchmark": "property",
        "elapsed_s": round(time.perf_counter() - start, 1),
        "config": {
            "model": model,
            "data_dir": str(data_dir),
            "datasets": datasets,
            "seeds": seed_list,
            "max_molecules": max_molecules,
            "rf_trees": rf_trees,
            "precision": precision,
            "jobs": jobs,
            "probe": probe.to_dict(),
        },
        "model": embedder.run_info,
        "environment": {
            "embedkit": embedkit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "paper": PAPER,
        "table_markdown": markdown_table(summary, model_name),
        "summary": _records(summary),
        "results": _records(results),
    }


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values (NaN -> null, NumPy scalars -> Python)."""
    return json.loads(frame.to_json(orient="records"))


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, method)."""
    grouped = results.groupby(["dataset", "method", "metric"], sort=False)["test_score"]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def markdown_table(summary: pd.DataFrame, model_name: str) -> str:
    """One row per method, two columns (ours, paper) per dataset."""
    datasets = list(dict.fromkeys(summary["dataset"]))
    metrics = dict(zip(summary["dataset"], summary["metric"], strict=False))
    header = ["method"]
    for ds in datasets:
        header += [f"{ds} {METRIC_LABEL[metrics[ds]]}", "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(summary["method"]):
        paper_key = "model" if method == model_name else method
        cells = [method]
        for ds in datasets:
            row = summary[(summary["dataset"] == ds) & (summary["method"] == method)]
            if row.empty:
                cells.append("")
            else:
                mean, std = row["mean"].iloc[0], row["std"].iloc[0]
                cells.append(f"{mean:.1f} ± {std:.1f}" if pd.notna(std) else f"{mean:.1f}")
            paper = PAPER.get(paper_key, {}).get(ds)
            cells.append("" if paper is None else f"{paper:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
