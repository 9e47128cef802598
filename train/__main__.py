"""`python -m train`: the pretraining commands `vit` and `publish`.

InfoAlign has its own entry point, `python -m train.infoalign`.

    python -m train vit --method mocov3 --data PLATES --metadata metadata.csv -o RUN_DIR
    torchrun --nproc-per-node 8 -m train vit --method mae ...
    python -m train publish RUN_DIR --repo-id ORG/NAME [--push]
"""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import EmbedkitGroup
from train.vit import vit


@click.group(cls=EmbedkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Pretraining recipes: `vit` trains the microscopy ViT, `publish` uploads a run."""


cli.add_command(vit)


@cli.command("publish")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo-id", default=None, help="Hugging Face Hub repo, ORG/NAME.")
@click.option("--push", is_flag=True, help="Upload; without it, only check the folder.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
def publish_cmd(run_dir: Path, repo_id: str | None, push: bool, private: bool) -> None:
    """Check RUN_DIR/model (or a model folder) and upload it to the Hub with --push."""
    from train.publish import publish
    from train.ship import model_folder

    publish(model_folder(run_dir), repo_id, push=push, private=private, log=click.echo)


if __name__ == "__main__":
    cli()
