"""File-level profile jobs: read a profile table, carry its provenance, write the result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from embedkit.errors import InputError

ANN_SUFFIXES = (".npz", ".h5ad")  # these writers keep only Emb_ columns as the matrix


def read_profiles(path: Path) -> pd.DataFrame:
    """A profile table by suffix, with numbers stored as text turned back into numbers."""
    from embedkit.io import coerce_numeric_text, read_table

    return coerce_numeric_text(read_table(path))


def run_info_with_step(path: Path, step: dict) -> dict:
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


def write_profiles(table: pd.DataFrame, output: Path, feature_names: list[str], info: dict) -> None:
    """Write atomically by suffix; .npz/.h5ad only for Emb_ features (their matrix layout)."""
    from embedkit.io import write_table

    suffix = output.suffix.lower()
    if suffix in ANN_SUFFIXES and not all(f.startswith("Emb_") for f in feature_names):
        raise InputError(
            f"{output}: {suffix} files hold only Emb_ feature columns and these features are "
            f"named otherwise (e.g. {feature_names[0]}); write .parquet, .csv or .tsv"
        )
    write_table(table, output, run_info=info)
