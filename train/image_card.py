"""README.md (Hub front matter + model card) for an image model trained by `python -m train vit`.

It says what the weights learned from and how: the method, the data (SIMULATED plates
named as such, real fields with their files' sha256), the sites used and left out, the
steps, the graph and cell-line-token settings, the first and final metrics, and the
command that reproduces the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.datasets.synthetic.writing import simulated_root
from embedkit.images.timm_export import card_lines
from embedkit.io import atomic_path
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import card_data, render, section, usage_lines
from train.loop import Run, read_metrics

TAGS = ["microscopy", "cell-painting", "vision-transformer", "safetensors"]
CITATION = (
    "Integrating Biological Knowledge for Robust Microscopy Image Profiling on De Novo Cell "
    "Lines (Chen, Pham, Wang, Zhang; ICCV 2025): ViT-S/16 pretraining with a perturbation "
    "relational graph and cell-line tokens; recipe reimplemented by embedkit's train package."
)
SKIP = {"step", "lr", "seconds", "epoch_seconds", "epoch"}
SHOW_FILES = 5


def _data_lines(data: list[str]) -> list[str]:
    lines = []
    for spec in data:
        folder, _, mapping = spec.partition(":")
        path = Path(folder)
        mapped = f", channels {mapping}" if mapping else ""
        if simulated_root(path) is not None:
            lines.append(
                f"* `{path.name}`{mapped}: **SIMULATED** plates from `embedkit datasets "
                "synth-plate` (its README.txt records the config and seed)"
            )
            continue
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".tif", ".tiff", ".png"))
        sums = ", ".join(f"{p.name} {sha256_of(p)[:12]}…" for p in files[:SHOW_FILES])
        more = f" and {len(files) - SHOW_FILES} more" if len(files) > SHOW_FILES else ""
        lines.append(f"* `{path.name}`{mapped}: **real** images; {len(files)} files: {sums}{more}")
    return lines


def _metrics_lines(records: list[dict], unit: str = "images") -> list[str]:
    if not records:
        return ["No step was logged."]
    first, last = records[0], records[-1]
    keys = [k for k in last if k not in SKIP and not k.endswith("_per_second")]
    rows = ["| Metric | First step | Final step |", "|---|---|---|"]
    for key in keys:
        a, b = first.get(key), last.get(key)
        rows.append(f"| {key} | {'' if a is None else f'{a:.5g}'} | {b:.5g} |")
    rate = [r.get(f"{unit}_per_second") for r in records if r.get(f"{unit}_per_second")]
    rows += ["", f"Steps {first['step']} → {last['step']}."]
    if rate:
        rows[-1] += f" Throughput {sum(rate) / len(rate):.1f} {unit}/s (mean over the records)."
    return rows


def _coverage_lines(coverage: dict) -> list[str]:
    if not coverage:
        return []
    return [f"  * coverage of the label vocabulary: `{json.dumps(coverage)}`"]


def render_image_card(
    model_dir: Path, run: Run, command: str = "", description: str = "", license: str = "other"
) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    extra = config.get("extra", {})
    recipe, training = extra.get("recipe", {}), extra.get("training", {})
    enc = config["encoder"]
    method = recipe.get("method", "?")
    simulated = extra.get("simulated")
    tags = [*TAGS, method, *(["simulated-data"] if simulated else [])]
    sites = training.get("sites", {})
    tokens = enc["cell_line_tokens"]
    lines_used = training.get("cell_lines") or []
    partial = run.step < run.total_steps
    spec = "local-dir:/path/to/this/folder"
    body = [
        f"# Microscopy ViT pretrained with {method} (embedkit)",
        "",
        *(
            [
                f"> **SIMULATED data.** This model was {simulated}. It demonstrates the recipe; "
                "do not read biology into its embeddings.",
                "",
            ]
            if simulated
            else []
        ),
        *(
            [f"> **Partial run:** stopped at step {run.step} of {run.total_steps}.", ""]
            if partial
            else []
        ),
        section("use", usage_lines(config["architecture"], spec)),
        "",
        section("timm", card_lines(config, spec)),
        "",
        "## Encoder",
        "",
        f"* ViT (patch {enc['patch_size']}, {enc['embed_dim']}-d, depth {enc['depth']}, "
        f"{enc['num_heads']} heads; ViT-S/16 at 384-d × 12), early fusion of "
        f"{enc['in_chans']} channels ({', '.join(config['channels'])}), crops of "
        f"{config['crop_size']} px, per-crop per-channel instance normalization; "
        "embedding = mean of the patch tokens (CLS and cell-line tokens act through "
        "attention only).",
        (
            f"* Cell-line tokens: {tokens}, projected from {enc['cell_line_dim']}-d embeddings "
            f"(`{training.get('cell_line_embeddings')}`; its {len(config.get('cell_lines', {}))} "
            f"lines are stored in config.json, so `--cell-line NAME` works for any of them, "
            f"including lines never imaged in training). Trained on: {', '.join(lines_used)}."
            if tokens
            else "* Cell-line tokens: none."
        ),
        f"* Training crops are random resized crops of {recipe.get('crop_scale_min')}–"
        f"{recipe.get('crop_scale_max')} of a field's area resampled to {config['crop_size']} "
        "px; `embed-images --crop-mode full` embeds at that scale, the default tiles at the "
        "native (finer) one.",
        "",
        "## Training",
        "",
        f"* Method: {description or method}.",
        f"* Steps: {run.step} of {run.total_steps} planned; {recipe.get('batch_size')} sites "
        f"per step ({training.get('processes', 1)} process(es), accumulate "
        f"{recipe.get('accumulate')}); bf16 autocast: {recipe.get('bf16')}.",
        *(
            [f"* Resumed from a checkpoint at step {run.resumed_from}."]
            if run.resumed_from is not None
            else []
        ),
        "* Data:",
        *["  " + line for line in _data_lines(extra.get("data", []))],
        (
            "* No metadata: every complete site, no labels."
            if not training.get("metadata")
            else f"* Metadata `{training['metadata']}`, no label column."
            if not training.get("label_column")
            else f"* Metadata `{training['metadata']}`, label column "
            f"`{training['label_column']}` ({training.get('labels')} labels)."
        ),
        f"* Sites: `{json.dumps(sites)}`.",
        (
            f"* Graph regularization: `{recipe.get('graph_loss')}` loss on the per-"
            f"perturbation mean features, weight {recipe.get('graph_weight')}, temperature "
            f"{recipe.get('graph_temperature')}, graph `{training.get('graph')}`."
            if training.get("graph")
            else "* Graph regularization: none."
        ),
        *_coverage_lines(training.get("graph_coverage") or {}),
        "",
        "### Command",
        "",
        "```bash",
        command or "(not recorded)",
        "```",
        "",
        "### Recipe",
        "",
        "| Setting | Value |",
        "|---|---|",
        *[f"| {k} | {json.dumps(v)} |" for k, v in recipe.items()],
        "",
        "## Metrics (training)",
        "",
        *_metrics_lines(read_metrics(run.out)),
        "",
        "## Limitations",
        "",
        "* Frozen-embedding benchmarks must compare with a randomly initialized encoder of "
        "the same architecture.",
        *(
            [
                "* No real RxRx images were reachable where this model was trained; the "
                "simulated plates are a caricature of Cell Painting (embedkit.datasets."
                "synthetic)."
            ]
            if simulated
            else []
        ),
        "",
        "## Citation",
        "",
        CITATION,
        "",
    ]
    return render(card_data(config["architecture"], license, tags), "\n".join(body))


def write_image_card(folder: Path, run: Run, command: str = "", description: str = "") -> Path:
    path = Path(folder) / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_image_card(folder, run, command, description))
    return path
