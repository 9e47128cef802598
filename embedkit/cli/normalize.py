"""`embedkit normalize`: standardize, mad_robustize, pca_centerscale or TVN, per batch on controls.

Works on our embeddings (`Emb_0000…`) and on CellProfiler features alike: `Metadata_`
columns describe rows, other numeric columns are features (or name them with --features).
"""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    NORMALIZE_METHODS,
    features_option,
    friendly_errors,
    overwrite_option,
    profile_output_option,
    split_columns,
)


@click.command("normalize")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@profile_output_option
@click.option(
    "--method",
    required=True,
    type=click.Choice(NORMALIZE_METHODS),
    help="standardize: (x-mean)/std. mad_robustize: (x-median)/(1.4826 MAD + 1e-18), robust; "
    "a feature constant among the controls but not elsewhere is divided by 1e-18, as in "
    "pycytominer (values up to ~1e17; the summary counts such features). "
    "pca_centerscale: PCA on controls, then center/scale. tvn: whitening PCA on controls "
    "of all batches, then per-batch scaling on controls (OpenPhenom's recommendation).",
)
@click.option(
    "--controls",
    default=None,
    metavar="QUERY",
    help="pandas query selecting the rows statistics come from, e.g. "
    "\"Metadata_PertType == 'negcon'\".  [default: all rows]",
)
@click.option(
    "--by",
    default=None,
    metavar="COLUMN",
    help="Normalize each group of this column (comma-separated for several) on its own "
    "controls, e.g. Metadata_Plate.  [default: the whole table]",
)
@click.option(
    "--n-components",
    type=click.IntRange(min=1),
    default=None,
    help="PCA components (pca_centerscale, tvn).  [default: all the controls span]",
)
@features_option
@overwrite_option
@friendly_errors
def normalize_cmd(
    input_path: Path,
    output: Path,
    method: str,
    controls: str | None,
    by: str | None,
    n_components: int | None,
    features: str | None,
    overwrite: bool,
) -> None:
    """Normalize IN's features against controls, per plate or batch.

    Every row and metadata column is kept, in order. PCA methods (pca_centerscale, tvn)
    replace the features with PC_0000…; the others keep the feature names. Constant
    features become 0 (never NaN); missing values stay missing.

    \b
    Examples:
      embedkit normalize wells.parquet -o wells_norm.parquet --method mad_robustize \\
          --controls "Metadata_PertType == 'negcon'" --by Metadata_Plate
      embedkit normalize wells.parquet -o wells_tvn.parquet --method tvn \\
          --controls "Metadata_PertType == 'negcon'" --by Metadata_Batch
      embedkit normalize cp_wells.csv -o cp_norm.csv --method standardize \\
          --features 'Cells_*,Cytoplasm_*,Nuclei_*' --by Metadata_Plate
    """
    from embedkit.profiles.jobs import normalize_file

    summary = normalize_file(
        input_path,
        output,
        method,
        controls=controls,
        by=split_columns(by),
        features=split_columns(features),
        n_components=n_components,
        overwrite=overwrite,
    )
    click.echo(summary.line())
