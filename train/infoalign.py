"""InfoAlign pretraining: GIN + VIB encoder, decoders aligned along context-graph walks.

Loss per batch (paper eq. 3, as the reference computes it): for every feature space m,
the mean over the valid (walk node, feature) entries of α · BCE-with-logits(dec_m(μ), y),
where y is the node's min-max scaled feature vector (NaN entries masked) and α the walk's
cumulative edge-weight product (α = 1 for the molecule itself, so its own Morgan bits are
always a target); plus β · KL(q(z|x) ‖ N(0, I)), computed **analytically** (no sample),
with β = 1e-9. Decoders read μ, not a sampled z, as the released model does.

Runs as one process or under `torchrun` (DDP: gloo on CPU, nccl on CUDA). Every step
re-seeds its walk and dropout generators from (seed, epoch, step, rank), so a run resumed
from `checkpoint.pt` retraces the uninterrupted run exactly.

    python -m train.infoalign build-graph --data-dir DATA --out runs/ia/context_graph.npz
    torchrun --standalone --nproc_per_node=2 -m train.infoalign train --out runs/ia --bf16
    python -m train.infoalign publish runs/ia/model --push org/embedkit-infoalign
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import click
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from embedkit.molecules.batch import collate
from embedkit.molecules.featurize import MolGraph, smiles_to_graph
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from train.context_graph import (
    DATA_DIR_ENV,
    ContextGraph,
    GraphConfig,
    build_context_graph,
    format_summary,
    resolve_data_dir,
)
from train.walks import CSRGraph, random_walks

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL_DIR = "model"
# Changing these mid-run would change the trajectory, so --resume refuses to.
_RESUME_FIXED = ("num_layer", "emb_dim", "drop_ratio", "decoder_dropout", "batch_size", "lr",
                 "weight_decay", "walk_length", "beta", "seed", "epochs", "val_fraction", "bf16")


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


# --------------------------------------------------------------------------- data


def featurize_cached(smiles: list[str], cache: Path) -> list[MolGraph]:
    """RDKit → graphs once per SMILES list; later runs (and other ranks) read the `.npz`."""
    key = hashlib.sha256("\n".join(smiles).encode()).hexdigest()
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"][()]) == key:
                return _split_graphs(z)
    graphs = []
    for smi in smiles:
        graph, error = smiles_to_graph(smi)
        if graph is None:
            raise ValueError(f"context-graph molecule failed to featurise: {error}")
        graphs.append(graph)
    atoms = np.cumsum([0] + [g.num_nodes for g in graphs])
    bonds = np.cumsum([0] + [g.edge_index.shape[1] for g in graphs])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez_compressed(  # OGB codes fit in uint8; the cache is read once per process
        tmp, key=np.asarray(key), atoms=atoms, bonds=bonds,
        x=np.concatenate([g.x for g in graphs]).astype(np.uint8),
        edge_index=np.concatenate([g.edge_index for g in graphs], axis=1).astype(np.int32),
        edge_attr=np.concatenate([g.edge_attr for g in graphs]).astype(np.uint8))
    os.replace(tmp, cache)
    return graphs


def _split_graphs(z) -> list[MolGraph]:
    atoms, bonds = z["atoms"], z["bonds"]
    x, ei, ea = (z[k].astype(np.int64) for k in ("x", "edge_index", "edge_attr"))
    return [MolGraph(x[atoms[i]:atoms[i + 1]], ei[:, bonds[i]:bonds[i + 1]],
                     ea[bonds[i]:bonds[i + 1]]) for i in range(len(atoms) - 1)]


@dataclass
class SpaceTargets:
    values: torch.Tensor  # rows × d (float32, NaN = missing)
    node_rows: torch.Tensor  # (num_nodes,) row or -1


def space_targets(graph: ContextGraph, device: torch.device) -> dict[str, SpaceTargets]:
    return {name: SpaceTargets(torch.as_tensor(s.values, dtype=torch.float32, device=device),
                               torch.as_tensor(s.node_rows, dtype=torch.int64, device=device))
            for name, s in graph.spaces.items()}


def split_molecules(graph: ContextGraph, val_fraction: float) -> tuple[list[int], list[int]]:
    """A stable split by a hash of the molecule key, so it survives graph rebuilds."""
    train, val = [], []
    for i, key in enumerate(graph.node_key[: graph.num_molecules]):
        bucket = zlib.crc32(str(key).encode()) % 10_000
        (val if bucket < val_fraction * 10_000 else train).append(i)
    return train, val


# --------------------------------------------------------------------------- loss


class Pretrainer(nn.Module):
    """One forward for DDP: graphs → (μ, σ, {space: logits})."""

    def __init__(self, model: InfoAlignModel):
        super().__init__()
        self.model = model

    def forward(self, graphs):
        mu, sigma = self.model.encoder.distribution(graphs)
        return mu, sigma, {name: dec(mu) for name, dec in self.model.decoders.items()}


def infoalign_loss(mu, sigma, logits: dict[str, torch.Tensor], nodes: torch.Tensor,
                   alpha: torch.Tensor, targets: dict[str, SpaceTargets],
                   beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """α-weighted, NaN-masked BCE per space (mean over valid entries) + β · analytic KL.

    `parts` holds the spaces the walks reached (plus "kl"); an unreached space adds an
    exact zero to the total so that its decoder still takes part in DDP's gradient sync.
    """
    parts, unreached = {}, []
    for name, target in targets.items():
        pred = logits[name].float()
        rows = torch.where(nodes >= 0, target.node_rows[nodes.clamp(min=0)], -1)
        b, k = (rows >= 0).nonzero(as_tuple=True)
        if b.numel() == 0:
            unreached.append(pred.sum() * 0.0)
            continue
        y = target.values[rows[b, k]]
        mask = ~torch.isnan(y)
        bce = F.binary_cross_entropy_with_logits(pred[b], torch.nan_to_num(y), reduction="none")
        weighted = bce * alpha[b, k].unsqueeze(1) * mask
        parts[name] = weighted.sum() / mask.sum().clamp(min=1)
    mu, sigma = mu.float(), sigma.float()
    kl = 0.5 * (sigma.pow(2) + mu.pow(2) - 1.0 - 2.0 * sigma.log()).sum(dim=1).mean()
    parts["kl"] = kl
    total = sum(v for n, v in parts.items() if n != "kl") + beta * kl + sum(unreached)
    return total, parts


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1 or not values:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def setup_runtime(threads: int | None) -> Runtime:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain `python -m` run is world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    return Runtime(rank, world, device)


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**62)


def _renorm_embeddings(model: nn.Module) -> None:
    """Apply every embedding's max_norm to all rows after a step, on every rank.

    `nn.Embedding(max_norm=…)` renormalises looked-up rows in place during forward; under
    DDP each rank looks up different rows, so the replicas would drift apart. Doing it for
    all rows after the update keeps them identical and makes the forward renorm a no-op.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding) and module.max_norm is not None:
                norms = module.weight.norm(p=module.norm_type, dim=1, keepdim=True)
                scale = (module.max_norm / (norms + 1e-7)).clamp(max=1.0)
                module.weight.mul_(scale)


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Owns the model, optimiser, walks and the checkpoint/metrics files of one run."""

    def __init__(self, cfg: TrainConfig, graph: ContextGraph, graphs: list[MolGraph],
                 out: Path, rt: Runtime):
        self.cfg, self.graph, self.mol_graphs, self.out, self.rt = cfg, graph, graphs, out, rt
        self.csr = CSRGraph.from_edges(graph.src, graph.dst, graph.weight, graph.num_nodes)
        self.targets = space_targets(graph, rt.device)
        self.train_ids, self.val_ids = split_molecules(graph, cfg.val_fraction)
        if len(self.train_ids) < 2:
            raise click.UsageError(f"the context graph leaves {len(self.train_ids)} training "
                                   "molecules; need at least 2 (lower --val-fraction?)")
        torch.manual_seed(cfg.seed)
        self.model = InfoAlignModel(
            GINConfig(num_layer=cfg.num_layer, emb_dim=cfg.emb_dim, drop_ratio=cfg.drop_ratio),
            {name: len(s.columns) for name, s in graph.spaces.items()}, cfg.decoder_dropout,
            extra={"feature_spaces": graph.feature_spaces_json(),
                   "context_graph": graph.summary(), "recipe": "infoalign",
                   "training": cfg.to_dict()},
        ).to(rt.device)
        _renorm_embeddings(self.model)
        self.plain = Pretrainer(self.model)  # evaluation: no DDP collectives
        self.net = DistributedDataParallel(self.plain) if rt.world > 1 else self.plain
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                    weight_decay=cfg.weight_decay)
        self.sampler = DistributedSampler(self.train_ids, num_replicas=rt.world, rank=rt.rank,
                                          shuffle=True, seed=cfg.seed)
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
        return infoalign_loss(mu, sigma, logits, nodes.to(self.rt.device),
                              alpha.to(self.rt.device), self.targets, self.cfg.beta)

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
        _renorm_embeddings(self.model)
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
        return {f"{prefix}{name}": acc[i] / acc[n + i]
                for i, name in enumerate(self.metric_names) if acc[n + i] > 0}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Eval-mode loss on the held-out molecules with fixed walks (sharded over ranks)."""
        ids = self.val_ids[self.rt.rank::self.rt.world]
        if self.rt.world > 1:  # every rank evaluates with rank 0's BatchNorm statistics
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        self.plain.eval()
        generator = torch.Generator().manual_seed(self.cfg.seed + 7 + self.rt.rank)
        acc = [0.0] * (2 * len(self.metric_names))
        for s in range(0, len(ids), self.local_batch):
            chunk = ids[s:s + self.local_batch]
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
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                 "global_step": self.global_step, "sums": sums,
                 "config": json.dumps(self.cfg.to_dict())}
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
                "use the original values or a new --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.sums = list(state["sums"]) if self.rt.main else [0.0] * len(state["sums"])
        _trim_metrics(self.out / METRICS, self.epoch)

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
                ids = order[s:s + self.local_batch]
                if len(ids) >= 2:  # BatchNorm needs two graphs; every rank skips alike
                    values = self.train_step(ids)
                    self._accumulate(self.sums, values, 1.0)
                self.step_in_epoch += 1
                self.global_step += 1
                if self.rt.main and log_every and self.global_step % log_every == 0:
                    now = time.perf_counter()
                    log(f"  step {self.global_step}/{self.total_steps} "
                        f"loss={values['loss']:.4f} {(now - last) / log_every:.2f}s/step")
                    last = now
                if self.global_step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            history.append(self._end_epoch(time.perf_counter() - tick, log))
        if self.rt.main and self.epoch == self.cfg.epochs:
            log(f"done: {self.global_step} steps over {self.cfg.epochs} epochs")
        return history

    def _end_epoch(self, seconds: float, log) -> dict:
        record = {"epoch": self.epoch + 1, "step": self.global_step, "lr": self._lr(),
                  **self._means(self.rt.all_sum(self.sums), "train_")}
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
            log(_format_record(record))
        return record


def _check_replicas(model: nn.Module, rt: Runtime) -> None:
    """DDP parameters must end identical; a differing checksum means a rank drifted.

    (BatchNorm running stats may differ: each rank's last forward updates its own, and
    rank 0's, which DDP broadcasts before every forward, are the ones saved.)
    """
    if rt.world == 1:
        return
    with torch.no_grad():
        local = sum(float(p.double().abs().sum()) for p in model.parameters())
    sums = [torch.zeros(1, dtype=torch.float64, device=rt.device) for _ in range(rt.world)]
    dist.all_gather(sums, torch.tensor([local], dtype=torch.float64, device=rt.device))
    values = [float(t) for t in sums]
    if max(values) - min(values) > 1e-6 * max(abs(v) for v in values):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")


def _trim_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs after the checkpoint, so a resumed log has no duplicates."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epochs_done]
    path.write_text("".join(ln + "\n" for ln in kept))


def _format_record(r: dict) -> str:
    spaces = " ".join(f"{k[6:]}={v:.4f}" for k, v in r.items()
                      if k.startswith("train_") and k not in ("train_loss", "train_kl"))
    val = f" val={r['val_loss']:.4f}" if "val_loss" in r else ""
    return (f"epoch {r['epoch']:>3} step {r['step']:>6} loss={r['train_loss']:.4f}{val} "
            f"[{spaces}] {r['epoch_seconds']:.1f}s {r['molecules_per_second']:.0f} mol/s")


def read_metrics(out: Path) -> list[dict]:
    path = Path(out) / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


# --------------------------------------------------------------------------- entry points


def prepare_graph(graph_path: Path | None, data_dir: str | None, out: Path, rt: Runtime,
                  log=print) -> tuple[ContextGraph, Path]:
    """Use --graph, else out/context_graph.npz, building it (on rank 0) when missing."""
    path = graph_path or out / "context_graph.npz"
    if not path.exists():
        if graph_path is not None:
            raise click.UsageError(f"--graph {path} does not exist")
        if rt.main:
            graph = build_context_graph(resolve_data_dir(data_dir))
            graph.save(path)
            log(format_summary(graph.summary()))
        rt.barrier()
    return ContextGraph.load(path), path


def run_training(cfg: TrainConfig, out: Path, graph_path: Path | None = None,
                 data_dir: str | None = None, resume: bool = False, save_dtype: str = "float32",
                 threads: int | None = None, command: str | None = None,
                 card_license: str = "other", log=print, log_every: int = 0) -> Path:
    """The whole recipe: graph → cached graphs → fit → model folder (written by rank 0)."""
    rt = setup_runtime(threads)
    out.mkdir(parents=True, exist_ok=True)
    graph, gpath = prepare_graph(graph_path, data_dir, out, rt, log)
    cache = out / "molgraphs.npz"
    if rt.main:
        featurize_cached([str(s) for s in graph.smiles], cache)
    rt.barrier()
    mol_graphs = featurize_cached([str(s) for s in graph.smiles], cache)
    trainer = Trainer(cfg, graph, mol_graphs, out, rt)
    if resume and (out / CHECKPOINT).exists():
        trainer.load_checkpoint()
        if rt.main:
            log(f"resumed from {out / CHECKPOINT} at epoch {trainer.epoch} "
                f"step {trainer.global_step}")
    elif not resume and rt.main and (out / METRICS).exists():
        (out / METRICS).unlink()
    if rt.main:
        log(f"training on {len(trainer.train_ids):,} molecules ({len(trainer.val_ids):,} held "
            f"out), {rt.world} process(es), {trainer.steps_per_epoch} steps/epoch")
    tick = time.perf_counter()
    trainer.fit(log, log_every)
    _check_replicas(trainer.model, rt)
    folder = out / MODEL_DIR
    if rt.main:
        from train.model_card import write_model_card

        dtype = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16}[save_dtype]
        trainer.model.save_pretrained(folder, dtype=dtype)
        write_model_card(folder, graph=graph, graph_path=gpath, config=cfg.to_dict(),
                         metrics=read_metrics(out), command=command,
                         runtime={"processes": rt.world, "device": str(rt.device),
                                  "threads_per_process": torch.get_num_threads(),
                                  "seconds_this_session": round(time.perf_counter() - tick, 1),
                                  "steps_done": trainer.global_step,
                                  "steps_planned": trainer.total_steps},
                         save_dtype=save_dtype, license=card_license)
        log(f"wrote {folder} ({save_dtype}); metrics in {out / METRICS}")
    rt.barrier()
    if rt.world > 1:
        dist.destroy_process_group()
    return folder


@click.group()
def cli() -> None:
    """InfoAlign pretraining: build the context graph, train (torchrun for DDP), publish."""


@cli.command("build-graph")
@click.option("--data-dir", default=None, help=f"Data folder [default: ${DATA_DIR_ENV}].")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="Output .npz (a .json summary is written next to it).")
@click.option("--exclude-benchmark", multiple=True,
              help="Benchmark folder whose molecules stay out of the graph (repeatable).")
@click.option("--top-expression", default=0.01, show_default=True,
              help="Fraction of |L1000 z| entries that become molecule–gene edges.")
@click.option("--sim-threshold", default=0.8, show_default=True, help="Cosine threshold.")
@click.option("--sim-sparsity", default=0.995, show_default=True,
              help="Keep at most the top (1 − sparsity) of pairs per feature space.")
def build_graph_cmd(data_dir, out_path, exclude_benchmark, top_expression, sim_threshold,
                    sim_sparsity) -> None:
    """Build the context graph from a data folder and print its node/edge counts."""
    config = GraphConfig(sim_threshold=sim_threshold, sim_sparsity=sim_sparsity,
                         expression_top_fraction=top_expression,
                         exclude_benchmarks=tuple(exclude_benchmark))
    tick = time.perf_counter()
    graph = build_context_graph(data_dir, config)
    graph.save(out_path)
    click.echo(format_summary(graph.summary()))
    click.echo(f"wrote {out_path} in {time.perf_counter() - tick:.1f}s")


def _train_options(func):
    defaults = TrainConfig()
    helps = {"num_layer": "GIN layers.", "emb_dim": "Embedding width.",
             "drop_ratio": "GIN dropout.", "decoder_dropout": "Decoder dropout.",
             "epochs": "Epochs.", "batch_size": "Global batch (split across processes).",
             "lr": "Adam learning rate (cosine decay).", "weight_decay": "Adam weight decay.",
             "walk_length": "Random-walk steps.", "beta": "KL weight β.", "seed": "Seed.",
             "val_fraction": "Held-out molecule fraction (stable hash split).",
             "bf16": "bf16 autocast for the forward pass.",
             "checkpoint_every": "Checkpoint every N steps (and after every epoch).",
             "max_steps": "Stop after this global step (the schedule still plans --epochs)."}
    for f in reversed(fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type in ("bool", bool):
            func = click.option(f"{name}/--no-{name[2:]}", default=default, show_default=True,
                                help=helps[f.name])(func)
        else:
            kind = {"int": int, "float": float, "int | None": int}[str(f.type)]
            func = click.option(name, type=kind, default=default, show_default=True,
                                help=helps[f.name])(func)
    return func


@cli.command("train")
@click.option("--graph", "graph_path", type=click.Path(path_type=Path), default=None,
              help="Context graph .npz [default: OUT/context_graph.npz, built if missing].")
@click.option("--data-dir", default=None,
              help=f"Data folder for building [default: ${DATA_DIR_ENV}].")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Run folder: checkpoint.pt, metrics.jsonl, model/.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option("--save-dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
              default="float32", show_default=True, help="Precision of model.safetensors.")
@click.option("--threads", type=int, default=None,
              help="Torch threads per process [default: cores / processes].")
@click.option("--license", "card_license", default="other", show_default=True,
              help="Licence written into the model card's front matter.")
@click.option("--log-every", default=10, show_default=True,
              help="Progress line every N steps (0: per epoch only).")
@click.option("--push", "push_repo", default=None, help="Upload model/ to this Hub repo id.")
@click.option("--dry-run", is_flag=True, help="With --push: write and check the folder only.")
@_train_options
def train_cmd(graph_path, data_dir, out, resume, save_dtype, threads, card_license, log_every,
              push_repo, dry_run, **recipe) -> None:
    """Pretrain the encoder (run under torchrun for DDP) and write a Hub-layout folder."""
    cfg = TrainConfig(**recipe)
    command = " ".join([_launcher(), *(shlex.quote(a) for a in sys.argv[1:])])
    folder = run_training(cfg, out, graph_path, data_dir, resume, save_dtype, threads, command,
                          card_license, log=lambda m: click.echo(m), log_every=log_every)
    if push_repo and int(os.environ.get("RANK", "0")) == 0:
        from train.publish import publish

        publish(folder, push_repo, push=not dry_run, log=lambda m: click.echo(m))


def _launcher() -> str:
    world = os.environ.get("LOCAL_WORLD_SIZE")
    return f"torchrun --nproc_per_node={world} -m train.infoalign" if world else (
        "python -m train.infoalign")


@cli.command("publish")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--push", "push_repo", default=None, help="Hub repo id to upload to.")
@click.option("--dry-run", is_flag=True, help="Check the folder and list what would be sent.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
def publish_cmd(folder, push_repo, dry_run, private) -> None:
    """Check a model folder and upload it with huggingface_hub (--push REPO_ID)."""
    from train.publish import publish

    publish(folder, push_repo, push=bool(push_repo) and not dry_run, private=private,
            log=lambda m: click.echo(m))


if __name__ == "__main__":
    cli()
