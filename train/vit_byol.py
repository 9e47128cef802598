"""BYOL: an online encoder + projector 384 → 2048 → 256 + predictor 256 → 2048 → 256 regresses
a target encoder + projector (an exponential moving average of the online ones) across two
views; loss 2 − 2·cos, symmetrised (both view orders, summed). The target's momentum goes
from 0.996 to 1 on a half cosine over the run, updated after every optimizer step.
Recipe: train/configs/byol.json (AdamW lr 1e-3, weight decay 0.1, blur p 1.0 / 0.1).
The target is part of the checkpoint (exact resume) but not of the saved model.
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
    mlp,
    two_views,
)


@dataclass(kw_only=True)
class BYOLRecipe(VitRecipe):
    projector_hidden: int
    projector_dim: int
    predictor_hidden: int
    ema_start: float


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 − 2·cos(p, z), averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=-1)).mean()


class BYOLNet(VitNet):
    def __init__(self, model: ImageModel, recipe: BYOLRecipe):
        super().__init__(model)
        dim, hidden, out = model.embedding_dim, recipe.projector_hidden, recipe.projector_dim
        self.projector = mlp(dim, hidden, out)
        self.predictor = mlp(out, recipe.predictor_hidden, out)
        self.target_encoder = frozen_copy(model.encoder)
        self.target_projector = frozen_copy(self.projector)

    def forward(self, views, cell_lines, labels, generator) -> Output:
        images, lines, both_labels = two_views(views, cell_lines, labels)
        features = self.encode(images, lines)
        p1, p2 = self.predictor(self.projector(features)).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_encoder(images, lines)).chunk(2)
        loss = regression_loss(p1, t2) + regression_loss(p2, t1)
        return Output(loss, features, both_labels)

    def update_target(self, momentum: float) -> None:
        ema_update(self.target_encoder, self.model.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)


class BYOLMethod(VitMethod):
    name = "byol"
    recipe_class = BYOLRecipe
    extra_metrics = ("momentum",)
    description = "BYOL: online network regresses an EMA target across two views (2 − 2·cos)"

    def make_net(self, model: ImageModel) -> BYOLNet:
        return BYOLNet(model, self.recipe)

    def momentum(self, step: int) -> float:
        return cosine_momentum(self.recipe.ema_start, step, self.total_steps)

    def train_step(self, net: nn.Module, batch, step: Step) -> dict:
        return {**super().train_step(net, batch, step), "momentum": self.momentum(step.index)}

    def after_step(self, module: nn.Module, step: Step) -> None:
        module.update_target(self.momentum(step.index))


METHOD = BYOLMethod
