"""Real priors for the SIMULATED screen: a gene graph file and a cell-line embedding table.

Both are files the user supplies (embedkit ships neither); the images stay simulated.

* **A real gene graph** (`load_gene_graph`): a perturbation graph `.npz` as written by
  `embedkit graph build` (e.g. from the real STRING / Hetionet files). Its nodes become
  the screen's genes, or a deterministic subset of them (`select_genes`: connected
  clusters grown from seeded start genes), and its weighted edges smooth the simulated
  phenotypes, so the graph a user builds from those sources is the one that shaped them.
* **Real cell-line descriptors** (`load_cell_line_descriptors`): an embedding table in the
  layout of the seed paper's scVI cell-line embeddings. Each line's descriptor is its
  embedding projected on the table's first DESCRIPTOR_DIM principal components (one global
  scale, so distances keep the embedding's geometry); its morphology is a ridge map from
  that descriptor to the hand-set typical morphology of the RxRx lines the table holds
  (U2OS, HUVEC, RPE, HepG2, HRCE, VERO), so lines with similar embeddings look alike.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from embedkit.datasets.synthetic.biology import (
    _KNOWN_LINES,
    CONTROL_GENE,
    DESCRIPTOR_DIM,
    CellLineDescriptor,
    CellLineProfile,
    GeneGraph,
)
from embedkit.datasets.synthetic.seeds import T_MORPH, T_SUBSET, stream
from embedkit.errors import InputError
from embedkit.zoo import sha256_of

# -- the gene graph ---------------------------------------------------------------------


def read_graph_file(path: str | Path) -> tuple[tuple[str, ...], object, dict]:
    """(node names, symmetric CSR adjacency, sources) of a perturbation graph file, read by
    `embedkit.graph.PerturbationGraph.load` (the one reader of the format)."""
    from embedkit.graph import PerturbationGraph

    graph = PerturbationGraph.load(path)
    matrix = graph.adjacency.astype(np.float64).tocsr()
    return tuple(graph.perturbations), matrix, dict(graph.sources)


def select_genes(adjacency, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(node indices in matrix order, cluster id per node): a deterministic n-node subset.

    Clusters of about n / 8 connected genes are grown breadth-first (heaviest edges first)
    from start genes drawn with `seed`, until n genes are chosen; if the graph runs out of
    linked genes, isolated ones fill the rest. So the subset keeps local graph structure (a
    uniform sample of a sparse graph would keep almost no edges).
    """
    adjacency = adjacency.tocsr()
    total = adjacency.shape[0]
    if not 1 <= n <= total:
        raise InputError(f"--genes must be between 1 and the graph's {total} nodes")
    cluster_size = max(4, math.ceil(n / 8))
    label = np.full(total, -1)
    degree = np.diff(adjacency.indptr)
    chosen = 0
    k = 0
    for start in stream(seed, T_SUBSET, total, n).permutation(total):
        if chosen >= n:
            break
        if label[start] >= 0 or degree[start] == 0:
            continue
        queue, seen, size = [int(start)], {int(start)}, 0
        while queue and size < cluster_size and chosen < n:
            v = queue.pop(0)
            label[v] = k
            size += 1
            chosen += 1
            lo, hi = adjacency.indptr[v], adjacency.indptr[v + 1]
            nbrs, weights = adjacency.indices[lo:hi], adjacency.data[lo:hi]
            for u in nbrs[np.lexsort((nbrs, -weights))]:
                if label[u] < 0 and int(u) not in seen:
                    seen.add(int(u))
                    queue.append(int(u))
        k += 1
    for v in range(total):  # not enough linked genes: isolated ones, in matrix order
        if chosen >= n:
            break
        if label[v] < 0:
            label[v] = k
            k += 1
            chosen += 1
    index = np.flatnonzero(label >= 0)
    return index, label[index].astype(int)


def load_gene_graph(path: str | Path, n_genes: int | None = None, seed: int = 0) -> GeneGraph:
    """A graph file's nodes (or a deterministic `n_genes` subset) as the screen's genes.

    Edges keep their weights; modules are connected components (or, for a subset, the
    cluster each gene was drawn in). `source` records the file, its sha256 and its sources.
    """
    import scipy.sparse

    path = Path(path)
    names, matrix, sources = read_graph_file(path)
    total = len(names)
    if CONTROL_GENE in names:
        raise InputError(f"{path}: the node name {CONTROL_GENE!r} is reserved for controls")
    if n_genes is not None and n_genes < len(names):
        index, modules = select_genes(matrix, n_genes, seed)
        matrix = matrix[index][:, index]
        names = tuple(names[i] for i in index)
        picked = f", chosen with seed {seed}"
    else:
        if n_genes is not None and n_genes > len(names):
            raise InputError(f"--genes must be between 1 and the graph's {len(names)} nodes")
        _, modules = scipy.sparse.csgraph.connected_components(matrix, directed=False)
        picked = ""
    upper = scipy.sparse.triu(matrix, k=1).tocoo()
    order = np.lexsort((upper.col, upper.row))
    edges = tuple((names[upper.row[i]], names[upper.col[i]]) for i in order)
    weights = tuple(round(float(upper.data[i]), 6) for i in order)
    inputs = sources.get("inputs") if isinstance(sources.get("inputs"), dict) else sources
    kinds = ", ".join(sorted(str(k) for k in inputs)) if inputs else "unknown"
    source = (
        f"{path.name} sha256:{sha256_of(path)[:16]} ({len(names)} of {total} nodes"
        f"{picked}; sources: {kinds})"
    )
    return GeneGraph(names, edges, tuple(int(m) for m in modules), weights, source)


# -- cell-line descriptors --------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", name.upper())


def match_cell_line(name: str, rows: Sequence[str], table: str = "the table") -> str:
    """The table row of a cell line: exact, else ignoring case and punctuation, else an
    InputError listing close names (e.g. HepG2 -> HEPG2, ARPE_19 -> ARPE-19)."""
    if name in rows:
        return name
    hits = [r for r in rows if _norm(r) == _norm(name)]
    if len(hits) == 1:
        return hits[0]
    by_norm = {_norm(r): r for r in rows}
    close = difflib.get_close_matches(_norm(name), list(by_norm), n=5, cutoff=0.5)
    hint = ", ".join(by_norm[c] for c in close) if close else "none"
    raise InputError(
        f"cell line {name!r} is not in {table} ({len(rows)} lines); close names: {hint}"
    )


_LOG_FIELDS = ("radius", "nucleus_ratio", "density", "irregularity", "fibers", "nucleoli")
_LOG_FIELDS += ("mito", "response_gain")
_SHARE_FIELDS = ("clustering", "alignment")


def _morphology_vector(p: CellLineProfile) -> np.ndarray:
    """A profile on unbounded scales: logs, log(elongation - 1), logits of shares."""
    values = [math.log(getattr(p, f)) for f in _LOG_FIELDS]
    values.append(math.log(max(p.elongation - 1.0, 0.02)))
    for f in _SHARE_FIELDS:
        share = min(max(getattr(p, f), 0.02), 0.98)
        values.append(math.log(share / (1 - share)))
    values.extend(math.log(v) for v in p.intensity)
    return np.array(values)


def _profile_from_vector(name: str, v: np.ndarray) -> CellLineProfile:
    n = len(_LOG_FIELDS)
    fields = {f: round(float(math.exp(v[i])), 6) for i, f in enumerate(_LOG_FIELDS)}
    fields["nucleus_ratio"] = round(min(max(fields["nucleus_ratio"], 0.3), 0.65), 6)
    fields["elongation"] = round(1.0 + float(math.exp(v[n])), 6)
    for j, f in enumerate(_SHARE_FIELDS):
        fields[f] = round(float(1 / (1 + math.exp(-v[n + 1 + j]))), 6)
    fields["intensity"] = tuple(round(float(math.exp(x)), 6) for x in v[n + 3 :])
    return CellLineProfile(name=name, **fields)


def descriptors_from_embeddings(
    table: Mapping[str, Sequence[float]],
    cell_lines: Sequence[str],
    source: str = "an embedding table",
    ridge: float = 0.1,
    table_name: str | None = None,
) -> tuple[CellLineDescriptor, ...]:
    """Descriptor and morphology of each cell line from its row of an embedding table.

    * descriptor: the row's scores on the table's first DESCRIPTOR_DIM principal components
      (centered on the table's mean; signs fixed so each component's largest loading is
      positive; one scale for all components so that the mean squared score is 1). The
      response of a line, ``gain * exp(0.35 W d)``, and its gene expression gate are smooth
      functions of it, so lines with similar embeddings respond alike.
    * morphology: a ridge regression (penalty `ridge`) from descriptors to the hand-set
      morphology of the RxRx lines found in the table, applied to every line and clipped
      to the anchors' range widened by half; with fewer than 3 anchors in the table, a
      fixed random linear map of the descriptor around an average cell instead.
    """
    rows = list(table)
    if len(rows) < 2:
        raise InputError(f"{source}: at least 2 cell lines are needed, found {len(rows)}")
    x = np.array([table[r] for r in rows], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{source}: no numeric embedding columns")
    if not np.isfinite(x).all():
        bad = [rows[i] for i in np.flatnonzero(~np.isfinite(x).all(1))][:5]
        raise InputError(f"{source}: embeddings of {', '.join(bad)} are not finite numbers")
    centered = x - x.mean(0)
    _, sing, vt = np.linalg.svd(centered, full_matrices=False)
    k = int(min(DESCRIPTOR_DIM, (sing > 1e-9 * max(sing[0], 1e-300)).sum()))
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])
    scores = centered @ (comps * signs[:, None]).T
    scores /= math.sqrt(max((scores**2).sum(1).mean() / DESCRIPTOR_DIM, 1e-300))
    scores = np.pad(scores, ((0, 0), (0, DESCRIPTOR_DIM - k)))
    row_of = {r: i for i, r in enumerate(rows)}
    matched = [match_cell_line(name, rows, table_name or source) for name in cell_lines]

    anchors = []
    for known in _KNOWN_LINES.values():
        try:
            anchors.append((row_of[match_cell_line(known.name, rows)], known))
        except InputError:
            continue
    if len(anchors) >= 3:
        d = scores[[i for i, _ in anchors]]
        y = np.array([_morphology_vector(p) for _, p in anchors])
        d_mean, y_mean = d.mean(0), y.mean(0)
        dc = d - d_mean
        w = np.linalg.solve(dc.T @ dc + ridge * np.eye(DESCRIPTOR_DIM), dc.T @ (y - y_mean))
        low, high = y.min(0), y.max(0)
        low, high = low - 0.5 * (high - low), high + 0.5 * (high - low)

        def morphology(name: str, desc: np.ndarray) -> CellLineProfile:
            v = np.clip(y_mean + (desc - d_mean) @ w, low, high)
            return _profile_from_vector(name, v)

        how = f"ridge map to the morphology of {', '.join(p.name for _, p in anchors)}"
    else:
        y_mean = np.mean([_morphology_vector(p) for p in _KNOWN_LINES.values()], axis=0)
        w = 0.15 * stream(T_MORPH).standard_normal((DESCRIPTOR_DIM, len(y_mean)))

        def morphology(name: str, desc: np.ndarray) -> CellLineProfile:
            return _profile_from_vector(name, y_mean + desc @ w)

        how = "fixed random map around an average cell (fewer than 3 RxRx lines in the table)"

    text = (
        f"{source}; descriptor: PCA-{k} of {len(rows)} lines x {x.shape[1]} dims; morphology: {how}"
    )
    out = []
    for name, row in zip(cell_lines, matched, strict=True):
        desc = np.round(scores[row_of[row]], 6)
        out.append(CellLineDescriptor(name, row, tuple(desc), morphology(name, desc), text))
    return tuple(out)


def load_cell_line_descriptors(
    path: str | Path, cell_lines: Sequence[str]
) -> tuple[CellLineDescriptor, ...]:
    """`descriptors_from_embeddings` of a table file (the scVI parquet layout: a
    `cell_line` text column or names as the index, then numeric columns)."""
    from embedkit.cell_lines import read_cell_line_table

    path = Path(path)
    table = read_cell_line_table(path)
    source = f"{path.name} sha256:{sha256_of(path)[:16]}"
    return descriptors_from_embeddings(table, cell_lines, source, table_name=str(path))
