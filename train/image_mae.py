"""MAE pretraining of the multi-channel ViT (one of the seed paper's five recipes).

Masked autoencoding (He et al. 2022, as the seed paper runs it): 75 % of the patch tokens
of each crop are hidden, the encoder sees the rest (plus CLS and any cell-line tokens),
and a small transformer decoder reconstructs the hidden patches' per-patch-normalised
pixels; the loss is their mean squared error. Only the encoder is kept.

Data: plate folders (any layout `embedkit plates inspect` understands), each with an
optional channel map onto the model's channels; every site is read once into memory and
each step draws random crops with flips, seeded by (seed, step, rank) so a resumed run
retraces an uninterrupted one. Runs as one process or under `torchrun` (DDP; gloo on CPU).

    torchrun --standalone --nproc_per_node=2 -m train.image_mae \
        --data synth/ --data PHENIX_DIR:DNA=ch5,ER=ch4,RNA=ch3,AGP=ch2,Mito=ch1 \
        --out runs/mae --crop-size 128 --steps 600 --bf16
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np
import torch
import torch.distributed as dist
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from embedkit.images.channels import parse_channel_map, plan_channels
from embedkit.images.discovery import discover
from embedkit.images.model import CELL_PAINTING, CELL_PAINTING_ALIASES, ImageModel
from embedkit.images.preprocess import instance_normalise
from embedkit.images.reading import read_site
from embedkit.images.vit import ViTConfig
from train.distributed import Runtime, check_replicas, setup_runtime

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass
class MAEConfig:
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
    seed: int = 0
    bf16: bool = False
    checkpoint_every: int = 100


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
    """Random site, random crop, random flips; instance-normalised like inference."""
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
    return instance_normalise(torch.stack(crops))


def lr_at(step: int, cfg: MAEConfig) -> float:
    warm = max(1, int(cfg.warmup_fraction * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return 1e-6 + 0.5 * (cfg.lr - 1e-6) * (1 + math.cos(math.pi * progress))


def train(cfg: MAEConfig, data: list[str], out: Path, resume: bool, rt: Runtime, log=print):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = ImageModel(
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
    mae = MAE(model, cfg).to(rt.device)
    net = DistributedDataParallel(mae) if rt.world > 1 else mae
    optim = torch.optim.AdamW(
        mae.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )
    step = 0
    if resume and (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location=rt.device, weights_only=True)
        mae.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        step = int(state["step"])
        log(f"resumed at step {step}")
    elif rt.main and (out / METRICS).exists():
        (out / METRICS).unlink()
    sites = load_training_sites(data, CELL_PAINTING, CELL_PAINTING_ALIASES)
    if rt.main:
        log(f"{len(sites)} training sites from {len(data)} folder(s); {rt.world} process(es)")
    per_rank = cfg.batch_size // rt.world
    tick, window = time.perf_counter(), []
    while step < cfg.steps:
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1009 + rt.rank)
        images = sample_batch(sites, per_rank, cfg.crop_size, generator).to(rt.device)
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = net(images, generator)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mae.parameters(), 1.0)
        optim.step()
        step += 1
        window.append(float(loss.detach()))
        if step % 20 == 0 or step == cfg.steps:
            mean = rt.all_sum([sum(window) / len(window)])[0] / rt.world
            seconds = time.perf_counter() - tick
            record = {
                "step": step,
                "loss": round(mean, 5),
                "lr": lr_at(step - 1, cfg),
                "crops_per_second": round(len(window) * cfg.batch_size / seconds, 2),
            }
            if rt.main:
                with open(out / METRICS, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                log(
                    f"step {step:5d}/{cfg.steps} loss {mean:.4f} "
                    f"{record['crops_per_second']:.1f} crops/s"
                )
            tick, window = time.perf_counter(), []
        if (step % cfg.checkpoint_every == 0 or step == cfg.steps) and rt.main:
            torch.save(
                {
                    "model": mae.state_dict(),
                    "optim": optim.state_dict(),
                    "step": step,
                    "config": asdict(cfg),
                },
                out / (CHECKPOINT + ".tmp"),
            )
            (out / (CHECKPOINT + ".tmp")).replace(out / CHECKPOINT)
        rt.barrier()
    check_replicas(mae, rt)
    if rt.main:
        model.extra = {
            "recipe": {"method": "mae", **asdict(cfg)},
            "data": data,
            "simulated": "trained on synthetic plates + a few real fields; a demo",
        }
        folder = model.save_pretrained(out / "model")
        from train.image_card import render_image_card

        command = "torchrun ... -m train.image_mae " + " ".join(sys.argv[1:])
        (folder / "README.md").write_text(render_image_card(folder, out, "model", command))
        log(f"wrote {folder}")
    rt.barrier()
    if rt.world > 1:
        dist.destroy_process_group()


@click.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    help="Plate folder, optionally DIR:MODEL=PLATE,... to map its channels (repeat).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--crop-size", default=128, show_default=True)
@click.option("--depth", default=12, show_default=True, help="Encoder blocks (12 = ViT-S).")
@click.option("--embed-dim", default=384, show_default=True, help="Token width (384 = ViT-S).")
@click.option("--num-heads", default=6, show_default=True)
@click.option("--checkpoint-every", default=100, show_default=True, help="Steps.")
@click.option("--steps", default=600, show_default=True)
@click.option("--batch-size", default=32, show_default=True, help="Global batch.")
@click.option("--lr", default=MAEConfig.lr, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--bf16", is_flag=True, help="bf16 autocast.")
@click.option("--resume", is_flag=True)
@click.option("--threads", default=None, type=int)
def main(
    data,
    out,
    crop_size,
    depth,
    embed_dim,
    num_heads,
    checkpoint_every,
    steps,
    batch_size,
    lr,
    seed,
    bf16,
    resume,
    threads,
):
    """MAE-pretrain a Cell Painting ViT on plate folders; writes OUT/model (Hub layout)."""
    rt = setup_runtime(threads)
    cfg = MAEConfig(
        crop_size=crop_size,
        depth=depth,
        embed_dim=embed_dim,
        num_heads=num_heads,
        checkpoint_every=checkpoint_every,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        bf16=bf16,
    )
    train(cfg, list(data), out, resume, rt, log=print if rt.main else (lambda *_: None))


if __name__ == "__main__":
    sys.exit(main())
