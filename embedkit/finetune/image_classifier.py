"""The fine-tuned image model kind, `embedkit-vit-classifier`: an `embedkit-vit` image model
(encoder, channels, crop size, normalization, cell-line embeddings) plus a linear head over
a label vocabulary, saved as one Hub-layout folder.

It serves two tasks: "image-classification" (`embedkit predict`, `load(..., with_heads=True)`)
and "images" (`embedkit embed-images` embeds with the fine-tuned encoder; loading without
heads drops the head, as `select_for_loading` says). config.json adds to the image model's
keys `labels` (class k of the head is `labels[k]`), `cell_line` (the line it was fine-tuned
on; its embedding is in `cell_lines`, so `predict` and `embed-images --cell-line` find it)
and `crop_mode` (how sites were cropped when it was selected: `predict`'s default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from embedkit.images.embedder import ImageEmbedder
from embedkit.images.model import ImageModel, ImageModelConfig
from embedkit.images.preprocess import CROP_MODES
from embedkit.images.vit import ViTConfig
from embedkit.pretrained import limits

ARCHITECTURE = "embedkit-vit-classifier"


@dataclass
class ImageClassifierConfig(ImageModelConfig):
    """config.json: the image model's keys, then the head's."""

    labels: list[str] = field(default_factory=list)  # head class k = labels[k]; [] = no head
    cell_line: str | None = None  # the cell line it was fine-tuned on
    crop_mode: str = field(default="full", metadata=limits(choices=CROP_MODES))


class ImageClassifier(ImageModel):
    """`forward(images, cell_line) -> (features (B, D), logits (B, C))`."""

    ARCHITECTURE = ARCHITECTURE
    CONFIG_CLASS = ImageClassifierConfig

    def __init__(
        self,
        encoder: ViTConfig | None = None,
        channels: list[str] | None = None,
        channel_aliases: dict[str, list[str]] | None = None,
        crop_size: int | None = None,
        normalization: dict | None = None,
        cell_lines: dict[str, list[float]] | None = None,
        extra: dict | None = None,
        labels: list[str] | None = None,
        cell_line: str | None = None,
        crop_mode: str = "full",
    ):
        super().__init__(
            encoder, channels, channel_aliases, crop_size, normalization, cell_lines, extra
        )
        self.labels = [str(v) for v in (labels or [])]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels repeat; each class of the head needs its own name")
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        self.cell_line = cell_line
        self.crop_mode = crop_mode
        dim = self.encoder.config.embed_dim
        self.head = nn.Linear(dim, len(self.labels)) if self.labels else None

    def config_object(self) -> ImageClassifierConfig:
        return ImageClassifierConfig(
            self.encoder.config,
            self.channels,
            self.channel_aliases,
            self.crop_size,
            self.normalization,
            self.cell_lines,
            self.extra,
            self.labels,
            self.cell_line,
            self.crop_mode,
        )

    def input_spec(self) -> dict:
        return {
            **super().input_spec(),
            "labels": len(self.labels),
            "cell_line": self.cell_line,
            "crop_mode": self.crop_mode,
        }

    @classmethod
    def select_for_loading(cls, config: dict, encoder_only: bool = False):
        """`encoder_only=True` (embedding) drops the head and its label vocabulary."""
        if not encoder_only:
            return config, lambda name: True
        return {**config, "labels": []}, lambda name: not name.startswith("head.")

    def forward(
        self, images: torch.Tensor, cell_line: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(images, cell_line)
        return features, self.classify(features)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) → logits (B, C)."""
        if self.head is None:
            raise RuntimeError("this model was loaded without its head (load with_heads=True)")
        return self.head(features)


class ImageClassifierEmbedder(ImageEmbedder):
    """An `ImageEmbedder` (embed-images works as for any image model) that also classifies
    embeddings with the head (`probabilities`)."""

    @torch.inference_mode()
    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Site embeddings (N, D) → class probabilities (N, C), float32 (fp32 head; NaN rows
        of sites that could not be read stay NaN)."""
        from embedkit.finetune.profile_classifier import head_probabilities

        return head_probabilities(self.model, embeddings, self.device)
