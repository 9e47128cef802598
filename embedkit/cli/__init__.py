"""The `embedkit` command line: a thin shell over the Python API.

One module per command group (`embedkit X` lives in `cli/X.py`); each parses arguments,
calls one job and prints a summary line. Errors the user can act on (`EmbedkitError`)
and bad options print one line and exit with code 2 (`--debug` adds the traceback). The
groups are listed here, as chemprop's main does. Command modules import heavy libraries
(torch, timm, faiss) inside their command bodies, so `embedkit --help` starts fast.
"""

from __future__ import annotations

import click

from embedkit import __version__
from embedkit.cli import datasets_registry  # noqa: F401  (adds datasets list|fetch)
from embedkit.cli.aggregate import aggregate_cmd
from embedkit.cli.cell_lines import cell_lines_group
from embedkit.cli.datasets import datasets_group
from embedkit.cli.embed_images import embed_images_cmd
from embedkit.cli.embed_smiles import embed_smiles
from embedkit.cli.evaluate import evaluate_group
from embedkit.cli.finetune import finetune_cmd
from embedkit.cli.graph import graph_group
from embedkit.cli.index import index_group
from embedkit.cli.normalize import normalize_cmd
from embedkit.cli.options import EmbedkitGroup, debug_option
from embedkit.cli.plates import plates_group
from embedkit.cli.predict import predict_cmd
from embedkit.cli.retrieve import retrieve_cmd
from embedkit.cli.zoo import zoo_group

COMMANDS = [
    embed_smiles,
    embed_images_cmd,
    plates_group,
    aggregate_cmd,
    normalize_cmd,
    index_group,
    retrieve_cmd,
    evaluate_group,
    zoo_group,
    datasets_group,
    graph_group,
    finetune_cmd,
    predict_cmd,
    cell_lines_group,
]


@click.group(cls=EmbedkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="embedkit")
@debug_option
def main(debug: bool) -> None:
    """Embeddings that carry biology: molecules and cell images, from a pinned model zoo.

    \b
    Quick start:
      embedkit embed-smiles molecules.csv -o embeddings.parquet
      embedkit zoo list
    """


for _command in COMMANDS:
    main.add_command(_command)

__all__ = ["main"]
