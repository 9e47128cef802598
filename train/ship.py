"""Ship a trained model folder inside the package as a zoo entry (fp16 weights + card).

    python -m train.ship RUN_DIR --name infoalign-gin-lincs-small --summary "..."

Copies the weights (cast to fp16 to stay small), the model card README.md, and writes
`zoo/<name>.card.json` with each file's sha256, so `embedkit.load(name)` verifies them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import torch

from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import sha256_of

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"

SHIPPED_NOTE = """
## As shipped in embedkit (`{name}`)

* Weights are stored as **float16** safetensors (cast from the fp32 training result above
  to keep the package small); embedkit upcasts them to fp32 when loading.
* Everything this model learned from is **real public data**; nothing is simulated. It is
  tiny next to the paper's pretraining set (≈10k molecules, a few hundred profiles, no
  JUMP / Bray feature matrices, no CRISPR/ORF gene profiles), so expect it to be far from
  the published InfoAlign checkpoint. Its property-prediction results, beside an untrained
  encoder of the same architecture and ECFP4, are in embedkit's `docs/molecules.md`.
* ChEMBL2K molecules were removed from the graph (by InChIKey-14, whatever their source),
  because their labels are targets and the graph has compound–target edges.
* Licence `{license}` is embedkit's choice for these weights; some inputs carry their own
  terms (CMEA profiles: GPL-2 R package; InfoAlign benchmark files: no licence file).
  Check them against your use.
"""


IMAGE_NOTE = """
## As shipped in embedkit (`{name}`)

* Weights are stored as **float16** safetensors; embedkit upcasts them to fp32 on loading.
* Licence `{license}` is embedkit's choice for these weights. The real fields they saw are
  BSD-3-Clause (JUMP / Phenix) and the Bray et al. field (see the cloome licence).
"""


def _write_entry(model, target: Path, readme: str, card: dict, zoo_dir: Path) -> Path:
    """fp16 weights + config + README into zoo/<name>/, and the card with their sha256."""
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(target, dtype=torch.float16)
    (target / "README.md").write_text(readme)
    files = {f: sha256_of(target / f) for f in ("config.json", "model.safetensors")}
    card = {**card, "revision": "unpublished", "files": files, "shipped": True}
    card_path = zoo_dir / f"{card['name']}.card.json"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def ship_image(
    run_dir: Path,
    name: str,
    summary: str,
    license_: str,
    hub_repo: str,
    zoo_dir: Path = ZOO_DIR,
    command: str = "",
) -> Path:
    """The image counterpart of `ship`: run_dir is a `train.image_mae` output folder."""
    from embedkit.images.model import ImageModel
    from train.image_card import render_image_card

    model = ImageModel.from_pretrained(run_dir / "model")
    target = zoo_dir / name
    card_text = render_image_card(run_dir / "model", run_dir, name, command)
    card = {
        "name": name,
        "task": "images",
        "architecture": "embedkit-vit",
        "embedding_dim": model.embedding_dim,
        "hub_repo": hub_repo,
        "license": license_,
        "summary": summary,
        "citation": "Masked autoencoders (He et al. 2022) as run by the microscopy seed paper; "
        "trained by embedkit's train.image_mae recipe. A demo, not a production model.",
        "input": {
            "channels": model.channels,
            "channel_aliases": model.channel_aliases,
            "crop_size": model.crop_size,
            "bit_depth": "8- or 16-bit (scaled by the dtype's maximum, then normalised)",
            "normalisation": model.normalisation,
        },
        "provenance": {"data": model.extra.get("data", []), "simulated": True},
    }
    readme = card_text + IMAGE_NOTE.format(name=name, license=license_)
    return _write_entry(model, target, readme, card, zoo_dir)


def ship(
    run_dir: Path,
    name: str,
    summary: str,
    license_: str,
    hub_repo: str,
    provenance: dict,
    metrics: dict,
    zoo_dir: Path = ZOO_DIR,
) -> Path:
    model = InfoAlignModel.from_pretrained(run_dir)
    readme = (run_dir / "README.md").read_text() if (run_dir / "README.md").exists() else ""
    card = {
        "name": name,
        "task": "molecules",
        "architecture": "infoalign-gin",
        "embedding_dim": model.embedding_dim,
        "hub_repo": hub_repo,
        "license": license_,
        "summary": summary,
        "citation": (
            "Liu G. et al., Learning Molecular Representation in a Cell, ICLR 2025 "
            "(InfoAlign); this checkpoint was trained by embedkit's train recipe."
        ),
        "input": {
            "type": "SMILES",
            "featurizer": "RDKit → OGB 9 atom / 3 bond integer features",
            "embedding": "mu of q(z|x)",
        },
        "provenance": provenance,
        "metrics": metrics,
    }
    readme += SHIPPED_NOTE.format(name=name, license=license_)
    return _write_entry(model, zoo_dir / name, readme, card, zoo_dir)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--summary", required=True)
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
def main(run_dir, name, summary, license_, hub_repo, provenance, metrics) -> None:
    """Ship RUN_DIR (an InfoAlign model folder, or a train.image_mae run) into zoo/."""
    if (run_dir / "model" / "config.json").exists():
        path = ship_image(run_dir, name, summary, license_, hub_repo or f"embedkit/{name}")
        click.echo(f"wrote {path}")
        return
    prov = json.loads(provenance.read_text()) if provenance else {}
    mets = json.loads(metrics.read_text()) if metrics else {}
    path = ship(run_dir, name, summary, license_, hub_repo or f"embedkit/{name}", prov, mets)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
