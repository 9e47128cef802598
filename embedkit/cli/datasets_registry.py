"""`embedkit datasets list|fetch`: public datasets through the registry (URL + sha256, cached).

The commands join the `datasets` group of `cli/datasets.py` (importing this module adds
them).
"""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.datasets import datasets_group
from embedkit.cli.options import friendly_errors

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder to cache datasets in.  [default: $EMBEDKIT_DATA_DIR, else the user "
    "cache, ~/.cache/embedkit]",
)


@datasets_group.command("list")
@_DATA_DIR
@click.option("--files", is_flag=True, help="Also list every file with its URL and sha256.")
@friendly_errors
def list_cmd(data_dir: Path | None, files: bool) -> None:
    """Registered public datasets: name, files, size, whether cached, licence."""
    from embedkit.datasets.registry import listing

    click.echo(listing(data_dir, files))


@datasets_group.command("fetch")
@click.argument("name")
@_DATA_DIR
@friendly_errors
def fetch_cmd(name: str, data_dir: Path | None) -> None:
    """Download dataset NAME (once) and verify every file's sha256; print where it is.

    Cached files are checked, not downloaded again. Offline, a missing file is one line
    naming the URL to download by hand and the path to save it as.
    """
    from embedkit.datasets.registry import fetch

    summary = fetch(name, data_dir)
    for path in summary.paths:
        click.echo(str(path))
    click.echo(summary.line())
