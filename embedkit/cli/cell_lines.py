"""`embedkit cell-lines embed|show`: cell-line embeddings from RNA-seq, and what a table holds."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import friendly_errors, overwrite_option

# embedkit.cell_lines.METHODS and DEFAULT_DIM, copied so that --help imports nothing heavy;
# tests/test_cell_lines.py keeps them equal.
METHODS = ("pca", "scvi")
DEFAULT_DIM = 10


@click.group("cell-lines")
def cell_lines_group() -> None:
    """Cell-line embeddings: the vectors a model conditions on (--cell-line-embeddings).

    \b
      embedkit cell-lines embed cells.h5ad -o cell_lines.parquet --dim 10
      embedkit cell-lines show cell_lines.parquet U2OS
    """


@cell_lines_group.command("embed")
@click.argument("expression", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Cell-line table (.parquet, .csv or .tsv): a cell_line column, then <method>_0 … "
    "(the layout of the paper's scVI tables). Written atomically, with the settings and "
    "the highly variable genes in its run info.",
)
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default="pca",
    show_default=True,
    help="pca: principal components of the log-normalized HVGs. scvi: scVI's latent space "
    "(needs the scvi extra: pip install 'embedkit[scvi]').",
)
@click.option(
    "--dim",
    type=click.IntRange(min=1),
    default=DEFAULT_DIM,
    show_default=True,
    help="Dimensions of the embedding (PCA: fewer than the number of cell lines).",
)
@click.option(
    "--top-genes",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Highly variable genes kept (scanpy, Seurat flavour), as in the paper.",
)
@click.option(
    "--min-cell-lines",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Keep genes expressed (count > 0) in at least this many cell lines.",
)
@click.option(
    "--name-column",
    default=None,
    help="obs column holding the cell-line names.  [default: obs_names]",
)
@click.option(
    "--gene-column",
    default=None,
    help="var column holding the gene names.  [default: var_names]",
)
@click.option("--seed", default=0, show_default=True, help="scVI: random seed.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="scVI: training epochs.  [default: scvi-tools' heuristic, 400 for small data]",
)
@overwrite_option
@friendly_errors
def embed_cmd(
    expression: Path,
    output: Path,
    method: str,
    dim: int,
    top_genes: int,
    min_cell_lines: int,
    name_column: str | None,
    gene_column: str | None,
    seed: int,
    epochs: int | None,
    overwrite: bool,
) -> None:
    """Embed cell lines from their RNA-seq: EXPRESSION is an AnnData .h5ad with cell lines
    as obs, genes as var_names and raw counts in X.

    The paper's scanpy pipeline: genes expressed in >= 5 cell lines, counts normalized to
    10,000 per line, log1p, the 1,000 highly variable genes; then PCA or scVI. Needs the
    cell-lines extra (pip install 'embedkit[cell-lines]').
    """
    from embedkit.cell_lines import embed_expression_file

    summary = embed_expression_file(
        expression,
        output,
        method,
        dim,
        overwrite=overwrite,
        n_top_genes=top_genes,
        min_cell_lines=min_cell_lines,
        name_column=name_column,
        gene_column=gene_column,
        seed=seed,
        epochs=epochs,
    )
    click.echo(summary.line())


@cell_lines_group.command("show")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False)
@click.option(
    "--nearest",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="With NAME: how many of its nearest lines (cosine) to list.",
)
@friendly_errors
def show_cmd(table: Path, name: str | None, nearest: int) -> None:
    """What a cell-line TABLE holds; with NAME, that line's vector and nearest lines.

    An unknown NAME lists the close names in the table.
    """
    from embedkit.cell_lines import describe_table

    click.echo(describe_table(table, name, nearest))
