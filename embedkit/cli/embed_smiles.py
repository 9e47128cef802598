"""`embedkit embed-smiles`: one embedding row per input SMILES, in input order."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    batch_size_option,
    device_option,
    friendly_errors,
    model_option,
    num_workers_option,
    on_error_option,
    overwrite_option,
    precision_option,
    progress_option,
    show_progress,
    smiles_column_option,
)


@click.command("embed-smiles")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output table; format from the suffix: .parquet .csv .tsv .npz .h5ad. Written "
    "atomically; missing folders are created.",
)
@smiles_column_option
@click.option(
    "--id-column", default=None, help="Column copied to Metadata_ID (e.g. a compound id)."
)
@model_option
@batch_size_option(256, "Molecules")
@num_workers_option(
    "Worker processes. On CPU each featurizes and runs the model on its own chunk "
    "(1 thread each); with a GPU they only featurize.  [default: one per core (max 8) for "
    ">= 2,000 rows on Linux, else 0]"
)
@device_option
@precision_option(
    "bf16 weights and activations (cosine to fp32 >= 0.9998 on NCI molecules): for GPUs "
    "and CPUs with AMX; elsewhere slower than fp32 (a warning says so). fp32 is exact."
)
@on_error_option(
    "Invalid SMILES: keep the row with NaNs (nan), stop before writing (raise), or drop it."
)
@progress_option
@overwrite_option
@friendly_errors
def embed_smiles(
    input_path,
    output,
    smiles_column,
    id_column,
    model,
    batch_size,
    num_workers,
    device,
    precision,
    on_error,
    progress,
    overwrite,
) -> None:
    """Embed the SMILES in IN (csv/tsv/smi/parquet) into one row per input row, in order.

    \b
    Examples:
      embedkit embed-smiles molecules.csv -o molecules.parquet --id-column compound_id
      embedkit embed-smiles molecules.smi -o molecules.h5ad --on-error drop
      embedkit embed-smiles big.csv.gz -o big.parquet --precision bf16 --num-workers 4
    """
    from embedkit.api import load
    from embedkit.molecules.jobs import embed_smiles_file
    from embedkit.outputs import check_output_file

    check_output_file(output, overwrite)  # before the model loads
    embedder = load(
        model, device=device, precision=precision, task="molecules", command="embed-smiles"
    )
    summary = embed_smiles_file(
        input_path,
        output,
        embedder,
        smiles_column=smiles_column,
        id_column=id_column,
        batch_size=batch_size,
        num_workers=num_workers,
        on_error=on_error,
        progress=show_progress(progress),
        overwrite=overwrite,
    )
    click.echo(summary.line())
    summary.raise_if_nothing_embedded()  # exit 2 when every row failed
