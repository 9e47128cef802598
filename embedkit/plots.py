"""Where every `--plot FILE` is checked and saved: the suffix is the format.

One home for plot files, so that `--plot ranks.xlsx` is refused in one sentence before any
work (instead of a PNG named `.xlsx`), and `--plot ranks.svg` gives an SVG. Importing this
module imports no matplotlib: the CLI checks the name at parse time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedkit.errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FORMATS = ("png", "pdf", "svg")
FORMATS_TEXT = ", ".join(f".{f}" for f in PLOT_FORMATS[:-1]) + f" or .{PLOT_FORMATS[-1]}"


def plot_format(path: str | Path) -> str:
    """The format a plot file's suffix names (`png`, `pdf` or `svg`); anything else is refused."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        named = f"not .{suffix}" if suffix else "and this name has no suffix"
        raise InputError(
            f"{path}: a plot is saved as .png, .pdf or .svg (the suffix picks the format), {named}"
        )
    return suffix


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` atomically in the format of `path`'s suffix (checked by `plot_format`)."""
    from embedkit.io import atomic_path

    path = Path(path)
    fmt = plot_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path
