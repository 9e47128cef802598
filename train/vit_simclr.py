"""SimCLR: two augmented views of each site, a projector 384 → 2048 → 128 (BatchNorm, GELU),
and the NT-Xent loss at temperature 0.1 over the **global** batch: under DDP every rank's
projections are gathered (with gradients), so each view's negatives are the other 2N − 2
views of all ranks, as in SimCLR. Recipe: train/configs/simclr.json (AdamW lr 1e-3,
weight decay 1e-6, blur p 0.5 on both views, 4 cell-line tokens in the paper's code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from embedkit.images.model import ImageModel
from train.vit_common import (
    Output,
    VitMethod,
    VitNet,
    VitRecipe,
    gather_with_grad,
    mlp,
    rank_offset,
    two_views,
)


@dataclass(kw_only=True)
class SimCLRRecipe(VitRecipe):
    projector_hidden: int
    projector_dim: int
    temperature: float


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of this rank's pairs (z1[i], z2[i]) against every rank's views."""
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    rows = z1.shape[0]
    all_z = torch.cat([gather_with_grad(z1), gather_with_grad(z2)])  # (2N, d): views 1, views 2
    total = all_z.shape[0] // 2
    own = rank_offset(rows) + torch.arange(rows, device=z1.device)
    anchors = torch.cat([z1, z2])
    logits = anchors @ all_z.T / temperature
    self_index = torch.cat([own, own + total])
    logits[torch.arange(2 * rows, device=z1.device), self_index] = float("-inf")
    positives = torch.cat([own + total, own])
    return F.cross_entropy(logits, positives)


class SimCLRNet(VitNet):
    def __init__(self, model: ImageModel, recipe: SimCLRRecipe):
        super().__init__(model)
        self.temperature = recipe.temperature
        self.projector = mlp(model.embedding_dim, recipe.projector_hidden, recipe.projector_dim)

    def forward(self, views, cell_lines, labels, generator) -> Output:
        images, lines, both_labels = two_views(views, cell_lines, labels)
        features = self.encode(images, lines)
        z1, z2 = self.projector(features).chunk(2)
        return Output(nt_xent(z1, z2, self.temperature), features, both_labels)


class SimCLRMethod(VitMethod):
    name = "simclr"
    recipe_class = SimCLRRecipe
    description = "SimCLR: NT-Xent between two augmented views, negatives from the global batch"

    def make_net(self, model: ImageModel) -> SimCLRNet:
        return SimCLRNet(model, self.recipe)


METHOD = SimCLRMethod
