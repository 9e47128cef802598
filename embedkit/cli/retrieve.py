"""`embedkit retrieve`: molecules → profiles (or --reverse) through a model's decoders."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.index import metric_check_option
from embedkit.cli.options import (
    batch_size_option,
    device_option,
    friendly_errors,
    index_dir_option,
    index_model_option,
    num_workers_option,
    on_error_option,
    overwrite_option,
    precision_option,
    progress_option,
    show_progress,
    smiles_column_option,
)


@click.command("retrieve")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index folder from `embedkit index build`.")
@click.option("-k", default=10, show_default=True, help="Hits per query.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Hits table, one row per (query, rank); format from the suffix; missing folders "
    "are created.",
)
@click.option(
    "--reverse",
    is_flag=True,
    help="Profile → molecules: for every indexed profile, the k QUERIES molecules most "
    "likely to produce it.",
)
@smiles_column_option
@click.option(
    "--id-column",
    default=None,
    help="Column copied to Metadata_ID (as embed-smiles names it; also written as "
    "Molecule_ID, its old name).  [default: Metadata_ID of embed-smiles output]",
)
@index_model_option
@metric_check_option("retrieve")
@device_option
@precision_option(
    "bf16 embedding (as embed-smiles); the decoders always score in fp32. Not used for "
    "embed-smiles output, whose embeddings are taken as they are."
)
@num_workers_option(
    "Worker processes featurizing (and on CPU embedding) the SMILES, as embed-smiles.  "
    "[default: one per core (max 8) for >= 2,000 rows on Linux, else 0]"
)
@on_error_option(
    "Invalid SMILES: keep one row without hits (nan), stop before writing (raise), or "
    "drop it. They are never candidates with --reverse."
)
@batch_size_option(256, "Molecules")
@progress_option
@overwrite_option
@friendly_errors
def retrieve_cmd(
    queries,
    index_dir,
    k,
    output,
    reverse,
    smiles_column,
    id_column,
    model,
    metric,
    device,
    precision,
    num_workers,
    on_error,
    batch_size,
    progress,
    overwrite,
) -> None:
    """Zero-shot: which indexed profiles is each molecule in QUERIES most likely to produce?

    Each molecule is embedded, decoded into the index's feature space by the decoder
    trained for it, and every profile is scored with the index's scoring (see `index build
    --metric`). QUERIES is a SMILES table, or embed-smiles output (a Parquet file with
    Emb_ columns), whose embeddings are decoded as they are instead of re-embedding; they
    must come from the index's model. The summary warns when one profile is the top hit
    for more than 20% of the molecules (hubness).

    \b
    Examples:
      embedkit index build profiles.parquet -o cp_index/
      embedkit retrieve molecules.csv -i cp_index/ -k 10 -o hits.parquet
      embedkit retrieve molecules.csv -i cp_index/ --reverse -k 5 -o molecules_per_profile.csv
      embedkit embed-smiles molecules.csv -o emb.parquet --id-column compound_id
      embedkit retrieve emb.parquet -i cp_index/ -k 10 -o hits.parquet
    """
    from embedkit.outputs import check_output_file
    from embedkit.retrieval.jobs import load_index_model, retrieve_file

    check_output_file(output, overwrite)  # before the model loads
    embedder = load_index_model(index_dir, model, device, precision=precision)
    summary = retrieve_file(
        queries,
        index_dir,
        output,
        embedder,
        k=k,
        reverse=reverse,
        smiles_column=smiles_column,
        id_column=id_column,
        on_error=on_error,
        batch_size=batch_size,
        progress=show_progress(progress),
        overwrite=overwrite,
        metric=metric,
        num_workers=num_workers,
    )
    click.echo(summary.line())
