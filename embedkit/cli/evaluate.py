"""`embedkit evaluate property|retrieval|map`: models scored on public benchmarks beside
baselines, and profiles scored for phenotypic activity with copairs (`map`)."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.index import metric_check_option
from embedkit.cli.options import (
    friendly_errors,
    index_dir_option,
    index_model_option,
    model_option,
    overwrite_option,
    plot_option,
)


@click.group("evaluate")
def evaluate_group() -> None:
    """Score models on public benchmarks, always beside baselines.

    \b
    Examples:
      embedkit evaluate property --quick
      embedkit evaluate property -m infoalign-gin-lincs-small --seeds 3 -o property.json
      embedkit evaluate retrieval molecules.csv -i cp_index --key Metadata_InChIKey \\
          --plot ranks.png
    """


@evaluate_group.command("property")
@model_option
@click.option(
    "--data-dir",
    default=None,
    help="Folder holding benchmarks/<dataset>/assays.csv.gz.  [default: $EMBEDKIT_DATA_DIR]",
)
@click.option(
    "--datasets",
    default=None,
    help="Comma-separated benchmark names.  [default: chembl2k,broad6k,biogenadme, or "
    "none when --assays is given]",
)
@click.option(
    "--assays",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="An InfoAlign-format assay file (a SMILES column, then label columns) scored "
    "like the benchmarks (repeatable).",
)
@click.option(
    "--task-type",
    type=click.Choice(["auto", "classification", "regression"]),
    default="auto",
    show_default=True,
    help="Task type of --assays files; classification refuses non-0/1 labels.",
)
@click.option(
    "--protocol",
    type=click.Choice(["both", "per-seed", "fixed-split"]),
    default="both",
    show_default=True,
    help="fixed-split: --runs runs on one scaffold split (the paper's); per-seed: a new "
    "split per seed.",
)
@click.option(
    "--seeds",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Per-seed runs; each is a new scaffold split and probe initialization.",
)
@click.option(
    "--runs",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Fixed-split runs; each a new probe initialization (and random-init encoder).",
)
@click.option(
    "--split-seed", default=0, show_default=True, help="Seed of the fixed scaffold split."
)
@click.option("--quick", is_flag=True, help="Smoke run: 1 seed, 2 fixed-split runs, 600 molecules.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the full report (every run, summary, table) as JSON.",
)
@overwrite_option
@friendly_errors
def evaluate_property_cmd(
    model,
    data_dir,
    datasets,
    assays,
    task_type,
    protocol,
    seeds,
    runs,
    split_seed,
    quick,
    output,
    overwrite,
) -> None:
    """InfoAlign's property-prediction protocol on frozen embeddings.

    Scaffold split 60/15/25, MLP probe; ROC-AUC % (with the share of tasks at AUC ≥ 80, 85
    and 90) or MAE x 100. MODEL is scored beside the same architecture with random
    weights, ECFP4 + MLP and ECFP4 + random forest, run in the same call.
    """
    from embedkit.data_dir import resolve_data_dir
    from embedkit.evaluation.report import (
        FIXED_RUNS,
        FULL,
        QUICK,
        run_property_report,
        write_report,
    )
    from embedkit.outputs import check_output_file, summary_line

    if output is not None:
        check_output_file(output, overwrite)  # before hours of probes, not after
    names = datasets.split(",") if datasets else ([] if assays else list(DEFAULT_DATASETS))
    specs = [*names, *(str(a) for a in assays)]
    settings = dict(QUICK if quick else {**FULL, "seeds": seeds})
    settings["fixed_split_runs"] = FIXED_RUNS["quick"] if quick else runs
    root = resolve_data_dir(data_dir) if names else data_dir
    report = run_property_report(
        model,
        root,
        specs,
        protocol=protocol,
        fixed_split_seed=split_seed,
        task_type=task_type,
        **settings,
    )
    click.echo(report["table_markdown"])
    if output is not None:
        write_report(report, output)
    click.echo(summary_line(f"{len(report['results'])} runs", report["elapsed_s"], output))


DEFAULT_DATASETS = ("chembl2k", "broad6k", "biogenadme")


@evaluate_group.command("retrieval")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index of the candidate profiles.")
@click.option(
    "--key",
    required=True,
    help="Index metadata column naming each profile's molecule (e.g. Metadata_InChIKey).",
)
@click.option(
    "--query-key",
    default=None,
    help="QUERIES column with the same key.  [default: --key, or --key without Metadata_]",
)
@click.option("-s", "--smiles-column", default=None, help="Column holding SMILES.")
@index_model_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Metrics and ranks as JSON.")
@plot_option("Rank histogram")
@click.option(
    "--active-threshold",
    type=float,
    default=2.0,
    show_default=True,
    help="A query counts as active when its true profile's Profile_Activity (RMS robust "
    "z-distance from the control/median profile, recorded by index build) is above this.",
)
@metric_check_option("evaluate retrieval")
@overwrite_option
@friendly_errors
def evaluate_retrieval_cmd(
    queries,
    index_dir,
    key,
    query_key,
    smiles_column,
    model,
    output,
    plot,
    active_threshold,
    metric,
    overwrite,
) -> None:
    """HIT@1/@10, NDCG@1/@10 and mean rank of each molecule's own profile, beside chance,
    for all queries and for the active ones; hubness of the rankings.

    Every molecule in QUERIES is scored against every profile in the index (exact); its
    true profiles are those whose KEY equals its QUERY-KEY. Hubness: distinct rank-1 hits,
    the share of the most frequent one, and the skewness of the k-occurrence distribution.
    """
    from embedkit.outputs import check_output_file
    from embedkit.retrieval.jobs import evaluate_retrieval_file, load_index_model

    for path in (output, plot):
        if path is not None:
            check_output_file(path, overwrite)  # before the model loads
    embedder = load_index_model(index_dir, model, "auto", command="evaluate retrieval")
    evaluation = evaluate_retrieval_file(
        queries,
        index_dir,
        embedder,
        key,
        query_key,
        smiles_column,
        output,
        plot,
        overwrite,
        active_threshold=active_threshold,
        metric=metric,
    )
    for line in evaluation.table_lines():
        click.echo(line)
    click.echo(evaluation.line())


# embedkit.evaluation.phenotypic.DISTANCES, copied so that --help imports no pandas (a test
# keeps them equal)
MAP_DISTANCES = ("cosine", "abs_cosine", "correlation", "euclidean", "manhattan", "chebyshev")


@evaluate_group.command("map")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--group-by",
    required=True,
    metavar="COLUMN",
    help="The groups to score, e.g. Metadata_broad_sample; a group's rows are its replicates.",
)
@click.option(
    "--controls",
    required=True,
    metavar="QUERY",
    help="pandas query selecting the control rows, e.g. \"Metadata_broad_sample == 'DMSO'\".",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="One row per group: the group, then copairs' mean_average_precision, "
    "mean_normalized_average_precision, p_value, corrected_p_value, below_p, "
    "below_corrected_p (.csv, .tsv or .parquet).",
)
@click.option(
    "--consistency-by",
    default=None,
    metavar="COLUMN",
    help="Also score consistency: mAP of each value of COLUMN (e.g. Metadata_moa) over the "
    "median profiles of the active groups; values holding --label-separator are several labels.",
)
@click.option(
    "--consistency-output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The consistency table.  [default: OUT_consistency beside OUT]",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="mAP against -log10(corrected p), one panel per table; .png, .pdf or .svg, by the suffix.",
)
@click.option(
    "--features",
    default=None,
    help="Comma-separated feature columns; * and ? patterns allowed (e.g. 'Cells_*').  "
    "[default: numeric columns not starting with Metadata_]",
)
@click.option(
    "--null-size",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Size of copairs' null distribution; the smallest p-value is 1/(null size + 1).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Corrected p-value under which a group is active (below_corrected_p).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the null.")
@click.option(
    "--distance",
    type=click.Choice(MAP_DISTANCES),
    default="cosine",
    show_default=True,
    help="copairs' similarity between profiles.",
)
@click.option(
    "--label-separator",
    default="|",
    show_default=True,
    help="Separates several labels in one --consistency-by value; '' for none.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where copairs caches null distributions.  [default: ~/.copairs]",
)
@overwrite_option
@friendly_errors
def evaluate_map_cmd(
    table,
    group_by,
    controls,
    output,
    consistency_by,
    consistency_output,
    plot,
    features,
    null_size,
    threshold,
    seed,
    distance,
    label_separator,
    cache_dir,
    overwrite,
) -> None:
    """Phenotypic activity of each group against the controls, with copairs' mAP.

    copairs' recipe: a profile's positives are its group's other rows, its negatives the
    controls; mean average precision per group, with a permutation p-value corrected for
    multiple testing (Benjamini-Hochberg). With --consistency-by, groups sharing a label
    (e.g. a mechanism of action) are scored the same way over the active groups. Needs the
    copairs extra: pip install 'embedkit[copairs]'.

    \b
    Examples:
      embedkit evaluate map wells.csv --group-by Metadata_broad_sample \\
          --controls "Metadata_broad_sample == 'DMSO'" -o activity.csv --plot activity.png
      embedkit evaluate map wells_norm.parquet --group-by Metadata_broad_sample \\
          --controls "Metadata_mmoles_per_liter == 0" -o activity.csv \\
          --consistency-by Metadata_moa --null-size 100000
    """
    from embedkit.cli.options import split_columns
    from embedkit.evaluation.jobs import evaluate_map_file
    from embedkit.evaluation.phenotypic import MapSettings

    settings = MapSettings(
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        distance=distance,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    summary = evaluate_map_file(
        table,
        output,
        group_by,
        controls,
        features=split_columns(features),
        consistency_by=consistency_by,
        consistency_output=consistency_output,
        plot=plot,
        settings=settings,
        label_separator=label_separator or None,
        overwrite=overwrite,
    )
    for line in summary.lines():
        click.echo(line)
