"""The one training loop every pretraining method runs on: steps, checkpoints, resume, metrics.

A method is one module holding a config dataclass (a `LoopConfig` subclass) and a `Method`
subclass that builds the model, yields batches, runs one training step on a batch
(returning a dict of losses) and says what to save at the end. `run(method, out)` does
the rest, the same way for every method:

* **Steps.** Each step re-seeds torch and hands the method a CPU generator, both from
  (seed, epoch, step in epoch, rank), so a resumed run retraces an uninterrupted one. The
  step runs under bf16 autocast when `config.bf16`, then backward, optional gradient
  clipping, the optimizer step at the learning rate `Method.lr_at` gives, `after_step`.
  A batch that is a `MicroBatches` is one step of gradient accumulation: each part runs
  forward and backward (its loss divided by the number of parts; under DDP gradients are
  synchronised on the last part only), then one optimizer step; the step's metrics are
  the parts' means.
* **Checkpoints** (`checkpoint.pt`: model, optimizer, step, the metric sums since the last
  record, the settings): every `checkpoint_every` steps, at every epoch end and where the
  run stops; written by rank 0 through `embedkit.io.atomic_path`.
* **Resume** is refused, in one sentence naming each differing setting and both values,
  when the checkpoint was made with another trajectory-changing setting (every config
  field except `LoopConfig.RESUMABLE`, plus the method and the number of processes).
* **`metrics.jsonl`**: a record every `Method.record_every` steps, at every epoch end and
  at the end of the run. A record is written before the checkpoint that covers it, and a
  resumed run first drops the records after its checkpoint's step, so the log never holds
  a step twice and never loses one. When TensorBoard is installed, rank 0 also writes each
  record's numbers to `OUT/tensorboard/` (a resumed run purges the events after its step).
* **Progress**: a tqdm bar on a terminal, else a line every `log_every` steps, with
  items/s. Only rank 0 writes files or prints.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import click
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from embedkit.io import atomic_path
from train.distributed import Runtime, check_replicas

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
FORMAT = "embedkit-train-checkpoint/1"


@dataclass
class LoopConfig:
    """The settings the loop reads; every method's config dataclass extends this one."""

    seed: int = 0
    bf16: bool = False
    checkpoint_every: int = 100  # steps; also at every epoch end and where the run stops
    max_steps: int | None = None  # stop at this step (a time box); the schedule plans the run

    # Settings a resumed run may change because they do not alter the trajectory.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("checkpoint_every", "max_steps")

    def to_dict(self) -> dict:
        return asdict(self)


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of one step on one rank (methods may derive data seeds from it too)."""
    return (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**62)


def warmup_cosine(step: int, total: int, peak: float, warmup: int, floor: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps to `peak`, then cosine decay to `floor` at `total`."""
    warmup = max(1, warmup)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def autocast(rt: Runtime, enabled: bool):
    """bf16 autocast on the run's device (a no-op context when not enabled)."""
    return torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=enabled)


@dataclass
class MicroBatches:
    """One optimizer step's batch as micro-batches (gradient accumulation): `batches` may
    yield one; the loop runs `train_step` on each part, then steps the optimizer once."""

    parts: list = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """Where a training step is; handed to `Method.train_step` and `Method.after_step`."""

    index: int  # global step, from 0
    epoch: int
    in_epoch: int  # step within the epoch (= index for step-based methods)
    generator: torch.Generator  # CPU, seeded from (seed, epoch, in_epoch, rank) + 1


@dataclass
class Run:
    """A run as the loop leaves it: what `Method.save` and the caller get."""

    out: Path
    step: int
    total_steps: int
    resumed_from: int | None
    seconds: float  # this session

    @property
    def complete(self) -> bool:
        return self.step >= self.total_steps


class Method(ABC):
    """One pretraining method on the loop: subclass it, set the class attributes, fill in
    the abstract hooks. `self.config` (a `LoopConfig` subclass) and `self.rt` are set here.
    """

    name: ClassVar[str]  # recorded in the checkpoint; resuming another method is refused
    unit: ClassVar[str] = "items"  # what a batch holds: "<unit>/s", "<unit>_per_second"
    metric_prefix: ClassVar[str] = ""  # record keys are prefix + metric name ("train_loss")
    record_every: ClassVar[int] = 0  # steps between metrics records (0: epoch ends, the end)
    print_step_records: ClassVar[bool] = True  # echo every record (else epoch ends only)
    grad_clip: ClassVar[float | None] = None  # max gradient norm, None for no clipping

    def __init__(self, config: LoopConfig, rt: Runtime):
        self.config = config
        self.rt = rt
        # The names train_step may return, in one order on every rank (DDP sums them).
        self.metrics: tuple[str, ...] = ("loss",)

    @property
    @abstractmethod
    def total_steps(self) -> int:
        """Steps the whole run plans (what the schedule spans)."""

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per epoch of this rank's data; None for a step-based method."""
        return None

    @abstractmethod
    def build(self) -> nn.Module:
        """The module to train, on `rt.device` (called after seeding with `config.seed`).
        Its state is what the checkpoint holds; under DDP the loop wraps it."""

    @abstractmethod
    def optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """The optimizer; a param group's optional "lr_scale" multiplies `lr_at`."""

    @abstractmethod
    def lr_at(self, step: int) -> float:
        """The learning rate of global step `step` (0-based)."""

    @abstractmethod
    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        """This rank's batches of `epoch`, from its `start`-th on (step-based: endless)."""

    @abstractmethod
    def train_step(self, net: nn.Module, batch: Any, step: Step) -> dict[str, torch.Tensor]:
        """One step's losses; "loss" is minimised. `net` is the module, DDP-wrapped under
        torchrun (call it, not the module, so gradients are synchronised)."""

    @abstractmethod
    def save(self, module: nn.Module, run: Run) -> None:
        """What to keep when the run ends or stops (rank 0 only): e.g. a model folder."""

    def settings(self) -> dict:
        """What a resume must match (but `RESUMABLE` keys); add data paths and the like."""
        return self.config.to_dict()

    def batch_items(self, batch: Any) -> int:
        """How many `unit`s a batch holds (for items/s)."""
        return len(batch)

    def after_step(self, module: nn.Module, step: Step) -> None:
        """After the optimizer step (max-norm renormalization, EMA targets …)."""
        return None

    def evaluate(self, module: nn.Module) -> dict[str, float]:
        """Held-out metrics for the record of each epoch end (every rank calls it)."""
        return {}


class ResumeRefused(click.UsageError):
    """The checkpoint was made with other trajectory-changing settings."""


def run(
    method: Method,
    out: Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    log_every: int = 0,
) -> Run:
    """Train `method` in `out` (checkpoint.pt, metrics.jsonl and what `save` writes)."""
    return _Loop(method, Path(out), log if method.rt.main else _silent, log_every).run(resume)


def read_metrics(out: Path) -> list[dict]:
    """The records of `out/metrics.jsonl`, in order (empty when there is none)."""
    path = Path(out) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in _whole_records(path)]


def _whole_records(path: Path) -> list[str]:
    """The lines of a metrics file, less a last line cut short by a crash mid-write."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return lines


def config_options(config_class: type, helps: dict[str, str]):
    """Click options for every field of a config dataclass (`--field-name`, defaults shown,
    `--x/--no-x` for booleans); `helps` must hold one help line per field."""

    def decorate(func):
        defaults = config_class()
        for f in reversed(fields(config_class)):
            name = "--" + f.name.replace("_", "-")
            default, kind = getattr(defaults, f.name), str(f.type)
            if kind == "bool":
                names, kwargs = [f"{name}/--no-{name[2:]}"], {}
            else:
                types = {"int": int, "float": float, "str": str}
                names, kwargs = [name], {"type": types[kind.removesuffix(" | None")]}
            func = click.option(
                *names, default=default, show_default=True, help=helps[f.name], **kwargs
            )(func)
        return func

    return decorate


def _silent(_message: str) -> None:
    pass


class _Window:
    """Sums since the last metrics record: per metric Σ value and count, items, seconds."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.reset()

    def reset(self) -> None:
        n = len(self.names)
        self.sums, self.counts, self.items, self.seconds = [0.0] * n, [0.0] * n, 0.0, 0.0

    def add(self, values: dict[str, float], items: int, seconds: float) -> None:
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise ValueError(
                f"train_step returned {', '.join(unknown)}, which the method does not list "
                f"in its metrics {list(self.names)}"
            )
        for i, name in enumerate(self.names):
            if name in values:
                self.sums[i] += values[name]
                self.counts[i] += 1.0
        self.items += items
        self.seconds += seconds

    def vector(self) -> list[float]:
        return [*self.sums, *self.counts, self.items]

    def load(self, vector: list[float], seconds: float) -> None:
        n = len(self.names)
        self.sums, self.counts = list(vector[:n]), list(vector[n : 2 * n])
        self.items, self.seconds = vector[2 * n], seconds

    def totals(self, rt: Runtime) -> tuple[dict[str, float], float]:
        """The means over every rank and the items of all ranks (a collective)."""
        total = rt.all_sum(self.vector())
        n = len(self.names)
        means = {name: total[i] / total[n + i] for i, name in enumerate(self.names) if total[n + i]}
        return means, total[2 * n]


class _Progress:
    """A tqdm bar on a terminal, else a line every `every` steps (none when 0); rank 0."""

    def __init__(self, method: Method, start: int, stop: int, log, every: int):
        self.unit, self.world = method.unit, method.rt.world
        self.log, self.every, self.stop = log, every, stop
        self.items, self.since = 0, time.perf_counter()
        self.bar = None
        if method.rt.main and every and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=stop, initial=start, unit="step", file=sys.stderr)

    def update(self, step: int, loss: float, items: int) -> None:
        self.items += items * self.world  # every rank's batch holds as many
        if not self.every or (step % self.every and step != self.stop):
            if self.bar is not None:
                self.bar.update(1)
            return
        now = time.perf_counter()
        text = f"loss {loss:.4f} {self.items / max(now - self.since, 1e-9):.1f} {self.unit}/s"
        self.items, self.since = 0, now
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            self.log(f"  step {step}/{self.stop} {text}")

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            self.log(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Loop:
    def __init__(self, method: Method, out: Path, log, log_every: int):
        self.method, self.out, self.log, self.log_every = method, out, log, log_every
        self.rt, self.cfg = method.rt, method.config
        self.checkpoint, self.metrics_path = out / CHECKPOINT, out / METRICS
        self.window = _Window(tuple(method.metrics))
        self.step = 0
        self.tensorboard = None

    # -- files (rank 0)
    def _settings(self) -> dict:
        settings = {"method": self.method.name, "processes": self.rt.world}
        return json.loads(json.dumps({**settings, **self.method.settings()}))

    def _save(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        window = self.rt.all_sum(self.window.vector())  # rank 0 keeps every rank's sums
        if not self.rt.main:
            return
        spe = self.method.steps_per_epoch
        epoch, in_epoch = divmod(self.step, spe) if spe else (0, self.step)
        state = {
            "format": FORMAT,
            "settings": json.dumps(self._settings()),
            "step": self.step,
            "epoch": epoch,
            "step_in_epoch": in_epoch,
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "window": window,
            "window_seconds": self.window.seconds,
        }
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def _load(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        try:
            state = torch.load(self.checkpoint, map_location=self.rt.device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ResumeRefused(
                f"cannot resume from {self.checkpoint}: it is not a checkpoint this loop can "
                f"read safely ({first[:120]}); train into a new --out"
            ) from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ResumeRefused(
                f"cannot resume from {self.checkpoint}: it is not a checkpoint of this "
                "training loop (an older embedkit wrote it?); train into a new --out"
            )
        _refuse_changes(self.checkpoint, json.loads(state["settings"]), self._settings(), self.cfg)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        window = [float(v) for v in state["window"]]
        if self.rt.main:
            self.window.load(window, float(state["window_seconds"]))
        else:  # rank 0 carries the sums of every rank
            self.window.load([0.0] * len(window), 0.0)
        if self.rt.main:
            self._trim_metrics()

    def _trim_metrics(self) -> None:
        """Drop the records after the checkpoint's step: the resumed run writes them again."""
        if not self.metrics_path.exists():
            return
        raw = self.metrics_path.read_text()
        lines = _whole_records(self.metrics_path)
        kept = [ln for ln in lines if json.loads(ln)["step"] <= self.step]
        if "".join(ln + "\n" for ln in kept) != raw:
            with atomic_path(self.metrics_path) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in kept))

    def _append(self, record: dict) -> None:
        if not self.rt.main:
            return
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the checkpoint that covers it
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def _open_tensorboard(self) -> None:
        """A SummaryWriter in OUT/tensorboard when TensorBoard is installed (rank 0)."""
        if not self.rt.main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: metrics.jsonl is the record
            return
        self.tensorboard = SummaryWriter(str(self.out / TENSORBOARD), purge_step=self.step)

    def _record(self, module: nn.Module, lr: float, epoch: int | None) -> dict:
        means, items = self.window.totals(self.rt)
        seconds = self.window.seconds
        record: dict = {} if epoch is None else {"epoch": epoch}
        record |= {"step": self.step, "lr": lr}
        record |= {self.method.metric_prefix + k: v for k, v in means.items()}
        if epoch is not None:
            record |= self.method.evaluate(module)
        record["epoch_seconds" if epoch is not None else "seconds"] = round(seconds, 2)
        record[f"{self.method.unit}_per_second"] = round(items / max(seconds, 1e-9), 1)
        self.window.reset()
        self._append(record)
        return record

    # -- the loop
    def run(self, resume: bool) -> Run:
        method, rt, cfg = self.method, self.rt, self.cfg
        if cfg.checkpoint_every < 1:
            raise click.UsageError(
                f"--checkpoint-every must be at least 1, got {cfg.checkpoint_every}"
            )
        if rt.main:
            self.out.mkdir(parents=True, exist_ok=True)
        rt.barrier()
        torch.manual_seed(cfg.seed)
        module = method.build()
        net = DistributedDataParallel(module) if rt.world > 1 else module
        optimizer = method.optimizer(module)
        total, spe = method.total_steps, method.steps_per_epoch
        resumed_from = None
        if resume and self.checkpoint.exists():
            self._load(module, optimizer)
            resumed_from = self.step
            self.log(f"resumed at step {self.step} of {total} from {self.checkpoint}")
        elif rt.main:  # a fresh run: nothing of an earlier one may be resumed or kept
            self.checkpoint.unlink(missing_ok=True)
            self.metrics_path.unlink(missing_ok=True)
        rt.barrier()
        self._open_tensorboard()
        stop = min(total, cfg.max_steps) if cfg.max_steps is not None else total
        progress = _Progress(method, self.step, stop, self.log, self.log_every)
        tick, batches = time.perf_counter(), None
        while self.step < stop:
            started = time.perf_counter()
            epoch, in_epoch = divmod(self.step, spe) if spe else (0, self.step)
            if batches is None or (spe and in_epoch == 0):
                batches = iter(method.batches(epoch, in_epoch))
            batch = next(batches)
            seed = step_seed(cfg.seed, epoch, in_epoch, rt.rank)
            torch.manual_seed(seed)  # dropout and anything else on the global generators
            step = Step(self.step, epoch, in_epoch, torch.Generator().manual_seed(seed + 1))
            lr = method.lr_at(self.step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            net.train()
            parts = batch.parts if isinstance(batch, MicroBatches) else [batch]
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                sync = net.no_sync() if rt.world > 1 and not last else nullcontext()
                with sync:
                    with autocast(rt, cfg.bf16):
                        losses = method.train_step(net, part, step)
                    (losses["loss"] / len(parts) if len(parts) > 1 else losses["loss"]).backward()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            if method.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), method.grad_clip)
            optimizer.step()
            method.after_step(module, step)
            self.step += 1
            values = {k: v / len(parts) for k, v in sums.items()}
            items = sum(method.batch_items(part) for part in parts)
            self.window.add(values, items, time.perf_counter() - started)
            progress.update(self.step, values["loss"], items)

            epoch_end = bool(spe) and self.step % spe == 0
            if epoch_end:
                progress.write(_format(self._record(module, lr, self.step // spe), method))
            elif (method.record_every and self.step % method.record_every == 0) or (
                self.step == total
            ):
                record = self._record(module, lr, None)
                if method.print_step_records or self.step == total:
                    progress.write(_format(record, method))
            if self.step % cfg.checkpoint_every == 0 or epoch_end or self.step == stop:
                self._save(module, optimizer)
        progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        check_replicas(module, rt)
        result = Run(self.out, self.step, total, resumed_from, time.perf_counter() - tick)
        if rt.main:
            if result.complete:
                self.log(f"done: {self.step} steps")
            else:
                self.log(f"stopped at step {self.step} of {total} (--max-steps); --resume goes on")
            method.save(module, result)
        rt.barrier()
        return result


def _refuse_changes(path: Path, saved: dict, current: dict, cfg: LoopConfig) -> None:
    free = set(type(cfg).RESUMABLE)
    keys = [k for k in dict.fromkeys([*saved, *current]) if k not in free]
    changed = [k for k in keys if saved.get(k, _ABSENT) != current.get(k, _ABSENT)]
    if changed:
        was = " and ".join(f"{k}={_show(saved, k)}" for k in changed)
        now = " and ".join(f"{k}={_show(current, k)}" for k in changed)
        raise ResumeRefused(
            f"cannot resume from {path}: it was made with {was}, this run asks for {now}; "
            "rerun with the checkpoint's settings or train into a new --out"
        )


_ABSENT = object()


def _show(settings: dict, key: str) -> str:
    return json.dumps(settings[key]) if key in settings else "(not set)"


def _format(record: dict, method: Method) -> str:
    where = f"epoch {record['epoch']} " if "epoch" in record else ""
    skip = {"epoch", "step", "lr", "seconds", "epoch_seconds", f"{method.unit}_per_second"}
    values = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k not in skip)
    rate = record[f"{method.unit}_per_second"]
    return f"{where}step {record['step']}: {values} ({rate:.0f} {method.unit}/s)"
