"""RUN_DIR/report.json, report.md and report.png of a fine-tuning run.

report.json (plain JSON; accuracies are fractions in [0, 1]):

    {"runs": [{"condition": "pretrained" | "random-init" | "nearest-centroid",
               "seed": 42, "top1": …, "top5": …, "top10": …, "val_top1": …,
               "best_epoch": …, "epochs": …, "seconds": …, "peak_rss_mb": …,
               "start_weights_sha256": …, "train_sites": …, "val_sites": …,
               "test_sites": …}, …],
     "summary": {condition: {"top1_mean": …, "top1_std": …, "top5_mean": …, …, "runs": n}},
     "best": {"condition": …, "seed": …, "val_top1": …, "model": "model"},
     "model": {...}, "data": {...}, "labels": {...}, "splits": {...}, "settings": {...},
     "graph": {...} | null, "cell_line": {...} | null, "embedkit_version": …,
     "command": …, "seconds": …}

top-k with k at least the number of classes is 1 by definition (`labels.classes` says how
many there are). report.md is the summary table, the plot and what the run was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from embedkit.plots import save_figure

METRICS = ("top1", "top5", "top10")


def summarize(runs: list[dict]) -> dict:
    """Mean and standard deviation (ddof 0) of each metric per condition, in run order."""
    out: dict[str, dict] = {}
    for condition in dict.fromkeys(r["condition"] for r in runs):
        rows = [r for r in runs if r["condition"] == condition]
        entry: dict = {"runs": len(rows)}
        for metric in METRICS:
            values = np.array([r[metric] for r in rows], dtype=float)
            entry[f"{metric}_mean"] = float(np.mean(values))
            entry[f"{metric}_std"] = float(np.std(values))
        out[condition] = entry
    return out


def _clean(value):
    """NaN/inf → None, so report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def write_report(folder: Path, report: dict) -> None:
    """report.json, report.png and report.md into `folder`."""
    folder = Path(folder)
    (folder / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    plotted = plot(report, folder / "report.png")
    (folder / "report.md").write_text(markdown(report, "report.png" if plotted else None))


def plot(report: dict, path: Path) -> bool:
    """Test top-1 and top-5 per condition: one point per seed, the mean as a bar."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a dependency; a broken install costs the plot only
        return False
    runs = report["runs"]
    conditions = list(dict.fromkeys(r["condition"] for r in runs))
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(conditions), 3.2), sharey=False)
    for ax, metric in zip(axes, ("top1", "top5"), strict=True):
        for i, condition in enumerate(conditions):
            values = [r[metric] for r in runs if r["condition"] == condition]
            ax.bar(i, np.mean(values), color=f"C{i}", alpha=0.35, width=0.6)
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), values, color=f"C{i}", s=14, zorder=3)
        ax.set_xticks(range(len(conditions)), conditions, rotation=15)
        ax.set_ylabel(f"test {metric} accuracy")
        ax.set_ylim(0, max(0.05, max(r[metric] for r in runs) * 1.15))
        ax.grid(axis="y", alpha=0.3)
    splits = report.get("splits", {})
    fig.suptitle(
        f"{report['labels']['classes']} classes, {splits.get('shots', '?')} shot(s), "
        f"{len(splits.get('seeds', []))} seed(s)",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path)  # atomic, format by suffix (embedkit.plots)
    plt.close(fig)
    return True


def markdown(report: dict, image: str | None) -> str:
    splits = report["splits"]
    labels = report["labels"]
    lines = [
        "# Few-shot fine-tuning report",
        "",
        f"- model: `{report['model'].get('spec')}` ({report['model'].get('architecture')})",
        f"- input: {report['input']}; labels `{labels['column']}`, {labels['classes']} classes",
        f"- split: {splits['condition']}, {splits.get('shots')} shot(s), "
        f"{splits.get('validation')} validation site(s) per class, seeds "
        f"{', '.join(map(str, splits['seeds']))}",
        f"- excluded perturbations: {splits['excluded_count']}",
        f"- settings: {_settings_line(report['settings'])}",
    ]
    if report.get("graph"):
        g = report["graph"]
        c = g["coverage"]
        lines.append(
            f"- graph loss: {g['loss']} × {g['weight']:g}, covering {c['covered']} of "
            f"{c['labels']} classes"
        )
    if report.get("cell_line"):
        lines.append(
            f"- cell line: {report['cell_line']['name']} ({report['cell_line']['source']})"
        )
    lines += [
        "",
        "| condition | runs | top-1 | top-5 | top-10 |",
        "|---|---|---|---|---|",
    ]
    for condition, s in report["summary"].items():
        cells = [f"{s[f'{m}_mean']:.4f} ± {s[f'{m}_std']:.4f}" for m in METRICS]
        lines.append(f"| {condition} | {s['runs']} | {' | '.join(cells)} |")
    best = report.get("best")
    if best:
        val = "n/a" if best["val_top1"] is None else f"{best['val_top1']:.4f}"
        lines += [
            "",
            f"`model/` is the {best['condition']} run of seed {best['seed']} (validation "
            f"top-1 {val}); `seeds/seed-<s>/` holds every seed's model, `history.csv` the "
            "training curves.",
        ]
    if image:
        lines += ["", f"![test accuracy per condition and seed]({image})"]
    lines += [
        "",
        "Accuracies are fractions of the test sites; mean ± standard deviation over seeds. "
        "Every seed starts again from the same weights (`start_weights_sha256` in "
        "report.json).",
        "",
    ]
    return "\n".join(lines)


def _settings_line(settings: dict) -> str:
    keys = ("epochs", "patience", "batch_size", "lr", "weight_decay", "linear_probe", "precision")
    return ", ".join(f"{k} {settings[k]}" for k in keys if k in settings)
