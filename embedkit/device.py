"""`--device auto|cpu|cuda` → a torch device, for every embedder (molecules, images)."""

from __future__ import annotations

import torch

from embedkit.errors import InputError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available")
    return torch.device(device)


class SlowPrecisionWarning(UserWarning):
    """`precision="bf16"` on hardware where bf16 arithmetic is not faster than fp32."""


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 matmuls have their own hardware here: a GPU, or a CPU with AMX tiles.

    AVX-512 CPUs without AMX run oneDNN's bf16 matmuls through AVX-512 BF16 dot products,
    which measured slower than fp32 on such a CPU (84–95 vs 120–127 GFLOP/s for a
    300 × 600 matmul; docs/molecules.md section 4). Unknown hardware counts as native.
    """
    if device.type != "cpu":
        return True
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx()) if callable(is_amx) else True
