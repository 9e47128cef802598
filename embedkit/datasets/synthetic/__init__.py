"""SIMULATED Cell Painting plates in the RxRx layout: a generator, NOT real microscopy data.

No real RxRx1 / RxRx19a images are reachable from this project, so embedkit's image
pipeline learns and is benchmarked on plates drawn here. Every pixel is simulated; the
biology is a caricature chosen so that the methods of the microscopy paper (graph
regularization over a perturbation graph, cell-line tokens, few-shot transfer to a de novo
cell line) have something real *in the simulation* to find. One module per job:

* `biology`: genes, a random modular gene graph (a STRING / Hetionet stand-in, not real
  PPIs), phenotypes smoothed over it, cell-line morphology and response scaling through a
  simulated line descriptor (a stand-in for an RNA-seq embedding).
* `grounding`: optional REAL priors the user supplies: a gene graph file (`embedkit graph
  build`'s .npz, e.g. from STRING / Hetionet) whose nodes and weighted edges replace the
  random graph, and a cell-line embedding table (e.g. the scVI embeddings) whose rows
  replace the name-derived descriptors and morphology. The images stay simulated; see
  docs/synthetic.md.
* `config`: `SynthConfig`, everything that fixes a screen, and the RxRx plate geometry.
* `screen`: `SyntheticScreen`, the experimental design (cell lines x batches x plates x
  wells x sites, controls, which gene where) and the sites it renders.
* `rendering`: drawing a site's cells per channel (numpy only), in RxRx channel order.
* `effects`: technical effects (batch gain / offset / contrast, illumination, well drift,
  noise), each with a strength knob.
* `writing`: the files: PNGs in the RxRx layout, metadata.csv, gene_graph.csv,
  gene_phenotypes.csv, cell_lines.csv, perturbations.csv, config.json and the SIMULATED
  README.txt.
* `seeds`: one random stream per quantity, so output is deterministic for a seed and every
  site's pixels depend only on (seed, cell line, batch, plate, well, site, gene).
* `profiles`: seeded synthetic profile *tables* (not images) with known batch effects, for
  the batch-correction tests and benchmarks.
"""

from __future__ import annotations

from embedkit.datasets.synthetic.biology import (
    CONTROL_GENE,
    PHENOTYPE_FEATURES,
    CellLineDescriptor,
    CellLineProfile,
    GeneGraph,
    cell_line_descriptor,
    cell_line_profile,
    default_gene_graph,
    gene_phenotypes,
)
from embedkit.datasets.synthetic.config import SynthConfig, well_names
from embedkit.datasets.synthetic.effects import TechnicalEffects
from embedkit.datasets.synthetic.grounding import (
    descriptors_from_embeddings,
    load_cell_line_descriptors,
    load_gene_graph,
)
from embedkit.datasets.synthetic.profiles import synthetic_profiles
from embedkit.datasets.synthetic.rendering import CHANNELS
from embedkit.datasets.synthetic.screen import (
    METADATA_COLUMNS,
    SyntheticScreen,
    generate_sites,
    render_site,
)
from embedkit.datasets.synthetic.writing import write_synthetic_dataset

__all__ = [
    "CHANNELS",
    "CONTROL_GENE",
    "METADATA_COLUMNS",
    "PHENOTYPE_FEATURES",
    "CellLineDescriptor",
    "CellLineProfile",
    "GeneGraph",
    "SynthConfig",
    "SyntheticScreen",
    "TechnicalEffects",
    "cell_line_descriptor",
    "cell_line_profile",
    "default_gene_graph",
    "descriptors_from_embeddings",
    "gene_phenotypes",
    "generate_sites",
    "load_cell_line_descriptors",
    "load_gene_graph",
    "render_site",
    "synthetic_profiles",
    "well_names",
    "write_synthetic_dataset",
]
