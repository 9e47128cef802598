"""`embedkit aggregate` and `embedkit normalize`: profile-table steps for any profile table.

They work on our embeddings (`Emb_0000…`) and on CellProfiler features alike: `Metadata_`
columns describe rows, other numeric columns are features (or name them with --features).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from embedkit.cli_common import friendly_errors
from embedkit.errors import InputError
from embedkit.profiles.normalize import NORMALIZERS

ANN_SUFFIXES = (".npz", ".h5ad")  # these writers keep only Emb_ columns as the matrix

output_option = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output table; format from the suffix: .parquet .csv .tsv (.npz .h5ad for Emb_ "
    "features). Written atomically.",
)
features_option = click.option(
    "--features",
    default=None,
    help="Comma-separated feature columns; * and ? patterns allowed (e.g. 'Cells_*,Nuclei_*'). "
    " [default: numeric columns not starting with Metadata_]",
)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"expected comma-separated column names, got {text!r}")
    return items


def _read(path: Path):
    from embedkit.io import coerce_numeric_text, read_table

    return coerce_numeric_text(read_table(path))


def _run_info(path: Path, step: dict) -> dict:
    """The input's run info (model id, revision…) plus this step, so provenance travels."""
    from embedkit.io import read_run_info

    try:
        info = dict(read_run_info(path))
    except (OSError, ValueError, KeyError):
        info = {}
    steps = info.get("profile_steps")
    steps = list(steps) if isinstance(steps, list) else []
    info["profile_steps"] = [*steps, step]
    return info


def _write(table, output: Path, feature_names: list[str], info: dict) -> None:
    from embedkit.io import write_table

    suffix = output.suffix.lower()
    if suffix in ANN_SUFFIXES and not all(f.startswith("Emb_") for f in feature_names):
        raise InputError(
            f"{output}: {suffix} files hold only Emb_ feature columns and these features are "
            f"named otherwise (e.g. {feature_names[0]}); write .parquet, .csv or .tsv"
        )
    write_table(table, output, run_info=info)


@click.command("aggregate")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@output_option
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
    table = _read(input_path)
    strata_cols = _split(strata)
    feature_list = _split(features)
    out = aggregate(table, strata=strata_cols, method=method, features=feature_list)
    feats = [f for f in infer_features(table, feature_list) if f not in strata_cols]
    step = {"step": "aggregate", "strata": strata_cols, "method": method}
    _write(out, output, feats, _run_info(input_path, step))
    objects = int(out[OBJECT_COUNT].sum())
    click.echo(
        f"aggregate: {len(table):,} rows → {len(out):,} rows ({objects:,} objects), "
        f"{len(feats)} features, {method} by {','.join(strata_cols)}, "
        f"{time.perf_counter() - start:.2f} s → {output}"
    )


@click.command("normalize")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@output_option
@click.option(
    "--method",
    required=True,
    type=click.Choice(list(NORMALIZERS)),
    help="standardize: (x-mean)/std. mad_robustize: (x-median)/(1.4826 MAD), robust. "
    "pca_centerscale: PCA on controls, then centre/scale. tvn: whitening PCA on controls "
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
    help="Normalise each group of this column (comma-separated for several) on its own "
    "controls, e.g. Metadata_Plate.  [default: the whole table]",
)
@click.option(
    "--n-components",
    type=click.IntRange(min=1),
    default=None,
    help="PCA components (pca_centerscale, tvn).  [default: all the controls span]",
)
@features_option
@friendly_errors
def normalize_cmd(
    input_path: Path,
    output: Path,
    method: str,
    controls: str | None,
    by: str | None,
    n_components: int | None,
    features: str | None,
) -> None:
    """Normalise IN's features against controls, per plate or batch.

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
    from embedkit.profiles.features import infer_features
    from embedkit.profiles.normalize import PC_PREFIX, control_mask, group_rows, normalize

    start = time.perf_counter()
    table = _read(input_path)
    by_cols = _split(by)
    feature_list = _split(features)
    out = normalize(
        table,
        method,
        controls=controls,
        by=by_cols,
        features=feature_list,
        n_components=n_components,
    )
    feats_in = infer_features(table, feature_list)
    feats_out = [c for c in out.columns if str(c).startswith(PC_PREFIX)] or feats_in
    step = {
        "step": "normalize",
        "method": method,
        "controls": controls,
        "by": by_cols,
        "n_components": n_components,
    }
    _write(out, output, feats_out, _run_info(input_path, step))
    n_controls = int(control_mask(table, controls).sum())
    groups = len(group_rows(table, by_cols))
    where = f"{groups} groups of {','.join(by_cols)}" if by_cols else "whole table"
    shape = f"{len(feats_in)} features" + (
        f" → {len(feats_out)} PCs" if feats_out is not feats_in else ""
    )
    click.echo(
        f"normalize: {len(table):,} rows → {len(out):,} rows, {shape}, {method} on "
        f"{n_controls:,} control rows, {where}, {time.perf_counter() - start:.2f} s → {output}"
    )
