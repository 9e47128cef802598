"""Multi-channel ViT-S/16 with optional cell-line tokens, built on timm.

Two token layouts share one module:

* Early fusion (default, the seed paper): one patch conv over all C channels. Sequence
  [CLS, cell-line tokens 1..k, patch tokens]: k tokens come from one linear projection of a
  cell-line embedding (e.g. scVI of the line's basal RNA-seq), so a de novo cell line needs
  only its expression profile. A learned position embedding covers all 1 + k + N positions.
* Channel-agnostic (OpenPhenom / CA-MAE): one shared 1-channel patch conv applied to every
  channel, tokens concatenated channel by channel (C x N tokens), a fixed 2-D sin-cos
  position embedding repeated for each channel. Any channel count works at inference.

Either way the image embedding is the mean of the patch tokens after the final norm (CLS
and cell-line tokens act only through attention).

The backbone's patch embedding, blocks and norm are timm's `VisionTransformer` (standard
pre-norm blocks, or the parallel-scaling blocks with qk-norm and layer scale); the CLS
token, position embedding and cell-line projection are ours, so upstream checkpoints
convert by renaming (see embedkit/images/convert.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, ParallelScalingBlock, VisionTransformer
from torch import nn

from embedkit.pretrained import limits

POS_EMBED_KINDS = ("learned", "sincos")


@dataclass
class ViTConfig:
    """Architecture; stored in config.json. Defaults describe the early-fusion seed ViT."""

    img_size: int = field(default=256, metadata=limits(1, 16384))
    patch_size: int = field(default=16, metadata=limits(1, 1024))
    in_chans: int = field(
        default=6, metadata=limits(1, 1024)
    )  # channel-agnostic: the number of *named* channels (any count works)
    embed_dim: int = field(default=384, metadata=limits(1, 16384))
    depth: int = field(default=12, metadata=limits(1, 256))
    num_heads: int = field(default=6, metadata=limits(1, 256))
    mlp_ratio: float = field(default=4.0, metadata=limits(0.01, 64.0))
    cell_line_tokens: int = field(
        default=0, metadata=limits(0, 1024)
    )  # k; 0 = no cell-line conditioning
    cell_line_dim: int = field(
        default=0, metadata=limits(0, 65536)
    )  # width of the cell-line embedding the tokens are projected from
    drop_path_rate: float = field(default=0.0, metadata=limits(0.0, 1.0))
    channel_agnostic: bool = False  # shared 1-channel patch conv, tokens per channel
    qkv_bias: bool = True
    qk_norm: bool = False
    init_values: float | None = None  # layer scale; None = off
    parallel_blocks: bool = False  # timm ParallelScalingBlock (attention ∥ MLP)
    # timm 0.9.x added a parallel block's MLP bias at offset 3·D of the fused projection
    # (huggingface/pytorch-image-models#2653); weights trained then need that layout.
    legacy_mlp_bias: bool = False
    pos_embed_kind: str = field(
        default="learned", metadata=limits(choices=POS_EMBED_KINDS)
    )  # "learned" parameter or fixed "sincos" buffer
    final_norm: bool = True  # LayerNorm on the tokens before pooling
    extra: dict = field(default_factory=dict)

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (per channel when channel-agnostic)."""
        return (self.img_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def sincos_2d(embed_dim: int, grid: int, prefix: int = 1, scale: float = 10000.0) -> torch.Tensor:
    """(1, prefix + grid², D) fixed position table: zero rows for the prefix tokens, then
    [sin(row·ω), cos(row·ω), sin(col·ω), cos(col·ω)] per patch, row-major, ω_i = scale^(-i/(D/4)).
    """
    if embed_dim % 4:
        raise ValueError(f"a 2-D sin-cos table needs embed_dim divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = scale ** -(torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )
    angle_r = rows.reshape(-1, 1) * omega
    angle_c = cols.reshape(-1, 1) * omega
    table = torch.cat([angle_r.sin(), angle_r.cos(), angle_c.sin(), angle_c.cos()], dim=1)
    table = torch.cat([torch.zeros(prefix, embed_dim, dtype=torch.float64), table])
    return table.float()[None]


class ParallelBlock(ParallelScalingBlock):
    """timm's parallel-scaling block; `legacy_mlp_bias` reproduces timm 0.9.x, where the MLP
    bias was concatenated after a zero q/k/v bias and so landed at offset 3·D of the fused
    projection (the tail of the MLP input and q, k, v) instead of on the MLP input."""

    legacy_mlp_bias: bool = False

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not self.legacy_mlp_bias or self.mlp_bias is None:
            return super().forward(x, *args, **kwargs)
        batch, length, dim = x.shape
        bias = torch.cat([self.mlp_bias.new_zeros(3 * dim), self.mlp_bias])
        y = F.linear(self.in_norm(x), self.in_proj.weight, bias)
        x_mlp, q, k, v = torch.split(y, self.in_split, dim=-1)
        shape = (batch, length, self.num_heads, self.head_dim)
        q = self.q_norm(q.view(shape)).transpose(1, 2)
        k = self.k_norm(k.view(shape)).transpose(1, 2)
        v = v.view(shape).transpose(1, 2)
        drop = self.attn_drop.p if self.training else 0.0
        x_attn = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        x_attn = x_attn.transpose(1, 2).reshape(batch, length, dim)
        x_mlp = self.mlp_drop(self.mlp_act(x_mlp))
        y = self.attn_out_proj(x_attn) + self.mlp_out_proj(x_mlp)
        return x + self.drop_path(self.ls(y))


class ImageEncoder(nn.Module):
    """(B, C, H, W) normalized crops [+ (B, cell_line_dim)] → (B, embed_dim)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        if config.pos_embed_kind not in POS_EMBED_KINDS:
            raise ValueError(
                f"pos_embed_kind must be one of {POS_EMBED_KINDS}, got {config.pos_embed_kind!r}"
            )
        self.config = config
        self.vit = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=1 if config.channel_agnostic else config.in_chans,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias,
            qk_norm=config.qk_norm,
            init_values=config.init_values,
            num_classes=0,
            global_pool="",
            class_token=False,
            pos_embed="none",
            final_norm=config.final_norm,
            block_fn=ParallelBlock if config.parallel_blocks else Block,
            drop_path_rate=config.drop_path_rate,
        )
        if config.parallel_blocks and config.legacy_mlp_bias:
            for block in self.vit.blocks:
                block.legacy_mlp_bias = True
        k = config.cell_line_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        if config.pos_embed_kind == "sincos":  # fixed, but saved: converted tables stay exact
            grid = config.img_size // config.patch_size
            self.register_buffer("pos_embed", sincos_2d(config.embed_dim, grid, 1 + k))
        else:
            self.pos_embed = nn.Parameter(
                torch.zeros(1, 1 + k + config.num_patches, config.embed_dim)
            )
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

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, N, D), or (B, C·N, D) channel by channel when channel-agnostic."""
        if not self.config.channel_agnostic:
            return self.vit.patch_embed(images)
        batch, chans, height, width = images.shape
        tokens = self.vit.patch_embed(images.reshape(batch * chans, 1, height, width))
        return tokens.reshape(batch, chans * tokens.shape[1], tokens.shape[2])

    def position_table(self, chans: int) -> torch.Tensor:
        """The position embedding for `chans` input channels (repeated per channel if CA)."""
        if not self.config.channel_agnostic:
            return self.pos_embed
        prefix = self.num_prefix
        patches = self.pos_embed[:, prefix:].repeat(1, chans, 1)
        return torch.cat([self.pos_embed[:, :prefix], patches], dim=1)

    def embed_tokens(
        self, images: torch.Tensor, cell_line: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch tokens with CLS and cell-line tokens prepended, position embedding added."""
        batch = images.shape[0]
        patches = self.patch_tokens(images)
        prefix = [self.cls_token.expand(batch, -1, -1)]
        k = self.config.cell_line_tokens
        if k > 0:
            if cell_line is None:
                raise ValueError("this model has cell-line tokens: pass a cell-line embedding")
            tokens = self.cell_line_proj(cell_line.to(patches.dtype))
            prefix.append(tokens.view(batch, k, self.config.embed_dim))
        return torch.cat([*prefix, patches], dim=1) + self.position_table(images.shape[1])

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vit.norm(self.vit.blocks(tokens))

    def forward(self, images: torch.Tensor, cell_line: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.forward_tokens(self.embed_tokens(images, cell_line))
        return tokens[:, self.num_prefix :].mean(dim=1)

    def keep_channels(self, kept: list[int]) -> None:
        """Keep the patch weights of `kept` input channels only (6 → 5 channel transfer).

        A channel-agnostic encoder has one patch conv for every channel: nothing to cut.
        """
        if self.config.channel_agnostic:
            return
        proj = self.vit.patch_embed.proj
        if kept == list(range(proj.in_channels)):
            return
        new = nn.Conv2d(len(kept), proj.out_channels, proj.kernel_size, proj.stride)
        with torch.no_grad():
            new.weight.copy_(proj.weight[:, kept])
            new.bias.copy_(proj.bias)
        self.vit.patch_embed.proj = new.to(proj.weight.device, proj.weight.dtype)
        self.config.in_chans = len(kept)
