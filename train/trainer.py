"""InfoAlign on the shared training loop (`train.loop`): the recipe, its steps and its output.

Epoch based: each epoch walks the training molecules in a `DistributedSampler` order; a
step takes one local batch of molecule ids, walks the context graph from each (with the
step's generator, so a resumed run retraces the uninterrupted one), featurizes the batch
and returns the InfoAlign loss and its parts. Each epoch's record carries the held-out
loss. At the end rank 0 writes the Hub-layout model folder and its card.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from embedkit.molecules.batch import collate
from embedkit.molecules.featurize import MolGraph
from embedkit.molecules.gin import GINConfig, apply_embedding_max_norm
from embedkit.molecules.model import InfoAlignModel
from train.context_graph import ContextGraph
from train.dataset import split_molecules
from train.distributed import Runtime
from train.loop import METRICS, LoopConfig, Method, Run, Step, autocast, read_metrics
from train.loss import Pretrainer, infoalign_loss, space_targets
from train.walks import CSRGraph, random_walks

MODEL_DIR = "model"
SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class TrainConfig(LoopConfig):
    """The recipe; written into the checkpoint, config.json and the model card."""

    num_layer: int = 5
    emb_dim: int = 300
    drop_ratio: float = 0.5
    decoder_dropout: float = 0.5
    epochs: int = 20
    batch_size: int = 256  # global: split evenly across processes
    lr: float = 1e-4  # the paper's README pretraining command (argparse default 1e-3)
    weight_decay: float = 1e-8  # idem (argparse default 1e-5)
    walk_length: int = 4
    beta: float = 1e-9
    val_fraction: float = 0.05
    checkpoint_every: int = 200  # steps; a checkpoint is also written after every epoch
    init_from: str | None = None  # start from this model's weights (train.warm_start)


TRAIN_HELPS = {
    "seed": "Seed.",
    "bf16": "bf16 autocast for the training step.",
    "checkpoint_every": "Checkpoint every N steps (and after every epoch).",
    "max_steps": "Stop after this global step (the schedule still plans --epochs).",
    "num_layer": "GIN layers.",
    "emb_dim": "Embedding width.",
    "drop_ratio": "GIN dropout.",
    "decoder_dropout": "Decoder dropout.",
    "epochs": "Epochs.",
    "batch_size": "Global batch (split across processes).",
    "lr": "Adam learning rate (cosine decay).",
    "weight_decay": "Adam weight decay.",
    "walk_length": "Random-walk steps.",
    "beta": "KL weight β.",
    "val_fraction": "Held-out molecule fraction (stable hash split).",
    "init_from": "Start from this model's weights (zoo name or folder): the encoder, and "
    "the decoders of feature spaces with the same columns.",
}


@dataclass
class ModelOutput:
    """What the end of a run writes besides the weights: card inputs and the weight dtype."""

    graph_path: Path
    save_dtype: str = "float32"
    command: str | None = None
    license: str = "other"


class InfoAlignMethod(Method):
    """GIN + VIB encoder, decoders aligned along context-graph walks."""

    name = "infoalign"
    unit = "molecules"
    metric_prefix = "train_"

    def __init__(
        self,
        cfg: TrainConfig,
        rt: Runtime,
        graph: ContextGraph,
        mol_graphs: list[MolGraph],
        output: ModelOutput,
        log: Callable[[str], None] = print,
    ):
        super().__init__(cfg, rt)
        self.cfg, self.graph, self.mol_graphs = cfg, graph, mol_graphs
        self.output, self.log = output, log
        self.csr = CSRGraph.from_edges(graph.src, graph.dst, graph.weight, graph.num_nodes)
        self.targets = space_targets(graph, rt.device)
        self.train_ids, self.val_ids = split_molecules(graph, cfg.val_fraction)
        if len(self.train_ids) < 2:
            raise click.UsageError(
                f"the context graph leaves {len(self.train_ids)} training "
                "molecules; need at least 2 (lower --val-fraction?)"
            )
        self.metrics = ("loss", "kl", *self.targets)
        self.sampler = DistributedSampler(
            self.train_ids, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=cfg.seed
        )
        self.local_batch = max(2, math.ceil(cfg.batch_size / rt.world))
        # BatchNorm needs two graphs: a last chunk of one joins no step (alike on every rank).
        full, rest = divmod(len(self.sampler), self.local_batch)
        self._steps_per_epoch = full + (rest >= 2)
        self.model: InfoAlignModel | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self._steps_per_epoch * self.cfg.epochs

    def build(self) -> nn.Module:
        cfg = self.cfg
        self.model = InfoAlignModel(
            GINConfig(num_layer=cfg.num_layer, emb_dim=cfg.emb_dim, drop_ratio=cfg.drop_ratio),
            {name: len(s.spec.columns) for name, s in self.graph.spaces.items()},
            cfg.decoder_dropout,
            extra={
                "feature_spaces": self.graph.feature_spaces_json(),
                "context_graph": self.graph.summary(),
                "recipe": "infoalign",
                "training": cfg.to_dict(),
            },
        )
        if cfg.init_from:
            from train.warm_start import warm_start

            spaces = self.graph.feature_spaces_json()
            self.model.extra["warm_start"] = warm_start(self.model, cfg.init_from, spaces)
            self.log(f"warm start: {self.model.extra['warm_start']}")
        self.model.to(self.rt.device)
        apply_embedding_max_norm(self.model)
        return Pretrainer(self.model)

    def optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            module.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )

    def lr_at(self, step: int) -> float:  # the reference's cosine, num_cycles = 7/16, no warm-up
        return self.cfg.lr * math.cos(math.pi * 7 / 16 * step / self.total_steps)

    def batches(self, epoch: int, start: int) -> Iterator[list[int]]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        b = self.local_batch
        for s in range(start, self._steps_per_epoch):
            yield order[s * b : (s + 1) * b]

    def _loss(self, net: nn.Module, ids: list[int], generator: torch.Generator):
        start = torch.as_tensor(ids, dtype=torch.int64)
        nodes, alpha = random_walks(self.csr, start, self.cfg.walk_length, generator)
        batch = collate([self.mol_graphs[i] for i in ids]).to(self.rt.device)
        mu, sigma, logits = net(batch)
        device = self.rt.device
        return infoalign_loss(
            mu, sigma, logits, nodes.to(device), alpha.to(device), self.targets, self.cfg.beta
        )

    def train_step(self, net: nn.Module, batch: list[int], step: Step) -> dict[str, torch.Tensor]:
        loss, parts = self._loss(net, batch, step.generator)
        return {"loss": loss, **parts}

    def after_step(self, module: nn.Module, step: Step) -> None:
        apply_embedding_max_norm(module)  # every row, on every rank: replicas stay identical

    @torch.no_grad()
    def evaluate(self, module: nn.Module) -> dict[str, float]:
        """Eval-mode loss on the held-out molecules with fixed walks (sharded over ranks)."""
        if not self.val_ids:
            return {}
        rt = self.rt
        ids = self.val_ids[rt.rank :: rt.world]
        if rt.world > 1:  # every rank evaluates with rank 0's BatchNorm statistics
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)
        module.eval()
        generator = torch.Generator().manual_seed(self.cfg.seed + 7 + rt.rank)
        names = list(self.metrics)
        acc = [0.0] * (2 * len(names))  # Σ weight·value per metric, then Σ weight per metric
        for s in range(0, len(ids), self.local_batch):
            chunk = ids[s : s + self.local_batch]
            if len(chunk) < 2:
                continue
            with autocast(rt, self.cfg.bf16):
                loss, parts = self._loss(module, chunk, generator)
            for i, name in enumerate(names):
                value = loss if name == "loss" else parts.get(name)
                if value is not None:
                    acc[i] += float(value) * len(chunk)
                    acc[len(names) + i] += len(chunk)
        acc = rt.all_sum(acc)
        return {
            f"val_{name}": acc[i] / acc[len(names) + i]
            for i, name in enumerate(names)
            if acc[len(names) + i] > 0
        }

    def save(self, module: nn.Module, run: Run) -> None:
        from train.model_card import write_model_card

        folder = run.out / MODEL_DIR
        out = self.output
        self.model.save_pretrained(folder, dtype=SAVE_DTYPES[out.save_dtype])
        write_model_card(
            folder,
            graph=self.graph,
            graph_path=out.graph_path,
            config=self.cfg.to_dict(),
            metrics=read_metrics(run.out),
            command=out.command,
            runtime={
                "processes": self.rt.world,
                "device": str(self.rt.device),
                "threads_per_process": torch.get_num_threads(),
                "seconds_this_session": round(run.seconds, 1),
                "steps_done": run.step,
                "steps_planned": run.total_steps,
            },
            save_dtype=out.save_dtype,
            license=out.license,
        )
        self.log(f"wrote {folder} ({out.save_dtype}); metrics in {run.out / METRICS}")
