"""The run information every output carries, in one place.

`write_table` stamps every table it writes (Parquet, CSV/TSV sidecar, npz, h5ad) through
`stamp`: the embedkit version, the versions of the libraries that shaped the numbers
(torch, RDKit, timm, numpy, pandas, Python) and no absolute local path — an output shared
with a colleague must not leak `/home/alice/…`, and must still say what it was made from.
Jobs record their inputs with `input_fields`: the path relative to the working folder when
the input is inside it, else its name alone, plus the file's sha256 (which identifies it
wherever it lives). The model's own identity (`model_id`, `revision`, `weights_sha256`,
`config_sha256`) comes from `embedkit.zoo.ResolvedModel.run_info`.
"""

from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# distribution names, in the order they are recorded; the first installed name of each wins
_DISTRIBUTIONS = {
    "torch": ("torch",),
    "rdkit": ("rdkit", "rdkit-pypi"),
    "timm": ("timm",),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
}
# an absolute path, `~/…` or `../…` (alone or as `local-dir:PATH`, a model id)
_ABSOLUTE = re.compile(r"^(?P<scheme>local-dir:)?(?P<path>(?:/|~/|\.\./|[A-Za-z]:[\\/]).*)$", re.S)


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """Versions of embedkit, Python and the installed libraries that shape the numbers.

    Read from the installed distributions' metadata (`importlib.metadata`), never by
    importing them: recording a version must not cost a torch import."""
    from embedkit import __version__

    versions = {"embedkit": __version__, "python": platform.python_version()}
    for name, distributions in _DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def portable_path(path: str | Path, keep: int = 1) -> str:
    """`path` as recorded in an output: relative to the working folder (POSIX separators)
    when it lies inside it, else its last `keep` parts (the name alone by default; model
    folders keep their parent, as most are called `model`) — never an absolute local path."""
    path = Path(os.path.expanduser(str(path)))
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path(os.path.abspath(Path.cwd())))
    except ValueError:
        parts = [part for part in absolute.parts if part != absolute.anchor][-keep:]
        return "/".join(parts) or str(path.anchor)
    return relative.as_posix() or "."


def input_fields(path: str | Path, key: str = "input") -> dict[str, str]:
    """`{key: portable path, key_sha256: hex}` for an input file (no hash for a folder:
    reading every image of a plate to hash it would cost as much as embedding it)."""
    from embedkit.zoo import sha256_of

    path = Path(path)
    fields = {key: portable_path(path)}
    if path.is_file():
        fields[f"{key}_sha256"] = sha256_of(path)
    return fields


def portable(value):
    """A JSON value with every absolute path string made portable (recursively); also for
    values written as data, such as `Metadata_Model` (`local-dir:/abs/runs/vit` →
    `local-dir:runs/vit`)."""
    if isinstance(value, str):
        found = _ABSOLUTE.match(value)
        if found and "\n" not in value:
            if found["scheme"]:  # a model folder: RUN/model, so runs stay apart in a report
                return found["scheme"] + portable_path(found["path"], keep=2)
            return portable_path(found["path"])
        return value
    if isinstance(value, dict):
        return {str(k): portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, Path):
        return portable_path(value)
    return value


def stamp(run_info: dict | None) -> dict:
    """The run info as written into an output: this process's software versions under
    `software`, `embedkit_version` (kept when the input's run info already had one: the
    version that made the embeddings), and every absolute path made portable."""
    info = dict(run_info or {})
    versions = software_versions()
    info.setdefault("embedkit_version", versions["embedkit"])
    info["software"] = dict(versions)
    return portable(info)
