"""What the five ViT pretraining methods share: recipe, sites, augmentations, encoder, loop glue.

A method module (`train.vit_wsl`, `vit_simclr`, `vit_byol`, `vit_mocov3`, `vit_mae`) holds
its recipe dataclass (a `VitRecipe` with its own keys), the network that computes its loss
and a `VitMethod` subclass naming both. Everything else is here, once:

* **Recipe.** `load_recipe` reads `train/configs/common.json`, then the method's
  `train/configs/<method>.json`, then the user's `--config FILE` (JSON or TOML), then the
  command line; a key the method does not have is one error listing the valid keys.
* **Sites and augmentations** live in `embedkit.images.training_data`, shared with
  `embedkit finetune`: `collect_sites` joins the plates to metadata.csv and reports what
  it leaves out; `SiteDataset` reads one site per item and augments it (the seed paper's
  random resized crop, flips, 90° rotations, blur, instance normalization, then the
  per-channel intensity jitter; the recipe's keys of the same names set them).
* **Batches.** A `DistributedSampler` over sites per epoch, this rank's share cut into
  micro-batches (`batch_size / processes / accumulate` sites; the last batch of an
  epoch wraps round to the epoch's first sites), read by DataLoader workers. Every
  sample's augmentation is seeded from (seed, epoch, rank, position), so the data of a
  resumed run is the data of the uninterrupted one, whatever the number of workers.
* **Encoder.** `embedkit.images.model.ImageModel` (the registered `embedkit-vit` kind):
  ViT-S/16, mean of the patch tokens, with K cell-line tokens projected from the
  embedding table when one is given. Only it is saved (RUN_DIR/model), never the heads.
* **Graph loss.** With `--graph`, `embedkit.graph.losses.GraphRegularizer` on the pooled
  features of the batch and their perturbation labels (it averages per perturbation over
  the global batch itself), added to the method's loss and logged as `graph_loss`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from embedkit.errors import InputError
from embedkit.images.model import (
    CELL_PAINTING,
    CELL_PAINTING_ALIASES,
    RXRX1,
    RXRX1_ALIASES,
    ImageModel,
)
from embedkit.images.training_data import (  # noqa: F401  (augment, collect_sites: for train.vit)
    DataSpec,
    SiteDataset,
    TrainingSites,
    augment,
    collect_sites,
)
from embedkit.images.vit import ViTConfig
from train.distributed import Runtime
from train.loop import LoopConfig, Method, MicroBatches, Run, Step, warmup_cosine

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
GRAPH_LOSSES = ("laplacian", "contrastive")
CHANNEL_SETS = {
    "rxrx1": (RXRX1, RXRX1_ALIASES),
    "cell-painting": (CELL_PAINTING, CELL_PAINTING_ALIASES),
}
MODEL_DIR = "model"
SHOW = 5  # examples named in a report line


# -- the recipe ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class VitRecipe(LoopConfig):
    """Keys every ViT method has; values come from train/configs (see `load_recipe`)."""

    # the encoder
    channels: str  # "rxrx1" (6), "cell-painting" (5) or comma-separated names
    crop_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    drop_path_rate: float
    cell_line_tokens: int  # K, used when a cell-line table is given
    # how long, how much per step
    steps: int | None
    epochs: int | None
    batch_size: int  # sites per optimizer step, all processes together
    accumulate: int  # micro-batches per optimizer step
    # optimizer and schedule
    lr: float
    min_lr: float
    warmup_fraction: float
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float | None
    # augmentations
    crop_scale_min: float
    crop_scale_max: float
    flips: bool
    rotations: bool
    blur_prob: list[float]  # per view
    gain_prob: float
    background_prob: float
    contrast_prob: float
    # graph regularization (with --graph)
    graph_loss: str
    graph_weight: float
    graph_temperature: float
    # data loading
    workers: int | None  # DataLoader processes per training process; None = spare cores

    RESUMABLE: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUMABLE, "workers")


def recipe_keys(recipe_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(recipe_class)]


def read_config_file(path: Path) -> dict:
    """A JSON or TOML file of recipe keys; keys starting with "_" are comments."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as err:
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({err})") from err
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a table of recipe keys, got {type(data).__name__}")
    return {k: v for k, v in data.items() if not str(k).startswith("_")}


def method_defaults(method: str) -> dict:
    """The shipped recipe of `method`: common.json updated by <method>.json."""
    values = read_config_file(CONFIG_DIR / "common.json")
    values.update(read_config_file(CONFIG_DIR / f"{method}.json"))
    return values


def load_recipe(
    recipe_class: type,
    method: str,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> VitRecipe:
    """Shipped defaults ← `config_file` ← `overrides` (text from `--set` is parsed by the
    key's type); unknown keys and bad values are one error each."""
    valid = recipe_keys(recipe_class)
    values = method_defaults(method)
    layers = [(f"--config {config_file}", read_config_file(config_file))] if config_file else []
    layers.append(("the command line", overrides or {}))
    types = {f.name: f.type for f in dataclasses.fields(recipe_class)}
    for where, layer in [("train/configs", dict(values)), *layers]:
        for key, value in layer.items():
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise InputError(
                    f"unknown setting {key!r} in {where} for --method {method}{hint}; "
                    f"valid settings: {', '.join(valid)}"
                )
            values[key] = parse_value(key, value, str(types[key]))
        for length, other in (("steps", "epochs"), ("epochs", "steps")):
            if layer.get(length) is not None and other not in layer:
                values[other] = None  # a run length given in one unit replaces the other
    missing = [k for k in valid if k not in values and not _has_default(recipe_class, k)]
    if missing:
        raise InputError(f"the recipe of {method} lacks {', '.join(missing)} (train/configs)")
    recipe = recipe_class(**values)
    check_recipe(recipe)
    return recipe


def _has_default(recipe_class: type, key: str) -> bool:
    spec = {f.name: f for f in dataclasses.fields(recipe_class)}[key]
    return (
        spec.default is not dataclasses.MISSING or spec.default_factory is not dataclasses.MISSING
    )


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_value(key: str, value: Any, kind: str) -> Any:
    """`value` (from a file, or text from the command line) as the key's type."""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise InputError(f"setting {key} cannot be empty ({base} expected)")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE + _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value else int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base == "list[float]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [float(v) for v in items]
        return str(value)
    except (TypeError, ValueError):
        raise InputError(f"setting {key}={value!r} is not a valid {base}") from None


def check_recipe(r: VitRecipe) -> None:
    """Values the recipe cannot run with, as one sentence each."""
    if (r.steps is None) == (r.epochs is None):
        raise InputError("give the run's length as steps or as epochs, not both or neither")
    for key in ("steps", "epochs", "batch_size", "accumulate", "crop_size", "depth", "lr"):
        value = getattr(r, key)
        if value is not None and value <= 0:
            raise InputError(f"{key} must be positive, got {value}")
    if r.crop_size % r.patch_size:
        raise InputError(f"crop_size {r.crop_size} is not a multiple of patch_size {r.patch_size}")
    if r.embed_dim % r.num_heads:
        raise InputError(f"embed_dim {r.embed_dim} is not a multiple of num_heads {r.num_heads}")
    if r.graph_loss not in GRAPH_LOSSES:
        raise InputError(
            f"graph_loss must be one of {', '.join(GRAPH_LOSSES)}, not {r.graph_loss!r}"
        )
    if not 0 < r.crop_scale_min <= r.crop_scale_max <= 1:
        raise InputError("crop scales must satisfy 0 < crop_scale_min <= crop_scale_max <= 1")
    for key in ("gain_prob", "background_prob", "contrast_prob", "warmup_fraction"):
        if not 0 <= getattr(r, key) <= 1:
            raise InputError(f"{key} must lie in [0, 1], got {getattr(r, key)}")
    if any(not 0 <= p <= 1 for p in r.blur_prob):
        raise InputError(f"blur_prob values must lie in [0, 1], got {r.blur_prob}")
    if r.cell_line_tokens < 0:
        raise InputError(f"cell_line_tokens must be 0 or more, got {r.cell_line_tokens}")
    channel_names(r.channels)


def channel_names(spec: str) -> tuple[list[str], dict[str, list[str]]]:
    """The model's channels: a named set (rxrx1, cell-painting) or comma-separated names."""
    if spec in CHANNEL_SETS:
        names, aliases = CHANNEL_SETS[spec]
        return list(names), {k: list(v) for k, v in aliases.items()}
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise InputError(
            f"channels {spec!r}: use {' or '.join(CHANNEL_SETS)} or comma-separated names"
        )
    return names, {}


# -- what to train on: the sites and their augmentations live in
# embedkit.images.training_data (shared with `embedkit finetune`) ------------------------


def cell_line_vectors(
    path: str, names: list[str], column: str
) -> tuple[dict[str, list[float]], np.ndarray]:
    """The whole table (it travels in the model's config) and one row per training line,
    matched without case; a line the table lacks is an error naming close names."""
    from embedkit.cell_lines import read_cell_line_table

    table = read_cell_line_table(path)
    if not table:
        raise InputError(f"--cell-line-embeddings {path}: the table is empty")
    lower = {k.lower(): k for k in table}
    rows = []
    for name in names:
        match = lower.get(name.lower())
        if match is None:
            close = difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.4)
            hint = (
                f"close names: {', '.join(lower[c] for c in close)}"
                if close
                else f"it has {', '.join(sorted(table)[:10])}{' …' if len(table) > 10 else ''}"
            )
            raise InputError(
                f"cell line {name!r} (metadata column {column}) is not in "
                f"--cell-line-embeddings {path}; {hint}"
            )
        rows.append(table[match])
    dims = {len(v) for v in table.values()}
    if len(dims) != 1:
        raise InputError(f"--cell-line-embeddings {path}: rows differ in length ({sorted(dims)})")
    return table, np.asarray(rows, dtype=np.float32)


# -- building blocks of the methods ------------------------------------------------------


def mlp(dim_in: int, hidden: int, dim_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear-BN-GELU-(Dropout)-Linear, the heads of the seed paper's methods."""
    layers: list[nn.Module] = [nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.GELU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, dim_out))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A momentum/target copy: same weights, no gradients (updated by `ema_update`)."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target ← momentum · target + (1 − momentum) · online, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)


def cosine_momentum(start: float, step: int, total: int) -> float:
    """start → 1 on a half cosine over the run (BYOL's τ, MoCo v3's m)."""
    progress = min(1.0, step / max(1, total))
    return 1 - (1 - start) * (math.cos(math.pi * progress) + 1) / 2


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order (no gradient; one process: x itself)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss reaches this rank's rows (any backend)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order, with gradients flowing back to their rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def rank_offset(rows: int) -> int:
    """Where this rank's rows start in a gathered batch."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() * rows
    return 0


def build_image_model(
    r: VitRecipe,
    channels: list[str],
    aliases: dict,
    cell_lines: dict[str, list[float]] | None,
    cell_line_dim: int,
) -> ImageModel:
    """The encoder that is trained and saved (an `embedkit-vit` model)."""
    tokens = r.cell_line_tokens if cell_lines else 0
    return ImageModel(
        ViTConfig(
            img_size=r.crop_size,
            patch_size=r.patch_size,
            in_chans=len(channels),
            embed_dim=r.embed_dim,
            depth=r.depth,
            num_heads=r.num_heads,
            drop_path_rate=r.drop_path_rate,
            cell_line_tokens=tokens,
            cell_line_dim=cell_line_dim if tokens else 0,
        ),
        channels,
        aliases,
        r.crop_size,
        {"kind": "instance"},
        cell_lines if tokens else None,
    )


@dataclass
class Output:
    """What a method's network returns from one forward."""

    loss: torch.Tensor  # the method's own loss (the graph loss is added by VitMethod)
    features: torch.Tensor  # (n, D) pooled encoder features for the graph loss
    labels: torch.Tensor  # (n,) their perturbation labels (index into the vocabulary)
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)


class VitNet(nn.Module):
    """Base of the methods' networks: `self.model` is the ImageModel that gets saved.

    `forward(views (B, V, C, S, S), cell_lines (B, d) or None, labels (B,), generator)`
    returns an `Output`; under DDP the loop calls it through the wrapper.
    """

    def __init__(self, model: ImageModel):
        super().__init__()
        self.model = model

    @property
    def encoder(self):
        return self.model.encoder

    def encode(self, images: torch.Tensor, cell_lines: torch.Tensor | None) -> torch.Tensor:
        return self.model.encoder(images, cell_lines)


def two_views(views: torch.Tensor, cell_lines, labels):
    """(B, 2, C, S, S) → the 2B images view 1 then view 2, and their lines and labels."""
    images = torch.cat([views[:, 0], views[:, 1]])
    lines = None if cell_lines is None else torch.cat([cell_lines, cell_lines])
    return images, lines, torch.cat([labels, labels])


# -- the method on the loop ---------------------------------------------------------------


class _EpochBatches:
    """The batch sampler of the one DataLoader: the current epoch's micro-batches of keys."""

    def __init__(self):
        self.chunks: list[list[tuple]] = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


def default_workers(world: int) -> int:
    """DataLoader processes per training process: the spare cores, at most 8."""
    cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world) - 1))


class VitMethod(Method):
    """One ViT pretraining method on the shared loop; subclasses set `name`, `recipe_class`,
    `views`, `needs_labels` and implement `make_net`."""

    recipe_class: ClassVar[type] = VitRecipe
    views: ClassVar[int] = 2
    needs_labels: ClassVar[bool] = False
    description: ClassVar[str] = ""
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    unit = "images"
    record_every = 1  # a metrics.jsonl record per step
    print_step_records = False  # the progress line shows them; epoch ends are printed

    def __init__(
        self,
        recipe: VitRecipe,
        rt: Runtime,
        sites: TrainingSites,
        spec: DataSpec,
        *,
        channels: tuple[list[str], dict],
        cell_lines: tuple[dict, np.ndarray] | None = None,
        graph_regularizer: nn.Module | None = None,
        graph_report: dict | None = None,
        command: str = "",
        log=print,
    ):
        super().__init__(recipe, rt)
        self.recipe, self.sites, self.spec = recipe, sites, spec
        self.channels, self.aliases = channels
        self.table, vectors = cell_lines if cell_lines else (None, None)
        self.line_vectors = None if vectors is None else torch.from_numpy(vectors)
        self.graph = graph_regularizer
        self.graph_report = graph_report or {}
        self.command, self.log = command, log
        self.grad_clip = recipe.grad_clip
        names = ["loss", f"{self.name}_loss", *self.extra_metrics]
        if self.graph is not None:
            names.append("graph_loss")
        self.metrics = tuple(names)
        per_step = rt.world * recipe.accumulate
        if recipe.batch_size % per_step:
            raise InputError(
                f"batch_size {recipe.batch_size} does not split into {rt.world} process(es) × "
                f"{recipe.accumulate} micro-batch(es); use a multiple of {per_step}"
            )
        self.micro = recipe.batch_size // per_step
        if self.micro < 2 and self.uses_batch_norm:
            raise InputError(
                f"{self.name} needs at least 2 sites per micro-batch (BatchNorm in its heads), "
                f"got batch_size {recipe.batch_size} / {rt.world} process(es) / accumulate "
                f"{recipe.accumulate} = {self.micro}"
            )
        self.dataset = SiteDataset(sites, recipe, self.views)
        self.sampler = DistributedSampler(
            self.dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=recipe.seed
        )
        self.workers = default_workers(rt.world) if recipe.workers is None else recipe.workers
        self.epoch_batches = _EpochBatches()
        self.loader: DataLoader | None = None
        self.model: ImageModel | None = None

    uses_batch_norm: ClassVar[bool] = True

    # -- sizes
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sampler) / (self.micro * self.recipe.accumulate))

    @property
    def total_steps(self) -> int:
        r = self.recipe
        return r.steps if r.steps is not None else r.epochs * self.steps_per_epoch

    def settings(self) -> dict:
        return {**self.recipe.to_dict(), **self.spec.settings()}

    # -- model
    @property
    def cell_line_dim(self) -> int:
        return 0 if self.line_vectors is None else int(self.line_vectors.shape[1])

    def build(self) -> nn.Module:
        self.model = build_image_model(
            self.recipe, self.channels, self.aliases, self.table, self.cell_line_dim
        )
        return self.make_net(self.model).to(self.rt.device)

    def make_net(self, model: ImageModel) -> VitNet:
        raise NotImplementedError

    def optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases, norms, the CLS token and position tables."""
        decay, plain = [], []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            flat = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "pos", "mask_token"))
            (plain if flat else decay).append(p)
        r = self.recipe
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": r.weight_decay},
                {"params": plain, "weight_decay": 0.0},
            ],
            lr=r.lr,
            betas=(r.beta1, r.beta2),
        )

    def lr_at(self, step: int) -> float:
        r, total = self.recipe, self.total_steps
        return warmup_cosine(step, total, r.lr, int(r.warmup_fraction * total), floor=r.min_lr)

    # -- data
    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        per_step = self.micro * self.recipe.accumulate
        need = self.steps_per_epoch * per_step
        order = (order * math.ceil(need / len(order)))[:need]  # the last batch wraps round
        keys = [(epoch, self.rt.rank, pos, index) for pos, index in enumerate(order)]
        chunks = [keys[i : i + self.micro] for i in range(start * per_step, need, self.micro)]
        self.epoch_batches.chunks = chunks
        if self.loader is None:  # one loader: its workers persist from epoch to epoch
            self.loader = DataLoader(
                self.dataset,
                batch_sampler=self.epoch_batches,
                num_workers=self.workers,
                persistent_workers=self.workers > 0,
                pin_memory=self.rt.device.type == "cuda",
            )
        parts = iter(self.loader)
        for _ in range(len(chunks) // self.recipe.accumulate):
            if self.recipe.accumulate == 1:
                yield next(parts)
            else:
                yield MicroBatches([next(parts) for _ in range(self.recipe.accumulate)])

    def batch_items(self, batch) -> int:
        return int(batch[1].shape[0])

    # -- a step
    def train_step(self, net: nn.Module, batch, step: Step) -> dict:
        views, labels, lines = batch
        device = self.rt.device
        views = views.to(device, non_blocking=True)
        labels = labels.to(device)
        vectors = None
        if self.line_vectors is not None:
            vectors = self.line_vectors[lines].to(device)
        out: Output = net(views, vectors, labels, step.generator)
        losses = {"loss": out.loss, f"{self.name}_loss": out.loss.detach(), **out.metrics}
        if self.graph is not None:
            graph_loss = self.graph(out.features.float(), out.labels)
            losses["graph_loss"] = graph_loss.detach()
            losses["loss"] = out.loss + graph_loss
        return losses

    # -- the result
    def save(self, module: nn.Module, run: Run) -> None:
        from train.image_card import write_image_card

        model = self.model
        model.extra = {
            "recipe": {"method": self.name, **self.recipe.to_dict()},
            "data": list(self.spec.data),
            "training": {
                "metadata": self.spec.metadata,
                "label_column": self.spec.label_column,
                "labels": len(self.sites.label_vocab),
                "sites": self.sites.report,
                "processes": self.rt.world,
                "steps": run.step,
                "steps_planned": run.total_steps,
                "cell_lines": self.sites.line_vocab if self.table else [],
                "cell_line_embeddings": self.spec.cell_line_embeddings if self.table else None,
                "graph": self.spec.graph,
                "graph_coverage": self.graph_report,
            },
        }
        simulated = simulated_sources(self.spec)
        if simulated:
            model.extra["simulated"] = (
                "trained on SIMULATED plates from embedkit's synthetic screen generator "
                f"({', '.join(simulated)}), not on real microscopy"
            )
        folder = model.save_pretrained(run.out / MODEL_DIR)
        write_image_card(folder, run, self.command, self.description)
        self.log(f"wrote {folder}")


def simulated_sources(spec: DataSpec) -> list[str]:
    """The inputs written by `embedkit datasets synth-plate` (their SIMULATED README.txt)."""
    from embedkit.datasets.synthetic.writing import simulated_root

    candidates = [Path(s.partition(":")[0]) for s in spec.data]
    if spec.metadata:
        candidates.append(Path(spec.metadata).parent)
    roots = [simulated_root(path) for path in candidates]
    return list(dict.fromkeys(str(root) for root in roots if root is not None))
