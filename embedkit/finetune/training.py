"""One fine-tuning run: a classifier (encoder + linear head), one split, one seed.

The reference protocol (the seed paper's evaluation code, reimplemented from its
description): cross-entropy on the training shots, AdamW (lr 1e-3, weight decay 0.05,
betas 0.9/0.95), a one-cycle schedule (10 % warm-up, cosine, start lr/25, end lr/25,000)
over the maximum number of epochs, batches of 72, at most 100 epochs, and early stopping
on validation top-1 accuracy (patience 10 epochs); the weights of the best validation
epoch are the run's result and are tested once. With a graph regularizer its loss is
added to the cross-entropy on the pooled features of each batch. Linear probing freezes
the encoder (kept in eval mode) and trains the head alone.

A `task` hides the data: `labels` (class index per row), `batches(rows, epoch, seed,
batch_size)` yields (inputs, labels) of augmented training rows, `features(model, inputs,
device)` gives their pooled encoder features, and `embed(model, rows, device, precision)`
the evaluation features of rows (N, D), without augmentation. The image and profile tasks
live in `embedkit.finetune.data`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TOP_K = (1, 5, 10)


@dataclass
class TrainSettings:
    """The optimization of one run (defaults: the reference fine-tuning recipe)."""

    epochs: int = 100
    patience: int = 10
    batch_size: int = 72
    lr: float = 1e-3
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    pct_start: float = 0.1
    div_factor: float = 25.0
    final_div_factor: float = 1000.0
    linear_probe: bool = False
    precision: str = "fp32"


@dataclass
class RunResult:
    """What one (condition, seed) run gives: test accuracies, selection and timings."""

    top: dict[int, float]  # k → test top-k accuracy (fraction)
    val_top1: float | None
    best_epoch: int
    epochs: int
    seconds: float
    start_sha256: str  # of the encoder's weights when training began
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val_top1, lr
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None


def weights_sha256(module: nn.Module) -> str:
    """A fingerprint of a module's tensors (names, dtypes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        value = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str(value.dtype).encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=TOP_K) -> dict[int, float]:
    """Fraction of rows whose label is among the k highest logits (k capped at the number
    of classes, where top-k is then 1)."""
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    order = logits.float().topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = order == labels[:, None]
    return {k: int(hits[:, :k].any(dim=1).sum()) / len(labels) for k in ks}


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model, task, rows: np.ndarray, device, precision: str) -> tuple[torch.Tensor, ...]:
    """(logits (N, C), labels (N,)) of `rows`, without augmentation."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            features = task.embed(model, rows, device, precision)
            logits = model.classify(features.float().to(device)).float().cpu()
    finally:
        model.train(was_training)
    return logits, torch.as_tensor(task.labels[rows], dtype=torch.long)


def fit(
    model: nn.Module,
    task,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: TrainSettings,
    seed: int,
    device: torch.device,
    graph: nn.Module | None = None,
    bar=None,
) -> tuple[RunResult, dict[str, torch.Tensor]]:
    """Train `model` (its head and, unless linear probing, its encoder) on `train_rows`,
    select the epoch by validation top-1, test it; returns the result and the selected
    weights (the model is left holding them)."""
    tick = time.perf_counter()
    torch.manual_seed(seed)
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start_sha = weights_sha256(model.encoder)
    if settings.linear_probe:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        betas=(settings.beta1, settings.beta2),
    )
    steps_per_epoch = max(1, math.ceil(len(train_rows) / settings.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.lr,
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=settings.pct_start,
        anneal_strategy="cos",
        div_factor=settings.div_factor,
        final_div_factor=settings.final_div_factor,
        cycle_momentum=False,
    )
    graph = graph.to(device) if graph is not None else None
    best = {"val": -1.0, "epoch": 0, "state": None}
    history: list[dict] = []
    since = 0
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        if settings.linear_probe:
            model.encoder.eval()
        losses = []
        for inputs, labels in task.batches(train_rows, epoch, seed, settings.batch_size):
            labels = labels.to(device)
            with autocast(device, settings.precision):
                if settings.linear_probe:
                    with torch.no_grad():
                        features = task.features(model, inputs, device)
                    logits = model.classify(features.float())
                else:
                    features = task.features(model, inputs, device)
                    logits = model.classify(features)
            loss = F.cross_entropy(logits.float(), labels)
            if graph is not None:
                loss = loss + graph(features.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
        if len(val_rows):
            logits, labels = evaluate(model, task, val_rows, device, settings.precision)
            record["val_top1"] = topk_accuracy(logits, labels, (1,))[1]
        history.append(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record.get('val_top1', 0):.3f}")
        score = record.get("val_top1", 0.0)
        if not len(val_rows) or score > best["val"]:
            best = {"val": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            since = 0
        else:
            since += 1
            if since >= settings.patience:
                break
    model.load_state_dict(best["state"])
    logits, labels = evaluate(model, task, test_rows, device, settings.precision)
    top = topk_accuracy(logits, labels)
    for p in model.parameters():
        p.requires_grad_(True)
    result = RunResult(
        top=top,
        val_top1=best["val"] if len(val_rows) else None,
        best_epoch=best["epoch"],
        epochs=epoch,
        seconds=time.perf_counter() - tick,
        start_sha256=start_sha,
        history=history,
        peak_rss_mb=peak_rss_mb(),
        peak_gpu_mb=(
            torch.cuda.max_memory_allocated(device) / (1 << 20) if device.type == "cuda" else None
        ),
    )
    return result, best["state"]
