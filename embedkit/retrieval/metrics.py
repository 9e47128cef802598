"""Retrieval metrics with one relevant candidate per query, and their chance levels.

The rank of the true candidate is 1 + the number of candidates scored *at least as high*
(other than itself): ties count against the method, so a constant scorer gets the worst
rank, not the best. With one relevant item NDCG@k = 1/log2(rank + 1) if rank ≤ k, else 0,
and NDCG@1 = HIT@1. Chance levels are averaged over queries because the number of
candidates may differ between queries (cross-validation folds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CUTOFFS = (1, 10)


def truth_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of each row's best true candidate (higher score = better).

    `truth` is a boolean mask like `scores` (a query may have replicate profiles) or one
    column index per row. Rank = 1 + the false candidates scoring at least as high.
    """
    if truth.ndim == 1:
        mask = np.zeros(scores.shape, dtype=bool)
        mask[np.arange(len(scores)), truth] = True
    else:
        mask = truth.astype(bool)
    best = np.where(mask, scores, -np.inf).max(axis=1)
    return 1 + ((scores >= best[:, None]) & ~mask).sum(axis=1)


def hit_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks <= k))


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def chance_hit_at(candidates: np.ndarray, k: int) -> float:
    return float(np.mean(np.minimum(k, candidates) / candidates))


def chance_ndcg_at(candidates: np.ndarray, k: int) -> float:
    gains = 1.0 / np.log2(np.arange(1, k + 1) + 1.0)
    return float(np.mean([gains[: min(k, n)].sum() / n for n in candidates]))


@dataclass
class RetrievalMetrics:
    """Percentages (HIT, NDCG) and mean rank, each with its chance level."""

    queries: int
    mean_candidates: float
    hit_1: float
    hit_10: float
    ndcg_1: float
    ndcg_10: float
    mean_rank: float
    chance_hit_1: float
    chance_hit_10: float
    chance_ndcg_1: float
    chance_ndcg_10: float
    chance_mean_rank: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def values(self) -> list[tuple[float, float]]:
        """(value, chance) of each row of `lines`, in order."""
        return [(value, chance) for _, value, chance in self.rows()]

    def rows(self) -> list[tuple[str, float, float]]:
        return [
            ("HIT@1 %", self.hit_1, self.chance_hit_1),
            ("HIT@10 %", self.hit_10, self.chance_hit_10),
            ("NDCG@1 %", self.ndcg_1, self.chance_ndcg_1),
            ("NDCG@10 %", self.ndcg_10, self.chance_ndcg_10),
            ("mean rank", self.mean_rank, self.chance_mean_rank),
        ]

    def lines(self) -> list[str]:
        rows = self.rows()
        head = f"{self.queries} queries, {self.mean_candidates:.0f} candidates each on average"
        return [head, f"{'metric':<10} {'value':>8} {'chance':>8}"] + [
            f"{name:<10} {value:>8.1f} {chance:>8.1f}" for name, value, chance in rows
        ]


def retrieval_metrics(ranks: np.ndarray, candidates: np.ndarray | int) -> RetrievalMetrics:
    """Metrics of 1-based `ranks` given each query's number of candidates."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        raise ValueError("no queries to evaluate")
    n = np.broadcast_to(np.asarray(candidates, dtype=np.float64), ranks.shape)
    return RetrievalMetrics(
        queries=len(ranks),
        mean_candidates=float(n.mean()),
        hit_1=100 * hit_at(ranks, 1),
        hit_10=100 * hit_at(ranks, 10),
        ndcg_1=100 * ndcg_at(ranks, 1),
        ndcg_10=100 * ndcg_at(ranks, 10),
        mean_rank=float(ranks.mean()),
        chance_hit_1=100 * chance_hit_at(n, 1),
        chance_hit_10=100 * chance_hit_at(n, 10),
        chance_ndcg_1=100 * chance_ndcg_at(n.astype(int), 1),
        chance_ndcg_10=100 * chance_ndcg_at(n.astype(int), 10),
        chance_mean_rank=float(((n + 1) / 2).mean()),
    )


def plot_rank_histogram(
    ranks: dict[str, np.ndarray], candidates: int, path: str | Path, title: str = ""
) -> Path:
    """Histogram of the true candidate's rank per method (the paper's Table 4, right), as
    PNG, PDF or SVG by `path`'s suffix."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    from embedkit.plots import plot_format, save_figure

    path = Path(path)
    plot_format(path)  # an unknown suffix is refused before any drawing
    width = int(np.ceil(candidates / 20))  # whole ranks per bin, so chance is flat
    bins = np.arange(0.5, candidates + width + 0.5, width)
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.subplots()
    for name, values in ranks.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=name)
    queries = sum(len(v) for v in ranks.values()) / len(ranks)
    ax.axhline(queries * width / candidates, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("rank of the true profile (1 = best)")
    ax.set_ylabel("queries")
    ax.set_title(title or "Rank of the true profile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
