"""Tables in and out, chosen by file suffix, with atomic writes.

Readers: .csv .tsv .txt .smi (optionally .gz) and .parquet. Writers: .parquet .csv .tsv .npz
.h5ad. Every write goes to a temporary file in the target folder and is renamed into place,
so a crash never leaves a half-written output and never clobbers a good one.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError

READ_SUFFIXES = (".csv", ".tsv", ".txt", ".smi", ".parquet")
WRITE_SUFFIXES = (".parquet", ".csv", ".tsv", ".npz", ".h5ad")
FEATURE_PREFIX = "Emb_"


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


# NUL bytes stand in as this (a Unicode noncharacter) while pandas parses, then come back:
# pandas' C parser ends a field at a NUL, silently cutting `CC\0O` to `CC`.
_NUL_STANDIN = "\uffff"
_TRAILING_BLANK_LINES = re.compile(r"(?:\r?\n[ \t]*)+\Z")


def read_table(path: str | Path, keep_blank_rows: bool = False) -> pd.DataFrame:
    """Read a table by suffix; every failure names the file and what was expected.

    Every value is read whole: a NUL byte stays in its field (never cuts it). With
    `keep_blank_rows`, a blank line of a text table is a row of empty values, keeping every
    later row in its place (row-aligned jobs such as embed-smiles); blank lines at the end
    of the file are not rows.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a table file")
    suffix = _suffix(path)
    if suffix not in READ_SUFFIXES:
        raise InputError(
            f"{path}: unsupported table format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(READ_SUFFIXES)} (optionally .gz)"
        )
    try:
        if suffix == ".parquet":
            table = read_parquet(path)
        else:
            table = _read_text_table(path, suffix, keep_blank_rows)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"{path}: the file is empty") from err
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable {suffix} table ({err})") from err
    if table.shape[1] == 0:
        raise InputError(f"{path}: the file has no columns")
    return table


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame, through pyarrow directly.

    `pd.read_parquet` in a process that imported torch made about one run in three abort at
    exit ("terminate called without an active exception", exit 134) after its work was
    done (pandas 2.3, pyarrow 26, torch 2.14); `pyarrow.parquet.read_table(...).to_pandas()`
    reads the same frame without it (benchmarks/bench_reliability.py found it)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pandas()
    # the run info embedkit wrote (`df.attrs["embedkit"]`, for pd.read_parquet users) is
    # read with `read_run_info`; left in attrs, pandas would deep-copy it on every operation
    table.attrs = {}
    return table


def _read_text(path: Path) -> str:
    if path.suffix.lower() == ".gz":
        import gzip

        with gzip.open(path, "rb") as handle:
            data = handle.read()
    else:
        data = path.read_bytes()
    return data.decode("utf-8-sig")


def _read_text_table(path: Path, suffix: str, keep_blank_rows: bool) -> pd.DataFrame:
    text = _read_text(path)
    if not text.strip():
        raise pd.errors.EmptyDataError("no data")
    has_nul = "\0" in text
    if has_nul:
        text = text.replace("\0", _NUL_STANDIN)
    if keep_blank_rows:
        text = _TRAILING_BLANK_LINES.sub("\n", text)
    if suffix == ".smi":
        table = _read_smi(text, keep_blank_rows)
    else:
        table = pd.read_csv(
            io.StringIO(text),
            sep="\t" if suffix in (".tsv", ".txt") else ",",
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=not keep_blank_rows,
        )
    if has_nul:
        table.columns = [str(c).replace(_NUL_STANDIN, "\0") for c in table.columns]
        for column in table.columns:
            if table[column].dtype == object:
                table[column] = table[column].str.replace(_NUL_STANDIN, "\0", regex=False)
    return table


def _read_smi(text: str, keep_blank_rows: bool) -> pd.DataFrame:
    """A .smi file: SMILES then an optional name, whitespace separated, no header."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 1)
        if not parts and not keep_blank_rows:
            continue
        rows.append((parts[0] if parts else "", parts[1].strip() if len(parts) > 1 else ""))
    return pd.DataFrame(rows, columns=["smiles", "name"], dtype=object)


def feature_columns(dim: int, prefix: str = FEATURE_PREFIX) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(dim)]


def embeddings_frame(metadata: pd.DataFrame, embeddings: np.ndarray) -> pd.DataFrame:
    """Metadata columns first, then Emb_0000… (pycytominer selects them with
    `infer_cp_features(df, compartments=["Emb"])`; its `features="infer"` does not)."""
    features = pd.DataFrame(
        embeddings, columns=feature_columns(embeddings.shape[1]), index=metadata.index
    )
    return pd.concat([metadata, features], axis=1)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temporary files a killed writer of `path` left beside it
    (`.NAME.tmp-PID-…`, PID no longer running); a live writer's are kept."""
    removed = []
    prefix = f".{path.name}.tmp-"
    if not path.parent.is_dir():
        return removed
    for temp in path.parent.iterdir():
        if temp.name.startswith(prefix) and temp.is_file() and not _writer_alive(temp):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def remove_stale_temp_files_in(folder: Path) -> list[Path]:
    """`remove_stale_temp_files` for every output in `folder` (a resumed run's plates/)."""
    if not Path(folder).is_dir():
        return []
    names = {
        p.name[1:].split(".tmp-")[0]
        for p in Path(folder).iterdir()
        if p.name.startswith(".") and ".tmp-" in p.name and p.is_file()
    }
    return [t for n in sorted(names) for t in remove_stale_temp_files(Path(folder) / n)]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes files owner-only
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# How long a writer waits for another writer of the same folder before giving up.
LOCK_TIMEOUT_S = 600.0
_LOCKS: dict[tuple[int, str], object] = {}  # (pid, lock file): a forked child makes its own


def lock_path(folder: str | Path) -> Path:
    """The lock file beside `folder` (it outlives the folder's swaps, so it is not inside)."""
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}.lock")


@contextmanager
def folder_lock(folder: str | Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the inter-process lock of `folder` (a `filelock` beside it; reentrant within a
    process) for a read-modify-write such as `index add`: concurrent writers wait for each
    other, so none swaps its folder in over rows another one added."""
    from filelock import FileLock, Timeout

    folder = Path(folder).resolve()
    key = str(lock_path(folder))
    lock = _LOCKS.get((os.getpid(), key))
    if lock is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = _LOCKS[os.getpid(), key] = FileLock(key)
    try:
        lock.acquire(timeout=timeout)
    except Timeout as err:
        raise InputError(
            f"{folder} is being written by another process (lock {key} held for more than "
            f"{timeout:.0f} s); wait for it to finish and try again"
        ) from err
    try:
        recover_dir(folder)
        yield
    finally:
        lock.release()


def _staging_prefix(folder: Path) -> str:
    return f".{folder.name}.tmp-"


def _old_prefix(folder: Path) -> str:
    return f".{folder.name}.old-"


def leftovers(folder: str | Path) -> list[Path]:
    """Staging folders and swapped-out copies of `folder` beside it: `.NAME.tmp-PID-…` and
    `.NAME.old-PID`, each named by the process that wrote it."""
    folder = Path(folder).resolve()
    if not folder.parent.is_dir():
        return []
    prefixes = (_staging_prefix(folder), _old_prefix(folder))
    return sorted(p for p in folder.parent.iterdir() if p.name.startswith(prefixes))


def _writer_alive(path: Path) -> bool:
    """Whether the process named in a leftover's name still runs (then it is not stale)."""
    found = re.search(r"\.(?:tmp|old)-(\d+)(?:-|$)", path.name)
    if found is None:
        return False  # not written by this scheme: stale
    try:
        os.kill(int(found[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def recover_dir(folder: str | Path, wait_s: float = 10.0) -> None:
    """Finish or undo what a killed writer left beside `folder`.

    A copy swapped out by a writer killed before its new folder landed is put back (the
    killed run reported nothing, so the last good copy is the truth); then the staging
    folders and swapped-out copies of dead writers are removed. Cheap when nothing is
    left over, so readers call it on every open. A live writer's mid-swap is waited for.
    """
    folder = Path(folder).resolve()
    deadline = time.monotonic() + wait_s
    while True:
        found = leftovers(folder)
        live = [p for p in found if _writer_alive(p)]
        if not folder.exists() and any(p.name.startswith(_old_prefix(folder)) for p in live):
            if time.monotonic() < deadline:  # a writer between its two renames
                time.sleep(0.05)
                continue
        break
    stale = [p for p in found if p not in live]
    olds = sorted(
        (p for p in stale if p.name.startswith(_old_prefix(folder))),
        key=lambda p: p.stat().st_mtime,
    )
    if olds and not folder.exists():
        try:
            os.replace(olds.pop(), folder)
        except OSError:  # another reader put it back first
            pass
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_dir(folder: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `folder`; swap it in only if the block succeeds.

    An existing `folder` is renamed away, the staging folder renamed in, then the old one
    removed: readers see the old folder or the new one, never a half-written one. What a
    writer killed on the way leaves (its staging folder; between the two renames, the old
    copy beside an empty path) is recovered by the next write or `recover_dir`, which puts
    the old copy back. A failed block leaves `folder` untouched. Concurrent writers of one
    folder take `folder_lock` around their read-modify-write.
    """
    folder = Path(folder).resolve()
    if folder == Path.cwd() or folder in Path.cwd().parents:
        raise InputError(f"{folder} is the working folder or holds it; give a new folder name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(folder)
    staging = Path(
        tempfile.mkdtemp(prefix=f"{_staging_prefix(folder)}{os.getpid()}-", dir=folder.parent)
    )
    try:
        yield staging
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes folders owner-only
        for path in staging.iterdir():
            if path.is_file():
                os.chmod(path, 0o666 & ~current_umask())
        old = None
        if folder.exists():
            old = folder.with_name(f"{_old_prefix(folder)}{os.getpid()}")
            if old.exists():  # a failed earlier swap of this process
                shutil.rmtree(old)
            os.replace(folder, old)
        try:
            os.replace(staging, folder)
        except BaseException:
            if old is not None:  # put the old copy back (a kill here is left to recover_dir)
                os.replace(old, folder)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_table(
    table: pd.DataFrame,
    path: str | Path,
    run_info: dict | None = None,
    features: list[str] | None = None,
) -> Path:
    """Write by suffix, atomically, with the run info (`embedkit.provenance.stamp`: model
    id, revision, sha256s, software versions, portable input paths) travelling with the
    data: Parquet key-value metadata and `df.attrs["embedkit"]` (so `pd.read_parquet` returns
    it), AnnData `uns`, an npz `run_info` entry, or a sidecar `<file>.json` for CSV/TSV.
    `features` are the matrix columns of .npz/.h5ad (default: `feature_names`)."""
    from embedkit.provenance import stamp

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(
            f"{path}: unsupported output format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(WRITE_SUFFIXES)}"
        )
    stamped = stamp(run_info)
    info = json.dumps(stamped, sort_keys=True)
    sidecar = path.with_name(path.name + ".json")
    if suffix in (".csv", ".tsv") and sidecar.is_dir():  # checked before the table is written
        raise InputError(f"{sidecar} is a folder, so the run information of {path} cannot go there")
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            _write_parquet(table, tmp, info)
        elif suffix in (".csv", ".tsv"):
            table.to_csv(tmp, index=False, sep="," if suffix == ".csv" else "\t")
        elif suffix == ".npz":
            _write_npz(table, tmp, info, features)
        else:
            from embedkit.h5ad import write_h5ad

            write_h5ad(table, tmp, features or feature_names(table), json.loads(info))
    if suffix in (".csv", ".tsv"):
        with atomic_path(sidecar) as tmp:
            tmp.write_text(info + "\n")
    return path


def feature_names(table: pd.DataFrame) -> list[str]:
    """The matrix columns of a table: the `Emb_` columns, else every numeric column not
    starting with `Metadata_` (`PC_…`, CellProfiler features, any prefix)."""
    found = [str(c) for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
    if found:
        return found
    from embedkit.profiles.features import infer_features

    return infer_features(table)


def split_features(
    table: pd.DataFrame, features: list[str] | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """(metadata frame, float32 matrix) of `features` (default: the `Emb_` columns)."""
    feats = (
        list(features)
        if features is not None
        else [c for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
    )
    return table.drop(columns=feats), table[feats].to_numpy(dtype=np.float32)


# pandas (>= 2.1) restores `df.attrs` in pd.read_parquet from this schema metadata key;
# pyarrow's to_pandas restores it from the attributes in its b"pandas" entry.
PANDAS_ATTRS_KEY = b"PANDAS_ATTRS"
ATTRS_KEY = "embedkit"


def _write_parquet(table: pd.DataFrame, tmp: Path, info: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = table.copy(deep=False)
    frame.attrs = {ATTRS_KEY: json.loads(info)}
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(arrow.schema.metadata or {})
    metadata[b"embedkit"] = info.encode()
    metadata[PANDAS_ATTRS_KEY] = json.dumps(frame.attrs).encode()
    pq.write_table(arrow.replace_schema_metadata(metadata), tmp)


def _write_npz(table: pd.DataFrame, tmp: Path, info: str, features: list[str] | None) -> None:
    names = features or feature_names(table)
    meta, emb = split_features(table, names)
    arrays = {
        "embeddings": emb,
        "run_info": np.array(info),
        "feature_names": np.array(names, dtype=str),
    }
    for column in meta.columns:
        values = meta[column].to_numpy()
        arrays[f"obs/{column}"] = values.astype(str) if values.dtype == object else values
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_run_info(path: str | Path) -> dict:
    """The run metadata stored beside embeddings by `write_table` (empty if none)."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(b"embedkit")
        return json.loads(raw) if raw else {}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["run_info"]))
    if suffix == ".h5ad":
        from embedkit.h5ad import read_h5ad_run_info

        return read_h5ad_run_info(path)
    sidecar = path.with_name(path.name + ".json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else {}


MISSING_TEXT = {"", "na", "nan", "null", "none"}


def coerce_numeric_text(table: pd.DataFrame) -> pd.DataFrame:
    """Text tables (CSV is read as strings) → numbers in feature columns.

    A non-`Metadata_` text column becomes numeric when every non-missing cell parses;
    empty cells and NA/NaN become NaN (and are then reported by row, not indexed).
    """
    out = table.copy()
    for column in out.columns:
        if str(column).startswith("Metadata_") or out[column].dtype != object:
            continue
        numbers = pd.to_numeric(out[column], errors="coerce")
        text = out[column].astype(str).str.strip().str.lower()
        if not (numbers.isna() & ~text.isin(MISSING_TEXT)).any():
            out[column] = numbers.astype(np.float64)
    return out
