"""Image-feature similarity between perturbations (the paper's third source).

Per-perturbation mean profiles (`embedkit.profiles.aggregate`, method mean) over the rows of
a profile table, each feature standardized across those means
(`embedkit.profiles.normalize`, so cosine compares profile shapes rather than the common
offset every raw feature has), then the cosine similarity of every pair. Pairs at or above
`threshold` become edges weighted by their cosine (in [threshold, 1]); the rest, negative
similarities included, are not edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from embedkit.errors import InputError

IMAGE_THRESHOLD = 0.5
FEATURE_PREFIX = "Emb_"


def image_features(table: pd.DataFrame, features: Sequence[str] | None = None) -> list[str]:
    """`Emb_` columns when the table has them, else its numeric non-Metadata columns."""
    from embedkit.profiles.features import infer_features

    if features is None:
        emb = [str(c) for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
        if emb:
            return infer_features(table, emb)
    return infer_features(table, features)


def perturbation_profiles(
    table: pd.DataFrame, label_column: str, features: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """(labels, standardized mean profiles) — one row per label with any feature value."""
    from embedkit.profiles.aggregate import aggregate
    from embedkit.profiles.normalize import normalize

    if label_column not in table.columns:
        raise InputError(
            f"label column {label_column!r} is not in the image feature table (columns: "
            f"{', '.join(map(str, table.columns[:12]))})"
        )
    feats = [f for f in image_features(table, features) if f != label_column]
    rows = table[table[label_column].notna()]
    rows = rows.assign(**{label_column: rows[label_column].astype(str).str.strip()})
    rows = rows[rows[label_column] != ""]
    if len(rows) == 0:
        raise InputError(f"the image feature table has no rows with a {label_column!r} label")
    means = aggregate(rows[[label_column, *feats]], [label_column], "mean", feats)
    scaled = normalize(means, "standardize", features=feats)
    values = np.nan_to_num(scaled[feats].to_numpy(dtype=np.float64))
    return list(means[label_column]), values


def cosine_edges(
    labels: list[str], values: np.ndarray, threshold: float = IMAGE_THRESHOLD, block: int = 2048
) -> pd.DataFrame:
    """Pairs (i < j) with cosine ≥ threshold, as an edge frame (source, target, weight)."""
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    unit = values / np.where(norms > 0, norms, 1.0)
    names = np.asarray(labels, dtype=object)
    parts = []
    for lo in range(0, len(unit), block):
        sim = unit[lo : lo + block] @ unit.T
        i, j = np.nonzero(sim >= threshold)
        upper = j > i + lo  # j indexes every row, i the block's
        i, j = i[upper], j[upper]
        parts.append(
            pd.DataFrame(
                {
                    "source": names[i + lo],
                    "target": names[j],
                    "weight": np.clip(sim[i, j], 0.0, 1.0),
                }
            )
        )
    if not parts:
        return pd.DataFrame({"source": [], "target": [], "weight": []})
    return pd.concat(parts, ignore_index=True)
