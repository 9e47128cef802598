"""Where local copies of public datasets live: an explicit path, else $EMBEDKIT_DATA_DIR.

The package never assumes a fixed location; training recipes and benchmarks take a
`--data-dir` and fall back to this environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedkit.errors import InputError

DATA_DIR_ENV = "EMBEDKIT_DATA_DIR"


class DataDirError(InputError, FileNotFoundError):
    """No usable data directory (an InputError for the CLI, a FileNotFoundError for callers)."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The explicit argument, else $EMBEDKIT_DATA_DIR; a clear error when neither exists."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    if not value:
        raise DataDirError(f"no data directory: pass --data-dir or set ${DATA_DIR_ENV}")
    path = Path(value)
    if not path.is_dir():
        raise DataDirError(f"data directory {path} does not exist")
    return path
