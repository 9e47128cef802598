"""The profile model kind, `embedkit-profile-classifier`: an MLP encoder over named profile
features (CellProfiler measurements or embeddings) plus a linear head over a label
vocabulary, saved as one Hub-layout folder.

config.json holds the feature names in input order, the per-feature mean and standard
deviation the inputs are standardized with (`(x − mean) / std`; a constant feature gives
0), the hidden widths (the embedding is the last hidden layer), dropout and `labels`
(class k of the head is `labels[k]`; [] = no head). A pretrained profile encoder is a
model of this kind too (e.g. trained to tell compounds apart); `embedkit finetune
--profiles` loads its encoder and gives it a new head. The task is
"profile-classification" (`embedkit predict --profiles`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from embedkit.embedder import BaseEmbedder, EmbedResult
from embedkit.errors import InputError
from embedkit.pretrained import PretrainedMixin, limits

ARCHITECTURE = "embedkit-profile-classifier"
EPS = 1e-6


@dataclass
class ProfileClassifierConfig:
    """config.json of a profile model (the constructor's keyword arguments)."""

    features: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = field(default=0.1, metadata=limits(0.0, 1.0))
    labels: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.features:
            raise ValueError("a profile model needs at least one feature")
        if len(set(self.features)) != len(self.features):
            raise ValueError("feature names repeat")
        for key in ("mean", "std"):
            if len(getattr(self, key)) != len(self.features):
                raise ValueError(f"{key} needs one value per feature ({len(self.features)})")
        if not self.hidden or any(not 1 <= h <= 65536 for h in self.hidden):
            raise ValueError("hidden needs one or more widths in [1, 65536]")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels repeat; each class of the head needs its own name")


def mlp_encoder(inputs: int, hidden: list[int], dropout: float) -> nn.Sequential:
    """(Linear → LayerNorm → GELU → Dropout) per hidden width; LayerNorm, not BatchNorm, so
    a few shots per class train the same as many."""
    layers: list[nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers)


class ProfileClassifier(PretrainedMixin, nn.Module):
    """`forward(x standardized (B, F)) -> (features (B, D), logits (B, C))`."""

    ARCHITECTURE = ARCHITECTURE
    CONFIG_CLASS = ProfileClassifierConfig

    def __init__(
        self,
        features: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        hidden: list[int] | None = None,
        dropout: float = 0.1,
        labels: list[str] | None = None,
        extra: dict | None = None,
    ):
        super().__init__()
        features = [str(f) for f in (features or [])]
        config = ProfileClassifierConfig(
            features,
            [float(v) for v in (mean if mean is not None else [0.0] * len(features))],
            [float(v) for v in (std if std is not None else [1.0] * len(features))],
            list(hidden or [512, 256]),
            float(dropout),
            [str(v) for v in (labels or [])],
            dict(extra or {}),
        )  # validates
        self.features, self.mean, self.std = config.features, config.mean, config.std
        self.hidden, self.dropout, self.labels = config.hidden, config.dropout, config.labels
        self.extra = config.extra
        self.encoder = mlp_encoder(len(self.features), self.hidden, self.dropout)
        self.head = nn.Linear(self.hidden[-1], len(self.labels)) if self.labels else None

    @property
    def embedding_dim(self) -> int:
        return self.hidden[-1]

    def input_spec(self) -> dict:
        return {
            "features": self.features,
            "normalization": {"kind": "fixed", "mean": self.mean, "std": self.std},
            "labels": len(self.labels),
        }

    def config_object(self) -> ProfileClassifierConfig:
        return ProfileClassifierConfig(
            self.features, self.mean, self.std, self.hidden, self.dropout, self.labels, self.extra
        )

    @classmethod
    def estimated_parameters(cls, parsed: ProfileClassifierConfig) -> float:
        widths = [len(parsed.features), *parsed.hidden]
        return float(sum(a * b for a, b in zip(widths, widths[1:], strict=False)))

    @classmethod
    def select_for_loading(cls, config: dict, encoder_only: bool = False):
        """`encoder_only=True` (embedding) drops the head and its label vocabulary."""
        if not encoder_only:
            return config, lambda name: True
        return {**config, "labels": []}, lambda name: not name.startswith("head.")

    # -- inputs
    def matrix(self, table: pd.DataFrame, where: str = "the table") -> np.ndarray:
        """The model's features of `table`, in the model's order, raw (float32)."""
        missing = [f for f in self.features if f not in table.columns]
        if missing:
            raise InputError(
                f"{where} lacks {len(missing)} of the model's {len(self.features)} features "
                f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}); a profile "
                "model reads the features it was trained on, by name"
            )
        return table[self.features].to_numpy(dtype=np.float32)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.where(std > EPS, (x - mean) / np.maximum(std, EPS), 0.0).astype(np.float32)

    # -- the network
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return features, self.classify(features)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this model was loaded without its head (load with_heads=True)")
        return self.head(features)


class ProfileEmbedder(BaseEmbedder):
    """Profiles in (a table with the model's feature columns, or a raw (N, F) array in the
    model's feature order), embeddings out; `probabilities` applies the head to them. A row with a
    missing or infinite feature gets a NaN row and `valid = False`."""

    def _inputs(self, inputs) -> np.ndarray:
        if isinstance(inputs, pd.DataFrame):
            return self.model.matrix(inputs)
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.model.features):
            raise InputError(
                f"expected profiles of shape (n, {len(self.model.features)}), got {x.shape}"
            )
        return x

    @torch.inference_mode()
    def embed(self, inputs, batch_size: int = 1024, progress: bool = False) -> EmbedResult:
        x = self._inputs(inputs)
        valid = np.isfinite(x).all(axis=1)
        out = np.full((len(x), self.embedding_dim), np.nan, np.float32)
        z = torch.from_numpy(self.model.standardize(x[valid]))
        rows = np.flatnonzero(valid)
        for start in range(0, len(z), batch_size):
            chunk = z[start : start + batch_size].to(self.device)
            with self.autocast():
                features = self.model.encoder(chunk)
            out[rows[start : start + batch_size]] = features.float().cpu().numpy()
        errors = ["" if ok else "missing or infinite feature values" for ok in valid]
        return EmbedResult(out, valid, errors)

    @torch.inference_mode()
    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) → class probabilities (N, C), float32 (NaN rows stay NaN)."""
        return head_probabilities(self.model, embeddings, self.device)


def head_probabilities(model, embeddings: np.ndarray, device) -> np.ndarray:
    """softmax(head(embeddings)) in fp32; NaN rows (invalid inputs) stay NaN."""
    x = np.asarray(embeddings, dtype=np.float32)
    ok = np.isfinite(x).all(axis=1)
    out = np.full((len(x), len(model.labels)), np.nan, np.float32)
    if ok.any():
        logits = model.classify(torch.from_numpy(x[ok]).to(device)).float()
        out[ok] = torch.softmax(logits, dim=1).cpu().numpy()
    return out
