"""Options and error handling shared by every `embedkit` sub-command module."""

from __future__ import annotations

import functools
import sys

import click

from embedkit.errors import EmbedkitError

DEFAULT_MOLECULE_MODEL = "infoalign-gin-lincs-small"


model_option = click.option(
    "-m",
    "--model",
    default=DEFAULT_MOLECULE_MODEL,
    show_default=True,
    help="Zoo name[@revision], hf-hub:org/repo[@rev] or local-dir:PATH.",
)


def friendly_errors(func):
    """Turn EmbedkitError (and a few library errors) into one line on stderr + exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmbedkitError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except ValueError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)

    return wrapper


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the model runs.",
)

progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar.  [default: on a terminal]"
)


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress
