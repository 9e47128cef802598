"""A loaded image model: normalised crops in, embeddings out (bf16 autocast on request)."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from embedkit.device import resolve_device
from embedkit.images.model import ImageModel

PRECISIONS = ("fp32", "bf16")


class ImageEmbedder:
    """`embed_crops(crops, cell_line) -> (N, 384)` float32; the model stays in fp32."""

    def __init__(
        self,
        model: ImageModel,
        run_info: dict | None = None,
        device: str = "auto",
        precision: str = "fp32",
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = resolve_device(device)
        self.precision = precision
        self.model = model.eval().to(self.device)
        self.run_info = dict(run_info or {})

    def for_channels(self, kept: list[int]) -> ImageEmbedder:
        """An embedder whose encoder reads only the `kept` input channels.

        A copy: the loaded model is never changed, so one embedder serves any number of
        plates with different channel plans.
        """
        if kept == list(range(self.model.encoder.config.in_chans)):
            return self
        model = copy.deepcopy(self.model)
        model.encoder.keep_channels(kept)
        model.channels = [model.channels[i] for i in kept]
        return ImageEmbedder(model, self.run_info, str(self.device), self.precision)

    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def embed_crops(
        self, crops: torch.Tensor, cell_line: torch.Tensor | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """Normalised (N, C, s, s) crops → (N, D); `cell_line` is one (d,) vector or (N, d)."""
        out = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size].to(self.device, non_blocking=True)
            line = None
            if cell_line is not None:
                line = cell_line.to(self.device)
                line = (
                    line.expand(len(chunk), -1) if line.dim() == 1 else line[start:][: len(chunk)]
                )
            with self._autocast():
                out.append(self.model.encoder(chunk, line).float().cpu())
        if not out:
            return np.zeros((0, self.embedding_dim), np.float32)
        return torch.cat(out).numpy()
