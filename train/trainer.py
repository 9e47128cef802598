"""The training loop of one run: model, optimiser, walks, checkpoints and epoch metrics.

Every step re-seeds its walk and dropout generators from (seed, epoch, step, rank), so a
run resumed from `checkpoint.pt` retraces the uninterrupted run exactly; the settings that
would change that trajectory are refused on `--resume`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from embedkit.molecules.batch import collate
from embedkit.molecules.featurize import MolGraph
from embedkit.molecules.gin import GINConfig, apply_embedding_max_norm
from embedkit.molecules.model import InfoAlignModel
from train.context_graph import ContextGraph
from train.dataset import split_molecules
from train.distributed import Runtime
from train.loss import Pretrainer, infoalign_loss, space_targets
from train.metrics import METRICS, format_record, trim_metrics
from train.walks import CSRGraph, random_walks

CHECKPOINT = "checkpoint.pt"

# Changing these mid-run would change the trajectory, so --resume refuses to.
_RESUME_FIXED = (
    "num_layer",
    "emb_dim",
    "drop_ratio",
    "decoder_dropout",
    "batch_size",
    "lr",
    "weight_decay",
    "walk_length",
    "beta",
    "seed",
    "epochs",
    "val_fraction",
    "bf16",
)


@dataclass
class TrainConfig:
    """The recipe; written into the checkpoint, config.json and the model card."""

    num_layer: int = 5
    emb_dim: int = 300
    drop_ratio: float = 0.5
    decoder_dropout: float = 0.5
    epochs: int = 20
    batch_size: int = 256  # global: split evenly across processes
    lr: float = 1e-3
    weight_decay: float = 1e-5
    walk_length: int = 4
    beta: float = 1e-9
    seed: int = 0
    val_fraction: float = 0.05
    bf16: bool = False
    checkpoint_every: int = 200  # steps; a checkpoint is also written after every epoch
    max_steps: int | None = None  # stop early (time box); the schedule still plans `epochs`

    def to_dict(self) -> dict:
        return asdict(self)


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**62)


class Trainer:
    """Owns the model, optimiser, walks and the checkpoint/metrics files of one run."""

    def __init__(
        self, cfg: TrainConfig, graph: ContextGraph, graphs: list[MolGraph], out: Path, rt: Runtime
    ):
        self.cfg, self.graph, self.mol_graphs, self.out, self.rt = cfg, graph, graphs, out, rt
        self.csr = CSRGraph.from_edges(graph.src, graph.dst, graph.weight, graph.num_nodes)
        self.targets = space_targets(graph, rt.device)
        self.train_ids, self.val_ids = split_molecules(graph, cfg.val_fraction)
        if len(self.train_ids) < 2:
            raise click.UsageError(
                f"the context graph leaves {len(self.train_ids)} training "
                "molecules; need at least 2 (lower --val-fraction?)"
            )
        torch.manual_seed(cfg.seed)
        self.model = InfoAlignModel(
            GINConfig(num_layer=cfg.num_layer, emb_dim=cfg.emb_dim, drop_ratio=cfg.drop_ratio),
            {name: len(s.spec.columns) for name, s in graph.spaces.items()},
            cfg.decoder_dropout,
            extra={
                "feature_spaces": graph.feature_spaces_json(),
                "context_graph": graph.summary(),
                "recipe": "infoalign",
                "training": cfg.to_dict(),
            },
        ).to(rt.device)
        apply_embedding_max_norm(self.model)
        self.plain = Pretrainer(self.model)  # evaluation: no DDP collectives
        self.net = DistributedDataParallel(self.plain) if rt.world > 1 else self.plain
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.sampler = DistributedSampler(
            self.train_ids, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=cfg.seed
        )
        self.local_batch = max(2, math.ceil(cfg.batch_size / rt.world))
        self.steps_per_epoch = math.ceil(len(self.sampler) / self.local_batch)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.metric_names = ["loss", "kl", *self.targets]
        self.sums = [0.0] * (2 * len(self.metric_names))  # see _accumulate

    # -- one step
    def _lr(self) -> float:  # the reference's cosine with num_cycles = 7/16, no warm-up
        return self.cfg.lr * math.cos(math.pi * 7 / 16 * self.global_step / self.total_steps)

    def _batch_loss(self, ids: list[int], generator: torch.Generator, net: nn.Module):
        start = torch.as_tensor(ids, dtype=torch.int64)
        nodes, alpha = random_walks(self.csr, start, self.cfg.walk_length, generator)
        batch = collate([self.mol_graphs[i] for i in ids]).to(self.rt.device)
        with torch.autocast(self.rt.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            mu, sigma, logits = net(batch)
        return infoalign_loss(
            mu,
            sigma,
            logits,
            nodes.to(self.rt.device),
            alpha.to(self.rt.device),
            self.targets,
            self.cfg.beta,
        )

    def train_step(self, ids: list[int]) -> dict[str, float]:
        seed = _step_seed(self.cfg.seed, self.epoch, self.step_in_epoch, self.rt.rank)
        torch.manual_seed(seed)  # dropout
        generator = torch.Generator().manual_seed(seed + 1)  # walks
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        self.net.train()
        loss, parts = self._batch_loss(ids, generator, self.net)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        apply_embedding_max_norm(self.model)
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    def _accumulate(self, acc: list[float], values: dict, weight: float) -> None:
        """acc = [Σ w·value per metric..., Σ w per metric...] in a fixed order (for all_reduce)."""
        n = len(self.metric_names)
        for i, name in enumerate(self.metric_names):
            if name in values:
                acc[i] += float(values[name]) * weight
                acc[n + i] += weight

    def _means(self, acc: list[float], prefix: str) -> dict[str, float]:
        n = len(self.metric_names)
        return {
            f"{prefix}{name}": acc[i] / acc[n + i]
            for i, name in enumerate(self.metric_names)
            if acc[n + i] > 0
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Eval-mode loss on the held-out molecules with fixed walks (sharded over ranks)."""
        ids = self.val_ids[self.rt.rank :: self.rt.world]
        if self.rt.world > 1:  # every rank evaluates with rank 0's BatchNorm statistics
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        self.plain.eval()
        generator = torch.Generator().manual_seed(self.cfg.seed + 7 + self.rt.rank)
        acc = [0.0] * (2 * len(self.metric_names))
        for s in range(0, len(ids), self.local_batch):
            chunk = ids[s : s + self.local_batch]
            if len(chunk) < 2:
                continue
            loss, parts = self._batch_loss(chunk, generator, self.plain)
            self._accumulate(acc, {"loss": loss, **parts}, len(chunk))
        return self._means(self.rt.all_sum(acc), "val_")

    # -- checkpoints
    def save_checkpoint(self) -> None:
        sums = self.rt.all_sum(list(self.sums))
        if not self.rt.main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "sums": sums,
            "config": json.dumps(self.cfg.to_dict()),
        }
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out / CHECKPOINT)

    def load_checkpoint(self) -> None:
        state = torch.load(self.out / CHECKPOINT, map_location=self.rt.device, weights_only=True)
        saved = json.loads(state["config"])
        changed = [k for k in _RESUME_FIXED if saved.get(k) != getattr(self.cfg, k)]
        if changed:
            raise click.UsageError(
                f"--resume: {', '.join(changed)} differ from the checkpoint in {self.out}; "
                "use the original values or a new --out"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.sums = list(state["sums"]) if self.rt.main else [0.0] * len(state["sums"])
        trim_metrics(self.out / METRICS, self.epoch)

    # -- the loop
    def fit(self, log=print, log_every: int = 0) -> list[dict]:
        """Train to `epochs` (or `max_steps`); rank 0 logs a progress line every `log_every`."""
        history = []
        while self.epoch < self.cfg.epochs:
            if self.cfg.max_steps is not None and self.global_step >= self.cfg.max_steps:
                break
            self.sampler.set_epoch(self.epoch)
            order = list(self.sampler)
            tick = last = time.perf_counter()
            while self.step_in_epoch < self.steps_per_epoch:
                if self.cfg.max_steps is not None and self.global_step >= self.cfg.max_steps:
                    self.save_checkpoint()
                    return history
                s = self.step_in_epoch * self.local_batch
                ids = order[s : s + self.local_batch]
                if len(ids) >= 2:  # BatchNorm needs two graphs; every rank skips alike
                    values = self.train_step(ids)
                    self._accumulate(self.sums, values, 1.0)
                self.step_in_epoch += 1
                self.global_step += 1
                if self.rt.main and log_every and self.global_step % log_every == 0:
                    now = time.perf_counter()
                    log(
                        f"  step {self.global_step}/{self.total_steps} "
                        f"loss={values['loss']:.4f} {(now - last) / log_every:.2f}s/step"
                    )
                    last = now
                if self.global_step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            history.append(self._end_epoch(time.perf_counter() - tick, log))
        if self.rt.main and self.epoch == self.cfg.epochs:
            log(f"done: {self.global_step} steps over {self.cfg.epochs} epochs")
        return history

    def _end_epoch(self, seconds: float, log) -> dict:
        record = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self._lr(),
            **self._means(self.rt.all_sum(self.sums), "train_"),
        }
        record |= self.validate() if self.val_ids else {}
        record["epoch_seconds"] = round(seconds, 2)
        record["molecules_per_second"] = round(len(self.train_ids) / max(seconds, 1e-9), 1)
        self.epoch += 1
        self.step_in_epoch = 0
        self.sums = [0.0] * len(self.sums)
        self.save_checkpoint()
        if self.rt.main:
            with open(self.out / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            log(format_record(record))
        return record
