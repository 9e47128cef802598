"""`embedkit graph build|info`: the perturbation relational graph (STRING, Hetionet, image
similarity, STITCH) that the graph losses regularize features with."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import friendly_errors, overwrite_option, split_columns

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("graph")
def graph_group() -> None:
    """The perturbation relational graph: perturbations joined by what is known of their genes.

    \b
      embedkit graph build --perturbations perts.csv --string STRING.txt \\
          --hetionet hetionet_protein_interactions.txt.gz -o graph.npz
      embedkit graph info graph.npz --labels metadata.csv --label-column sirna
    """


@graph_group.command("build")
@click.option(
    "--perturbations",
    "perturbations",
    required=True,
    type=_FILE,
    help="Table with the columns perturbation,gene: one row per perturbation–gene pair "
    "(a compound: one row per target; an empty gene is allowed). Optional column compound: "
    "the PubChem CID STITCH knows it by.",
)
@click.option(
    "--string",
    multiple=True,
    type=_FILE,
    help="STRING links (repeatable). With combined_score: kept from --string-threshold, "
    "weight score/1000. A pair list without scores (entity1,entity2; also HuMAP, "
    "Reactome): weight 1.",
)
@click.option(
    "--hetionet",
    multiple=True,
    type=_FILE,
    help="Hetionet protein interactions (source_symbol, target_symbol; repeatable), smoothed "
    "by a --walk-steps random walk over the whole network.",
)
@click.option(
    "--edges",
    multiple=True,
    type=_FILE,
    help="Any gene–gene list source,target[,weight] (repeatable), e.g. a simulated screen's "
    "gene_graph.csv. Weights kept in [0, 1], else divided by the largest; none → 1.",
)
@click.option(
    "--stitch",
    multiple=True,
    type=_FILE,
    help="STITCH chemical–chemical links with a score column (repeatable); compounds are "
    "matched by the compound column, else by perturbation name.",
)
@click.option(
    "--image-features",
    type=_FILE,
    default=None,
    help="Profile table (e.g. wells.parquet): cosine of per-perturbation mean features "
    "(Emb_ columns, else numeric non-Metadata columns), standardized. Needs --label-column.",
)
@click.option(
    "--label-column",
    default=None,
    help="The --image-features column holding the perturbation name.",
)
@click.option(
    "--features",
    default=None,
    help="Comma-separated --image-features columns; * and ? patterns allowed.  "
    "[default: Emb_ columns, else numeric non-Metadata columns]",
)
@click.option(
    "--image-threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=0.5,
    show_default=True,
    help="Image similarity: the smallest cosine that makes an edge.",
)
@click.option(
    "--string-threshold",
    type=click.FloatRange(0.0, 1000.0),
    default=200.0,
    show_default=True,
    help="STRING / STITCH: the smallest combined score (of 1000) kept.",
)
@click.option(
    "--walk-steps",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Hetionet: random-walk steps.",
)
@click.option(
    "--walk-min-weight",
    type=click.FloatRange(0.0, 1.0),
    default=0.01,
    show_default=True,
    help="Hetionet: smoothed pairs below this fraction of the strongest pair are dropped "
    "(a 5-step walk reaches nearly every pair with a vanishing probability).",
)
@click.option(
    "--combine",
    type=click.Choice(["mean", "max"]),
    default="mean",
    show_default=True,
    help="mean: of the sources that know both perturbations (no edge counts 0); "
    "max: the strongest source.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Graph file (.npz; scipy.sparse.load_npz reads its adjacency). Written atomically.",
)
@overwrite_option
@friendly_errors
def graph_build(
    perturbations,
    string,
    hetionet,
    edges,
    stitch,
    image_features,
    label_column,
    features,
    image_threshold,
    string_threshold,
    walk_steps,
    walk_min_weight,
    combine,
    output,
    overwrite,
) -> None:
    """Build the perturbation graph from gene–gene (and compound–compound) knowledge.

    Each source is normalized to [0, 1] and lifted to perturbations (the strongest pair of
    their genes); sources are combined by --combine; perturbations naming a common gene are
    joined with weight 1. Perturbations that no source knows are warned about and counted.
    """
    from embedkit.graph.jobs import build_graph_file

    summary = build_graph_file(
        perturbations,
        output,
        string=list(string),
        hetionet=list(hetionet),
        edges=list(edges),
        stitch=list(stitch),
        image_features=image_features,
        label_column=label_column,
        features=split_columns(features),
        image_threshold=image_threshold,
        string_threshold=string_threshold,
        walk_steps=walk_steps,
        walk_min_weight=walk_min_weight,
        combine=combine,
        overwrite=overwrite,
    )
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(summary.line())


@graph_group.command("info")
@click.argument("graph", type=_FILE)
@click.option(
    "--labels",
    type=_FILE,
    default=None,
    help="A table whose --label-column lists the labels to check (e.g. training metadata).",
)
@click.option("--label-column", default=None, help="The column of --labels with the labels.")
@friendly_errors
def graph_info(graph, labels, label_column) -> None:
    """Perturbations, edges, degree statistics, isolated nodes, sources, label coverage."""
    from embedkit.graph.jobs import describe_graph

    click.echo(describe_graph(graph, labels, label_column))
