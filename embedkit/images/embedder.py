"""A loaded image model: normalized crops in, embeddings out (bf16 autocast on request)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from embedkit.embedder import BaseEmbedder, EmbedResult, mark_non_finite


class ImageEmbedder(BaseEmbedder):
    """`embed_crops(crops, cell_line) -> (N, D)` float32; the model stays in fp32."""

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

    @torch.inference_mode()
    def embed_crops(
        self, crops: torch.Tensor, cell_line: torch.Tensor | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """Normalized (N, C, s, s) crops → (N, D); `cell_line` is one (d,) vector or (N, d)."""
        out = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size].to(self.device, non_blocking=True)
            line = None
            if cell_line is not None:
                line = cell_line.to(self.device)
                line = (
                    line.expand(len(chunk), -1) if line.dim() == 1 else line[start:][: len(chunk)]
                )
            with self.autocast():
                out.append(self.model.encoder(chunk, line).float().cpu())
        if not out:
            return np.zeros((0, self.embedding_dim), np.float32)
        return torch.cat(out).numpy()

    def embed(
        self,
        crops: torch.Tensor,
        batch_size: int = 64,
        progress: bool = False,
        cell_line: torch.Tensor | None = None,
    ) -> EmbedResult:
        """The `Embedder` protocol over `embed_crops`: every crop with finite values is a
        valid row."""
        vectors = self.embed_crops(crops, cell_line, batch_size)
        return mark_non_finite(
            EmbedResult(vectors, np.ones(len(vectors), bool), [""] * len(vectors))
        )
