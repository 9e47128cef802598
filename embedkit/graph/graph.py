"""`PerturbationGraph`: a perturbation vocabulary and its symmetric weighted adjacency.

File format (`embedkit-perturbation-graph/1`, one `.npz`): the keys `scipy.sparse.save_npz`
writes for a CSR matrix (`data, indices, indptr, shape, format`), so
`scipy.sparse.load_npz(path)` returns the adjacency, plus `perturbations` (a numpy unicode
array: the vocabulary in matrix order) and `sources` (a JSON string: how it was built).
Nothing is pickled. With torch: `torch.sparse_csr_tensor(indptr, indices, data, shape)`.
"""

from __future__ import annotations

import difflib
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from embedkit.errors import InputError

FORMAT = "embedkit-perturbation-graph/1"
KEYS = ("data", "indices", "indptr", "shape", "format", "perturbations", "sources")
EXAMPLES = 10  # names listed in reports (missing labels, isolated nodes)


@dataclass
class PerturbationGraph:
    """Nodes are perturbations (`perturbations[i]` is row/column i of `adjacency`).

    `adjacency` is a symmetric, non-negative CSR matrix with a zero diagonal (validated on
    construction); `sources` records what built it (inputs, checksums, rules).
    """

    perturbations: list[str]
    adjacency: sp.csr_matrix
    sources: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.perturbations = [str(p) for p in self.perturbations]
        n = len(self.perturbations)
        adjacency = sp.csr_matrix(self.adjacency, dtype=np.float32)
        adjacency.sum_duplicates()
        adjacency.eliminate_zeros()
        adjacency.sort_indices()
        self.adjacency = adjacency
        if adjacency.shape != (n, n):
            raise InputError(
                f"adjacency is {adjacency.shape[0]}×{adjacency.shape[1]} but there are {n} "
                "perturbations"
            )
        if len(set(self.perturbations)) != n:
            seen: set[str] = set()
            dup = next(p for p in self.perturbations if p in seen or seen.add(p))
            raise InputError(f"perturbation {dup!r} appears twice in the vocabulary")
        if not np.isfinite(adjacency.data).all() or (adjacency.data < 0).any():
            raise InputError("adjacency weights must be finite and non-negative")
        if adjacency.diagonal().any():
            raise InputError("adjacency must have a zero diagonal (no self-loops)")
        if n and abs(adjacency - adjacency.T).max() > 1e-6:
            raise InputError("adjacency must be symmetric")
        self._index = {p: i for i, p in enumerate(self.perturbations)}

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_edges(
        cls,
        perturbations: Sequence[str],
        rows: Iterable[int],
        cols: Iterable[int],
        weights: Iterable[float],
        sources: dict | None = None,
    ) -> PerturbationGraph:
        """Edges (i, j, w) in either or both directions; a pair given twice keeps its
        largest weight; self-loops and zero weights are dropped."""
        n = len(perturbations)
        r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        keep = (r != c) & (w > 0)
        r, c, w = r[keep], c[keep], w[keep]
        lo, hi = np.minimum(r, c), np.maximum(r, c)
        if len(w):
            order = np.lexsort((-w, hi, lo))  # per pair, the largest weight first
            lo, hi, w = lo[order], hi[order], w[order]
            first = np.ones(len(w), dtype=bool)
            first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
            lo, hi, w = lo[first], hi[first], w[first]
        upper = sp.coo_matrix((w, (lo, hi)), shape=(n, n))
        return cls(list(perturbations), (upper + upper.T).tocsr(), sources or {})

    # --- files --------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the `.npz` atomically (see the module docstring for the keys)."""
        from embedkit.io import atomic_path

        path = Path(path)
        a = self.adjacency
        arrays = {
            "data": a.data,
            "indices": a.indices,
            "indptr": a.indptr,
            "shape": np.array(a.shape),
            "format": np.array(b"csr"),
            "perturbations": np.array(self.perturbations, dtype=str),
            "sources": np.array(json.dumps({"format": FORMAT, **self.sources}, default=str)),
        }
        if not self.perturbations:
            arrays["perturbations"] = np.zeros(0, dtype="<U1")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PerturbationGraph:
        """Read a graph `.npz`; a missing, corrupt or foreign file is one InputError."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such graph file")
        if not zipfile.is_zipfile(path):  # numpy's own error would suggest allow_pickle=True
            raise InputError(
                f"{path}: not a readable perturbation graph (not an .npz archive); build one "
                "with `embedkit graph build`"
            )
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in KEYS if k not in npz.files]
                if missing:
                    raise InputError(
                        f"{path}: not an embedkit perturbation graph (no {', '.join(missing)} "
                        "in the .npz); build one with `embedkit graph build`"
                    )
                if npz["format"].item() not in (b"csr", "csr"):
                    raise InputError(f"{path}: the adjacency is not stored as CSR")
                shape = tuple(int(s) for s in npz["shape"])
                adjacency = sp.csr_matrix((npz["data"], npz["indices"], npz["indptr"]), shape=shape)
                perturbations = [str(p) for p in npz["perturbations"]]
                sources = json.loads(str(npz["sources"].item()))
        except InputError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise InputError(f"{path}: not a readable perturbation graph ({err})") from err
        if not isinstance(sources, dict):
            raise InputError(f"{path}: its 'sources' entry is not a JSON object")
        sources.pop("format", None)
        try:
            return cls(perturbations, adjacency, sources)
        except InputError as err:
            raise InputError(f"{path}: invalid perturbation graph ({err})") from err

    # --- queries ------------------------------------------------------------------------

    @property
    def n_edges(self) -> int:
        """Undirected edges (each stored twice in the symmetric matrix)."""
        return int(self.adjacency.nnz // 2)

    def degrees(self) -> np.ndarray:
        """Number of neighbours of each perturbation."""
        return np.diff(self.adjacency.indptr)

    def info(self) -> dict:
        """Perturbations, edges, degree statistics (neighbours), isolated nodes, sources."""
        deg = self.degrees()
        isolated = np.flatnonzero(deg == 0)
        stats = (
            {
                "degree_min": int(deg.min()),
                "degree_median": float(np.median(deg)),
                "degree_mean": float(deg.mean()),
                "degree_max": int(deg.max()),
            }
            if len(deg)
            else dict.fromkeys(("degree_min", "degree_median", "degree_mean", "degree_max"), 0)
        )
        weights = self.adjacency.data
        return {
            "perturbations": len(self.perturbations),
            "edges": self.n_edges,
            **stats,
            "weight_min": float(weights.min()) if len(weights) else 0.0,
            "weight_median": float(np.median(weights)) if len(weights) else 0.0,
            "weight_max": float(weights.max()) if len(weights) else 0.0,
            "isolated": int(len(isolated)),
            "isolated_examples": [self.perturbations[i] for i in isolated[:EXAMPLES]],
            "sources": self.sources,
        }

    def index_of(self, labels: Iterable[object]) -> np.ndarray:
        """Row of each label in the adjacency, −1 where the graph lacks it."""
        return np.array([self._index.get(str(x), -1) for x in labels], dtype=np.int64)

    def coverage(self, labels: Iterable[object]) -> dict:
        """How much of a label list the graph covers (distinct labels, first-seen order)."""
        unique = list(dict.fromkeys(str(x) for x in labels))
        index = self.index_of(unique)
        present = index >= 0
        connected = present & (self.degrees()[np.where(present, index, 0)] > 0)
        missing = [u for u, p in zip(unique, present, strict=True) if not p]
        return {
            "labels": len(unique),
            "covered": int(present.sum()),
            "connected": int(connected.sum()),
            "missing": len(missing),
            "missing_examples": missing[:EXAMPLES],
            "fraction": float(present.mean()) if unique else 0.0,
        }

    def neighbors(self, name: str) -> list[tuple[str, float]]:
        """(neighbour, weight) pairs, strongest first; an unknown name is an InputError."""
        if name not in self._index:
            close = difflib.get_close_matches(str(name), self.perturbations, n=3)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise InputError(f"perturbation {name!r} is not in the graph{hint}")
        row = self.adjacency.getrow(self._index[name])
        order = np.argsort(-row.data, kind="stable")
        return [(self.perturbations[row.indices[k]], float(row.data[k])) for k in order]

    def subgraph(self, index: np.ndarray) -> np.ndarray:
        """Dense weights among the rows `index` (in that order), float32."""
        index = np.asarray(index, dtype=np.int64)
        return self.adjacency[index][:, index].toarray()
