"""Where local copies of public datasets live: an explicit path, else $EMBEDKIT_DATA_DIR,
else the dataset registry's cache (`embedkit datasets fetch` fills it) when it exists.

The package never assumes a fixed location; training recipes and benchmarks take a
`--data-dir` and fall back to this environment variable, then to the registry's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedkit.errors import InputError

DATA_DIR_ENV = "EMBEDKIT_DATA_DIR"


class DataDirError(InputError, FileNotFoundError):
    """No usable data directory (an InputError for the CLI, a FileNotFoundError for callers)."""


def default_cache_dir() -> Path:
    """The dataset registry's folder when $EMBEDKIT_DATA_DIR is not set: pooch's user cache
    (~/.cache/embedkit on Linux; $XDG_CACHE_HOME is respected)."""
    import pooch

    return Path(pooch.os_cache("embedkit"))


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The explicit argument, else $EMBEDKIT_DATA_DIR, else the registry's cache if
    `embedkit datasets fetch` has made it; a clear error when none exists."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    if not value:
        cache = default_cache_dir()
        if cache.is_dir():
            return cache
        raise DataDirError(f"no data directory: pass --data-dir or set ${DATA_DIR_ENV}")
    path = Path(value)
    if not path.is_dir():
        raise DataDirError(f"data directory {path} does not exist")
    return path
