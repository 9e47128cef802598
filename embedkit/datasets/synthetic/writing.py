"""Writing a simulated screen to disk in the RxRx layout, with the files that describe it.

`<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png`, metadata.csv, gene_graph.csv,
gene_phenotypes.csv, cell_lines.csv, perturbations.csv, config.json and a README.txt
saying the data are SIMULATED.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd

from embedkit.datasets.synthetic.config import SynthConfig
from embedkit.datasets.synthetic.rendering import CHANNELS
from embedkit.datasets.synthetic.screen import SyntheticScreen
from embedkit.io import atomic_dir
from embedkit.outputs import check_output_dir


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(
        text, 88, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
    )


def _source_file(source: str) -> str:
    """The file name a provenance string starts with ("graph.npz sha256:..." -> graph.npz)."""
    return source.split(" sha256:", 1)[0] if " sha256:" in source else "FILE"


def _readme(config: SynthConfig, n_sites: int, n_files: int) -> str:
    from embedkit import __version__

    channels = "\n".join(
        f"  w{i + 1}  {name:<14} {stain}"
        for i, (name, stain) in enumerate(CHANNELS[: config.channels])
    )
    blank = "".join(f" --blank-channel {c}" for c in config.blank_channels)
    graph = config.gene_graph
    real_graph = graph is not None and bool(graph.source)
    lines = config.cell_line_descriptors
    if real_graph or lines:
        real = []
        if real_graph:
            real.append(f"the gene graph ({graph.source})")
        if lines:
            real.append(f"the cell-line embeddings ({lines[0].source})")
        what = (
            "The genes are real gene symbols and their graph a real gene graph, but every"
            if real_graph
            else "The genes (SIMG..) and their graph are simulated. Every"
        )
        intro = _wrap(
            f"(embedkit.datasets.synthetic, embedkit {__version__}). No cell was imaged. "
            f"REAL inputs (user-supplied files, used only as priors): {'; '.join(real)}. "
            f"{what} phenotype, image and cell-line response is SIMULATED. Use these data "
            "to test and benchmark software, never to draw biological conclusions."
        )
    else:
        intro = (
            f"(embedkit.datasets.synthetic, embedkit {__version__}). No cell was imaged. "
            "The genes\n(SIMG..), their graph, the phenotypes and the cell-line differences "
            "are all simulated;\ncell-line names only borrow the RxRx lines' typical "
            "morphology. Use these data to test\nand benchmark software, never to draw "
            "biological conclusions."
        )
    if real_graph:
        graph_text = _wrap(
            f"Genes are the nodes of a real gene graph ({graph.source}); edges keep their "
            "weights in the Laplacian L. Each gene's",
            "  ",
        ).lstrip()
        graph_file = "the gene graph used (source, target, weight)"
    else:
        graph_text = (
            "Genes sit in modules of a random graph (dense within, sparse across). Each gene's"
        )
        graph_file = "the simulated gene graph (source, target)"
    line_text = ""
    if lines:
        line_text += "\n" + _wrap(
            "Cell lines: each line's descriptor d is its row of the real embedding table "
            f"({lines[0].source}); its morphology and its per-feature response scaling, "
            "gain * exp(0.35 W d), are functions of d (see cell_lines.csv).",
            "  ",
        )
    if config.line_specificity > 0:
        line_text += "\n" + _wrap(
            f"line_specificity s = {config.line_specificity}: each knock-down is scaled by "
            "1 - s + s * sigmoid(1 + 1.5 u_g . d / sqrt(8)), a simulated expression of gene "
            "g in the line (u_g random, smoothed over the graph), so lines also differ gene "
            "by gene.",
            "  ",
        )
    grounded = ""
    if real_graph:
        grounded += f" \\\n    --graph {_source_file(graph.source)} --genes {len(graph.genes)}"
    elif config.gene_graph is None and config.n_genes != 24:
        grounded += f" --genes {config.n_genes}"
    if lines:
        grounded += f" \\\n    --cell-line-embeddings {_source_file(lines[0].source)}"
    if real_graph or lines or config.line_specificity > 0:
        grounded += f" --line-specificity {config.line_specificity}"
    if config.graph_smoothing != 0.5:
        grounded += f" --graph-smoothing {config.graph_smoothing}"
    blanks = list(config.blank_channels) or "none"
    return f"""SIMULATED DATA - NOT REAL MICROSCOPY IMAGES
============================================

These Cell Painting / RxRx-style images were drawn by a computer program
{intro}

Contents
  <CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<channel>.png   8-bit PNG, {config.size}x{config.size}
  metadata.csv        one row per site ({n_sites} sites, {n_files} image files)
  gene_graph.csv      {graph_file}
  gene_phenotypes.csv ground-truth phenotype vector per gene (before cell-line scaling)
  cell_lines.csv      per cell line: descriptor and its source, morphology, response
  perturbations.csv   perturbation,gene (for `embedkit graph build --perturbations`)
  config.json         the exact configuration; same config (incl. seed) -> same bytes

Channels (RxRx order)
{channels}

How it was generated
  {graph_text}
  phenotype vector is random noise smoothed over the graph, (I + alpha L)^-1 Z with
  alpha = {config.graph_smoothing}, so linked genes look alike. Cells are drawn as
  irregular ellipses with nucleus, ER, actin, nucleoli, mitochondria, Golgi and membrane;
  knock-downs change their size, shape, intensities, textures and organelle counts
  (effect_strength {config.effect_strength}); each cell line has its own morphology and
  response scaling. Technical effects (0 = off): batch_effect {config.batch_effect}
  (per-batch channel gain/offset), illumination {config.illumination} (per-plate
  vignetting), well_drift {config.well_drift} (per-well intensity), noise {config.noise}.
  Blank (constant zero) channels: {blanks}. Seed: {config.seed}.{line_text}

Regenerate with:
  embedkit datasets synth-plate OUT --cell-lines {",".join(config.cell_lines)} \\
    --batches {config.batches} --plates {config.plates} --wells {config.wells} \\
    --sites {config.sites} --size {config.size} --seed {config.seed} \\
    --batch-effect {config.batch_effect}{blank}{grounded}
  or, for any setting, in Python:
  write_synthetic_dataset(OUT, SynthConfig.from_dict(json.load(open("config.json"))))
"""


def write_synthetic_dataset(
    out_dir: str | Path, config: SynthConfig | None = None, *, overwrite: bool = False
) -> pd.DataFrame:
    """Write a simulated screen in the RxRx layout; return its metadata (one row per site).

    Writes `<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png`, metadata.csv,
    gene_graph.csv, gene_phenotypes.csv, cell_lines.csv (descriptor provenance, morphology,
    response per line), perturbations.csv (perturbation,gene), config.json and a README.txt
    saying the data are SIMULATED (and which inputs, if any, were real). A non-empty
    `out_dir` is refused unless `overwrite`; the screen is written beside it and swapped
    in, so a replaced screen leaves no stale plates and a failed run leaves the old one.
    """
    config = config or SynthConfig()
    check_output_dir(out_dir, overwrite)
    with atomic_dir(Path(out_dir)) as out:  # a new screen replaces an old one as a whole
        return _write_screen(out, config)


def _write_screen(out: Path, config: SynthConfig) -> pd.DataFrame:
    from PIL import Image

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
    screen.cell_line_frame().to_csv(out / "cell_lines.csv", index=False)
    genes = pd.DataFrame({"perturbation": screen.graph.genes, "gene": screen.graph.genes})
    genes.to_csv(out / "perturbations.csv", index=False)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (out / "README.txt").write_text(_readme(config, len(meta), len(meta) * config.channels))
    return meta


def simulated_root(folder: Path) -> Path | None:
    """The folder (or a parent, 3 levels up) whose README.txt says SIMULATED, as
    `embedkit datasets synth-plate` writes it; None for real data."""
    folder = Path(folder).resolve()
    for candidate in [folder, *list(folder.parents)[:3]]:
        readme = candidate / "README.txt"
        if readme.is_file() and "SIMULATED" in readme.read_text(errors="replace")[:200]:
            return candidate
    return None
