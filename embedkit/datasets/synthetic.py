"""SIMULATED Cell Painting plates in the RxRx layout: a generator, NOT real microscopy data.

No real RxRx1 / RxRx19a images are reachable from this project, so embedkit's image
pipeline learns and is benchmarked on plates drawn here. Every pixel is simulated; the
biology is a caricature chosen so that the methods of the microscopy paper (graph
regularisation over a perturbation graph, cell-line tokens, few-shot transfer to a de novo
cell line) have something real *in the simulation* to find:

* **Genes and their graph.** `default_gene_graph` draws modules of related genes (dense
  edges within a module, sparse across) — a stand-in for STRING / Hetionet, not real PPIs.
* **Phenotypes follow the graph.** Each gene's phenotype vector (`PHENOTYPE_FEATURES`:
  nucleus and cell size, elongation, density, six stain intensities, textures, nucleoli,
  mitochondria count and fragmentation, Golgi dispersion, mitotic index) is a random
  vector smoothed over the graph, ``(I + alpha L)^-1 Z``, so linked genes have correlated
  phenotypes; each gene also gets a strength (some knock-downs barely show).
* **Cell lines.** Base morphology per line (size, nucleus ratio, elongation, density,
  clustering, stain brightness, actin fibres, organelle counts) from a table for the RxRx
  lines (U2OS, HUVEC, RPE, HepG2, HRCE, VERO), derived from the name for any other
  (a "de novo" line). Each line scales the response per feature through a smooth function
  of a simulated line descriptor (`cell_line_descriptor`, a stand-in for an RNA-seq
  embedding), so that descriptors carry information about responses.
* **Rendering** (numpy only): soft-edged irregular ellipse cells with a nucleus, ER
  (perinuclear, reticular, nuclear envelope), actin (cortex + stress fibres along the long
  axis), RNA (nucleoli puncta), mitochondria (tubules that fragment), Golgi (a cluster
  beside the nucleus) and a WGA membrane rim; shot + read noise; uint8 per channel, in
  RxRx channel order (w1 DNA ... w6 Golgi/membrane).
* **Technical effects**, each with a strength knob (0 disables): per batch and channel
  gain / offset and contrast, a gamma that survives instance normalisation
  (`batch_effect`), per plate vignetting and gradient (`illumination`), per well
  intensity drift with dimmer edge wells (`well_drift`), noise (`noise`).

The field of view is fixed: `size` sets the resolution, so a 64 px site shows the same
cells as a 256 px one, smaller. Output is deterministic for a seed; every site's pixels
depend only on (seed, cell line, batch, plate, well, site, gene), not on what else is drawn.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CHANNELS",
    "CHANNEL_NAMES",
    "CONTROL_GENE",
    "METADATA_COLUMNS",
    "PHENOTYPE_FEATURES",
    "CellLineProfile",
    "GeneGraph",
    "SynthConfig",
    "SyntheticScreen",
    "cell_line_descriptor",
    "cell_line_profile",
    "default_gene_graph",
    "gene_phenotypes",
    "generate_sites",
    "render_site",
    "well_names",
    "write_synthetic_dataset",
]

CHANNELS: tuple[tuple[str, str], ...] = (
    ("DNA", "Hoechst 33342"),
    ("ER", "Concanavalin A"),
    ("Actin", "Phalloidin"),
    ("RNA", "SYTO 14"),
    ("Mito", "MitoTracker"),
    ("GolgiMembrane", "WGA"),
)
CHANNEL_NAMES: tuple[str, ...] = tuple(name for name, _ in CHANNELS)

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
_F = {name: i for i, name in enumerate(PHENOTYPE_FEATURES)}
_INTENSITY = [_F[f"{c}_intensity"] for c in ("dna", "er", "actin", "rna", "mito", "wga")]

CONTROL_GENE = "EMPTY"
METADATA_COLUMNS: tuple[str, ...] = (
    "Metadata_Experiment",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_CellLine",
    "Metadata_Batch",
    "Metadata_Gene",
    "Metadata_PertType",
    "Metadata_Module",
)

ROWS = "BCDEFGHIJKLMNO"  # RxRx1 uses the inner 14 x 22 wells of a 384-well plate
COLUMNS = tuple(range(2, 24))
REFERENCE_SIZE = 256  # pixel sizes in the tables below are for a 256 px field
DESCRIPTOR_DIM = 8

# RNG stream tags: each random quantity has its own stream, so changing one knob never
# reshuffles the draws of another.
_T_GRAPH, _T_PHENO, _T_RESP, _T_LINE, _T_LAYOUT, _T_BATCH, _T_PLATE, _T_WELL, _T_SITE = range(
    101, 110
)


def _crc(text: str) -> int:
    """Stable 32-bit id of a name (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(list(keys))


def well_names(n: int | None = None) -> list[str]:
    """RxRx well names in plate order (B02, B03, ..., B23, C02, ...); the first `n`."""
    names = [f"{row}{col:02d}" for row in ROWS for col in COLUMNS]
    if n is None:
        return names
    if not 1 <= n <= len(names):
        raise ValueError(f"wells must be between 1 and {len(names)} (rows B-O x cols 02-23)")
    return names[:n]


# -- gene graph -------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneGraph:
    """Genes, undirected edges between them and a module id per gene (hashable, immutable)."""

    genes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    modules: tuple[int, ...]

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
        """Symmetric 0/1 adjacency matrix in `genes` order."""
        index = {g: i for i, g in enumerate(self.genes)}
        adj = np.zeros((len(self.genes), len(self.genes)))
        for a, b in self.edges:
            if a != b:
                adj[index[a], index[b]] = adj[index[b], index[a]] = 1.0
        return adj

    def edge_frame(self) -> pd.DataFrame:
        """The edge list as a (source, target) table, as written to gene_graph.csv."""
        return pd.DataFrame(list(self.edges), columns=["source", "target"])


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
    rng = _rng(seed, _T_GRAPH, n_genes, n_modules)
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
    with correlated phenotypes, which is what graph regularisation is meant to exploit.
    """
    n = len(graph.genes)
    rng = _rng(seed, _T_PHENO, n)
    z = rng.standard_normal((n, len(PHENOTYPE_FEATURES)))
    strength = rng.uniform(0.3, 1.5, n)
    adj = graph.adjacency()
    laplacian = np.diag(adj.sum(1)) - adj
    x = np.linalg.solve(np.eye(n) + smoothing * laplacian, z)
    x /= np.sqrt((x**2).mean(1, keepdims=True))
    return x * strength[:, None]


# -- cell lines -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellLineProfile:
    """Base morphology of a (simulated) cell line; lengths in px of a 256 px field."""

    name: str
    radius: float  # geometric-mean cell radius
    nucleus_ratio: float  # nucleus radius / cell radius
    elongation: float  # long / short axis
    density: float  # multiplies SynthConfig.cells_per_site
    clustering: float  # share of cells placed against a neighbour (HepG2 grows in clumps)
    alignment: float  # share of cells following the site's common orientation (HUVEC)
    irregularity: float  # amplitude of the outline's 2nd / 3rd harmonics
    intensity: tuple[float, ...]  # brightness per channel (8-bit units before effects)
    fibres: float  # actin stress fibre strength
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
    return _rng(_crc(name.upper()), _T_LINE).standard_normal(DESCRIPTOR_DIM)


def cell_line_profile(name: str) -> CellLineProfile:
    """Base morphology: from the table for RxRx lines, derived from the descriptor otherwise."""
    known = _KNOWN_LINES.get(name.upper())
    if known is not None:
        return dataclasses.replace(known, name=name)
    d = cell_line_descriptor(name)
    rng = _rng(_crc(name.upper()), _T_LINE, 1)
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
        fibres=float(0.5 * math.exp(0.4 * d[7])),
        nucleoli=float(2.8 * math.exp(0.15 * rng.standard_normal())),
        mito=float(36 * math.exp(0.15 * rng.standard_normal())),
        response_gain=1.0,
    )


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Everything that fixes a simulated screen; the same config always gives the same bytes.

    Effect knobs (`batch_effect`, `illumination`, `well_drift`, `noise`, `effect_strength`)
    are multipliers of built-in magnitudes: 1 is the default, 0 switches the effect off.
    `blank_channels` (1-based, RxRx numbering) are written as constant zero images, for
    testing how downstream code treats constant channels.
    """

    cell_lines: tuple[str, ...] = ("U2OS", "HUVEC")
    batches: int = 2  # experiments per cell line (RxRx: U2OS-01, U2OS-02, ...)
    plates: int = 1  # plates per batch
    wells: int = 24  # per plate, first N of B02..O23
    sites: int = 2  # per well
    size: int = 256  # pixels per side; the field of view is fixed
    channels: int = 6  # the first N channels in RxRx order
    cells_per_site: tuple[int, int] = (15, 30)  # before cell-line density and phenotype
    control_fraction: float = 0.25  # share of wells per plate that are negative controls
    n_genes: int = 24  # used when gene_graph is None
    n_modules: int = 4  # used when gene_graph is None
    gene_graph: GeneGraph | None = None  # None: default_gene_graph(n_genes, n_modules, seed)
    graph_smoothing: float = 0.5  # alpha in (I + alpha L)^-1; 0 makes genes independent
    effect_strength: float = 1.0
    batch_effect: float = 1.0
    illumination: float = 1.0
    well_drift: float = 1.0
    noise: float = 1.0
    blank_channels: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_lines", tuple(self.cell_lines))
        object.__setattr__(self, "cells_per_site", tuple(int(v) for v in self.cells_per_site))
        object.__setattr__(self, "blank_channels", tuple(int(c) for c in self.blank_channels))
        if not self.cell_lines:
            raise ValueError("at least one cell line is needed")
        for name in self.cell_lines:
            if not name or not name.replace("_", "").isalnum():
                raise ValueError(f"cell line {name!r}: use letters, digits and _ only")
        if len({n.upper() for n in self.cell_lines}) != len(self.cell_lines):
            raise ValueError("cell lines must be unique")
        for key in ("batches", "plates", "sites"):
            if not 1 <= getattr(self, key) <= 99:
                raise ValueError(f"{key} must be between 1 and 99")
        well_names(self.wells)
        if not 16 <= self.size <= 4096:
            raise ValueError("size must be between 16 and 4096 pixels")
        if not 1 <= self.channels <= len(CHANNELS):
            raise ValueError(f"channels must be between 1 and {len(CHANNELS)}")
        lo, hi = self.cells_per_site
        if not 1 <= lo <= hi:
            raise ValueError("cells_per_site must be (low, high) with 1 <= low <= high")
        if not 0.0 <= self.control_fraction <= 1.0:
            raise ValueError("control_fraction must be between 0 and 1")
        for c in self.blank_channels:
            if not 1 <= c <= self.channels:
                raise ValueError(f"blank channel {c} is not among channels 1..{self.channels}")
        for key in ("graph_smoothing", "effect_strength", "batch_effect", "illumination"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0")
        if self.well_drift < 0 or self.noise < 0:
            raise ValueError("well_drift and noise must be >= 0")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")

    def to_dict(self) -> dict:
        """Plain JSON values (the gene graph as lists), as recorded in README.txt."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping) -> SynthConfig:
        """Inverse of `to_dict` (e.g. the config.json written next to a dataset)."""
        data = dict(data)
        graph = data.get("gene_graph")
        if isinstance(graph, Mapping):
            data["gene_graph"] = GeneGraph(
                tuple(graph["genes"]),
                tuple(tuple(e) for e in graph["edges"]),
                tuple(graph["modules"]),
            )
        return cls(**data)


# -- the screen ---------------------------------------------------------------------------


class SyntheticScreen:
    """A simulated screen fixed by a config: graph, phenotypes, cell lines, layout, effects."""

    def __init__(self, config: SynthConfig | None = None) -> None:
        self.config = config = config or SynthConfig()
        self.graph = config.gene_graph or default_gene_graph(
            config.n_genes, config.n_modules, config.seed
        )
        self.phenotypes = gene_phenotypes(self.graph, config.seed, config.graph_smoothing)
        self._gene_index = {g: i for i, g in enumerate(self.graph.genes)}
        # response scaling per feature = exp(0.35 * W @ descriptor): smooth in the descriptor
        self._response_w = _rng(config.seed, _T_RESP).standard_normal(
            (len(PHENOTYPE_FEATURES), DESCRIPTOR_DIM)
        ) / math.sqrt(DESCRIPTOR_DIM)
        self._illumination_cache: dict[tuple, np.ndarray] = {}

    # ---- biology ----

    def response(self, cell_line: str) -> np.ndarray:
        """Per-feature multiplier of every gene's phenotype in this cell line."""
        gain = cell_line_profile(cell_line).response_gain
        return gain * np.exp(0.35 * self._response_w @ cell_line_descriptor(cell_line))

    def effect(self, cell_line: str, gene: str) -> np.ndarray:
        """The knock-down's phenotype in this line (zeros for the control, EMPTY)."""
        if gene == CONTROL_GENE:
            return np.zeros(len(PHENOTYPE_FEATURES))
        if gene not in self._gene_index:
            raise ValueError(f"unknown gene {gene!r}; the screen has {len(self._gene_index)}")
        base = self.phenotypes[self._gene_index[gene]]
        return self.config.effect_strength * self.response(cell_line) * base

    def phenotype_frame(self) -> pd.DataFrame:
        """Ground-truth phenotype vectors (before cell-line scaling), one row per gene."""
        frame = pd.DataFrame(self.phenotypes, columns=list(PHENOTYPE_FEATURES))
        frame.insert(0, "module", self.graph.modules)
        frame.insert(0, "gene", self.graph.genes)
        return frame

    # ---- layout ----

    def layout(self) -> pd.DataFrame:
        """One row per site (METADATA_COLUMNS), in writing order; genes rotate across plates.

        Per plate, round(control_fraction * wells) wells are controls; the others take the
        next genes of a per-cell-line gene order, so every gene is covered before any repeats.
        Which well gets what is shuffled per plate.
        """
        cfg = self.config
        wells = well_names(cfg.wells)
        n_ctrl = int(round(cfg.control_fraction * cfg.wells))
        n_trt = cfg.wells - n_ctrl
        genes = self.graph.genes
        rows = []
        for line in cfg.cell_lines:
            order = _rng(cfg.seed, _T_LAYOUT, _crc(line.upper())).permutation(len(genes))
            k = 0
            for batch in range(1, cfg.batches + 1):
                experiment = f"{line}-{batch:02d}"
                for plate in range(1, cfg.plates + 1):
                    rng = _rng(cfg.seed, _T_LAYOUT, _crc(line.upper()), batch, plate)
                    assigned = [CONTROL_GENE] * n_ctrl + [
                        genes[order[(k + i) % len(genes)]] for i in range(n_trt)
                    ]
                    k += n_trt
                    assigned = [assigned[i] for i in rng.permutation(cfg.wells)]
                    for well, gene in zip(wells, assigned, strict=True):
                        control = gene == CONTROL_GENE
                        module = -1 if control else self.graph.modules[self._gene_index[gene]]
                        for site in range(1, cfg.sites + 1):
                            rows.append(
                                (
                                    experiment,
                                    f"{experiment}/Plate{plate}",
                                    well,
                                    site,
                                    line,
                                    batch,
                                    gene,
                                    "negcon" if control else "trt",
                                    module,
                                )
                            )
        return pd.DataFrame(rows, columns=list(METADATA_COLUMNS))

    # ---- technical effects ----

    def batch_effect(self, cell_line: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(gain, offset) per channel for a batch; (1, 0) when batch_effect is 0."""
        b = self.config.batch_effect
        rng = _rng(self.config.seed, _T_BATCH, _crc(cell_line.upper()), batch)
        gain = np.exp(b * 0.15 * rng.standard_normal(len(CHANNELS)))
        offset = b * 4.0 * rng.random(len(CHANNELS))
        return gain, offset

    def batch_contrast(self, cell_line: str, batch: int) -> np.ndarray:
        """Per-channel gamma of a batch (staining / exposure non-linearity); 1 when off.

        Gain and offset alone vanish under per-crop instance normalisation; a contrast
        change does not, as in real screens where stains saturate differently per batch.
        """
        b = self.config.batch_effect
        rng = _rng(self.config.seed, _T_BATCH, _crc(cell_line.upper()), batch, 7)
        return np.exp(b * 0.2 * rng.standard_normal(len(CHANNELS)))

    def _illumination(self, cell_line: str, batch: int, plate: int) -> np.ndarray:
        """(6, H, W) float32 vignetting x linear gradient for a plate (cached, read-only)."""
        key = (cell_line.upper(), batch, plate)
        if key not in self._illumination_cache:
            if len(self._illumination_cache) > 32:
                self._illumination_cache.clear()
            self._illumination_cache[key] = self._make_illumination(cell_line, batch, plate)
        return self._illumination_cache[key]

    def _make_illumination(self, cell_line: str, batch: int, plate: int) -> np.ndarray:
        size, ill = self.config.size, self.config.illumination
        rng = _rng(self.config.seed, _T_PLATE, _crc(cell_line.upper()), batch, plate)
        k = ill * rng.uniform(0.12, 0.28) * rng.uniform(0.8, 1.2, len(CHANNELS))
        cy, cx = ill * 0.15 * rng.standard_normal(2)
        gy, gx = ill * 0.06 * rng.standard_normal(2)
        t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        yy, xx = t[:, None], t[None, :]
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / 2
        field_ = np.clip(1 + gy * yy + gx * xx, 0.2, None)
        out = (np.clip(1 - k[:, None, None] * r2[None], 0.2, None) * field_[None]).astype(
            np.float32
        )
        out.flags.writeable = False
        return out

    def _well_gain(self, cell_line: str, batch: int, plate: int, well: str) -> np.ndarray:
        wd = self.config.well_drift
        rng = _rng(self.config.seed, _T_WELL, _crc(cell_line.upper()), batch, plate, _crc(well))
        edge = well[0] in (ROWS[0], ROWS[-1]) or int(well[1:]) in (COLUMNS[0], COLUMNS[-1])
        return np.exp(wd * 0.05 * rng.standard_normal(len(CHANNELS))) * (1 - wd * 0.06 * edge)

    # ---- rendering ----

    def render_site(
        self,
        cell_line: str,
        gene: str = CONTROL_GENE,
        batch: int = 1,
        plate: int = 1,
        well: str = "B02",
        site: int = 1,
    ) -> np.ndarray:
        """One simulated site as uint8 (channels, size, size); no files involved."""
        cfg = self.config
        rng = _rng(cfg.seed, _T_SITE, _crc(cell_line.upper()), batch, plate, _crc(well), site)
        profile = cell_line_profile(cell_line)
        signal = _draw_cells(profile, self.effect(cell_line, gene), rng, cfg)
        gain, offset = self.batch_effect(cell_line, batch)
        gain = gain * self._well_gain(cell_line, batch, plate, well)
        signal *= gain.astype(np.float32)[:, None, None]
        if cfg.batch_effect > 0:
            gamma = self.batch_contrast(cell_line, batch).astype(np.float32)[:, None, None]
            np.clip(signal, 0, None, out=signal)
            signal = np.float32(255) * (signal / np.float32(255)) ** gamma
        if cfg.illumination > 0:
            signal *= self._illumination(cell_line, batch, plate)
        signal += offset.astype(np.float32)[:, None, None]
        if cfg.noise > 0:
            noise = rng.standard_normal(signal.shape, dtype=np.float32)
            var = np.maximum(signal, 0)
            var *= 0.6
            var += 2.0
            noise *= np.sqrt(var, out=var)
            noise *= np.float32(cfg.noise)
            signal += noise
        np.rint(signal, out=signal)
        np.clip(signal, 0, 255, out=signal)
        out = signal.astype(np.uint8)[: cfg.channels]
        for c in cfg.blank_channels:
            out[c - 1] = 0
        return out

    def sites(self) -> Iterator[tuple[dict, np.ndarray]]:
        """(metadata row, uint8 image) for every site of the layout, in order."""
        for row in self.layout().to_dict("records"):
            yield row, self.render_meta(row)

    def render_meta(self, meta: Mapping) -> np.ndarray:
        """Render the site a layout row (Metadata_* keys) describes."""
        return self.render_site(
            meta["Metadata_CellLine"],
            meta["Metadata_Gene"],
            int(meta["Metadata_Batch"]),
            int(str(meta["Metadata_Plate"]).rsplit("Plate", 1)[-1]),
            meta["Metadata_Well"],
            int(meta["Metadata_Site"]),
        )


@functools.lru_cache(maxsize=8)
def _screen(config: SynthConfig) -> SyntheticScreen:
    return SyntheticScreen(config)


def render_site(
    config: SynthConfig,
    cell_line: str,
    gene: str = CONTROL_GENE,
    batch: int = 1,
    plate: int = 1,
    well: str = "B02",
    site: int = 1,
) -> np.ndarray:
    """One simulated site, uint8 (C, H, W), in memory (the screen is cached per config)."""
    return _screen(config).render_site(cell_line, gene, batch, plate, well, site)


def generate_sites(config: SynthConfig | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """Stream (metadata dict, uint8 (C, H, W) image) for every site, without touching disk."""
    return SyntheticScreen(config or SynthConfig()).sites()


# -- drawing ------------------------------------------------------------------------------

_BACKGROUND = np.array([5.0, 6.0, 4.0, 5.0, 4.0, 5.0], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _noise_filter(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian transfer functions of the three texture fields, and their output std."""
    scale = size / REFERENCE_SIZE
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sigmas = np.array([0.8, 1.0, 3.0]) * max(scale, 0.35)
    transfer = np.exp(-2 * np.pi**2 * sigmas[:, None, None] ** 2 * (fy**2 + fx**2)[None])
    # std of white noise filtered by `transfer` (Parseval, counting the rfft half-plane twice)
    weight = np.full(transfer.shape[-1], 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    std = np.sqrt((transfer**2 * weight).sum(axis=(1, 2)) / size**2)
    transfer = (transfer / std[:, None, None]).astype(np.complex64)
    transfer.flags.writeable = False
    return transfer, std


def _noise_fields(rng: np.random.Generator, size: int) -> np.ndarray:
    """Three unit-variance smooth noise fields: fine (chromatin), fine (ER), coarse (actin)."""
    white = rng.standard_normal((3, size, size), dtype=np.float32)
    spectrum = np.fft.rfft2(white)
    spectrum *= _noise_filter(size)[0]
    return np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32, copy=False)


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with zero padding (no wrap-around), for small sigmas."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    h, w = img.shape
    pad = np.pad(img, radius)
    rows = np.zeros((h + 2 * radius, w), dtype=np.float32)
    for i, t in enumerate(taps):
        rows += t * pad[:, i : i + w]
    out = np.zeros((h, w), dtype=np.float32)
    for i, t in enumerate(taps):
        out += t * rows[i : i + h]
    return out


def _splat(size: int, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splatting of weighted points onto a (size, size) image."""
    y0, x0 = np.floor(y - 0.5), np.floor(x - 0.5)
    fy, fx = y - 0.5 - y0, x - 0.5 - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    idx, wts = [], []
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx))):
        idx.append((y0 + dy, x0 + dx))
        wts.append(wt * w)
    idx.append((y0 + 1, x0 + 1))
    wts.append(fy * fx * w)
    yy = np.concatenate([i[0] for i in idx])
    xx = np.concatenate([i[1] for i in idx])
    ww = np.concatenate(wts)
    ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
    flat = np.bincount(yy[ok] * size + xx[ok], weights=ww[ok], minlength=size * size)
    return flat.reshape(size, size).astype(np.float32)


def _place(
    rng: np.random.Generator, n: int, radius: np.ndarray, size: int, clustering: float
) -> np.ndarray:
    """Cell centres: uniform or against a neighbour, rejecting heavy overlaps."""
    centres = np.empty((0, 2))
    placed_r = np.empty(0)
    for i in range(n):
        for _ in range(30):
            if len(centres) and rng.random() < clustering:
                j = rng.integers(len(centres))
                angle = rng.uniform(0, 2 * np.pi)
                dist = (placed_r[j] + radius[i]) * rng.uniform(0.85, 1.1)
                cand = centres[j] + dist * np.array([np.sin(angle), np.cos(angle)])
            else:
                cand = rng.uniform(0, size, 2)
            if len(centres) == 0:
                break
            d = np.sqrt(((centres - cand) ** 2).sum(1))
            if np.all(d > 0.8 * (placed_r + radius[i])):
                break
        else:
            continue
        centres = np.vstack([centres, cand])
        placed_r = np.append(placed_r, radius[i])
    return centres


def _draw_cells(
    profile: CellLineProfile, effect: np.ndarray, rng: np.random.Generator, cfg: SynthConfig
) -> np.ndarray:
    """Float32 (6, H, W) fluorescence of one site before technical effects (background incl.)."""
    size = cfg.size
    s = size / REFERENCE_SIZE
    e = np.clip(effect, -3, 3)
    n_feat = len(PHENOTYPE_FEATURES)

    lo, hi = cfg.cells_per_site
    n_target = rng.integers(lo, hi + 1) * profile.density * math.exp(0.2 * e[_F["cell_count"]])
    n = max(1, int(round(n_target)))
    # per-cell phenotype: knock-down penetrance x effect + cell-to-cell variability
    penetrance = rng.uniform(0.6, 1.0, n)
    ec = penetrance[:, None] * e[None] + 0.7 * rng.standard_normal((n, n_feat))

    mitotic = rng.random(n) < 0.03 * np.exp(0.6 * ec[:, _F["mitotic_index"]])
    radius = profile.radius * s * np.exp(0.12 * ec[:, _F["cell_size"]])
    radius = np.where(mitotic, 0.65 * radius, radius)
    elong = 1 + (profile.elongation - 1) * np.exp(0.35 * ec[:, _F["elongation"]])
    elong = np.where(mitotic, 1.05, elong)
    a, b = radius * np.sqrt(elong), radius / np.sqrt(elong)
    nuc_ratio = np.clip(profile.nucleus_ratio * np.exp(0.12 * ec[:, _F["nucleus_size"]]), 0.2, 0.8)
    nuc_ratio = np.where(mitotic, 0.55, nuc_ratio)
    an = nuc_ratio * radius * elong**0.25
    bn = nuc_ratio * radius / elong**0.25
    nu = (a - an) * 0.3 * rng.standard_normal(n)
    nv = (b - bn) * 0.3 * rng.standard_normal(n)

    site_theta = rng.uniform(0, np.pi)
    aligned = rng.random(n) < profile.alignment
    theta = np.where(aligned, site_theta + 0.25 * rng.standard_normal(n), rng.uniform(0, np.pi, n))
    harm = profile.irregularity * rng.standard_normal((n, 4))

    intensity = np.asarray(profile.intensity, dtype=float)[None] * np.exp(
        0.2 * ec[:, _INTENSITY] + 0.1 * rng.standard_normal((n, 6))
    )
    intensity[:, 0] *= np.where(mitotic, 2.0, 1.0)
    chromatin = 0.2 * np.exp(0.4 * ec[:, _F["chromatin_texture"]]) * np.where(mitotic, 2.0, 1.0)
    er_tex = 0.45 * np.exp(0.4 * ec[:, _F["er_texture"]])
    fibres = profile.fibres * np.exp(0.5 * ec[:, _F["actin_fibres"]])
    fibre_period = 4.0 * max(s, 0.5) * rng.uniform(0.8, 1.25, n)
    fibre_phase = rng.uniform(0, 2 * np.pi, n)

    centres = _place(rng, n, np.sqrt(a * b), size, profile.clustering)
    n = len(centres)
    canvas = np.zeros((6, size, size), dtype=np.float32)
    fields = _noise_fields(rng, size)
    edge = max(0.7, 1.2 * s)
    rim_w = max(0.7, 1.6 * s)

    for i in range(n):
        cy, cx = centres[i]
        ct, st = math.cos(theta[i]), math.sin(theta[i])
        ext = 1.0 + 2 * np.abs(harm[i]).max() + 0.05
        hx = math.sqrt((a[i] * ct) ** 2 + (b[i] * st) ** 2) * ext + 2
        hy = math.sqrt((a[i] * st) ** 2 + (b[i] * ct) ** 2) * ext + 2
        y0, y1 = max(0, int(cy - hy)), min(size, int(math.ceil(cy + hy)) + 1)
        x0, x1 = max(0, int(cx - hx)), min(size, int(math.ceil(cx + hx)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
        u = dx * ct + dy * st
        v = dy * ct - dx * st
        un, vn = u / a[i], v / b[i]
        rr = np.sqrt(un * un + vn * vn) + 1e-6
        cp, sp = un / rr, vn / rr
        h = harm[i]
        bound = (
            1
            + h[0] * (cp * cp - sp * sp)
            + h[1] * (2 * cp * sp)
            + h[2] * cp * (4 * cp * cp - 3)
            + h[3] * sp * (3 - 4 * sp * sp)
        )
        rho = rr / bound
        r_px = math.sqrt(a[i] * b[i])
        depth = (1 - rho) * r_px  # px inside the outline
        cell = np.minimum(np.maximum(depth * (1 / edge), 0), 1)
        nx, ny = (u - nu[i]) / an[i], (v - nv[i]) / bn[i]
        rn = np.sqrt(nx * nx + ny * ny)
        rn_px = math.sqrt(an[i] * bn[i])
        nuc = np.minimum(np.maximum((1 - rn) * (rn_px / edge), 0), 1) * cell
        cyto = cell - nuc
        rim = cell * np.exp(-((depth / rim_w) ** 2))
        peri = np.exp(np.maximum(rn - 1, 0) * -1.2)
        f = fields[:, y0:y1, x0:x1]
        envelope = cell * np.exp(-(((rn - 1) * rn_px / rim_w) ** 2))
        fib = (
            0.5 + 0.5 * np.cos(v * (2 * np.pi / fibre_period[i]) + fibre_phase[i] + 1.5 * f[2])
        ) ** 6
        inten = intensity[i]
        patch = canvas[:, y0:y1, x0:x1]
        patch[0] += inten[0] * nuc * np.maximum(1 + chromatin[i] * f[0], 0)
        patch[1] += inten[1] * (
            cyto * (0.3 + 0.7 * peri) * np.maximum(1 + er_tex[i] * f[1], 0) + 0.4 * envelope
        )
        patch[2] += inten[2] * (
            0.2 * cell + 0.8 * rim + 0.6 * fibres[i] * cyto * fib * np.maximum(f[1] + 0.5, 0)
        )
        patch[3] += inten[3] * (0.25 * cyto * (0.5 + 0.5 * peri) + 0.2 * nuc)
        patch[4] += inten[4] * 0.12 * cyto * (0.5 + 0.5 * peri)
        patch[5] += inten[5] * (0.12 * cell + 0.7 * rim)

    cells = dict(a=a, b=b, an=an, bn=bn, nu=nu, nv=nv, theta=theta, nuc_ratio=nuc_ratio)
    cells.update(mitotic=mitotic, intensity=intensity, ec=ec)
    _draw_puncta(canvas, rng, centres, {k: v[:n] for k, v in cells.items()}, profile, s)
    fields_bg = 1 + 0.1 * fields[2]
    canvas += _BACKGROUND[:, None, None] * fields_bg[None]
    return canvas


def _draw_puncta(
    canvas: np.ndarray,
    rng: np.random.Generator,
    centres: np.ndarray,
    cells: dict[str, np.ndarray],
    profile: CellLineProfile,
    s: float,
) -> None:
    """Nucleoli (RNA), mitochondria (tubules / fragments) and Golgi puncta, all cells at once."""
    a, b, an, bn, nu, nv = (cells[k] for k in ("a", "b", "an", "bn", "nu", "nv"))
    theta, nuc_ratio, mitotic = cells["theta"], cells["nuc_ratio"], cells["mitotic"]
    intensity, ec = cells["intensity"], cells["ec"]
    size = canvas.shape[-1]
    n = len(centres)
    if n == 0:
        return
    ct, st = np.cos(theta), np.sin(theta)

    def to_image(ci: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = centres[ci, 1] + u * ct[ci] - v * st[ci]
        y = centres[ci, 0] + u * st[ci] + v * ct[ci]
        return y, x

    def stamp(channel: int, y: np.ndarray, x: np.ndarray, w: np.ndarray, sigma: float) -> None:
        sigma = max(0.5, sigma)
        w = w * 2 * np.pi * sigma**2  # so that the peak is ~w whatever sigma is
        canvas[channel] += _gauss_blur(_splat(size, y, x, w), sigma)

    # nucleoli: 1 + Poisson inside the nucleus, none in mitotic cells
    lam = profile.nucleoli * np.exp(0.35 * ec[:, _F["nucleoli_count"]])
    k = np.where(mitotic, 0, 1 + rng.poisson(np.clip(lam - 1, 0, None)))
    ci = np.repeat(np.arange(n), k)
    t, ang = 0.6 * np.sqrt(rng.random(len(ci))), rng.uniform(0, 2 * np.pi, len(ci))
    y, x = to_image(ci, nu[ci] + an[ci] * t * np.cos(ang), nv[ci] + bn[ci] * t * np.sin(ang))
    stamp(3, y, x, 1.1 * intensity[ci, 3], 1.6 * s)

    # mitochondria: segments of `length` px, shorter and more numerous when fragmented
    frag = ec[:, _F["mito_fragmentation"]]
    count = (
        profile.mito
        * (np.sqrt(a * b) / (16 * s)) ** 2
        * np.exp(0.3 * ec[:, _F["mito_count"]] + 0.2 * frag)
    )
    k = rng.poisson(np.where(mitotic, 0.5, 1.0) * count)
    ci = np.repeat(np.arange(n), k)
    m = len(ci)
    lo = 1.1 * nuc_ratio[ci]
    t = lo + np.clip(0.85 - lo, 0.05, None) * rng.random(m) ** 1.5
    ang = rng.uniform(0, 2 * np.pi, m)
    y, x = to_image(ci, a[ci] * t * np.cos(ang), b[ci] * t * np.sin(ang))
    length = 4.0 * s * np.exp(-0.35 * frag[ci]) * rng.uniform(0.5, 1.5, m)
    npts = np.clip(np.rint(length / max(s, 0.5)), 1, 10).astype(np.int64)
    seg = np.repeat(np.arange(m), npts)
    pos = np.arange(len(seg)) - np.repeat(np.cumsum(npts) - npts, npts)
    step = (pos - (npts[seg] - 1) / 2) * max(s, 0.5)
    direction = rng.uniform(0, 2 * np.pi, m)[seg]
    ym, xm = y[seg] + step * np.sin(direction), x[seg] + step * np.cos(direction)
    stamp(4, ym, xm, 0.3 * intensity[ci[seg], 4], 0.8 * s)

    # Golgi: a cluster beside the nucleus, spread out when dispersed
    spread = 0.35 * np.exp(0.4 * ec[:, _F["golgi_dispersion"]])
    k = np.where(mitotic, 0, rng.poisson(14, n))
    ci = np.repeat(np.arange(n), k)
    gamma = rng.uniform(0, 2 * np.pi, n)[ci]
    rn_px = np.sqrt(an * bn)[ci]
    u = nu[ci] + an[ci] * 1.15 * np.cos(gamma) + spread[ci] * rn_px * rng.standard_normal(len(ci))
    v = nv[ci] + bn[ci] * 1.15 * np.sin(gamma) + spread[ci] * rn_px * rng.standard_normal(len(ci))
    y, x = to_image(ci, u, v)
    stamp(5, y, x, 0.5 * intensity[ci, 5], 1.0 * s)


# -- writing ------------------------------------------------------------------------------


def _readme(config: SynthConfig, n_sites: int, n_files: int) -> str:
    from embedkit import __version__

    channels = "\n".join(
        f"  w{i + 1}  {name:<14} {stain}"
        for i, (name, stain) in enumerate(CHANNELS[: config.channels])
    )
    blank = "".join(f" --blank-channel {c}" for c in config.blank_channels)
    return f"""SIMULATED DATA - NOT REAL MICROSCOPY IMAGES
============================================

These Cell Painting / RxRx-style images were drawn by a computer program
(embedkit.datasets.synthetic, embedkit {__version__}). No cell was imaged. The genes
(SIMG..), their graph, the phenotypes and the cell-line differences are all simulated;
cell-line names only borrow the RxRx lines' typical morphology. Use these data to test
and benchmark software, never to draw biological conclusions.

Contents
  <CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<channel>.png   8-bit PNG, {config.size}x{config.size}
  metadata.csv        one row per site ({n_sites} sites, {n_files} image files)
  gene_graph.csv      the simulated gene graph (source, target)
  gene_phenotypes.csv ground-truth phenotype vector per gene (before cell-line scaling)
  config.json         the exact configuration; same config (incl. seed) -> same bytes

Channels (RxRx order)
{channels}

How it was generated
  Genes sit in modules of a random graph (dense within, sparse across). Each gene's
  phenotype vector is random noise smoothed over the graph, (I + alpha L)^-1 Z with
  alpha = {config.graph_smoothing}, so linked genes look alike. Cells are drawn as
  irregular ellipses with nucleus, ER, actin, nucleoli, mitochondria, Golgi and membrane;
  knock-downs change their size, shape, intensities, textures and organelle counts
  (effect_strength {config.effect_strength}); each cell line has its own morphology and
  response scaling. Technical effects (0 = off): batch_effect {config.batch_effect}
  (per-batch channel gain/offset), illumination {config.illumination} (per-plate
  vignetting), well_drift {config.well_drift} (per-well intensity), noise {config.noise}.
  Blank (constant zero) channels: {list(config.blank_channels) or "none"}. Seed: {config.seed}.

Regenerate with:
  embedkit datasets synth-plate OUT --cell-lines {",".join(config.cell_lines)} \\
    --batches {config.batches} --plates {config.plates} --wells {config.wells} \\
    --sites {config.sites} --size {config.size} --seed {config.seed} \\
    --batch-effect {config.batch_effect}{blank}
  or, for any setting, in Python:
  write_synthetic_dataset(OUT, SynthConfig.from_dict(json.load(open("config.json"))))
"""


def write_synthetic_dataset(
    out_dir: str | Path, config: SynthConfig | None = None, *, overwrite: bool = False
) -> pd.DataFrame:
    """Write a simulated screen in the RxRx layout; return its metadata (one row per site).

    Writes `<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png`, metadata.csv,
    gene_graph.csv, gene_phenotypes.csv, config.json and a README.txt saying the data are
    SIMULATED. A non-empty `out_dir` is refused unless `overwrite` (files are then
    replaced, stray files from earlier runs are left alone).
    """
    from PIL import Image

    config = config or SynthConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} is not empty; choose a new folder or pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    screen = SyntheticScreen(config)
    meta = screen.layout()
    for row in meta.to_dict("records"):
        image = screen.render_meta(row)
        folder = out / row["Metadata_Plate"]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{row['Metadata_Well']}_s{row['Metadata_Site']}"
        for c in range(image.shape[0]):
            Image.fromarray(image[c]).save(folder / f"{stem}_w{c + 1}.png", compress_level=1)
    meta.to_csv(out / "metadata.csv", index=False)
    screen.graph.edge_frame().to_csv(out / "gene_graph.csv", index=False)
    screen.phenotype_frame().to_csv(out / "gene_phenotypes.csv", index=False)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (out / "README.txt").write_text(_readme(config, len(meta), len(meta) * config.channels))
    return meta


def _timed_render(config: SynthConfig, repeats: int = 20) -> float:
    """Seconds per site (used by benchmarks and the report; not part of the API)."""
    screen = SyntheticScreen(config)
    rows = screen.layout().to_dict("records")[:repeats]
    start = time.perf_counter()
    for row in rows:
        screen.render_meta(row)
    return (time.perf_counter() - start) / len(rows)
