"""Model card (README.md) for an image model trained by `train.image_mae`.

It states what the weights learned from — SIMULATED plates plus a few real fields — so
that no one mistakes the demo model for a production one.
"""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.zoo import sha256_of


def _final_loss(run_dir: Path) -> tuple[float | None, float | None, int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None, None, 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None, None, 0
    return rows[0]["loss"], rows[-1]["loss"], rows[-1]["step"]


def _data_lines(data: list[str]) -> list[str]:
    lines = []
    for spec in data:
        folder, _, mapping = spec.partition(":")
        path = Path(folder)
        readme = path / "README.txt"
        if readme.exists() and "SIMULATED" in readme.read_text()[:200]:
            lines.append(
                f"* `{path.name}`: **SIMULATED** plates from `embedkit datasets "
                f"synth-plate` (its README.txt records the config and seed)"
            )
            continue
        files = sorted(p for p in path.glob("*") if p.suffix.lower() in (".tif", ".tiff", ".png"))
        sums = ", ".join(f"{p.name} {sha256_of(p)[:12]}…" for p in files)
        mapped = f" with channels {mapping}" if mapping else " (channels by name)"
        lines.append(f"* `{path.name}`: **real** field{mapped}; files: {sums}")
    return lines


def render_image_card(model_dir: Path, run_dir: Path, name: str, command: str = "") -> str:
    config = json.loads((model_dir / "config.json").read_text())
    extra = config.get("extra", {})
    recipe = extra.get("recipe", {})
    first, last, steps = _final_loss(run_dir)
    enc = config["encoder"]
    return "\n".join(
        [
            f"# {name}",
            "",
            "**A demo model, not a production model.** It lets embedkit's image pipeline run "
            "end to end out of the box; its embeddings have learned from very little data.",
            "",
            "## What it is",
            f"* ViT (patch {enc['patch_size']}, {enc['embed_dim']}-d, depth {enc['depth']}, "
            f"{enc['num_heads']} heads; ViT-S/16 at depth 12), early fusion of "
            f"{enc['in_chans']} channels {', '.join(config['channels'])}, crops of "
            f"{config['crop_size']} px, per-crop per-channel instance normalization; "
            "embedding = mean of the patch tokens.",
            f"* Cell-line tokens: {enc['cell_line_tokens'] or 'none'}.",
            "",
            "## How it was trained",
            f"* Recipe: masked autoencoding (`train.image_mae`), mask ratio "
            f"{recipe.get('mask_ratio')}, {steps} steps of {recipe.get('batch_size')} crops, "
            f"AdamW lr {recipe.get('lr')}, bf16 autocast: {recipe.get('bf16')}.",
            f"* Reconstruction loss (masked patches, per-patch normalized pixels): "
            f"{first} at the first log → {last} at the end.",
            *([f"* Command: `{command}`"] if command else []),
            "",
            "## Data",
            *_data_lines(extra.get("data", [])),
            "",
            "No real RxRx images were reachable where this model was trained; the simulated "
            "plates are a caricature of Cell Painting (see embedkit.datasets.synthetic). "
            "Do not read biology into these embeddings.",
            "",
        ]
    )
