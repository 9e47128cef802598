"""Hubness diagnostics: does the ranking depend on the query?

In cross-modal nearest-neighbour search a few candidates ("hubs") can be near every query,
so they come first whatever the query (Radovanović et al. 2010). Three numbers show it:
how many distinct candidates are anyone's rank-1 hit, the share of queries whose rank-1
hit is the most frequent one, and the skewness of the k-occurrence distribution (how many
queries have each candidate in their top k; 0 for a symmetric spread, large and positive
when a few candidates are everyone's neighbours).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HUB_K = 10
HUB_WARN_SHARE = 0.2  # `retrieve` warns when one profile is rank 1 for more than this share
HUB_WARN_MIN_QUERIES = 10  # ... of at least this many valid queries


@dataclass
class Hubness:
    queries: int
    candidates: int
    k: int
    distinct_top1: int
    top1_share: float  # share of queries whose rank-1 hit is the most frequent rank-1 hit
    top1_row: int  # that candidate (its row / Profile_Row)
    k_occurrence_skewness: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def line(self) -> str:
        return (
            f"{self.distinct_top1} distinct rank-1 hits over {self.queries} queries "
            f"({self.candidates} candidates); the most frequent (row {self.top1_row}) is rank "
            f"1 for {100 * self.top1_share:.0f}%; k-occurrence skewness "
            f"{self.k_occurrence_skewness:.2f} (k={self.k})"
        )

    def dominated(self, share: float = HUB_WARN_SHARE) -> bool:
        """One candidate takes more than `share` of the rank-1 hits (of enough queries)."""
        return self.queries >= HUB_WARN_MIN_QUERIES and self.top1_share > share

    def warning(self, share: float = HUB_WARN_SHARE) -> str:
        return (
            f"warning: profile {self.top1_row} is the top hit for "
            f"{100 * self.top1_share:.0f}% of the queries (more than {100 * share:.0f}%): the "
            "ranking barely depends on the molecule (hubness); see docs/retrieval.md §2"
        )


def skewness(values: np.ndarray) -> float:
    """Population skewness E[(x − m)³] / σ³ (0 when every value is the same)."""
    values = np.asarray(values, np.float64)
    std = values.std()
    if std == 0:
        return 0.0
    return float(np.mean((values - values.mean()) ** 3) / std**3)


def hubness_from_top(top: np.ndarray, candidates: int) -> Hubness:
    """Diagnostics from each query's ranked candidate ids (rows of `top`, best first;
    negative ids, which approximate indexes use for "none", are ignored)."""
    top = np.asarray(top)
    if top.ndim != 2 or len(top) == 0:
        raise ValueError("hubness needs at least one query with ranked candidates")
    first = top[:, 0][top[:, 0] >= 0]
    counts = np.bincount(first, minlength=candidates)
    occurrence = np.bincount(top[top >= 0].ravel(), minlength=candidates)
    return Hubness(
        queries=len(first),
        candidates=candidates,
        k=top.shape[1],
        distinct_top1=int((counts > 0).sum()),
        top1_share=float(counts.max() / max(len(first), 1)),
        top1_row=int(counts.argmax()),
        k_occurrence_skewness=skewness(occurrence),
    )


def hubness_from_scores(scores: np.ndarray, k: int = HUB_K) -> Hubness:
    """Diagnostics of a (queries × candidates) score matrix (higher = better)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return hubness_from_top(top, scores.shape[1])
