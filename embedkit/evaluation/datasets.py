"""The three InfoAlign property benchmarks as (SMILES, label matrix, task type).

Files are `<data_dir>/benchmarks/<name>/assays.csv.gz` (or `<data_dir>/<name>/...`);
labels start at a fixed column per dataset, as in InfoAlign's `prediction_molecule.py`.
The data directory is always passed in (or read from `EMBEDKIT_DATA_DIR`), never assumed.
"""

from __future__ import annotations

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
