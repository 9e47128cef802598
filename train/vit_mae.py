"""MAE: masked autoencoding (He et al. 2022, as the seed paper runs it). 75 % of each crop's
patch tokens are hidden; the encoder sees the rest plus its CLS and cell-line tokens; a
transformer decoder 256 wide × 8 deep × 16 heads (the paper's; its own learned position
table over the prefix and patch positions) reconstructs every patch from the visible
tokens and mask tokens; the loss is the mean squared error on the **masked patches only**,
against per-patch normalized pixels. Recipe: train/configs/mae.json (AdamW lr 1e-3,
betas (0.9, 0.95), weight decay 0.05; crops, flips and rotations only, no blur or jitter;
8 cell-line tokens in the paper's code). The decoder is not saved.

The graph loss, when asked for, sees the mean of the encoder's visible patch tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn

from embedkit.images.model import ImageModel
from train.vit_common import Output, VitMethod, VitNet, VitRecipe


@dataclass(kw_only=True)
class MAERecipe(VitRecipe):
    mask_ratio: float
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    norm_pix_loss: bool


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, p·p·C), patches row-major, pixels (row, col, channel)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


class MAENet(VitNet):
    def __init__(self, model: ImageModel, recipe: MAERecipe):
        super().__init__(model)
        enc = model.encoder.config
        if not 0 < recipe.mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {recipe.mask_ratio}")
        self.patch, self.mask_ratio = enc.patch_size, recipe.mask_ratio
        self.norm_pix_loss = recipe.norm_pix_loss
        dim, prefix = recipe.decoder_dim, model.encoder.num_prefix
        self.to_decoder = nn.Linear(enc.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, prefix + enc.num_patches, dim))
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            *[
                Block(dim, recipe.decoder_heads, 4.0, qkv_bias=True)
                for _ in range(recipe.decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.patch * self.patch * enc.in_chans)

    def forward(self, views, cell_lines, labels, generator) -> Output:
        images = views[:, 0]
        encoder = self.model.encoder
        tokens = encoder.embed_tokens(images, cell_lines)
        prefix = encoder.num_prefix
        head, patches = tokens[:, :prefix], tokens[:, prefix:]
        b, n, d = patches.shape
        keep = max(1, int(round(n * (1 - self.mask_ratio))))
        order = torch.rand(b, n, generator=generator).to(images.device).argsort(dim=1)
        kept = order[:, :keep]
        visible = torch.gather(patches, 1, kept[..., None].expand(-1, -1, d))
        latent = encoder.forward_tokens(torch.cat([head, visible], dim=1))
        features = latent[:, prefix:].mean(dim=1)
        x = self.to_decoder(latent)
        full = self.mask_token.expand(b, n, -1).to(x.dtype).clone()
        full.scatter_(1, kept[..., None].expand(-1, -1, x.shape[-1]), x[:, prefix:])
        x = torch.cat([x[:, :prefix], full], dim=1) + self.decoder_pos
        pred = self.head(self.decoder_norm(self.decoder(x)))[:, prefix:]
        target = patchify(images, self.patch)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        masked = torch.ones(b, n, device=images.device)
        masked.scatter_(1, kept, 0.0)
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        loss = (per_patch * masked).sum() / masked.sum()
        return Output(loss, features, labels)


class MAEMethod(VitMethod):
    name = "mae"
    recipe_class = MAERecipe
    views = 1
    uses_batch_norm = False
    description = (
        "masked autoencoding: reconstruct hidden patches (normalized pixels) from the visible ones"
    )

    def make_net(self, model: ImageModel) -> MAENet:
        return MAENet(model, self.recipe)


METHOD = MAEMethod
