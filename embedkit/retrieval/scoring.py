"""InfoAlign's zero-shot scoring, written so that FAISS inner-product search computes it.

A decoder m turns a molecule's embedding μ into logits z over a feature space; it was
trained with BCE against features x scaled to [0, 1]. The log-likelihood of a candidate
profile x under the decoded distribution is therefore

    log p(x | molecule) = Σ_j x_j z_j − Σ_j softplus(z_j)

— an inner product plus a term that depends on the molecule only. Molecule → profiles:
search the profile vectors x with query z, then add the constant. Profile → molecules:
append −Σ softplus(z) to each molecule vector and 1 to the profile, and the inner product
*is* the likelihood. Scores are reported per feature (divided by the number of shared
columns) so tables with different column subsets give comparable numbers.

`cosine` compares σ(z) with x after L2 normalization instead (the paper's CLOOME-style
alternative); both are exact inner products over the stored vectors.
"""

from __future__ import annotations

import numpy as np
import torch

from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.retrieval.spaces import SpaceMatch

METRICS = ("likelihood", "cosine")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def candidate_vectors(scaled: np.ndarray, metric: str) -> np.ndarray:
    """What the index stores for scaled profiles."""
    return l2_normalize(scaled) if check_metric(metric) == "cosine" else scaled.astype(np.float32)


@torch.inference_mode()
def decode(embedder: MoleculeEmbedder, embeddings: np.ndarray, space: SpaceMatch) -> np.ndarray:
    """Decoder logits of `embeddings` (valid rows only) on the space's shared columns."""
    decoders = embedder.model.decoders
    if space.name not in decoders:
        raise ValueError(
            f"the loaded model has no decoder {space.name!r}; load it with with_heads=True"
        )
    decoder = decoders[space.name]
    weight = next(decoder.parameters())
    mu = torch.from_numpy(np.ascontiguousarray(embeddings)).to(weight.device, weight.dtype)
    logits = decoder(mu).float().cpu().numpy()
    return np.ascontiguousarray(logits[:, space.decoder_index])


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


def molecule_queries(logits: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, per-query constant added to the inner product) for profile search."""
    if check_metric(metric) == "cosine":
        return l2_normalize(sigmoid(logits)), np.zeros(len(logits), np.float32)
    return logits.astype(np.float32), -softplus(logits).sum(axis=1).astype(np.float32)


def molecule_candidates(logits: np.ndarray, metric: str) -> np.ndarray:
    """Molecule vectors to rank against profile queries (profile → molecules)."""
    if check_metric(metric) == "cosine":
        return l2_normalize(sigmoid(logits))
    bias = -softplus(logits).sum(axis=1, keepdims=True)
    return np.hstack([logits, bias]).astype(np.float32)


def profile_queries(stored: np.ndarray, metric: str) -> np.ndarray:
    """Profile vectors as queries against `molecule_candidates`."""
    if check_metric(metric) == "cosine":
        return stored.astype(np.float32)
    return np.hstack([stored, np.ones((len(stored), 1), np.float32)]).astype(np.float32)


def per_feature(scores: np.ndarray, space: SpaceMatch, metric: str) -> np.ndarray:
    """Likelihoods are reported per shared feature; cosines as they are."""
    return scores / len(space.columns) if metric == "likelihood" else scores
