"""The `Embedder` protocol: what every loaded model kind offers, and what `precision` means.

`precision` has one meaning for every kind: the dtype the encoder's arithmetic runs in.
`"fp32"` is exact; `"bf16"` computes in bfloat16 by the kind's fastest faithful path
(autocast for the ViT, a BN-folded bf16 inference copy for the GIN). Either way the loaded
model (`embedder.model`, decoders and heads included) stays in fp32, and embeddings come
back as float32 numpy arrays.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from embedkit.device import SlowPrecisionWarning, bf16_is_native, resolve_device
from embedkit.errors import InputError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass
class EmbedResult:
    """One row per input, in input order; NaN rows where `valid` is False."""

    embeddings: np.ndarray  # (n, d) float32
    valid: np.ndarray  # (n,) bool
    errors: list[str]  # "" where valid


NON_FINITE = (
    "the model gave non-finite values (NaN or inf); its weights or this input may be corrupt"
)


def mark_non_finite(result: EmbedResult) -> EmbedResult:
    """A row with any NaN or inf is invalid, with a reason, never `valid` (a NaN in the
    weights gives all-NaN vectors): its vector becomes all NaN like any invalid row's."""
    bad = result.valid & ~np.isfinite(result.embeddings).all(axis=1)
    if bad.any():
        result.valid = result.valid & ~bad
        result.embeddings[bad] = np.nan
        for i in np.flatnonzero(bad):
            result.errors[i] = NON_FINITE
    return result


@runtime_checkable
class Embedder(Protocol):
    model: Any
    run_info: dict
    device: torch.device
    precision: str

    @property
    def embedding_dim(self) -> int: ...

    def embed(self, inputs: Any, batch_size: int = ..., progress: bool = ...) -> EmbedResult: ...


class BaseEmbedder:
    """Device, precision and run info handling shared by every kind's embedder."""

    def __init__(
        self, model, run_info: dict | None = None, device: str = "auto", precision: str = "fp32"
    ):
        self.precision = check_precision(precision)
        self.device = resolve_device(device)
        if self.precision == "bf16" and not bf16_is_native(self.device):
            warnings.warn(
                SlowPrecisionWarning(
                    "bf16 on a CPU without AMX: slower than fp32 in embedkit's measurements; "
                    "fp32, the default, is also exact"
                ),
                stacklevel=3,
            )
        self.model = model.eval().to(self.device)
        self.run_info = dict(run_info or {})

    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim

    def autocast(self):
        """bf16 autocast on the embedder's device when asked for, else nothing."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
