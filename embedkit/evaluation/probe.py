"""Heads trained on frozen features: the paper's MLP probe and a random-forest baseline.

The MLP is InfoAlign's downstream head: Linear(d, 4d) -> BatchNorm -> GELU -> Dropout(0.5)
-> Linear(4d, T), Adam (lr 1e-3, weight decay 1e-5), full-batch steps, NaN-masked
BCE-with-logits (classification) or L1 (regression), early stopping on the validation
metric, and the test score read at the best validation epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from embedkit.evaluation.metrics import higher_is_better, score_predictions


@dataclass
class ProbeConfig:
    hidden_mult: int = 4
    max_hidden: int | None = 1200  # caps 4d for wide inputs (ECFP 2048 -> 1200, not 8192)
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_epochs: int = 300
    patience: int = 50
    batch_size: int = 5120  # the reference's batch: about one step per epoch here

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HeadResult:
    valid_score: float
    test_score: float
    best_epoch: int  # -1 for heads without epochs
    test_pred: np.ndarray


def _mlp(d_in: int, d_out: int, config: ProbeConfig) -> nn.Sequential:
    hidden = config.hidden_mult * d_in
    if config.max_hidden is not None:
        hidden = min(hidden, config.max_hidden)
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
        nn.Dropout(config.dropout), nn.Linear(hidden, d_out),
    )


def _masked_loss(out: torch.Tensor, y: torch.Tensor, task_type: str) -> torch.Tensor:
    mask = ~torch.isnan(y)
    target = torch.nan_to_num(y)
    if task_type == "classification":
        loss = nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")
    else:
        loss = (out - target).abs()
    return (loss * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x)


def _to_scores(out: torch.Tensor, task_type: str) -> np.ndarray:
    return (torch.sigmoid(out) if task_type == "classification" else out).numpy()


def fit_mlp_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray, task_type: str, seed: int = 0,
    config: ProbeConfig | None = None,
) -> HeadResult:
    """Train the MLP head; return valid/test scores (paper units) at the best valid epoch."""
    config = config or ProbeConfig()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    xt, xv, xs = (torch.as_tensor(x, dtype=torch.float32) for x in (x_train, x_valid, x_test))
    yt = torch.as_tensor(y_train, dtype=torch.float32)
    model = _mlp(xt.shape[1], yt.shape[1], config)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sign = 1.0 if higher_is_better(task_type) else -1.0
    best = HeadResult(float("nan"), float("nan"), -1, np.zeros(0))
    best_key, since_best = -np.inf, 0
    for epoch in range(config.max_epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), config.batch_size):
            rows = order[start : start + config.batch_size]
            if len(rows) < 2:  # BatchNorm needs two rows
                continue
            optimiser.zero_grad()
            _masked_loss(model(xt[rows]), yt[rows], task_type).backward()
            optimiser.step()
        valid_out = _predict(model, xv)
        valid_score = score_predictions(task_type, y_valid, _to_scores(valid_out, task_type))
        if np.isfinite(valid_score):
            key = sign * valid_score
        else:  # no scorable validation task (tiny subsets): select on the validation loss
            key = -_masked_loss(valid_out, torch.as_tensor(y_valid), task_type).item()
        if key > best_key:
            test_pred = _to_scores(_predict(model, xs), task_type)
            test_score = score_predictions(task_type, y_test, test_pred)
            best = HeadResult(valid_score, test_score, epoch, test_pred)
            best_key, since_best = key, 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    return best


def fit_random_forest(
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray, task_type: str, seed: int = 0,
    n_estimators: int = 200, n_jobs: int = 2,
) -> HeadResult:
    """One forest per task on that task's labelled training rows (the paper's RF baseline).

    `max_features="sqrt"` for both task types keeps 2048-bit regression forests affordable
    on two cores. A task whose training labels are a single class predicts that constant.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    n_tasks = y_train.shape[1]
    pred_valid = np.zeros((len(x_valid), n_tasks), dtype=np.float32)
    pred_test = np.zeros((len(x_test), n_tasks), dtype=np.float32)
    for t in range(n_tasks):
        mask = ~np.isnan(y_train[:, t])
        labels = y_train[mask, t]
        if labels.size == 0:
            continue
        if task_type == "classification":
            if labels.min() == labels.max():
                pred_valid[:, t] = pred_test[:, t] = labels[0]
                continue
            forest = RandomForestClassifier(
                n_estimators=n_estimators, max_features="sqrt", n_jobs=n_jobs, random_state=seed
            ).fit(x_train[mask], labels.astype(int))
            pred_valid[:, t] = forest.predict_proba(x_valid)[:, 1]
            pred_test[:, t] = forest.predict_proba(x_test)[:, 1]
        else:
            forest = RandomForestRegressor(
                n_estimators=n_estimators, max_features="sqrt", n_jobs=n_jobs, random_state=seed
            ).fit(x_train[mask], labels)
            pred_valid[:, t] = forest.predict(x_valid)
            pred_test[:, t] = forest.predict(x_test)
    return HeadResult(
        score_predictions(task_type, y_valid, pred_valid),
        score_predictions(task_type, y_test, pred_test),
        -1,
        pred_test,
    )
