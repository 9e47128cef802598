"""The paper's metrics: mean ROC-AUC over scorable tasks, mean MAE over tasks.

Both are reported in the paper's units (AUC in %, MAE x100) so numbers sit beside its
tables unchanged. Labels are NaN where unmeasured; each task is scored on its own rows.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRIC_NAMES = {"classification": "auc_pct", "regression": "mae_x100"}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC as the Mann-Whitney U statistic (ties count one half).

    Equal to sklearn's `roc_auc_score`, at a fraction of its per-call overhead, which
    matters because the probe scores every task on every epoch.
    """
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def per_task_roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """ROC-AUC per task; NaN for tasks without both classes among the labelled rows."""
    out = np.full(y_true.shape[1], np.nan)
    for t in range(y_true.shape[1]):
        mask = ~np.isnan(y_true[:, t])
        out[t] = roc_auc(y_true[mask, t], y_score[mask, t])
    return out


def per_task_mae(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """MAE per task on labelled rows; NaN for tasks with no labels."""
    out = np.full(y_true.shape[1], np.nan)
    for t in range(y_true.shape[1]):
        mask = ~np.isnan(y_true[:, t])
        if mask.any():
            out[t] = np.abs(y_true[mask, t] - y_pred[mask, t]).mean()
    return out


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def mean_roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean ROC-AUC (0-1) over tasks that have both classes; NaN if none has."""
    return _nanmean(per_task_roc_auc(y_true, y_score))


def mean_mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over tasks of the per-task MAE (each task weighted equally)."""
    return _nanmean(per_task_mae(y_true, y_pred))


def score_predictions(task_type: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The paper's headline number: AUC in % (higher better) or MAE x100 (lower better)."""
    if task_type == "classification":
        return 100.0 * mean_roc_auc(y_true, y_pred)
    return 100.0 * mean_mae(y_true, y_pred)


def higher_is_better(task_type: str) -> bool:
    return task_type == "classification"
