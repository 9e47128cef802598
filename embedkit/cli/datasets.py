"""`embedkit datasets synth-plate`: write a SIMULATED RxRx-style screen to a folder."""

from __future__ import annotations

import time
from pathlib import Path

import click

from embedkit.cli.options import friendly_errors, overwrite_option


@click.group("datasets")
def datasets_group() -> None:
    """Datasets: a generator of simulated (synthetic) Cell Painting plates.

    \b
      embedkit datasets synth-plate synth/ --cell-lines U2OS,HUVEC --wells 24
    """


@datasets_group.command("synth-plate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--cell-lines",
    default="U2OS,HUVEC",
    show_default=True,
    help="Comma-separated cell lines; RxRx names (U2OS, HUVEC, RPE, HepG2, HRCE, VERO) get "
    "their typical morphology, any other name a simulated de novo line (with "
    "--cell-line-embeddings: morphology and response from the line's row of the table).",
)
@click.option("--batches", default=2, show_default=True, help="Experiments per cell line.")
@click.option("--plates", default=1, show_default=True, help="Plates per experiment.")
@click.option("--wells", default=24, show_default=True, help="Wells per plate (B02, B03, ...).")
@click.option("--sites", default=2, show_default=True, help="Sites per well.")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--batch-effect",
    default=1.0,
    show_default=True,
    help="Strength of per-batch channel gain/offset; 0 disables.",
)
@click.option(
    "--blank-channel",
    "blank_channels",
    multiple=True,
    type=int,
    help="Write this channel (1-6) as a constant zero image; repeatable.",
)
@click.option(
    "--graph",
    type=click.Path(path_type=Path),
    default=None,
    help="A real gene graph: a perturbation graph .npz from `embedkit graph build` (e.g. "
    "from the STRING / Hetionet files). Its nodes become the screen's genes and its weighted "
    "edges smooth the SIMULATED phenotypes (linked genes look alike).  [default: a random "
    "modular graph of simulated genes SIMG..]",
)
@click.option(
    "--genes",
    type=int,
    default=None,
    help="Number of genes. Without --graph: simulated genes (default 24). With --graph: a "
    "deterministic subset of its nodes (connected clusters grown from start genes drawn "
    "with --seed; default all nodes).",
)
@click.option(
    "--graph-smoothing",
    default=0.5,
    show_default=True,
    help="alpha in (I + alpha L)^-1: how strongly phenotypes follow the graph; 0 = not.",
)
@click.option(
    "--cell-line-embeddings",
    type=click.Path(path_type=Path),
    default=None,
    help="Real cell-line embeddings (Parquet/CSV: a cell_line column or names as the index, "
    "then numbers; e.g. the scVI table): each line's SIMULATED morphology and response come "
    "from its row (PCA projection). Every --cell-lines name must be in it.  [default: "
    "descriptors derived from the line's name]",
)
@click.option(
    "--line-specificity",
    type=click.FloatRange(0, 1),
    default=None,
    help="0-1: gate each knock-down by the gene's simulated expression in the line, read "
    "from the line's descriptor (lines then differ gene by gene).  [default: 1 with "
    "--cell-line-embeddings, else 0]",
)
@overwrite_option
@friendly_errors
def synth_plate_cmd(
    out: Path,
    cell_lines: str,
    batches: int,
    plates: int,
    wells: int,
    sites: int,
    size: int,
    seed: int,
    batch_effect: float,
    blank_channels: tuple[int, ...],
    graph: Path | None,
    genes: int | None,
    graph_smoothing: float,
    cell_line_embeddings: Path | None,
    line_specificity: float | None,
    overwrite: bool,
) -> None:
    """Write a SIMULATED screen to OUT in the RxRx layout (not real microscopy).

    OUT/<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png (8-bit, 6 channels in RxRx order),
    plus metadata.csv (one row per site), gene_graph.csv, gene_phenotypes.csv,
    cell_lines.csv, perturbations.csv, config.json and README.txt describing how the data
    were simulated. With --graph and --cell-line-embeddings the simulation is grounded in
    real priors (a real gene graph, real cell-line embeddings); the images, phenotypes and
    responses are still SIMULATED.

    \b
      embedkit datasets synth-plate synth/ --cell-lines HUVEC,RPE,HepG2,U2OS \\
          --graph graph.npz --genes 300 \\
          --cell-line-embeddings scvi_cell_line_embeddings_256.parquet
    """
    from embedkit.datasets.synthetic import SynthConfig, write_synthetic_dataset
    from embedkit.datasets.synthetic.grounding import (
        load_cell_line_descriptors,
        load_gene_graph,
    )
    from embedkit.outputs import check_output_dir, summary_line

    check_output_dir(out, overwrite)
    lines = tuple(c.strip() for c in cell_lines.split(",") if c.strip())
    grounding = {}
    details = []
    if graph is not None:
        grounding["gene_graph"] = load_gene_graph(graph, genes, seed)
        details.append(f"real gene graph {graph.name}")
    elif genes is not None:
        grounding.update(n_genes=genes, n_modules=max(1, min(4, genes)))
    if cell_line_embeddings is not None:
        SynthConfig(cell_lines=lines)  # names checked before the table is read
        grounding["cell_line_descriptors"] = load_cell_line_descriptors(cell_line_embeddings, lines)
        details.append(f"real cell-line embeddings {cell_line_embeddings.name}")
    if line_specificity is None:
        line_specificity = 1.0 if cell_line_embeddings is not None else 0.0
    config = SynthConfig(
        cell_lines=lines,
        batches=batches,
        plates=plates,
        wells=wells,
        sites=sites,
        size=size,
        seed=seed,
        batch_effect=batch_effect,
        blank_channels=blank_channels,
        graph_smoothing=graph_smoothing,
        line_specificity=line_specificity,
        **grounding,
    )
    start = time.perf_counter()
    meta = write_synthetic_dataset(out, config, overwrite=overwrite)
    genes_used = meta.loc[meta.Metadata_PertType == "trt", "Metadata_Gene"].nunique()
    click.echo(
        summary_line(
            f"{len(meta)} SIMULATED sites ({len(meta) * config.channels} PNG files)",
            time.perf_counter() - start,
            out,
            [
                f"{genes_used} genes",
                *details,
                f"synthetic data, not real images (see {out / 'README.txt'})",
            ],
        )
    )
