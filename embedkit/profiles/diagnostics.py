"""How much batch is left in a profile table, and how much biology: a linear-probe report.

A good correction makes batch unpredictable (accuracy near chance) while the biological label
stays predictable on batches the classifier never saw (leave-batch-out). Needs scikit-learn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.profiles.features import infer_features
from embedkit.profiles.normalize import control_mask


def batch_effect_report(
    table: pd.DataFrame,
    batch_col: str,
    label_col: str,
    features: Sequence[str] | None = None,
    *,
    label_rows: str | None = None,
    folds: int = 5,
    max_rows: int | None = 20_000,
    seed: int = 0,
) -> dict:
    """Cross-validated logistic-regression accuracy for batch and for label, with chance levels.

    batch_accuracy: stratified k-fold predicting `batch_col` (lower is better; chance is the
    largest batch's share). label_accuracy: predicting `label_col` with whole batches held out
    (GroupKFold by batch), higher is better; `label_rows` (a pandas query, e.g.
    "Metadata_PertType == 'trt'") restricts that probe, so controls do not dominate it.
    Rows with a missing feature, batch or label are left out and counted; above `max_rows` a
    seeded random subset is used.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as err:
        message = "batch_effect_report needs scikit-learn: pip install scikit-learn"
        raise ImportError(message) from err

    start = time.perf_counter()
    for column in (batch_col, label_col):
        if column not in table.columns:
            raise InputError(f"column {column!r} not in the table")
    feats = infer_features(table, features)
    x = table[feats].to_numpy(dtype=np.float64)
    keep = ~np.isnan(x).any(axis=1) & table[batch_col].notna().to_numpy()
    keep &= table[label_col].notna().to_numpy()
    dropped = int((~keep).sum())
    rows = np.flatnonzero(keep)
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    x = x[rows]
    batch = table[batch_col].to_numpy()[rows].astype(str)
    label = table[label_col].to_numpy()[rows].astype(str)
    in_label = control_mask(table, label_rows)[rows]
    n_batches = len(np.unique(batch))
    if n_batches < 2:
        raise InputError(f"{batch_col!r} has {n_batches} distinct value(s); need at least 2")

    def probe() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    k_batch = max(2, min(folds, np.unique(batch, return_counts=True)[1].min()))
    batch_cv = StratifiedKFold(n_splits=k_batch, shuffle=True, random_state=seed)
    batch_acc = cross_val_score(probe(), x, batch, cv=batch_cv).mean()
    label_batches = len(np.unique(batch[in_label]))
    if label_batches < 2:
        raise InputError(f"the label rows come from {label_batches} batch(es); need at least 2")
    label_cv = GroupKFold(n_splits=min(folds, label_batches))
    label_acc = cross_val_score(
        probe(), x[in_label], label[in_label], cv=label_cv, groups=batch[in_label]
    ).mean()
    return {
        "rows": len(rows),
        "rows_dropped_missing": dropped,
        "features": len(feats),
        "batches": n_batches,
        "label_rows": int(in_label.sum()),
        "labels": len(np.unique(label[in_label])),
        "batch_accuracy": float(batch_acc),
        "batch_chance": _majority_share(batch),
        "label_accuracy": float(label_acc),
        "label_chance": _majority_share(label[in_label]),
        "label_cv": "leave-batch-out",
        "seconds": time.perf_counter() - start,
    }


def _majority_share(values: np.ndarray) -> float:
    return float(np.unique(values, return_counts=True)[1].max() / len(values))
