"""Collapse rows into one profile per stratum (crop → site → well), as pycytominer does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.profiles.features import infer_features, metadata_columns

METHODS = ("median", "mean")
OBJECT_COUNT = "Metadata_Object_Count"
DEFAULT_STRATA = ("Metadata_Plate", "Metadata_Well")


def aggregate(
    table: pd.DataFrame,
    strata: Sequence[str] | str = DEFAULT_STRATA,
    method: str = "median",
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per stratum, in first-appearance order; median by default (robust to outliers).

    NaN features are skipped per column. Non-feature columns constant within every group are
    kept, the others dropped. `Metadata_Object_Count` counts the rows aggregated; when the input
    already carries one (e.g. site profiles made from crops) the counts are summed, so a
    well still reports its number of objects.
    """
    if method not in METHODS:
        raise InputError(f"unknown aggregation method {method!r}; use one of {', '.join(METHODS)}")
    strata = [strata] if isinstance(strata, str) else list(strata)
    if not strata:
        raise InputError("aggregate needs at least one strata column (e.g. Metadata_Well)")
    missing = [s for s in strata if s not in table.columns]
    if missing:
        raise InputError(
            f"strata column(s) not in the table: {', '.join(missing)}; available Metadata "
            f"columns: {', '.join(metadata_columns(table)) or '(none)'}"
        )
    if len(table) == 0:
        raise InputError("the table has no rows to aggregate")
    feats = [f for f in infer_features(table, features) if f not in strata]
    if not feats:
        raise InputError("no feature columns left once the strata columns are set aside")

    codes = table.groupby(strata, sort=False, dropna=False, observed=True).ngroup().to_numpy()
    values = getattr(table[feats].groupby(codes, sort=True), method)()
    for column in feats:  # keep float32 embeddings float32 (pandas widens to float64)
        if table[column].dtype == np.float32:
            values[column] = values[column].astype(np.float32)

    first = np.unique(codes, return_index=True)[1]
    count = _object_count(table, codes)
    others = [c for c in table.columns if c not in feats and c not in strata and c != OBJECT_COUNT]
    if others:
        varying = table[others].groupby(codes, sort=True).nunique(dropna=False).max()
        others = [c for c in others if varying[c] <= 1]
    meta = table[strata + others].iloc[first].reset_index(drop=True)
    meta[OBJECT_COUNT] = count
    return pd.concat([meta, values.reset_index(drop=True)], axis=1)


def _object_count(table: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """Rows per group, or the sum of an existing (fully numeric) Metadata_Object_Count."""
    if OBJECT_COUNT in table.columns:
        existing = pd.to_numeric(table[OBJECT_COUNT], errors="coerce")
        if existing.notna().all():
            return existing.groupby(codes, sort=True).sum().to_numpy().astype(np.int64)
    return np.bincount(codes).astype(np.int64)
