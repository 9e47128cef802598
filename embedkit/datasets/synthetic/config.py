"""What fixes a simulated screen: `SynthConfig` and the plate geometry (RxRx well names)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from embedkit.datasets.synthetic.biology import CellLineDescriptor, GeneGraph
from embedkit.datasets.synthetic.rendering import CHANNELS
from embedkit.errors import InputError

ROWS = "BCDEFGHIJKLMNO"  # RxRx1 uses the inner 14 x 22 wells of a 384-well plate
COLUMNS = tuple(range(2, 24))


def well_names(n: int | None = None) -> list[str]:
    """RxRx well names in plate order (B02, B03, ..., B23, C02, ...); the first `n`."""
    names = [f"{row}{col:02d}" for row in ROWS for col in COLUMNS]
    if n is None:
        return names
    if not 1 <= n <= len(names):
        raise InputError(f"wells must be between 1 and {len(names)} (rows B-O x cols 02-23)")
    return names[:n]


@dataclass(frozen=True)
class SynthConfig:
    """Everything that fixes a simulated screen; the same config always gives the same bytes.

    Effect knobs (`batch_effect`, `illumination`, `well_drift`, `noise`, `effect_strength`)
    are multipliers of built-in magnitudes: 1 is the default, 0 switches the effect off.
    `blank_channels` (1-based, RxRx numbering) are written as constant zero images, for
    testing how downstream code treats constant channels.

    Real priors (`grounding`): `gene_graph` may be a real gene graph read from a file
    (`load_gene_graph`); `cell_line_descriptors` (one per cell line, from a real embedding
    table, `load_cell_line_descriptors`) replace the name-derived descriptors and
    morphology; `line_specificity` (0..1) gates each knock-down per line by the gene's
    simulated expression in that line (0: off, every line sees every gene's phenotype).
    Both are stored in full, so config.json alone regenerates the same bytes.
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
    cell_line_descriptors: tuple[CellLineDescriptor, ...] | None = None
    line_specificity: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_lines", tuple(self.cell_lines))
        object.__setattr__(self, "cells_per_site", tuple(int(v) for v in self.cells_per_site))
        object.__setattr__(self, "blank_channels", tuple(int(c) for c in self.blank_channels))
        if not self.cell_lines:
            raise InputError("at least one cell line is needed")
        for name in self.cell_lines:
            if not name or not name.replace("_", "").isalnum():
                raise InputError(f"cell line {name!r}: use letters, digits and _ only")
        if len({n.upper() for n in self.cell_lines}) != len(self.cell_lines):
            raise InputError("cell lines must be unique")
        for key in ("batches", "plates", "sites"):
            if not 1 <= getattr(self, key) <= 99:
                raise InputError(f"{key} must be between 1 and 99")
        well_names(self.wells)
        if not 16 <= self.size <= 4096:
            raise InputError("size must be between 16 and 4096 pixels")
        if not 1 <= self.channels <= len(CHANNELS):
            raise InputError(f"channels must be between 1 and {len(CHANNELS)}")
        lo, hi = self.cells_per_site
        if not 1 <= lo <= hi:
            raise InputError("cells_per_site must be (low, high) with 1 <= low <= high")
        if not 0.0 <= self.control_fraction <= 1.0:
            raise InputError("control_fraction must be between 0 and 1")
        for c in self.blank_channels:
            if not 1 <= c <= self.channels:
                raise InputError(f"blank channel {c} is not among channels 1..{self.channels}")
        for key in ("graph_smoothing", "effect_strength", "batch_effect", "illumination"):
            if getattr(self, key) < 0:
                raise InputError(f"{key} must be >= 0")
        if self.well_drift < 0 or self.noise < 0:
            raise InputError("well_drift and noise must be >= 0")
        if self.seed < 0:
            raise InputError("seed must be >= 0")
        if self.gene_graph is None and not 1 <= self.n_modules <= self.n_genes:
            raise InputError("need 1 <= n_modules <= n_genes (--genes)")
        if self.gene_graph is None and self.n_genes < 2:
            raise InputError("n_genes (--genes) must be at least 2")
        if not 0.0 <= self.line_specificity <= 1.0:
            raise InputError("line_specificity must be between 0 and 1")
        if self.cell_line_descriptors is not None:
            descriptors = tuple(
                d if isinstance(d, CellLineDescriptor) else CellLineDescriptor(**d)
                for d in self.cell_line_descriptors
            )
            object.__setattr__(self, "cell_line_descriptors", descriptors)
            named = [d.name for d in descriptors]
            if sorted(named) != sorted(self.cell_lines):
                raise InputError(
                    f"cell_line_descriptors are for {', '.join(named)}, "
                    f"not the cell lines {', '.join(self.cell_lines)}"
                )

    def descriptor(self, cell_line: str) -> CellLineDescriptor | None:
        """The real-embedding descriptor of a cell line, or None (name-derived)."""
        for d in self.cell_line_descriptors or ():
            if d.name == cell_line:
                return d
        return None

    def to_dict(self) -> dict:
        """Plain JSON values (the gene graph as lists), as written to config.json."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping) -> SynthConfig:
        """Inverse of `to_dict` (e.g. the config.json written next to a dataset)."""
        data = dict(data)
        graph = data.get("gene_graph")
        if isinstance(graph, Mapping):
            weights = graph.get("weights")
            data["gene_graph"] = GeneGraph(
                tuple(graph["genes"]),
                tuple(tuple(e) for e in graph["edges"]),
                tuple(graph["modules"]),
                None if weights is None else tuple(weights),
                graph.get("source", ""),
            )
        if data.get("cell_line_descriptors") is not None:
            data["cell_line_descriptors"] = tuple(
                CellLineDescriptor(**d) for d in data["cell_line_descriptors"]
            )
        return cls(**data)
