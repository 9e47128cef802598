"""`embedkit aggregate`: per-well (or any strata) profiles from per-site or per-crop tables.

Works on our embeddings (`Emb_0000…`) and on CellProfiler features alike: `Metadata_`
columns describe rows, other numeric columns are features (or name them with --features).
"""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    features_option,
    friendly_errors,
    overwrite_option,
    platemap_option,
    profile_output_option,
    split_columns,
)


@click.command("aggregate")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@profile_output_option
@click.option(
    "--strata",
    default="Metadata_Plate,Metadata_Well",
    show_default=True,
    help="Comma-separated columns; one output row per distinct combination.",
)
@click.option(
    "--method",
    type=click.Choice(["median", "mean"]),
    default="median",
    show_default=True,
    help="median is robust to outlier cells (pycytominer's default).",
)
@features_option
@platemap_option
@overwrite_option
@friendly_errors
def aggregate_cmd(
    input_path: Path,
    output: Path,
    strata: str,
    method: str,
    features: str | None,
    platemap: Path | None,
    overwrite: bool,
) -> None:
    """Aggregate IN into one profile per stratum (crop → site → well).

    Rows keep first-appearance order of their stratum; missing feature values are skipped
    per column. Metadata constant within every stratum is kept, the rest dropped;
    Metadata_Object_Count counts the rows aggregated (summed when IN already has it).
    --platemap annotates the rows first, so its columns can be strata.

    \b
    Examples:
      embedkit aggregate crops.parquet -o sites.parquet \\
          --strata Metadata_Plate,Metadata_Well,Metadata_Site
      embedkit aggregate sites.parquet -o wells.parquet
      embedkit aggregate cells.csv -o wells.csv --method mean --features 'Cells_*,Nuclei_*'
      embedkit aggregate sites.parquet -o wells.parquet --platemap platemap.csv
    """
    from embedkit.profiles.jobs import aggregate_file

    summary = aggregate_file(
        input_path,
        output,
        split_columns(strata),
        method,
        split_columns(features),
        overwrite,
        platemap=platemap,
    )
    click.echo(summary.line())
