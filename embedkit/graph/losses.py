"""Graph losses on the per-perturbation mean features of a batch (the paper's §3.2.2).

Both losses take `means` (n, D), one row per perturbation present in the batch, and the
graph's weights among those perturbations `adjacency` (n, n, symmetric, zero diagonal).
Rows are L2-normalized first (z_i = m_i/‖m_i‖), as the paper's code does: the losses then
depend on directions only, so they cannot be lowered by shrinking the features.

* `laplacian_loss` — tr(ZᵀLZ) with the symmetric normalized Laplacian
  L = I − D^{-1/2} W D^{-1/2} (isolated rows of the batch's subgraph get L_ii = 0), taken
  relative to its value when every perturbation agrees, and divided by the number n of
  perturbations present:

      (tr(ZᵀLZ) − 1ᵀL1) / n  =  ½ Σ_ij W̃_ij ‖z_i − z_j‖² / n,   W̃ = D^{-1/2} W D^{-1/2}.

  For unit rows 1ᵀL1 is tr(UᵀLU) at any consensus U (all rows equal), a constant of the
  graph, so the gradient is exactly the paper's; the shift makes the loss 0 when all means
  agree (tr(ZᵀLZ) alone is not 0 there unless the graph is regular) and ≥ 0 always.
  The division by n keeps its scale independent of how many perturbations a batch holds.
* `node_contrastive_loss` — for each perturbation i with at least one neighbour, the
  edge-weighted mean over its neighbours j of −log softmax_j(cos(z_i, z_k)/τ) over every
  other perturbation k ≠ i present (neighbours as positives, all others as negatives;
  τ = 0.1), averaged over those perturbations. (The paper's code sums raw weights, keeps
  the anchor itself in the softmax with logit 0 and averages over every row, including rows
  without neighbours; here the anchor is excluded, as the paper's formula has it, and each
  anchor's positives are weighted to sum to 1.)

`GraphRegularizer` is the `nn.Module` trainers use: it maps labels to graph nodes, averages
features per perturbation over the batch — over the global batch under DDP, gathered with
the autograd-aware `torch.distributed.nn.functional.all_gather` — and returns
weight × loss.

Gradients under DDP: every rank computes the same global loss; the gather's backward sums
the ranks' gradients, so each rank's feature gradient is world × ∂loss/∂(its features), and
DDP's averaging of parameter gradients then yields exactly the single-process gradient of
the loss on the concatenated batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embedkit.errors import InputError
from embedkit.graph.evidence import intra_perturbation_distance, neighbor_distance_ratio
from embedkit.graph.graph import PerturbationGraph

KINDS = ("laplacian", "contrastive")
TEMPERATURE = 0.1

__all__ = [
    "KINDS",
    "GraphRegularizer",
    "gather_batch",
    "intra_perturbation_distance",
    "laplacian_loss",
    "neighbor_distance_ratio",
    "node_contrastive_loss",
    "perturbation_means",
]


def perturbation_means(features: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Mean feature row of each group (`groups` in 0…n_groups−1)."""
    sums = features.new_zeros(n_groups, features.shape[1]).index_add(0, groups, features)
    counts = torch.bincount(groups, minlength=n_groups).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


def _normalized_weights(adjacency: Tensor) -> Tensor:
    """W̃ = D^{-1/2} W D^{-1/2}, with 0 rows and columns for isolated nodes."""
    w = adjacency * (1 - torch.eye(len(adjacency), dtype=adjacency.dtype, device=adjacency.device))
    degree = w.sum(dim=1)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[:, None] * w * inv_sqrt[None, :]


def laplacian_loss(means: Tensor, adjacency: Tensor) -> Tensor:
    """(tr(ZᵀLZ) − 1ᵀL1)/n with L the symmetric normalized Laplacian (module docstring)."""
    n = means.shape[0]
    if n < 2:
        return means.sum() * 0.0
    z = F.normalize(means, dim=1)
    wn = _normalized_weights(adjacency.to(z.dtype))
    return (wn * (1.0 - z @ z.T)).sum() / n


def node_contrastive_loss(
    means: Tensor, adjacency: Tensor, temperature: float = TEMPERATURE
) -> Tensor:
    """Edge-weighted InfoNCE over the perturbations present (module docstring)."""
    n = means.shape[0]
    if n < 2:
        return means.sum() * 0.0
    z = F.normalize(means, dim=1)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_p = torch.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    w = adjacency.to(z.dtype).masked_fill(eye, 0.0)
    total = w.sum(dim=1)
    anchors = total > 0
    if not bool(anchors.any()):
        return means.sum() * 0.0
    per_anchor = -(w * log_p).sum(dim=1)[anchors] / total[anchors]
    return per_anchor.mean()


def _world() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_batch(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The global batch under DDP (world > 1), in rank order; the local one otherwise.

    Features go through `torch.distributed.nn.functional.all_gather`, so gradients flow
    back to every rank; ranks may hold different batch sizes (padded for the collective).
    """
    if _world() == 1:
        return features, labels
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    world = dist.get_world_size()
    size = torch.tensor([features.shape[0]], dtype=torch.long, device=labels.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    top = max(sizes)
    pad = top - features.shape[0]
    padded = F.pad(features, (0, 0, 0, pad)) if pad else features
    padded_labels = F.pad(labels, (0, pad), value=-1) if pad else labels
    with warnings.catch_warnings():  # torch ≥ 2.7 marks it deprecated; it is the autograd one
        warnings.simplefilter("ignore", FutureWarning)
        gathered = dist_fn.all_gather(padded.contiguous())
    label_list = [torch.empty_like(padded_labels) for _ in range(world)]
    dist.all_gather(label_list, padded_labels.contiguous())
    feats = torch.cat([g[:s] for g, s in zip(gathered, sizes, strict=True)])
    labs = torch.cat([g[:s] for g, s in zip(label_list, sizes, strict=True)])
    return feats, labs


class GraphRegularizer(nn.Module):
    """weight × graph loss of a batch's per-perturbation mean features.

    `label_vocab[k]` is the perturbation name of class index k; labels the graph lacks are
    left out of the loss (`coverage` says how many). `forward(features (B, D), labels (B,))`
    returns a scalar, already multiplied by `weight`, and 0 (with a gradient path) when
    fewer than 2 graph-covered perturbations are in the (global) batch.
    """

    def __init__(
        self,
        graph: PerturbationGraph,
        label_vocab: Sequence[str],
        kind: str = "laplacian",
        weight: float = 1e-4,
        temperature: float = TEMPERATURE,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise InputError(f"unknown graph loss {kind!r}; use one of {', '.join(KINDS)}")
        if not weight >= 0:
            raise InputError(f"the graph loss weight must be ≥ 0, got {weight}")
        if not temperature > 0:
            raise InputError(f"the temperature must be > 0, got {temperature}")
        self.graph = graph
        self.kind = kind
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.label_vocab = [str(v) for v in label_vocab]
        self.coverage = graph.coverage(self.label_vocab)
        nodes = torch.as_tensor(graph.index_of(self.label_vocab), dtype=torch.long)
        self.register_buffer("label_to_node", nodes, persistent=False)

    def extra_repr(self) -> str:
        c = self.coverage
        return (
            f"kind={self.kind}, weight={self.weight:g}, temperature={self.temperature:g}, "
            f"covered={c['covered']}/{c['labels']}"
        )

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = gather_batch(features.float(), labels.long())
        zero = features.sum() * 0.0
        known = labels >= 0  # −1: padding of an uneven DDP gather
        nodes = torch.full_like(labels, -1)
        nodes[known] = self.label_to_node[labels[known]]
        keep = nodes >= 0
        if not bool(keep.any()):
            return zero
        present, groups = torch.unique(nodes[keep], return_inverse=True)
        if len(present) < 2:
            return zero
        means = perturbation_means(features[keep], groups, len(present))
        sub = self.graph.subgraph(present.cpu().numpy())
        adjacency = torch.from_numpy(np.ascontiguousarray(sub)).to(means.device, means.dtype)
        with torch.autocast(means.device.type, enabled=False):  # fp32 under bf16 autocast
            if self.kind == "laplacian":
                loss = laplacian_loss(means, adjacency)
            else:
                loss = node_contrastive_loss(means, adjacency, self.temperature)
        return self.weight * loss + zero
