"""MAE pretraining of the multi-channel ViT (one of the seed paper's five recipes).

Masked autoencoding (He et al. 2022, as the seed paper runs it): 75 % of the patch tokens
of each crop are hidden, the encoder sees the rest (plus CLS and any cell-line tokens),
and a small transformer decoder reconstructs the hidden patches' per-patch-normalized
pixels; the loss is their mean squared error. Only the encoder is kept.

Data: plate folders (any layout `embedkit plates inspect` understands), each with an
optional channel map onto the model's channels; every site is read once into memory and
each step draws random crops with flips, seeded by (seed, step, rank). The steps,
checkpoints, exact resume and `metrics.jsonl` are the shared loop's (`train.loop`).
Runs as one process or under `torchrun` (DDP; gloo on CPU).

    torchrun --standalone --nproc_per_node=2 -m train.image_mae \
        --data synth/ --data PHENIX_DIR:DNA=ch5,ER=ch4,RNA=ch3,AGP=ch2,Mito=ch1 \
        --out runs/mae --crop-size 128 --steps 600 --bf16
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
import torch.distributed as dist
from timm.models.vision_transformer import Block
from torch import nn

from embedkit.images.channels import parse_channel_map, plan_channels
from embedkit.images.discovery import discover
from embedkit.images.model import CELL_PAINTING, CELL_PAINTING_ALIASES, ImageModel
from embedkit.images.preprocess import instance_normalize
from embedkit.images.reading import read_site
from embedkit.images.vit import ViTConfig
from embedkit.io import atomic_path
from train.distributed import Runtime, setup_runtime
from train.loop import LoopConfig, Method, Run, Step, config_options, run, step_seed, warmup_cosine


@dataclass
class MAEConfig(LoopConfig):
    crop_size: int = 128
    depth: int = 12
    embed_dim: int = 384
    num_heads: int = 6
    mask_ratio: float = 0.75
    decoder_dim: int = 192
    decoder_depth: int = 2
    batch_size: int = 32  # global
    steps: int = 600
    lr: float = 1.5e-4 * 32 / 256 * 4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05


MAE_HELPS = {
    "seed": "Seed.",
    "bf16": "bf16 autocast.",
    "checkpoint_every": "Checkpoint every N steps.",
    "max_steps": "Stop after this step (the schedule still plans --steps); --resume goes on.",
    "crop_size": "Crop side in pixels.",
    "depth": "Encoder blocks (12 = ViT-S).",
    "embed_dim": "Token width (384 = ViT-S).",
    "num_heads": "Attention heads.",
    "mask_ratio": "Fraction of patches hidden from the encoder.",
    "decoder_dim": "Decoder width.",
    "decoder_depth": "Decoder blocks.",
    "batch_size": "Global batch.",
    "steps": "Training steps (the schedule spans them).",
    "lr": "Peak AdamW learning rate.",
    "weight_decay": "AdamW weight decay.",
    "warmup_fraction": "Fraction of the steps spent warming the learning rate up.",
}


class MAE(nn.Module):
    """Encoder (kept) + light decoder (discarded) for masked patch reconstruction."""

    def __init__(self, model: ImageModel, cfg: MAEConfig):
        super().__init__()
        self.model = model
        enc = model.encoder.config
        self.patch = enc.patch_size
        self.mask_ratio = cfg.mask_ratio
        self.to_decoder = nn.Linear(enc.embed_dim, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, 1 + enc.num_patches, cfg.decoder_dim))
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            *[Block(cfg.decoder_dim, 6, 4.0, qkv_bias=True) for _ in range(cfg.decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(cfg.decoder_dim)
        self.head = nn.Linear(cfg.decoder_dim, self.patch * self.patch * enc.in_chans)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        p = self.patch
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        encoder = self.model.encoder
        tokens = encoder.embed_tokens(images)
        prefix, patches = tokens[:, : encoder.num_prefix], tokens[:, encoder.num_prefix :]
        b, n, d = patches.shape
        keep = max(1, int(round(n * (1 - self.mask_ratio))))
        noise = torch.rand(b, n, generator=generator).to(images.device)
        order = noise.argsort(dim=1)
        kept = order[:, :keep]
        visible = torch.gather(patches, 1, kept[..., None].expand(-1, -1, d))
        latent = encoder.forward_tokens(torch.cat([prefix, visible], dim=1))
        x = self.to_decoder(latent)
        cls, x_vis = x[:, :1], x[:, encoder.num_prefix :]
        full = self.mask_token.expand(b, n, -1).to(x.dtype).clone()
        full.scatter_(1, kept[..., None].expand(-1, -1, x.shape[-1]), x_vis)
        x = torch.cat([cls, full], dim=1) + self.decoder_pos
        pred = self.head(self.decoder_norm(self.decoder(x)))[:, 1:]
        target = self.patchify(images)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        masked = torch.ones(b, n, device=images.device)
        masked.scatter_(1, kept, 0.0)
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        return (per_patch * masked).sum() / masked.sum()


def load_training_sites(specs: list[str], channels: list[str], aliases: dict) -> list[np.ndarray]:
    """`DIR` or `DIR:MODEL=PLATE,...` → every readable site as (C, H, W) float32 in [0, 1]."""
    sites = []
    for spec in specs:
        folder, _, mapping = spec.partition(":")
        index = discover([folder])
        plan = plan_channels(channels, index.channels(), aliases, parse_channel_map(mapping))
        for _, row in index.sites().iterrows():
            paths = [row.get(c) for c in plan.sources]
            if all(isinstance(p, str) for p in paths):
                sites.append(read_site(paths))
    return sites


def sample_batch(sites, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random site, random crop, random flips; instance-normalized like inference."""
    crops = []
    for _ in range(n):
        site = sites[int(torch.randint(len(sites), (1,), generator=generator))]
        _, h, w = site.shape
        y = int(torch.randint(h - size + 1, (1,), generator=generator))
        x = int(torch.randint(w - size + 1, (1,), generator=generator))
        crop = torch.from_numpy(site[:, y : y + size, x : x + size].copy())
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-2)
        crops.append(crop)
    return instance_normalize(torch.stack(crops))


class MAEMethod(Method):
    """Masked autoencoding on random crops of in-memory sites (step based)."""

    name = "mae"
    unit = "crops"
    record_every = 20
    grad_clip = 1.0

    def __init__(
        self, cfg: MAEConfig, rt: Runtime, data: list[str], sites: list[np.ndarray], log=print
    ):
        super().__init__(cfg, rt)
        self.cfg, self.data, self.sites, self.log = cfg, data, sites, log
        self.per_rank = cfg.batch_size // rt.world
        self.model: ImageModel | None = None

    @property
    def total_steps(self) -> int:
        return self.cfg.steps

    def settings(self) -> dict:
        return {**self.cfg.to_dict(), "data": self.data}

    def build(self) -> nn.Module:
        cfg = self.cfg
        self.model = ImageModel(
            ViTConfig(
                img_size=cfg.crop_size,
                in_chans=len(CELL_PAINTING),
                depth=cfg.depth,
                embed_dim=cfg.embed_dim,
                num_heads=cfg.num_heads,
            ),
            CELL_PAINTING,
            CELL_PAINTING_ALIASES,
            cfg.crop_size,
            {"kind": "instance"},
        )
        return MAE(self.model, cfg).to(self.rt.device)

    def optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            module.parameters(),
            lr=self.cfg.lr,
            betas=(0.9, 0.95),
            weight_decay=self.cfg.weight_decay,
        )

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        warmup = int(cfg.warmup_fraction * cfg.steps)
        return warmup_cosine(step, cfg.steps, cfg.lr, warmup, floor=1e-6)

    def batches(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        for step in itertools.count(start):
            seed = step_seed(self.cfg.seed, epoch, step, self.rt.rank) + 2
            generator = torch.Generator().manual_seed(seed)
            yield sample_batch(self.sites, self.per_rank, self.cfg.crop_size, generator)

    def train_step(self, net: nn.Module, batch: torch.Tensor, step: Step) -> dict:
        return {"loss": net(batch.to(self.rt.device), step.generator)}

    def save(self, module: nn.Module, run: Run) -> None:
        from train.image_card import render_image_card

        self.model.extra = {
            "recipe": {"method": "mae", **self.cfg.to_dict()},
            "data": self.data,
            "simulated": "trained on synthetic plates + a few real fields; a demo",
        }
        folder = self.model.save_pretrained(run.out / "model")
        command = "torchrun ... -m train.image_mae " + " ".join(sys.argv[1:])
        with atomic_path(folder / "README.md") as tmp:
            tmp.write_text(render_image_card(folder, run.out, "model", command))
        self.log(f"wrote {folder}")


def train(
    cfg: MAEConfig,
    data: list[str],
    out: Path,
    resume: bool,
    rt: Runtime,
    log=print,
    log_every: int = 0,
) -> Run:
    """Read the sites, then run MAE on the shared loop; rank 0 writes OUT/model."""
    log = log if rt.main else (lambda _message: None)
    sites = load_training_sites(data, CELL_PAINTING, CELL_PAINTING_ALIASES)
    if not sites:
        raise click.UsageError(f"no readable site with every channel in {', '.join(data)}")
    log(f"{len(sites)} training sites from {len(data)} folder(s); {rt.world} process(es)")
    method = MAEMethod(cfg, rt, data, sites, log)
    result = run(method, out, resume=resume, log=log, log_every=log_every)
    if rt.world > 1:
        dist.destroy_process_group()
    return result


@click.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    help="Plate folder, optionally DIR:MODEL=PLATE,... to map its channels (repeat).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option("--threads", default=None, type=int, help="Torch threads per process.")
@click.option("--log-every", default=20, show_default=True, help="Progress line every N steps.")
@config_options(MAEConfig, MAE_HELPS)
def main(data, out, resume, threads, log_every, **recipe):
    """MAE-pretrain a Cell Painting ViT on plate folders; writes OUT/model (Hub layout)."""
    rt = setup_runtime(threads)
    train(MAEConfig(**recipe), list(data), out, resume, rt, log=print, log_every=log_every)


if __name__ == "__main__":
    sys.exit(main())
