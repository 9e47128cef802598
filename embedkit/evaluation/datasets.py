"""Property benchmarks as (SMILES, label matrix, task type).

The three InfoAlign benchmarks are `<data_dir>/benchmarks/<name>/assays.csv.gz` (or
`<data_dir>/<name>/...`); labels start at a fixed column per dataset, as in InfoAlign's
`prediction_molecule.py`. Any other file in that format is read by path
(`load_assay_file`): a SMILES column, then label columns (from a `meta.json` beside it with
`start_column`, as InfoAlign's `convert_to_dataset.py` writes, else every numeric column
that is not an identifier). The data directory is always passed in (or read from
`EMBEDKIT_DATA_DIR`), never assumed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir  # noqa: F401 (re-exported)
from embedkit.errors import InputError


@dataclass(frozen=True)
class BenchmarkInfo:
    """What the paper says about a dataset: where labels start and what it reported."""

    start_column: int
    task_type: str  # "classification" | "regression"
    paper_infoalign: float  # AUC % (classification) or MAE x100 (regression)


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "chembl2k": BenchmarkInfo(4, "classification", 81.3),
    "broad6k": BenchmarkInfo(2, "classification", 70.0),
    "biogenadme": BenchmarkInfo(4, "regression", 49.4),
}


@dataclass
class PropertyDataset:
    name: str
    smiles: list[str]
    labels: np.ndarray  # (n, T) float32, NaN where unmeasured
    task_names: list[str]
    task_type: str

    def __len__(self) -> int:
        return len(self.smiles)

    def subset(self, index: np.ndarray) -> PropertyDataset:
        """Rows `index`, in that order (for subsampling and dropping invalid SMILES)."""
        index = np.asarray(index)
        return PropertyDataset(
            self.name,
            [self.smiles[i] for i in index],
            self.labels[index],
            list(self.task_names),
            self.task_type,
        )


def dataset_path(name: str, data_dir: str | Path | None = None) -> Path:
    root = resolve_data_dir(data_dir)
    for candidate in (root / "benchmarks" / name, root / name):
        if (candidate / "assays.csv.gz").exists():
            return candidate / "assays.csv.gz"
    raise InputError(
        f"{root}: no benchmarks/{name}/assays.csv.gz below this data directory; "
        f"`embedkit datasets fetch infoalign-benchmarks --data-dir {root}` puts it there"
    )


def infer_task_type(labels: np.ndarray) -> str:
    """Classification when every measured label is 0 or 1 (the reference code's rule)."""
    measured = labels[~np.isnan(labels)]
    return "classification" if np.isin(measured, (0.0, 1.0)).all() else "regression"


def load_dataset(name: str, data_dir: str | Path | None = None) -> PropertyDataset:
    """Load one benchmark; checks the inferred task type against the paper's."""
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    info = BENCHMARKS[name]
    table = pd.read_csv(dataset_path(name, data_dir))
    tasks = list(table.columns[info.start_column :])
    labels = table[tasks].to_numpy(dtype=np.float32)
    task_type = infer_task_type(labels)
    if task_type != info.task_type:
        raise InputError(f"{name}: labels look like {task_type}, expected {info.task_type}")
    smiles = table["smiles"].fillna("").astype(str).tolist()
    return PropertyDataset(name, smiles, labels, tasks, task_type)


TASK_TYPES = ("auto", "classification", "regression")
_ID_COLUMN = re.compile(
    r"(^|[\s_])(id|inchikey|inchi|name|index)$|^(id|mol_?id)[\s_]|^unnamed: \d+$", re.I
)


def _label_columns(table: pd.DataFrame, path: Path, smiles: str) -> list[str]:
    """`meta.json`'s start_column when present, else the numeric non-identifier columns."""
    meta = path.parent / "meta.json"
    if meta.exists():
        try:
            start = int(json.loads(meta.read_text())["start_column"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{meta}: no integer start_column ({err})") from err
        return [c for c in table.columns[start:] if c != smiles]
    columns = []
    for column in table.columns:
        if column == smiles or _ID_COLUMN.search(str(column)):
            continue
        values = table[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and numeric.notna().sum() == values.notna().sum():
            columns.append(column)
    return columns


def load_assay_file(
    path: str | Path, task_type: str = "auto", name: str | None = None
) -> PropertyDataset:
    """Any InfoAlign-format assay table by path (CSV, optionally gzipped).

    `task_type` "classification" requires 0/1 labels (NaN = unmeasured) and says which
    column is not; "auto" infers it with the reference's rule. A known benchmark's file
    (`<name>/assays.csv.gz`) uses that benchmark's label columns and task type.
    """
    path = Path(path)
    if task_type not in TASK_TYPES:
        raise InputError(f"task type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    if not path.is_file():
        raise InputError(f"{path}: no such assay file")
    try:
        table = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = (str(err).splitlines() or [""])[0]
        raise InputError(f"{path}: not a readable CSV table ({reason})") from err
    smiles = next((c for c in table.columns if str(c).lower() == "smiles"), None)
    if smiles is None:
        shown = ", ".join(map(str, table.columns[:8]))
        raise InputError(f"{path}: no SMILES column (columns: {shown})")
    stem = path.name.split(".")[0]
    known = path.parent.name if stem == "assays" and path.parent.name in BENCHMARKS else None
    if known is not None:
        info = BENCHMARKS[known]
        tasks = list(table.columns[info.start_column :])
        task_type = info.task_type if task_type == "auto" else task_type
    else:
        tasks = _label_columns(table, path, smiles)
    if not tasks:
        raise InputError(f"{path}: no numeric label column besides {smiles!r}")
    try:
        labels = table[tasks].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: label columns must be numeric ({err})") from err
    inferred = infer_task_type(labels)
    if task_type == "classification" and inferred != "classification":
        column = next(
            t
            for t, col in zip(tasks, labels.T, strict=True)
            if not np.isin(col[~np.isnan(col)], (0.0, 1.0)).all()
        )
        bad = table[column][~pd.to_numeric(table[column]).isin([0, 1]) & table[column].notna()]
        raise InputError(
            f"{path}: column {column!r} has non-binary labels (e.g. {bad.iloc[0]}) but "
            "classification needs 0/1 (empty = unmeasured)"
        )
    task_type = inferred if task_type == "auto" else task_type
    if not (~np.isnan(labels)).any():
        raise InputError(f"{path}: every label is empty")
    rows = table[smiles].fillna("").astype(str).tolist()
    return PropertyDataset(name or known or stem, rows, labels, tasks, task_type)


def resolve_dataset(
    spec: str | Path, data_dir: str | Path | None = None, task_type: str = "auto"
) -> PropertyDataset:
    """A benchmark name from `BENCHMARKS`, or the path of an assay file."""
    if isinstance(spec, str) and spec in BENCHMARKS:
        return load_dataset(spec, data_dir)
    path = Path(spec)
    if not path.exists() and not path.suffix:
        raise InputError(
            f"unknown benchmark {str(spec)!r}: choose from {sorted(BENCHMARKS)} or give the "
            "path of an assay file"
        )
    return load_assay_file(path, task_type)
