"""Multi-channel ViT-S/16 (early fusion) with optional cell-line tokens, built on timm.

Sequence: [CLS, cell-line tokens 1..k, patch tokens], as in the seed paper: k tokens come
from one linear projection of a cell-line embedding (e.g. scVI of the line's basal
RNA-seq), so a de novo cell line needs only its expression profile. A learned position
embedding covers all 1 + k + N positions. The image embedding is the mean of the patch
tokens after the final norm (CLS and cell-line tokens act only through attention).

The backbone's patch embedding, blocks and norm are timm's `VisionTransformer`; the CLS
token, position embedding and cell-line projection are ours, so the parameter layout
matches the seed paper's checkpoints and converts by renaming.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass
class ViTConfig:
    """Architecture; stored in config.json."""

    img_size: int = 256
    patch_size: int = 16
    in_chans: int = 6
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    cell_line_tokens: int = 0  # k; 0 = no cell-line conditioning
    cell_line_dim: int = 0  # width of the cell-line embedding the tokens are projected from
    drop_path_rate: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


class ImageEncoder(nn.Module):
    """(B, C, H, W) normalised crops [+ (B, cell_line_dim)] → (B, embed_dim)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            num_classes=0,
            global_pool="",
            class_token=False,
            pos_embed="none",
            drop_path_rate=config.drop_path_rate,
        )
        k = config.cell_line_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + k + config.num_patches, config.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.cell_line_proj = (
            nn.Linear(config.cell_line_dim, config.embed_dim * k) if k > 0 else None
        )
        if self.cell_line_proj is not None:
            nn.init.normal_(self.cell_line_proj.weight, std=0.02)
            nn.init.zeros_(self.cell_line_proj.bias)

    @property
    def num_prefix(self) -> int:
        return 1 + self.config.cell_line_tokens

    def embed_tokens(
        self, images: torch.Tensor, cell_line: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch tokens with CLS and cell-line tokens prepended, position embedding added."""
        batch = images.shape[0]
        patches = self.vit.patch_embed(images)
        prefix = [self.cls_token.expand(batch, -1, -1)]
        k = self.config.cell_line_tokens
        if k > 0:
            if cell_line is None:
                raise ValueError("this model has cell-line tokens: pass a cell-line embedding")
            tokens = self.cell_line_proj(cell_line.to(patches.dtype))
            prefix.append(tokens.view(batch, k, self.config.embed_dim))
        return torch.cat([*prefix, patches], dim=1) + self.pos_embed

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vit.norm(self.vit.blocks(tokens))

    def forward(self, images: torch.Tensor, cell_line: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.forward_tokens(self.embed_tokens(images, cell_line))
        return tokens[:, self.num_prefix :].mean(dim=1)

    def keep_channels(self, kept: list[int]) -> None:
        """Keep the patch weights of `kept` input channels only (6 → 5 channel transfer)."""
        proj = self.vit.patch_embed.proj
        if kept == list(range(proj.in_channels)):
            return
        new = nn.Conv2d(len(kept), proj.out_channels, proj.kernel_size, proj.stride)
        with torch.no_grad():
            new.weight.copy_(proj.weight[:, kept])
            new.bias.copy_(proj.bias)
        self.vit.patch_embed.proj = new.to(proj.weight.device, proj.weight.dtype)
        self.config.in_chans = len(kept)
