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
from embedkit.errors import InputError
from embedkit.evaluation.datasets import BENCHMARKS, resolve_dataset
from embedkit.evaluation.probe import ProbeConfig
from embedkit.evaluation.property import (
    AUC_LEVELS,
    FIXED_SPLIT,
    PER_SEED,
    ecfp_methods,
    embedder_method,
    evaluate_property,
    random_init_method,
)
from embedkit.io import atomic_path

COMMAND = "evaluate property"

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
FIXED_RUNS = {"full": 10, "quick": 2}  # the paper's protocol: runs on one scaffold split
PROTOCOLS = ("both", PER_SEED, FIXED_SPLIT)


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
    protocol: str = "both",
    fixed_split_runs: int = 10,
    fixed_split_seed: int = 0,
    task_type: str = "auto",
    extra_models: list[str] | tuple[str, ...] = (),
    forest: bool = True,
    baselines: bool = True,
) -> dict:
    """Score `model` (and `extra_models`), the same architecture with random weights, ECFP4
    + MLP and (with `forest`) ECFP4 + random forest, under the chosen protocol(s).

    `datasets` are benchmark names or assay-file paths (read with `task_type`). Returns a
    JSON-ready report with every run, a mean ± std summary, the model's margin over the
    random-init encoder in standard deviations, and a markdown table. `baselines=False`
    scores the models only, for `merge_reports` with a run that has the baselines (same
    protocol and settings: the baselines' rows are deterministic).
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    # loky recycles a worker whose memory grew (torch's allocator cache); jobs are resubmitted
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs")
    start = time.perf_counter()
    loaded = [resolve_dataset(spec, data_dir, task_type) for spec in datasets]  # fail early
    embedders = [
        embedkit.load(m, device="cpu", precision=precision, task="molecules", command=COMMAND)
        for m in [model, *extra_models]
    ]
    names = [
        str(e.run_info.get("model_id", m))
        for e, m in zip(embedders, [model, *extra_models], strict=True)
    ]
    model_name = names[0]
    methods = [
        *[embedder_method(n, e) for n, e in zip(names, embedders, strict=True)],
        *(
            [
                random_init_method("random-init", like=embedders[0], precision=precision),
                *ecfp_methods(("mlp", "rf") if forest else ("mlp",)),
            ]
            if baselines
            else []
        ),
    ]
    probe = ProbeConfig(max_epochs=max_epochs, patience=patience, precision=probe_precision)
    seed_list = list(range(seeds)) if protocol != FIXED_SPLIT else []
    runs = fixed_split_runs if protocol != PER_SEED else 0
    tables = [
        evaluate_property(
            data,
            methods,
            seed_list,
            probe=probe,
            max_molecules=max_molecules,
            rf_trees=rf_trees,
            n_jobs=jobs,
            fixed_split_runs=runs,
            fixed_split_seed=fixed_split_seed,
        )
        for data in loaded
    ]
    results = pd.concat(tables, ignore_index=True)
    summary = summarize(results)
    return {
        "benchmark": "property",
        "elapsed_s": round(time.perf_counter() - start, 1),
        "config": {
            "model": model,
            "extra_models": list(extra_models),
            "data_dir": str(data_dir),
            "datasets": [str(d) for d in datasets],
            "protocol": protocol,
            "seeds": seed_list,
            "fixed_split_runs": runs,
            "fixed_split_seed": fixed_split_seed,
            "task_type": task_type,
            "max_molecules": max_molecules,
            "rf_trees": rf_trees if forest else None,
            "precision": precision,
            "jobs": jobs,
            "probe": probe.to_dict(),
            "baselines": baselines,
        },
        "model": embedders[0].run_info,
        "extra_models": [e.run_info for e in embedders[1:]],
        "environment": {
            "embedkit": embedkit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "paper": PAPER,
        "table_markdown": markdown_table(summary, model_name),
        "margins": margins(summary, names),
        "summary": _records(summary),
        "results": _records(results),
    }


MERGE_KEYS = ("protocol", "seeds", "fixed_split_runs", "fixed_split_seed", "max_molecules", "probe")


def merge_reports(reports: list[dict]) -> dict:
    """One report from several runs of the same protocol (e.g. a new model scored without
    baselines, beside an earlier run that has them); refuses differing settings."""
    first = reports[0]
    for other in reports[1:]:
        for key in MERGE_KEYS:
            if other["config"].get(key) != first["config"].get(key):
                raise InputError(
                    f"cannot merge reports with different {key}: "
                    f"{first['config'].get(key)!r} vs {other['config'].get(key)!r}"
                )
    results = pd.DataFrame([row for r in reports for row in r["results"]])
    results = results.drop_duplicates(subset=["dataset", "protocol", "method", "seed"])
    summary = summarize(results)
    models = [r["model"].get("model_id") for r in reports] + [
        m.get("model_id") for r in reports for m in r.get("extra_models", [])
    ]
    models = list(dict.fromkeys(m for m in models if m))
    return {
        **first,
        "merged_from": [r["config"] for r in reports],
        "models": [r["model"] for r in reports],
        "elapsed_s": round(sum(r["elapsed_s"] for r in reports), 1),
        "table_markdown": markdown_table(summary, models[-1]),
        "margins": margins(summary, models),
        "summary": _records(summary),
        "results": _records(results),
    }


def write_report(report: dict, path: str | Path) -> Path:
    """The report with the run's provenance (software versions, portable paths)."""
    from embedkit.provenance import stamp

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stamp(report), indent=2, allow_nan=False) + "\n")
    return path


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values (NaN -> null, NumPy scalars -> Python)."""
    return json.loads(frame.to_json(orient="records"))


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over runs per (dataset, protocol, method), with the mean task shares."""
    keys = ["dataset", "protocol", "method", "metric"]
    grouped = results.groupby(keys, sort=False)
    summary = grouped["test_score"].agg(["mean", "std", "count"])
    shares = grouped[[f"tasks_auc_ge_{lv}" for lv in AUC_LEVELS]].mean()
    return summary.join(shares).reset_index()


def margins(summary: pd.DataFrame, models: list[str]) -> list[dict]:
    """Each model against random-init and ECFP4 + MLP: the difference in the metric's
    better direction and in standard deviations (the larger of the two methods' std)."""
    out = []
    for (dataset, protocol), part in summary.groupby(["dataset", "protocol"], sort=False):
        by = part.set_index("method")
        sign = 1.0 if part["metric"].iloc[0] == "auc_pct" else -1.0
        for model in models:
            if model not in by.index:
                continue
            for baseline in ("random-init", "ecfp4-mlp"):
                if baseline not in by.index or baseline == model:
                    continue
                gain = sign * (by.at[model, "mean"] - by.at[baseline, "mean"])
                sd = max(by.at[model, "std"], by.at[baseline, "std"])
                out.append(
                    {
                        "dataset": dataset,
                        "protocol": protocol,
                        "model": model,
                        "baseline": baseline,
                        "gain": round(float(gain), 3),
                        "gain_in_sd": round(float(gain / sd), 2) if sd > 0 else None,
                    }
                )
    return out


def markdown_table(summary: pd.DataFrame, model_name: str) -> str:
    """Per protocol, one row per method: mean ± std and the paper's number per dataset,
    plus the % of tasks with AUC ≥ 80 / 85 / 90 for classification datasets."""
    blocks = []
    for protocol in dict.fromkeys(summary["protocol"]):
        part = summary[summary["protocol"] == protocol]
        runs = int(part["count"].max())
        title = (
            f"**{FIXED_SPLIT}**: {runs} runs on one scaffold split (the paper's protocol)"
            if protocol == FIXED_SPLIT
            else f"**{PER_SEED}**: {runs} seed{'s' * (runs != 1)}, each a new scaffold split "
            "and head"
        )
        blocks.append(title + "\n\n" + _protocol_table(part, model_name))
    return "\n\n".join(blocks)


def _protocol_table(summary: pd.DataFrame, model_name: str) -> str:
    datasets = list(dict.fromkeys(summary["dataset"]))
    metrics = dict(zip(summary["dataset"], summary["metric"], strict=False))
    header = ["method"]
    for ds in datasets:
        header += [f"{ds} {METRIC_LABEL[metrics[ds]]}", "paper"]
        if metrics[ds] == "auc_pct":
            header.append(f"{ds} tasks ≥ AUC 80/85/90 %")
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
            if metrics[ds] == "auc_pct":
                shares = (
                    [] if row.empty else [row[f"tasks_auc_ge_{lv}"].iloc[0] for lv in AUC_LEVELS]
                )
                cells.append(" / ".join(f"{v:.0f}" for v in shares))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
