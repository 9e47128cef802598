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
