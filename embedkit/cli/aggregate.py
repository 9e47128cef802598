"""`embedkit aggregate`: per-well (or any strata) profiles from per-site or per-crop tables.

Works on our embeddings (`Emb_0000…`) and on CellProfiler features alike: `Metadata_`
columns describe rows, other numeric columns are features (or name them with --features).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from embedkit.cli.options import (
    features_option,
    friendly_errors,
    profile_output_option,
    split_columns,
)
from embedkit.profiles.jobs import read_profiles, run_info_with_step, write_profiles


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
@friendly_errors
def aggregate_cmd(
    input_path: Path, output: Path, strata: str, method: str, features: str | None
) -> None:
    """Aggregate IN into one profile per stratum (crop → site → well).

    Rows keep first-appearance order of their stratum; missing feature values are skipped
    per column. Metadata constant within every stratum is kept, the rest dropped;
    Metadata_Object_Count counts the rows aggregated (summed when IN already has it).

    \b
    Examples:
      embedkit aggregate crops.parquet -o sites.parquet \\
          --strata Metadata_Plate,Metadata_Well,Metadata_Site
      embedkit aggregate sites.parquet -o wells.parquet
      embedkit aggregate cells.csv -o wells.csv --method mean --features 'Cells_*,Nuclei_*'
    """
    from embedkit.profiles.aggregate import OBJECT_COUNT, aggregate
    from embedkit.profiles.features import infer_features

    start = time.perf_counter()
    table = read_profiles(input_path)
    strata_cols = split_columns(strata)
    feature_list = split_columns(features)
    out = aggregate(table, strata=strata_cols, method=method, features=feature_list)
    feats = [f for f in infer_features(table, feature_list) if f not in strata_cols]
    step = {"step": "aggregate", "strata": strata_cols, "method": method}
    write_profiles(out, output, feats, run_info_with_step(input_path, step))
    objects = int(out[OBJECT_COUNT].sum())
    click.echo(
        f"aggregate: {len(table):,} rows → {len(out):,} rows ({objects:,} objects), "
        f"{len(feats)} features, {method} by {','.join(strata_cols)}, "
        f"{time.perf_counter() - start:.2f} s → {output}"
    )
