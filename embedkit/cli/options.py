"""Options and error handling shared by every `embedkit` sub-command module.

One error style for every command: embedkit's own input errors (`EmbedkitError`) and bad
options print one line, `error: <what went wrong and what to do>`, on stderr and exit
with code 2. Anything else is a bug and keeps its traceback. `embedkit --debug` (or
EMBEDKIT_DEBUG=1) prints the traceback of input errors too.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from pathlib import Path

import click
from click.core import ParameterSource
from click.exceptions import NoArgsIsHelpError

from embedkit.errors import EmbedkitError, InputError

DEFAULT_MOLECULE_MODEL = "infoalign-gin-lincs-small"
# The library's choice lists, copied so that --help imports no torch; a test keeps them equal.
PRECISIONS = ("fp32", "bf16")  # embedkit.embedder.PRECISIONS
ON_ERROR_CHOICES = ("nan", "raise", "drop")  # embedkit.molecules.jobs.ON_ERROR_CHOICES
DEFAULT_IMAGE_MODEL = "vit-s16-cellpaint-demo"

# Choices the parser needs before any library is imported (parsing must not import pandas,
# torch…); tests/test_cli.py keeps them equal to images.discovery.LAYOUTS and
# profiles.normalize.NORMALIZERS.
LAYOUTS = ("auto", "rxrx", "phenix", "channel-names", "index-csv", "pattern")
NORMALIZE_METHODS = ("standardize", "mad_robustize", "pca_centerscale", "tvn")


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
        type=click.Choice(list(PRECISIONS)),
        default="fp32",
        show_default=True,
        help=help_text,
    )


def num_workers_option(help_text: str):
    return click.option(
        "-n", "--num-workers", default=None, type=click.IntRange(min=0), help=help_text
    )


DEBUG_ENV = "EMBEDKIT_DEBUG"

debug_option = click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    help=f"Print the traceback of input errors too (or set {DEBUG_ENV}=1).",
)


def debug_enabled() -> bool:
    """`embedkit --debug` on the root command, or EMBEDKIT_DEBUG=1."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


class OneLineError(click.ClickException):
    """Shown as `error: <message>` on stderr, exit code 2 (click's usage-error code)."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


def one_line_error(err: EmbedkitError) -> OneLineError:
    """An EmbedkitError as one line; with --debug its traceback is printed first."""
    if debug_enabled():
        traceback.print_exception(err, file=sys.stderr)
    return OneLineError(str(err))


def usage_error(err: click.UsageError) -> OneLineError:
    """A bad option or argument, in the same one-line style, pointing at --help."""
    path = err.ctx.command_path if err.ctx is not None else "embedkit"
    message = err.format_message().rstrip(".")
    return OneLineError(f"{message} (see '{path} --help')")


def friendly_errors(func):
    """Turn EmbedkitError into one line on stderr + exit code 2; other errors propagate.

    The root command (`EmbedkitGroup`) does the same for every sub-command; this decorator
    keeps a command's errors one line when it is invoked on its own."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmbedkitError as err:
            raise one_line_error(err) from err

    return wrapper


def _one_line_warnings(previous):
    """A `warnings.showwarning` that prints embedkit's own warnings as `warning: …` lines
    (no source line); other libraries' warnings go to `previous`, which says where they
    come from."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if category.__module__.startswith("embedkit"):
            click.echo(f"warning: {message}", file=file, err=file is None)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


class EmbedkitGroup(click.Group):
    """The root command: one error style for every sub-command, bad options included."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as err:
            raise usage_error(err) from err

    def invoke(self, ctx):
        previous = warnings.showwarning
        warnings.showwarning = _one_line_warnings(previous)
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as err:
            raise usage_error(err) from err
        except EmbedkitError as err:
            raise one_line_error(err) from err
        finally:  # the hook is the command's only: a caller's own hook is back afterwards
            warnings.showwarning = previous


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


PROFILE_ON_ERROR_CHOICES = ("raise", "drop")  # embedkit.retrieval.index.ON_ERROR_CHOICES
# `--on-nan`, the old name of `--on-error` for profiles, and its values: still accepted
# (hidden from --help), with a warning.
_ON_NAN_VALUES = {"error": "raise", "drop": "drop"}


def on_error_option(
    help_text: str, choices: tuple[str, ...] = ON_ERROR_CHOICES, old_on_nan: bool = False
):
    """`--on-error`: what every command does with rows it cannot use (invalid SMILES,
    profiles with missing features). One name and one vocabulary everywhere: `raise`
    stops before writing anything and names the row(s), `drop` leaves them out and counts
    them, `nan` (where a row can be kept) keeps it with NaN features and its reason. The
    first choice is the default. With `old_on_nan`, `--on-nan error|drop` (the old name,
    for profiles) still works: it warns and means `--on-error raise|drop`."""

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, on_nan: str | None = None, **kwargs):
            if on_nan is not None:
                ctx = click.get_current_context()
                source = ctx.get_parameter_source("on_error")
                wanted = _ON_NAN_VALUES[on_nan]
                if source is ParameterSource.COMMANDLINE and kwargs["on_error"] != wanted:
                    raise click.UsageError(
                        f"--on-nan {on_nan} (deprecated) contradicts --on-error "
                        f"{kwargs['on_error']}; give --on-error only",
                        ctx,
                    )
                click.echo(f"warning: --on-nan is deprecated; use --on-error {wanted}", err=True)
                kwargs["on_error"] = wanted
            return func(*args, **kwargs)

        hidden = click.option(
            "--on-nan",
            type=click.Choice(list(_ON_NAN_VALUES)),
            default=None,
            hidden=True,
            help="Deprecated: --on-error raise|drop.",
        )
        shown = click.option(
            "--on-error",
            type=click.Choice(list(choices)),
            default=choices[0],
            show_default=True,
            help=help_text,
        )
        return shown(hidden(wrapper)) if old_on_nan else shown(func)

    return decorator


def _check_plot_name(ctx, param, value: Path | None) -> Path | None:
    """A --plot name whose suffix is no plot format is refused before any work."""
    from embedkit.plots import plot_format

    if value is not None:
        try:
            plot_format(value)
        except InputError as err:
            raise click.BadParameter(str(err), ctx, param) from err
    return value


def plot_option(what: str):
    """`--plot FILE`: `what` saved as .png, .pdf or .svg (the suffix is the format)."""
    from embedkit.plots import FORMATS_TEXT

    return click.option(
        "--plot",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_check_plot_name,
        help=f"{what}; {FORMATS_TEXT}, by the suffix.",
    )


def index_dir_option(help_text: str):
    return click.option(
        "-i",
        "--index",
        "index_dir",
        required=True,
        # not exists=True: a writer killed mid-swap leaves the index beside its path, and
        # opening it puts it back (recover_dir, in the job)
        type=click.Path(file_okay=False, path_type=Path),
        help=help_text,
    )


index_model_option = click.option(
    "-m",
    "--model",
    default=None,
    help="Model to score with.  [default: the one the index was built with; another is refused]",
)

profile_output_option = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output table; format from the suffix: .parquet .csv .tsv .npz .h5ad (the features, "
    "any prefix, as the matrix; .h5ad keeps invalid rows out of X, listed in uns). Written "
    "atomically; missing folders are created.",
)

overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing output.  [default: refuse it]",
)

features_option = click.option(
    "--features",
    default=None,
    help="Comma-separated feature columns; * and ? patterns allowed (e.g. 'Cells_*,Nuclei_*'); "
    "other numeric columns are left out of the output.  [default: numeric columns not "
    "starting with Metadata_]",
)

platemap_option = click.option(
    "--platemap",
    "platemap",
    metavar="TABLE",
    default=None,
    type=click.Path(path_type=Path),
    help="Plate map (.csv .tsv .parquet): what is in each well, joined on Metadata_Plate "
    "(optional) and Metadata_Well as pycytominer's annotate does (plate_map_name and "
    "well_position understood; Metadata_ added to other columns). Wells it does not list "
    "keep empty metadata and are counted in the summary.",
)


def split_columns(text: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c']; None stays None (the command's default)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"expected comma-separated column names, got {text!r}")
    return items


smiles_column_option = click.option(
    "-s",
    "--smiles-column",
    default=None,
    help="Column holding SMILES.  [default: one named smiles, canonical_smiles or *_smiles "
    "(any case), else the column where RDKit parses most rows (at least half); the summary "
    "names it]",
)
