"""A simulated screen: the experimental design (which gene in which well of which plate of
which batch) and the sites it renders, biology + drawing + technical effects.

Output is deterministic for a seed; every site's pixels depend only on (seed, cell line,
batch, plate, well, site, gene), not on what else is drawn.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from embedkit.datasets.synthetic.biology import (
    _KNOWN_LINES,
    CONTROL_GENE,
    PHENOTYPE_FEATURES,
    CellLineProfile,
    cell_line_descriptor,
    cell_line_profile,
    cell_line_response,
    default_gene_graph,
    expression_programs,
    gene_expression,
    gene_phenotypes,
    response_weights,
)
from embedkit.datasets.synthetic.config import SynthConfig, well_names
from embedkit.datasets.synthetic.effects import TechnicalEffects
from embedkit.datasets.synthetic.rendering import draw_cells
from embedkit.datasets.synthetic.seeds import T_LAYOUT, T_SITE, name_key, stream

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


class SyntheticScreen:
    """A simulated screen fixed by a config: graph, phenotypes, cell lines, layout, effects."""

    def __init__(self, config: SynthConfig | None = None) -> None:
        self.config = config = config or SynthConfig()
        self.graph = config.gene_graph or default_gene_graph(
            config.n_genes, config.n_modules, config.seed
        )
        self.phenotypes = gene_phenotypes(self.graph, config.seed, config.graph_smoothing)
        self._gene_index = {g: i for i, g in enumerate(self.graph.genes)}
        self._response_w = response_weights(config.seed)
        self._programs: np.ndarray | None = None
        self.effects = TechnicalEffects(config)

    # ---- biology ----

    def profile(self, cell_line: str) -> CellLineProfile:
        """Base morphology: from the line's real-embedding descriptor when the config has
        one, else from the RxRx table or the name (`cell_line_profile`)."""
        found = self.config.descriptor(cell_line)
        if found is not None:
            return found.profile
        return cell_line_profile(cell_line)

    def descriptor(self, cell_line: str) -> np.ndarray:
        """The line's DESCRIPTOR_DIM numbers: its real embedding's projection, or simulated."""
        found = self.config.descriptor(cell_line)
        if found is not None:
            return np.asarray(found.descriptor)
        return cell_line_descriptor(cell_line)

    def response(self, cell_line: str) -> np.ndarray:
        """Per-feature multiplier of every gene's phenotype in this cell line."""
        return cell_line_response(self._response_w, cell_line, self.config.descriptor(cell_line))

    def expression(self, cell_line: str) -> np.ndarray:
        """Per-gene gate in [1 - line_specificity, 1]: the gene's expression in this line.

        ``1 - s + s * gene_expression(programs, descriptor)``; all ones when s is 0.
        """
        s = self.config.line_specificity
        if s == 0:
            return np.ones(len(self.graph.genes))
        if self._programs is None:
            self._programs = expression_programs(
                self.graph, self.config.seed, self.config.graph_smoothing
            )
        return 1 - s + s * gene_expression(self._programs, self.descriptor(cell_line))

    def effect(self, cell_line: str, gene: str) -> np.ndarray:
        """The knock-down's phenotype in this line (zeros for the control, EMPTY)."""
        if gene == CONTROL_GENE:
            return np.zeros(len(PHENOTYPE_FEATURES))
        if gene not in self._gene_index:
            raise ValueError(f"unknown gene {gene!r}; the screen has {len(self._gene_index)}")
        i = self._gene_index[gene]
        out = self.config.effect_strength * self.response(cell_line) * self.phenotypes[i]
        if self.config.line_specificity > 0:
            out = out * self.expression(cell_line)[i]
        return out

    def effects_matrix(self, cell_line: str) -> np.ndarray:
        """(genes x PHENOTYPE_FEATURES) knock-down phenotypes in this line, in gene order."""
        return (
            self.config.effect_strength
            * self.phenotypes
            * self.response(cell_line)[None]
            * self.expression(cell_line)[:, None]
        )

    def cell_line_frame(self) -> pd.DataFrame:
        """One row per cell line: where its descriptor came from, descriptor, morphology and
        per-feature response (as written to cell_lines.csv)."""
        rows = []
        for line in self.config.cell_lines:
            found = self.config.descriptor(line)
            profile = self.profile(line)
            row = {
                "cell_line": line,
                "descriptor_source": found.source if found else _simulated_source(line),
                "table_row": found.row if found else "",
            }
            row.update({f"descriptor_{i}": v for i, v in enumerate(self.descriptor(line))})
            for field, value in dataclasses.asdict(profile).items():
                if field == "intensity":
                    row.update({f"intensity_w{c + 1}": v for c, v in enumerate(value)})
                elif field != "name":
                    row[field] = value
            response = self.response(line)
            row.update(
                {f"response_{f}": v for f, v in zip(PHENOTYPE_FEATURES, response, strict=True)}
            )
            rows.append(row)
        return pd.DataFrame(rows)

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
            order = stream(cfg.seed, T_LAYOUT, name_key(line.upper())).permutation(len(genes))
            k = 0
            for batch in range(1, cfg.batches + 1):
                experiment = f"{line}-{batch:02d}"
                for plate in range(1, cfg.plates + 1):
                    rng = stream(cfg.seed, T_LAYOUT, name_key(line.upper()), batch, plate)
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
        rng = stream(
            cfg.seed, T_SITE, name_key(cell_line.upper()), batch, plate, name_key(well), site
        )
        profile = self.profile(cell_line)
        signal = draw_cells(
            profile, self.effect(cell_line, gene), rng, cfg.size, cfg.cells_per_site
        )
        signal = self.effects.apply(signal, rng, cell_line, batch, plate, well)
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


def _simulated_source(cell_line: str) -> str:
    if cell_line.upper() in _KNOWN_LINES:
        return "SIMULATED from the name (morphology: the RxRx table)"
    return "SIMULATED from the name"


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
