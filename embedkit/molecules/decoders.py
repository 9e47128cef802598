"""Per-feature-space MLP decoders of InfoAlign: μ → logits of min-max scaled features.

One decoder per feature space (Morgan fingerprint, each Cell Painting space, L1000):
Linear(d, 4d) → BatchNorm → GELU → Dropout → Linear(4d, out). They are trained with BCE
against targets scaled to [0, 1]; retrieval (a later issue) reuses them to score profiles.
"""

from __future__ import annotations

from torch import nn


def make_decoder(emb_dim: int, out_dim: int, dropout: float = 0.5) -> nn.Sequential:
    hidden = 4 * emb_dim
    return nn.Sequential(
        nn.Linear(emb_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class FeatureDecoders(nn.ModuleDict):
    """A named set of decoders; `spaces` maps a feature-space name to its output width."""

    def __init__(self, emb_dim: int, spaces: dict[str, int], dropout: float = 0.5):
        super().__init__(
            {name: make_decoder(emb_dim, dim, dropout) for name, dim in spaces.items()}
        )
