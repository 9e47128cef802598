"""Uniform (DeepWalk) random walks on a CSR graph, in plain torch (no torch_cluster).

InfoAlign walks `walk_length` steps from each training molecule, choosing the next node
uniformly among the current node's neighbours (edge weights do not bias the choice), and
weights the k-th visited node by α_k = Π_{t ≤ k} w(e_t), with α_0 = 1 for the start node.
A walk that reaches a node without neighbours stops there: later positions get node -1 and
α = 0, so they drop out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CSRGraph:
    """Both directions of every undirected edge, grouped by source node."""

    indptr: torch.Tensor  # (num_nodes + 1,) int64
    indices: torch.Tensor  # (2E,) int64, neighbour ids
    weights: torch.Tensor  # (2E,) float32

    @property
    def num_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def degree(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    @classmethod
    def from_edges(cls, src, dst, weight, num_nodes: int) -> CSRGraph:
        """Undirected edge list (each pair once) → symmetric CSR."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        weight = np.asarray(weight, np.float32)
        a = np.concatenate([src, dst])
        b = np.concatenate([dst, src])
        w = np.concatenate([weight, weight])
        order = np.lexsort((b, a))
        counts = np.bincount(a, minlength=num_nodes)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(
            torch.from_numpy(indptr),
            torch.from_numpy(b[order].copy()),
            torch.from_numpy(w[order].copy()),
        )


def random_walks(
    graph: CSRGraph, start: torch.Tensor, length: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk `length` steps from each start node → (nodes, alpha), both (B, length + 1).

    nodes[:, 0] = start, alpha[:, 0] = 1; stuck positions have node -1 and alpha 0.
    """
    start = start.to(torch.int64)
    nodes = torch.full((start.shape[0], length + 1), -1, dtype=torch.int64)
    alpha = torch.zeros((start.shape[0], length + 1), dtype=torch.float32)
    nodes[:, 0] = start
    alpha[:, 0] = 1.0
    current = start.clone()
    weight = alpha[:, 0].clone()
    degree = graph.degree()
    for step in range(1, length + 1):
        alive = current >= 0
        deg = torch.where(alive, degree[current.clamp(min=0)], torch.zeros_like(current))
        alive &= deg > 0
        u = torch.rand(start.shape[0], generator=generator)
        offset = (u * deg).floor().to(torch.int64).clamp(max=(deg - 1).clamp(min=0))
        edge = graph.indptr[current.clamp(min=0)] + offset
        edge = torch.where(alive, edge, torch.zeros_like(edge))
        nxt = graph.indices[edge] if graph.indices.numel() else torch.zeros_like(edge)
        w = graph.weights[edge] if graph.weights.numel() else torch.zeros_like(weight)
        current = torch.where(alive, nxt, torch.full_like(current, -1))
        weight = torch.where(alive, weight * w, torch.zeros_like(weight))
        nodes[:, step] = current
        alpha[:, step] = weight
    return nodes, alpha
