"""`python -m train.image_mae ARGS` = `python -m train vit --method mae --set
channels=cell-painting ARGS` (the older entry point of the MAE recipe, kept as an alias).

The recipe, data handling and model folder are `train.vit_mae` / `train.vit_common`'s; the
Cell Painting channel set stays the default here, as it was, and a later `--set
channels=...` overrides it.
"""

from __future__ import annotations

import sys

import click

from embedkit.cli.options import friendly_errors
from train.vit import vit

ALIAS = ["--method", "mae", "--set", "channels=cell-painting"]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@friendly_errors
def main(ctx: click.Context, args: tuple[str, ...]) -> None:
    """MAE-pretrain a Cell Painting ViT: `python -m train vit --method mae` (see its --help)."""
    vit.main([*ALIAS, *args], prog_name="python -m train.image_mae", standalone_mode=False)


if __name__ == "__main__":
    sys.exit(main())
