"""Measures for the paper's Proposition 3.1 (graph losses tighten each perturbation's
replicates): how close graph neighbours are compared with non-neighbours, and how spread
each perturbation's replicates are. Numpy only; Euclidean distances on the features as
given (normalize them first if you compare runs whose feature scales differ, or use
`relative=True`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def neighbor_distance_ratio(means, adjacency, block: int = 1024) -> float:
    """Mean distance between graph neighbours / mean distance between non-neighbours.

    `means` (n, D): one row per perturbation (node order of `adjacency`, n × n, dense or
    sparse; any positive weight is an edge). Below 1: neighbours sit closer than the rest.
    NaN when there is no neighbour pair or no non-neighbour pair.
    """
    x = _as_numpy(means)
    a = sp.csr_matrix(adjacency)
    n = len(x)
    if a.shape != (n, n):
        raise ValueError(f"adjacency is {a.shape} but there are {n} rows of means")
    sq = (x * x).sum(axis=1)
    near_sum = far_sum = 0.0
    near_n = far_n = 0
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        d2 = sq[lo:hi, None] + sq[None, :] - 2.0 * x[lo:hi] @ x.T
        dist = np.sqrt(np.maximum(d2, 0.0))
        edge = a[lo:hi].toarray() > 0
        upper = np.arange(n)[None, :] > np.arange(lo, hi)[:, None]  # each pair once
        near = edge & upper
        far = ~edge & upper
        near_sum += float(dist[near].sum())
        near_n += int(near.sum())
        far_sum += float(dist[far].sum())
        far_n += int(far.sum())
    if near_n == 0 or far_n == 0 or far_sum == 0:
        return float("nan")
    return (near_sum / near_n) / (far_sum / far_n)


def intra_perturbation_distance(features, labels, relative: bool = False) -> float:
    """Mean over perturbations with ≥ 2 replicates of the mean distance of a replicate to its
    perturbation's mean. `relative=True` divides by the mean distance of every row to the
    overall mean, so runs with different feature scales compare."""
    x = _as_numpy(features)
    labels = _as_numpy(labels) if hasattr(labels, "detach") else np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, x)
    centers = sums / counts[:, None]
    dist = np.linalg.norm(x - centers[inverse], axis=1)
    per = np.bincount(inverse, weights=dist, minlength=len(counts)) / counts
    replicated = counts >= 2
    if not replicated.any():
        return float("nan")
    value = float(per[replicated].mean())
    if relative:
        spread = float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean())
        return value / spread if spread > 0 else float("nan")
    return value
