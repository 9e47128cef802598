"""The InfoAlign objective (paper eq. 3, as the reference computes it).

For every feature space m: the mean over the valid (walk node, feature) entries of
α · BCE-with-logits(dec_m(μ), y), where y is the node's min-max scaled feature vector (NaN
entries masked) and α the walk's cumulative edge-weight product (α = 1 for the molecule
itself, so its own Morgan bits are always a target); plus β · KL(q(z|x) ‖ N(0, I)),
computed **analytically** (no sample). Decoders read μ, not a sampled z, as the released
model does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.molecules.model import InfoAlignModel
from train.context_graph import ContextGraph


@dataclass
class SpaceTargets:
    values: torch.Tensor  # rows × d (float32, NaN = missing)
    node_rows: torch.Tensor  # (num_nodes,) row or -1


def space_targets(graph: ContextGraph, device: torch.device) -> dict[str, SpaceTargets]:
    return {
        name: SpaceTargets(
            torch.as_tensor(s.values, dtype=torch.float32, device=device),
            torch.as_tensor(s.node_rows, dtype=torch.int64, device=device),
        )
        for name, s in graph.spaces.items()
    }


class Pretrainer(nn.Module):
    """One forward for DDP: graphs → (μ, σ, {space: logits})."""

    def __init__(self, model: InfoAlignModel):
        super().__init__()
        self.model = model

    def forward(self, graphs):
        mu, sigma = self.model.encoder.distribution(graphs)
        return mu, sigma, {name: dec(mu) for name, dec in self.model.decoders.items()}


def infoalign_loss(
    mu,
    sigma,
    logits: dict[str, torch.Tensor],
    nodes: torch.Tensor,
    alpha: torch.Tensor,
    targets: dict[str, SpaceTargets],
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """α-weighted, NaN-masked BCE per space (mean over valid entries) + β · analytic KL.

    `parts` holds the spaces the walks reached (plus "kl"); an unreached space adds an
    exact zero to the total so that its decoder still takes part in DDP's gradient sync.
    """
    parts, unreached = {}, []
    for name, target in targets.items():
        pred = logits[name].float()
        rows = torch.where(nodes >= 0, target.node_rows[nodes.clamp(min=0)], -1)
        b, k = (rows >= 0).nonzero(as_tuple=True)
        if b.numel() == 0:
            unreached.append(pred.sum() * 0.0)
            continue
        y = target.values[rows[b, k]]
        mask = ~torch.isnan(y)
        bce = F.binary_cross_entropy_with_logits(pred[b], torch.nan_to_num(y), reduction="none")
        weighted = bce * alpha[b, k].unsqueeze(1) * mask
        parts[name] = weighted.sum() / mask.sum().clamp(min=1)
    mu, sigma = mu.float(), sigma.float()
    kl = 0.5 * (sigma.pow(2) + mu.pow(2) - 1.0 - 2.0 * sigma.log()).sum(dim=1).mean()
    parts["kl"] = kl
    total = sum(v for n, v in parts.items() if n != "kl") + beta * kl + sum(unreached)
    return total, parts
