"""Sites → crops → normalized tensors, the way the encoder saw them in training.

Crops are non-overlapping `crop_size` tiles by default (every pixel used once, edges that
do not fill a tile are left out), or the center crop, `n` random crops, or the full field
resized. Normalization is per crop and per channel (instance normalization, as OpenPhenom
and the seed paper do) or with the card's per-channel mean/std. A constant channel
normalizes to zeros, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from embedkit.errors import InputError

CROP_MODES = ("tiles", "center", "random", "full")
EPS = 1e-6


def crop_positions(
    height: int,
    width: int,
    size: int,
    mode: str = "tiles",
    n_random: int = 4,
    rng: np.random.Generator | None = None,
) -> list[tuple[int, int]]:
    """Top-left corners of the crops to take from a (height, width) field."""
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    if mode == "full":
        return [(0, 0)]
    if height < size or width < size:
        raise InputError(f"field {height}x{width} is smaller than the {size}px crop")
    if mode == "center":
        return [((height - size) // 2, (width - size) // 2)]
    if mode == "random":
        rng = rng or np.random.default_rng(0)
        return [
            (int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1)))
            for _ in range(n_random)
        ]
    ys = range(0, height - size + 1, size)
    xs = range(0, width - size + 1, size)
    return [(y, x) for y in ys for x in xs]


def crop_site(
    site: np.ndarray,
    size: int,
    mode: str = "tiles",
    n_random: int = 4,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """(C, H, W) float → (N, C, size, size) crops and their positions."""
    tensor = torch.from_numpy(np.ascontiguousarray(site, dtype=np.float32))
    if mode == "full":
        resized = F.interpolate(tensor[None], size=(size, size), mode="area")
        return resized, [(0, 0)]
    positions = crop_positions(tensor.shape[1], tensor.shape[2], size, mode, n_random, rng)
    crops = torch.stack([tensor[:, y : y + size, x : x + size] for y, x in positions])
    return crops, positions


def instance_normalize(crops: torch.Tensor) -> torch.Tensor:
    """Per crop, per channel: zero mean, unit variance; constant channels → 0."""
    mean = crops.mean(dim=(-2, -1), keepdim=True)
    std = crops.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return torch.where(std > EPS, (crops - mean) / std.clamp_min(EPS), torch.zeros_like(crops))


def fixed_normalize(
    crops: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """With the card's per-channel statistics (same scale as the [0, 1] reader output)."""
    m = torch.tensor(mean, dtype=crops.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=crops.dtype).view(1, -1, 1, 1).clamp_min(EPS)
    return (crops - m) / s


def normalize(crops: torch.Tensor, spec: dict) -> torch.Tensor:
    """Apply the card's normalization spec: {"kind": "instance"} or {"kind": "fixed", ...}."""
    if spec.get("kind", "instance") == "instance":
        return instance_normalize(crops)
    return fixed_normalize(crops, spec["mean"], spec["std"])
