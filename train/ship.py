"""Ship a trained model folder inside the package as a zoo entry (fp16 weights + card).

    python -m train.ship RUN_DIR --name NAME --summary "..."

RUN_DIR is a run folder holding `model/` or a model folder itself; its kind comes from the
architecture in config.json (`embedkit.registry`), so every registered kind ships the same
way. The weights are cast to fp16 to stay small; the card (`embedkit/zoo/<name>.card.json`)
pins each file's sha256, so `embedkit.load(name)` verifies them.

The shipped README.md is a Hub model card (`embedkit.zoo.hub_card`): front matter from the
card, the usage of the kind's task under NAME and, for image encoders, the timm recipe.

    python -m train.ship embedkit/zoo --name NAME --card-only

rewrites only that README (and lowercases the card's licence id): the weights stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from huggingface_hub import ModelCard

from embedkit.errors import InputError
from embedkit.images.model import ARCHITECTURE as IMAGE_ARCHITECTURE
from embedkit.images.timm_export import card_lines
from embedkit.io import atomic_path
from embedkit.registry import kind_of_folder
from embedkit.zoo import CARD_SUFFIX, SHIPPED_DIR, sha256_of
from embedkit.zoo.hub_card import (
    FRONT,
    HUB_LICENSES,
    card_data,
    hub_license,
    put_section,
    render,
    section,
    usage_lines,
)

# Tags of a README that had no front matter, by task.
DEFAULT_TAGS = {
    "molecules": ["molecules", "molecular-representation"],
    "images": ["images", "microscopy", "cell-painting", "vision-transformer"],
}
SHIPPED_NOTE = """
## As shipped in embedkit (`{name}`)

* Weights are stored as **float16** safetensors (cast from the training result above to
  keep the package small); embedkit upcasts them to fp32 when loading.
* Licence `{license}` is embedkit's choice for these weights; the data they learned from
  carries its own terms (listed above). Check them against your use.
"""


def model_folder(run_dir: Path) -> Path:
    """`RUN_DIR/model` when the run has one, else RUN_DIR itself (a bare model folder)."""
    inner = Path(run_dir) / "model"
    return inner if (inner / "config.json").is_file() else Path(run_dir)


def ship(
    run_dir: Path,
    name: str,
    summary: str,
    license_: str,
    hub_repo: str,
    provenance: dict | None = None,
    metrics: dict | None = None,
    note: str = "",
    zoo_dir: Path = SHIPPED_DIR,
) -> Path:
    """Write zoo_dir/<name>/ (fp16 weights, config, README) and zoo_dir/<name>.card.json."""
    folder = model_folder(run_dir)
    kind = kind_of_folder(folder)
    model = kind.model_class().from_pretrained(folder)
    license_ = hub_license(license_)["license"] if license_.lower() in HUB_LICENSES else license_
    readme = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    readme += f"\n{note}\n" if note else ""
    extra = model.config().get("extra", {})
    recorded = {k: extra[k] for k in ("data", "simulated", "recipe") if k in extra}
    card = {
        "name": name,
        "task": kind.task,
        "architecture": kind.architecture,
        "embedding_dim": model.embedding_dim,
        "hub_repo": hub_repo,
        "license": license_,
        "summary": summary,
        "citation": f"{kind.citation}; this checkpoint was trained by embedkit's train recipe.",
        "input": model.input_spec(),
        "provenance": {**recorded, **(provenance or {})},
        "metrics": metrics or {},
    }
    target = zoo_dir / name
    model.save_pretrained(target, dtype=torch.float16)
    with atomic_path(target / "README.md") as tmp:
        tmp.write_text(shipped_readme(readme, card, model.config()))
    files = {f: sha256_of(target / f) for f in ("config.json", "model.safetensors")}
    card = {**card, "revision": "unpublished", "files": files, "shipped": True}
    card_path = zoo_dir / f"{name}.card.json"
    with atomic_path(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def shipped_readme(readme: str, card: dict, config: dict) -> str:
    """The shipped folder's README.md: Hub front matter from the card (its licence, the
    README's own tags if it had front matter), the usage of the kind's own task under the
    shipped name, the timm recipe for image encoders, and the as-shipped note. Generated
    sections are replaced, so shipping or refreshing again gives the same text."""
    name, architecture = card["name"], card["architecture"]
    tags = list(ModelCard(readme).data.tags or []) if FRONT.match(readme) else []
    tags = tags or DEFAULT_TAGS.get(card["task"], [card["task"]])
    body = FRONT.sub("", readme, count=1).lstrip("\n")
    if not body.strip():
        body = f"# {name}\n\n{card.get('summary', '')}\n"
    if card.get("provenance", {}).get("simulated"):
        tags = [*tags, "simulated-data"]
    body = put_section(body, "use", section("use", usage_lines(architecture, name)), first=True)
    if architecture == IMAGE_ARCHITECTURE:
        timm = section("timm", card_lines(config, name))
        body = put_section(body, "timm", timm, first=True, after="use")
    note = SHIPPED_NOTE.format(name=name, license=card["license"]).strip("\n")
    if "## As shipped in embedkit" not in FRONT.sub("", readme) or "embedkit:shipped" in body:
        body = put_section(body, "shipped", section("shipped", note.split("\n")))
    tags = [*tags, card["task"], "safetensors"]
    return render(card_data(architecture, card["license"], tags), body)


def refresh_card(name: str, zoo_dir: Path = SHIPPED_DIR) -> Path:
    """Rewrite zoo_dir/<name>/README.md (and the card's licence id) from the card and the
    shipped config.json; the weights and the files the card pins are not touched."""
    card_path = zoo_dir / f"{name}{CARD_SUFFIX}"
    if not card_path.is_file():
        raise InputError(f"no shipped card {card_path}; ship the model first")
    card = json.loads(card_path.read_text())
    folder = zoo_dir / name
    if card["license"].lower() in HUB_LICENSES:
        card["license"] = card["license"].lower()
        with atomic_path(card_path) as tmp:
            tmp.write_text(json.dumps(card, indent=2) + "\n")
    config = json.loads((folder / "config.json").read_text())
    readme = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    with atomic_path(folder / "README.md") as tmp:
        tmp.write_text(shipped_readme(readme, card, config))
    return folder / "README.md"


def _json_file(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path else {}


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Zoo name of the entry.")
@click.option("--summary", default=None, help="One line for `embedkit zoo list` (required).")
@click.option("--license", "license_", default="cc-by-4.0", show_default=True)
@click.option("--hub-repo", default=None, help="[default: embedkit/NAME]")
@click.option(
    "--provenance",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="JSON file with data/recipe provenance to copy into the card.",
)
@click.option(
    "--metrics",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="JSON file with metrics to copy into the card.",
)
@click.option(
    "--note",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Markdown file appended to the shipped README (what is real, what is simulated).",
)
@click.option(
    "--card-only",
    is_flag=True,
    help="Only rewrite the README.md of the shipped entry NAME (RUN_DIR is its zoo folder, "
    "e.g. embedkit/zoo); the weights and pinned files stay as they are.",
)
def main(run_dir, name, summary, license_, hub_repo, provenance, metrics, note, card_only) -> None:
    """Ship RUN_DIR (a run folder with model/, or a model folder) into embedkit/zoo/."""
    if card_only:
        click.echo(f"wrote {refresh_card(name, Path(run_dir))}")
        return
    if not summary:
        raise click.UsageError("Missing option '--summary'.")
    path = ship(
        run_dir,
        name,
        summary,
        license_,
        hub_repo or f"embedkit/{name}",
        _json_file(provenance),
        _json_file(metrics),
        note.read_text() if note else "",
    )
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
