"""Ship a trained model folder inside the package as a zoo entry (fp16 weights + card).

    python -m train.ship RUN_DIR --name NAME --summary "..."

RUN_DIR is a run folder holding `model/` or a model folder itself; its kind comes from the
architecture in config.json (`embedkit.registry`), so every registered kind ships the same
way. The weights are cast to fp16 to stay small; the card (`embedkit/zoo/<name>.card.json`)
pins each file's sha256, so `embedkit.load(name)` verifies them.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from embedkit.io import atomic_path
from embedkit.registry import kind_of_folder
from embedkit.zoo import SHIPPED_DIR, sha256_of

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
    readme = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    readme += SHIPPED_NOTE.format(name=name, license=license_) + (f"\n{note}\n" if note else "")
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
        tmp.write_text(readme)
    files = {f: sha256_of(target / f) for f in ("config.json", "model.safetensors")}
    card = {**card, "revision": "unpublished", "files": files, "shipped": True}
    card_path = zoo_dir / f"{name}.card.json"
    with atomic_path(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def _json_file(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path else {}


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Zoo name of the entry.")
@click.option("--summary", required=True, help="One line for `embedkit zoo list`.")
@click.option("--license", "license_", default="CC-BY-4.0", show_default=True)
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
def main(run_dir, name, summary, license_, hub_repo, provenance, metrics, note) -> None:
    """Ship RUN_DIR (a run folder with model/, or a model folder) into embedkit/zoo/."""
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
