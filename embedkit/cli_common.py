"""Options and error handling shared by every `embedkit` sub-command module."""

from __future__ import annotations

import functools
import sys

import click

from embedkit.errors import EmbedkitError

DEFAULT_MOLECULE_MODEL = "infoalign-gin-lincs-small"


def model_option_for(default: str):
    """`-m/--model` with the default model of a command's modality."""
    return click.option(
        "-m",
        "--model",
        default=default,
        show_default=True,
        help="Zoo name[@revision], hf-hub:org/repo[@rev] or local-dir:PATH.",
    )


model_option = model_option_for(DEFAULT_MOLECULE_MODEL)


def batch_size_option(default: int, what: str):
    return click.option(
        "-b",
        "--batch-size",
        default=default,
        show_default=True,
        type=click.IntRange(min=1),
        help=f"{what} per batch.",
    )


def precision_option(help_text: str):
    return click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16"]),
        default="fp32",
        show_default=True,
        help=help_text,
    )


def num_workers_option(help_text: str):
    return click.option(
        "-n", "--num-workers", default=None, type=click.IntRange(min=0), help=help_text
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
