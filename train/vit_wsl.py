"""WSL: weakly supervised pretraining, perturbation classification (the seed paper's first
method). The pooled features go through a head MLP 384 → 1024 → n_classes (BatchNorm,
GELU, dropout 0.1); the loss is cross-entropy on the perturbation label of each site.
Recipe: train/configs/wsl.json (AdamW lr 1e-3, weight decay 0.05, 200 epochs, blur p 0.2,
1 cell-line token in the paper's code). Only the encoder is saved; the head is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.images.model import ImageModel
from train.vit_common import Output, VitMethod, VitNet, VitRecipe, mlp


@dataclass(kw_only=True)
class WSLRecipe(VitRecipe):
    head_hidden: int
    head_dropout: float


class WSLNet(VitNet):
    def __init__(self, model: ImageModel, classes: int, recipe: WSLRecipe):
        super().__init__(model)
        self.head = mlp(model.embedding_dim, recipe.head_hidden, classes, recipe.head_dropout)
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, views, cell_lines, labels, generator) -> Output:
        features = self.encode(views[:, 0], cell_lines)
        logits = self.head(features).float()
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            top1 = (logits.argmax(dim=1) == labels).float().mean()
        return Output(loss, features, labels, {"top1": top1})


class WSLMethod(VitMethod):
    name = "wsl"
    recipe_class = WSLRecipe
    views = 1
    needs_labels = True
    extra_metrics = ("top1",)
    description = (
        "weakly supervised learning: perturbation classification with a head MLP "
        "(cross-entropy on the label column)"
    )

    def make_net(self, model: ImageModel) -> WSLNet:
        return WSLNet(model, len(self.sites.label_vocab), self.recipe)


METHOD = WSLMethod
