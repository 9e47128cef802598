"""MoCo v3: a base encoder + projector 384 → 2048 → 256 + predictor 256 → 2048 → 256 (queries)
against a momentum encoder + projector (keys), InfoNCE symmetrised over the two views,
scaled by 2τ as MoCo v3 does. The momentum goes from 0.99 to 1 on a half cosine.

* **Temperature 0.1**, as the seed paper states (its code used 1.0, which makes the
  InfoNCE logits nearly flat for unit vectors); `--set temperature=1.0` gives the code's.
* **Keys are gathered across ranks** under DDP, so every query meets the keys of the
  global batch and its positive sits at (rank · N + i); the reference code offset the
  labels by rank but never gathered the keys.

Recipe: train/configs/mocov3.json (AdamW lr 1.5625e-4 = 1e-4 · 400/256, weight decay 0.1,
blur p 0.5 on both views, 4 cell-line tokens in the paper's code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.images.model import ImageModel
from train.loop import Step
from train.vit_common import (
    Output,
    VitMethod,
    VitNet,
    VitRecipe,
    cosine_momentum,
    ema_update,
    frozen_copy,
    gather_no_grad,
    mlp,
    rank_offset,
    two_views,
)


@dataclass(kw_only=True)
class MoCoV3Recipe(VitRecipe):
    projector_hidden: int
    projector_dim: int
    predictor_hidden: int
    momentum_start: float
    temperature: float


def infonce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """CE(q · K_allᵀ / τ) · 2τ with the keys of every rank; the positive of row i is the
    key at this rank's offset + i."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
    keys = gather_no_grad(k)
    logits = q @ keys.T / temperature
    targets = rank_offset(q.shape[0]) + torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, targets) * (2 * temperature)


class MoCoV3Net(VitNet):
    def __init__(self, model: ImageModel, recipe: MoCoV3Recipe):
        super().__init__(model)
        self.temperature = recipe.temperature
        dim, hidden, out = model.embedding_dim, recipe.projector_hidden, recipe.projector_dim
        self.projector = mlp(dim, hidden, out)
        self.predictor = mlp(out, recipe.predictor_hidden, out)
        self.momentum_encoder = frozen_copy(model.encoder)
        self.momentum_projector = frozen_copy(self.projector)

    def forward(self, views, cell_lines, labels, generator) -> Output:
        images, lines, both_labels = two_views(views, cell_lines, labels)
        features = self.encode(images, lines)
        q1, q2 = self.predictor(self.projector(features)).chunk(2)
        with torch.no_grad():
            k1, k2 = self.momentum_projector(self.momentum_encoder(images, lines)).chunk(2)
        t = self.temperature
        loss = infonce(q1, k2, t) + infonce(q2, k1, t)
        return Output(loss, features, both_labels)

    def update_momentum(self, momentum: float) -> None:
        ema_update(self.momentum_encoder, self.model.encoder, momentum)
        ema_update(self.momentum_projector, self.projector, momentum)


class MoCoV3Method(VitMethod):
    name = "mocov3"
    recipe_class = MoCoV3Recipe
    extra_metrics = ("momentum",)
    description = (
        "MoCo v3: queries against momentum-encoder keys gathered from every rank (InfoNCE, "
        "symmetrised)"
    )

    def make_net(self, model: ImageModel) -> MoCoV3Net:
        return MoCoV3Net(model, self.recipe)

    def momentum(self, step: int) -> float:
        return cosine_momentum(self.recipe.momentum_start, step, self.total_steps)

    def train_step(self, net: nn.Module, batch, step: Step) -> dict:
        return {**super().train_step(net, batch, step), "momentum": self.momentum(step.index)}

    def after_step(self, module: nn.Module, step: Step) -> None:
        module.update_momentum(self.momentum(step.index))


METHOD = MoCoV3Method
