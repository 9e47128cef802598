"""`--device auto|cpu|cuda` → a torch device, for every embedder (molecules, images)."""

from __future__ import annotations

import platform

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

    On an x86 CPU without AMX (or with AMX hidden by the hypervisor), bf16 runs through
    AVX-512 BF16 dot products and measured slower than fp32 for both model kinds: the GIN
    0.88× (docs/molecules.md section 4), the ViT 0.59× (50.6 vs 85.8 sites/s;
    docs/images.md). Other hardware counts as native.
    """
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return True  # GPUs; ARM CPUs have their own bf16 instructions, not measured here
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx()) if callable(is_amx) else True
