"""What every job does with its output: refuse to replace it unless asked, and say in one
line what it wrote.

One policy for every command that writes:

* an existing output is refused unless `--overwrite` (`overwrite=True`) is given;
* missing parent folders are created;
* an existing folder where a file is expected (or a file where a folder is expected) is an
  error naming it, with or without `--overwrite`.

Jobs call `check_output_file` / `check_output_dir` before any expensive work, so a refused
run costs nothing. Summary lines read `<counts>; <details>; <seconds> s[, <rate>] → <output>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from embedkit.errors import InputError


class OutputExistsError(InputError):
    """The output exists and `--overwrite` was not given."""


def _check_parents(path: Path) -> None:
    """The nearest existing ancestor must be a folder (the rest is created on write)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{path}: {parent} is a file, not a folder")
            return


def check_output_file(path: str | Path, overwrite: bool = False) -> Path:
    """A file output: refused if it is a folder, or exists without `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name (e.g. {path / 'out.parquet'})")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    sidecar = path.with_name(path.name + ".json")  # a CSV/TSV's run info goes beside it
    if path.suffix.lower() in (".csv", ".tsv") and sidecar.is_dir():
        raise InputError(
            f"{sidecar} is a folder, but the run information of {path.name} is written there; "
            "move it or choose another output name"
        )
    _check_parents(path)
    return path


def check_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """A folder output: refused if it is a file, or a non-empty folder without `overwrite`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; give a folder name")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{path} exists and is not empty; pass --overwrite to replace it, or choose "
            "another folder"
        )
    _check_parents(path)
    return path


def format_seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def summary_line(
    counts: str,
    seconds: float,
    output: str | Path | Iterable[str | Path] | None,
    details: Iterable[str] = (),
    rate: str | None = None,
) -> str:
    """`<counts>; <details>; <seconds> s[, <rate>] → <output>` (no arrow without output)."""
    parts = [counts, *(d for d in details if d)]
    timing = format_seconds(seconds) + (f", {rate}" if rate else "")
    if output is None or isinstance(output, (str, Path)):
        outputs = [] if output is None else [str(output)]
    else:
        outputs = [str(o) for o in output if o is not None]
    arrow = f" → {', '.join(outputs)}" if outputs else ""
    return "; ".join([*parts, timing]) + arrow
