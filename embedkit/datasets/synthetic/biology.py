"""The simulated biology: genes, their graph, knock-down phenotypes and cell lines.

* **Genes and their graph.** `default_gene_graph` draws modules of related genes (dense
  edges within a module, sparse across): a stand-in for STRING / Hetionet, not real PPIs.
* **Phenotypes follow the graph.** Each gene's phenotype vector (`PHENOTYPE_FEATURES`) is a
  random vector smoothed over the graph, ``(I + alpha L)^-1 Z``, so linked genes have
  correlated phenotypes; each gene also gets a strength (some knock-downs barely show).
* **Cell lines.** Base morphology per line from a table for the RxRx lines (U2OS, HUVEC,
  RPE, HepG2, HRCE, VERO), derived from the name for any other (a "de novo" line). Each
  line scales the response per feature through a smooth function of a simulated line
  descriptor (`cell_line_descriptor`, a stand-in for an RNA-seq embedding), so that
  descriptors carry information about responses.
* **Grounded in real priors (optional, `grounding`).** The graph can be a real gene graph
  (weighted edges, e.g. built from STRING / Hetionet), and each line's descriptor and
  morphology can come from its real scVI embedding (`CellLineDescriptor`). With
  `line_specificity` > 0 each gene's knock-down is further gated per line by a simulated
  expression program (`expression_programs`, smoothed over the graph) read through the
  line's descriptor, so lines differ gene by gene, not only feature by feature.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embedkit.datasets.synthetic.seeds import (
    T_EXPR,
    T_GRAPH,
    T_LINE,
    T_PHENO,
    T_RESP,
    name_key,
    stream,
)

CONTROL_GENE = "EMPTY"

# nucleus and cell size, elongation, density, six stain intensities, textures, nucleoli,
# mitochondria count and fragmentation, Golgi dispersion, mitotic index. The names are
# the columns of gene_phenotypes.csv (so "actin_fibres" keeps the spelling of the files).
PHENOTYPE_FEATURES: tuple[str, ...] = (
    "nucleus_size",
    "cell_size",
    "elongation",
    "cell_count",
    "dna_intensity",
    "er_intensity",
    "actin_intensity",
    "rna_intensity",
    "mito_intensity",
    "wga_intensity",
    "chromatin_texture",
    "er_texture",
    "actin_fibres",
    "nucleoli_count",
    "mito_count",
    "mito_fragmentation",
    "golgi_dispersion",
    "mitotic_index",
)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(PHENOTYPE_FEATURES)}
DESCRIPTOR_DIM = 8


# -- gene graph -------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneGraph:
    """Genes, undirected edges between them and a module id per gene (hashable, immutable).

    `weights` (one per edge, in [0, 1]; None: every edge weighs 1) and `source` (where the
    graph came from, e.g. a graph file and its sha256; empty for a simulated graph) are set
    for graphs read from a file (`grounding.load_gene_graph`).
    """

    genes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    modules: tuple[int, ...]
    weights: tuple[float, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(set(self.genes)) != len(self.genes):
            raise ValueError("gene names must be unique")
        if CONTROL_GENE in self.genes:
            raise ValueError(f"{CONTROL_GENE!r} is reserved for control wells")
        if len(self.modules) != len(self.genes):
            raise ValueError("one module id per gene is needed")
        known = set(self.genes)
        for a, b in self.edges:
            if a not in known or b not in known:
                raise ValueError(f"edge ({a}, {b}) names a gene that is not in the list")
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
            if len(self.weights) != len(self.edges):
                raise ValueError("one weight per edge is needed")
            if not all(0.0 <= w <= 1.0 for w in self.weights):
                raise ValueError("edge weights must be in [0, 1]")

    @classmethod
    def from_edges(
        cls,
        genes: Sequence[str],
        edges: Sequence[tuple[str, str]],
        modules: Sequence[int] | None = None,
    ) -> GeneGraph:
        """A graph from a user's edge list; modules default to connected components."""
        genes = tuple(str(g) for g in genes)
        edges = tuple((str(a), str(b)) for a, b in edges)
        if modules is None:
            index = {g: i for i, g in enumerate(genes)}
            parent = list(range(len(genes)))

            def find(i: int) -> int:
                while parent[i] != i:
                    parent[i] = parent[parent[i]]
                    i = parent[i]
                return i

            for a, b in edges:
                if a in index and b in index:
                    parent[find(index[a])] = find(index[b])
            roots: dict[int, int] = {}
            modules = [roots.setdefault(find(i), len(roots)) for i in range(len(genes))]
        return cls(genes, edges, tuple(int(m) for m in modules))

    def adjacency(self) -> np.ndarray:
        """Symmetric adjacency matrix in `genes` order: 0/1, or the edge weights if set (a
        pair listed twice keeps its largest weight)."""
        index = {g: i for i, g in enumerate(self.genes)}
        adj = np.zeros((len(self.genes), len(self.genes)))
        weights = self.weights or (1.0,) * len(self.edges)
        for (a, b), w in zip(self.edges, weights, strict=True):
            if a != b:
                i, j = index[a], index[b]
                adj[i, j] = adj[j, i] = max(adj[i, j], w)
        return adj

    def edge_frame(self) -> pd.DataFrame:
        """The edge list as written to gene_graph.csv: (source, target[, weight])."""
        frame = pd.DataFrame(list(self.edges), columns=["source", "target"])
        if self.weights is not None:
            frame["weight"] = self.weights
        return frame


def default_gene_graph(
    n_genes: int = 24, n_modules: int = 4, seed: int = 0, p_in: float = 0.6, p_out: float = 0.02
) -> GeneGraph:
    """Simulated gene modules: dense edges within, sparse across (a STRING/Hetionet stand-in).

    Genes are named SIMG01, SIMG02, ... to make plain that they are not real genes. Each
    module is connected (a chain plus random edges with probability `p_in`); pairs in
    different modules are linked with probability `p_out`.
    """
    if n_genes < 2 or not 1 <= n_modules <= n_genes:
        raise ValueError("need n_genes >= 2 and 1 <= n_modules <= n_genes")
    rng = stream(seed, T_GRAPH, n_genes, n_modules)
    width = max(2, len(str(n_genes)))
    genes = tuple(f"SIMG{i + 1:0{width}d}" for i in range(n_genes))
    modules = tuple(int(i * n_modules // n_genes) for i in range(n_genes))
    edges: set[tuple[int, int]] = set()
    for m in range(n_modules):
        members = [i for i in range(n_genes) if modules[i] == m]
        edges.update(zip(members[:-1], members[1:], strict=True))
    for i in range(n_genes):
        for j in range(i + 1, n_genes):
            p = p_in if modules[i] == modules[j] else p_out
            if rng.random() < p:
                edges.add((i, j))
    ordered = tuple((genes[i], genes[j]) for i, j in sorted(edges))
    return GeneGraph(genes, ordered, modules)


def gene_phenotypes(graph: GeneGraph, seed: int = 0, smoothing: float = 0.5) -> np.ndarray:
    """(genes x PHENOTYPE_FEATURES) effects: random vectors smoothed over the gene graph.

    ``X = (I + smoothing * L)^-1 Z`` with L the graph Laplacian, Z standard normal; rows are
    scaled to unit RMS and then by a per-gene strength in [0.3, 1.5]. Linked genes end up
    with correlated phenotypes, which is what graph regularization is meant to exploit.
    """
    n = len(graph.genes)
    rng = stream(seed, T_PHENO, n)
    z = rng.standard_normal((n, len(PHENOTYPE_FEATURES)))
    strength = rng.uniform(0.3, 1.5, n)
    x = smooth_over_graph(graph, z, smoothing)
    x /= np.sqrt((x**2).mean(1, keepdims=True))
    return x * strength[:, None]


def smooth_over_graph(graph: GeneGraph, z: np.ndarray, smoothing: float) -> np.ndarray:
    """``(I + smoothing * L)^-1 z`` with L = D - A the (weighted) Laplacian of the graph.

    Dense for up to 2,000 genes (the simulated default); beyond, conjugate gradients on
    the sparse system (symmetric positive definite), to a relative residual of 1e-10.
    """
    n = len(graph.genes)
    if n <= 2000:
        adj = graph.adjacency()
        laplacian = np.diag(adj.sum(1)) - adj
        return np.linalg.solve(np.eye(n) + smoothing * laplacian, z)
    import scipy.sparse

    index = {g: i for i, g in enumerate(graph.genes)}
    weights = graph.weights or (1.0,) * len(graph.edges)
    rows = np.array([index[a] for a, _ in graph.edges], dtype=np.int64)
    cols = np.array([index[b] for _, b in graph.edges], dtype=np.int64)
    vals = np.where(rows != cols, np.asarray(weights, dtype=np.float64), 0.0)
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    order = np.lexsort((vals, hi, lo))  # a pair listed twice keeps its largest weight
    lo, hi, vals = lo[order], hi[order], vals[order]
    last = np.r_[(lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1]), True]
    lo, hi, vals = lo[last], hi[last], vals[last]
    adj = scipy.sparse.coo_matrix((np.r_[vals, vals], (np.r_[lo, hi], np.r_[hi, lo])), (n, n))
    adj = adj.tocsr()
    degree = np.asarray(adj.sum(1)).ravel()
    system = scipy.sparse.identity(n, format="csr") + smoothing * (scipy.sparse.diags(degree) - adj)
    return _conjugate_gradients(system, np.asarray(z, dtype=np.float64), 1 + smoothing * degree)


def _conjugate_gradients(system, b: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients, one independent solve per column of b."""
    x = np.zeros_like(b)
    r = b.copy()
    z = r / diagonal[:, None]
    p = z.copy()
    rz = (r * z).sum(0)
    target = 1e-10 * np.linalg.norm(b, axis=0)
    for _ in range(10 * len(b)):
        ap = system @ p
        alpha = rz / np.maximum((p * ap).sum(0), 1e-300)
        x += alpha * p
        r -= alpha * ap
        if (np.linalg.norm(r, axis=0) <= target).all():
            break
        z = r / diagonal[:, None]
        rz_new = (r * z).sum(0)
        p = z + (rz_new / np.maximum(rz, 1e-300)) * p
        rz = rz_new
    return x


def expression_programs(graph: GeneGraph, seed: int = 0, smoothing: float = 0.5) -> np.ndarray:
    """(genes x DESCRIPTOR_DIM) simulated expression programs, smoothed like the phenotypes.

    A line "expresses" gene g to the degree ``sigmoid(1 + 1.5 * u_g . d / sqrt(8))`` with d
    the line's descriptor (`gene_expression`): linked genes (a complex, a pathway) are
    expressed together, and a line's descriptor says which genes are active in it.
    """
    n = len(graph.genes)
    z = stream(seed, T_EXPR, n).standard_normal((n, DESCRIPTOR_DIM))
    u = smooth_over_graph(graph, z, smoothing)
    return u / np.sqrt((u**2).mean(1, keepdims=True))


def gene_expression(programs: np.ndarray, descriptor: np.ndarray) -> np.ndarray:
    """Per-gene expression in (0, 1) of a line with this descriptor (see expression_programs)."""
    logit = 1.0 + 1.5 * (programs @ np.asarray(descriptor)) / math.sqrt(DESCRIPTOR_DIM)
    return 1.0 / (1.0 + np.exp(-logit))


# -- cell lines -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellLineProfile:
    """Base morphology of a (simulated) cell line; lengths in px of a 256 px field."""

    name: str
    radius: float  # geometric-mean cell radius
    nucleus_ratio: float  # nucleus radius / cell radius
    elongation: float  # long / short axis
    density: float  # multiplies SynthConfig.cells_per_site
    clustering: float  # share of cells placed against a neighbor (HepG2 grows in clumps)
    alignment: float  # share of cells following the site's common orientation (HUVEC)
    irregularity: float  # amplitude of the outline's 2nd / 3rd harmonics
    intensity: tuple[float, ...]  # brightness per channel (8-bit units before effects)
    fibers: float  # actin stress fiber strength
    nucleoli: float  # mean nucleoli per nucleus
    mito: float  # mitochondrial objects per cell of radius 16 px
    response_gain: float  # overall scale of the response to knock-downs


_KNOWN_LINES: dict[str, CellLineProfile] = {
    p.name.upper(): p
    for p in (
        CellLineProfile(
            "U2OS", 17.0, 0.42, 1.5, 1.0, 0.1, 0.0, 0.10,
            (150, 95, 110, 80, 120, 100), 0.9, 3.5, 45, 1.0,
        ),
        CellLineProfile(
            "HUVEC", 15.0, 0.45, 2.4, 1.0, 0.05, 0.6, 0.08,
            (140, 105, 125, 75, 100, 115), 0.7, 2.5, 35, 0.9,
        ),
        CellLineProfile(
            "RPE", 14.0, 0.47, 1.25, 1.15, 0.35, 0.1, 0.06,
            (160, 85, 90, 90, 115, 95), 0.5, 3.0, 38, 1.1,
        ),
        CellLineProfile(
            "HepG2", 11.0, 0.55, 1.15, 1.5, 0.75, 0.0, 0.12,
            (170, 115, 70, 105, 140, 80), 0.2, 2.0, 32, 0.8,
        ),
        CellLineProfile(
            "HRCE", 14.0, 0.48, 1.3, 1.2, 0.4, 0.1, 0.07,
            (155, 100, 95, 85, 110, 100), 0.45, 2.8, 36, 1.0,
        ),
        CellLineProfile(
            "VERO", 13.0, 0.5, 1.45, 1.2, 0.3, 0.15, 0.09,
            (150, 95, 100, 95, 105, 105), 0.6, 2.6, 34, 0.95,
        ),
    )
}  # fmt: skip


def cell_line_descriptor(name: str) -> np.ndarray:
    """A simulated transcriptomic embedding of a cell line (8 numbers, fixed by the name).

    Stand-in for a single-cell foundation model's embedding of the line's RNA-seq: the
    line's response scaling is a smooth function of it, so a model given this descriptor
    (e.g. as cell-line tokens) can in principle anticipate a new line's responses.
    """
    return stream(name_key(name.upper()), T_LINE).standard_normal(DESCRIPTOR_DIM)


def cell_line_profile(name: str) -> CellLineProfile:
    """Base morphology: from the table for RxRx lines, derived from the descriptor otherwise."""
    known = _KNOWN_LINES.get(name.upper())
    if known is not None:
        return dataclasses.replace(known, name=name)
    d = cell_line_descriptor(name)
    rng = stream(name_key(name.upper()), T_LINE, 1)
    return CellLineProfile(
        name=name,
        radius=float(14.0 * math.exp(0.15 * d[0])),
        nucleus_ratio=float(np.clip(0.47 * math.exp(0.1 * d[1]), 0.35, 0.62)),
        elongation=float(1.0 + 0.5 * math.exp(0.5 * d[2])),
        density=float(1.15 * math.exp(0.15 * d[3])),
        clustering=float(np.clip(0.3 + 0.2 * d[4], 0.0, 0.9)),
        alignment=float(np.clip(0.1 + 0.2 * d[5], 0.0, 0.8)),
        irregularity=float(np.clip(0.08 + 0.02 * d[6], 0.03, 0.15)),
        intensity=tuple(float(v) for v in 110 * np.exp(0.2 * rng.standard_normal(6))),
        fibers=float(0.5 * math.exp(0.4 * d[7])),
        nucleoli=float(2.8 * math.exp(0.15 * rng.standard_normal())),
        mito=float(36 * math.exp(0.15 * rng.standard_normal())),
        response_gain=1.0,
    )


def response_weights(seed: int) -> np.ndarray:
    """(PHENOTYPE_FEATURES x DESCRIPTOR_DIM) map from a line's descriptor to its response."""
    return stream(seed, T_RESP).standard_normal(
        (len(PHENOTYPE_FEATURES), DESCRIPTOR_DIM)
    ) / math.sqrt(DESCRIPTOR_DIM)


def cell_line_response(
    weights: np.ndarray, cell_line: str, descriptor: CellLineDescriptor | None = None
) -> np.ndarray:
    """Per-feature multiplier of every gene's phenotype in this cell line.

    ``response_gain * exp(0.35 * weights @ descriptor)``: smooth in the descriptor. Without
    a `descriptor` (a real embedding's, see `grounding`), the name-derived simulated one.
    """
    if descriptor is not None:
        return descriptor.profile.response_gain * np.exp(
            0.35 * weights @ np.asarray(descriptor.descriptor)
        )
    gain = cell_line_profile(cell_line).response_gain
    return gain * np.exp(0.35 * weights @ cell_line_descriptor(cell_line))


@dataclass(frozen=True)
class CellLineDescriptor:
    """A line's descriptor and morphology taken from a real embedding table (hashable).

    `descriptor` (DESCRIPTOR_DIM numbers) replaces the name-derived `cell_line_descriptor`
    and `profile` replaces `cell_line_profile`; `row` is the table row it came from and
    `source` the table (file name, sha256, shape) and the projection used.
    """

    name: str
    row: str
    descriptor: tuple[float, ...]
    profile: CellLineProfile
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "descriptor", tuple(float(v) for v in self.descriptor))
        if len(self.descriptor) != DESCRIPTOR_DIM:
            raise ValueError(f"a descriptor has {DESCRIPTOR_DIM} numbers")
        if isinstance(self.profile, dict):
            profile = dict(self.profile)
            profile["intensity"] = tuple(profile["intensity"])
            object.__setattr__(self, "profile", CellLineProfile(**profile))
