"""How a decoded molecule scores a profile, written so that FAISS inner-product search
computes it exactly. No torch here: decoding is in `search`; this module is arrays only.

A decoder turns a molecule's embedding μ into logits z over a feature space; it was trained
with BCE against profiles x min-max scaled to [0, 1]. Every scoring below is an inner product
between a stored profile vector P(x) and a query vector Q(z), plus a per-query constant:

* `likelihood` (InfoAlign's): log p(x | z) = Σ x_j z_j − Σ softplus(z_j); P = x, Q = z,
  constant −Σ softplus(z). Reported per shared feature.
* `cosine`: cos(σ(z), x).
* `centered`: cos(σ(z) − m_ref, x − m_index): predictions centred on the mean decoded
  prediction over a reference molecule set, profiles on the index's own mean profile.
* `zscore`: the same, each feature also divided by its standard deviation (over the reference
  predictions, over the index's profiles).
* `csls` (Conneau et al. 2018), on the z-scored cosine c: 2c(x, y) − r_P(x) − r_M(y), where
  r_M(y) is the mean c of profile y with its k nearest reference molecules and r_P(x) the
  mean c of molecule x with its k nearest indexed profiles. r_M is stored in the vector
  (P = [p, −r_M], Q = [2q, 1]); r_P is a second search.
* `inverted-softmax` (Smith et al. 2017), on the z-scored cosine: β c(x, y) − log Σ_{x' ∈
  reference} exp(β c(x', y)), the log of a softmax over the reference molecules for each
  profile (P = [p, −lse], Q = [β q, 1]).

A profile that looks like every molecule's decoding (a hub) is penalised by the last two;
centring and z-scoring remove the shared component that makes every decoding alike. The
reference statistics are fixed when the index is built (`Calibration`), so `index add`
stores new profiles exactly as a full build with the same centre would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("likelihood", "cosine", "centered", "zscore", "csls", "inverted-softmax")
# The scorings that need a reference molecule set and the index's own profile statistics.
CALIBRATED = frozenset({"centered", "zscore", "csls", "inverted-softmax"})
# The hubness-corrected scorings (a per-profile term learnt from the reference molecules).
HUB_CORRECTED = frozenset({"csls", "inverted-softmax"})
DEFAULT_METRIC = "inverted-softmax"  # chosen by scaffold-fold CV on CMEA (docs/retrieval.md §4)
CSLS_K = 10  # Conneau et al.'s k
BETA = 10.0  # inverted-softmax inverse temperature on cosines
_BLOCK = 8192  # profiles per block when computing the per-profile hub terms


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


def _spread(values: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation; a constant feature gets 1 (it is centred to 0)."""
    std = values.std(axis=0) if len(values) > 1 else np.zeros(values.shape[1])
    return np.where(std > 1e-12, std, 1.0)


def top_k_mean(similarities: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Mean of the k largest values along `axis` (all of them when there are fewer)."""
    n = similarities.shape[axis]
    k = min(k, n)
    part = np.partition(similarities, n - k, axis=axis)
    top = part[n - k :] if axis == 0 else part[:, n - k :]
    return top.mean(axis=axis)


def logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    peak = values.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(values - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


@dataclass(frozen=True)
class Calibration:
    """What the calibrated scorings need, fixed at build time: the index's mean and spread
    of scaled profiles, and the reference molecules' decoded predictions (σ of logits)."""

    profile_center: np.ndarray
    profile_scale: np.ndarray
    reference_predictions: np.ndarray  # (n_reference, shared columns), σ(z)
    csls_k: int = CSLS_K
    beta: float = BETA

    @property
    def prediction_center(self) -> np.ndarray:
        return self.reference_predictions.mean(axis=0)

    @property
    def prediction_scale(self) -> np.ndarray:
        return _spread(self.reference_predictions)

    @classmethod
    def fit(
        cls,
        scaled_profiles: np.ndarray,
        reference_logits: np.ndarray,
        csls_k: int = CSLS_K,
        beta: float = BETA,
    ) -> Calibration:
        profiles = np.asarray(scaled_profiles, np.float64)
        return cls(
            profiles.mean(axis=0),
            _spread(profiles),
            sigmoid(np.asarray(reference_logits, np.float64)),
            csls_k,
            beta,
        )

    def to_manifest(self) -> dict:
        """The JSON part (the reference predictions are stored beside it, as logits)."""
        return {
            "profile_center": self.profile_center.tolist(),
            "profile_scale": self.profile_scale.tolist(),
            "csls_k": self.csls_k,
            "beta": self.beta,
        }

    @classmethod
    def from_manifest(cls, data: dict, reference_logits: np.ndarray) -> Calibration:
        return cls(
            np.asarray(data["profile_center"], np.float64),
            np.asarray(data["profile_scale"], np.float64),
            sigmoid(np.asarray(reference_logits, np.float64)),
            int(data.get("csls_k", CSLS_K)),
            float(data.get("beta", BETA)),
        )

    def profiles(self, scaled: np.ndarray, metric: str) -> np.ndarray:
        """Unit vectors of centred (z-scored) profiles."""
        centred = np.asarray(scaled, np.float64) - self.profile_center
        if metric != "centered":
            centred = centred / self.profile_scale
        return l2_normalize(centred)

    def predictions(self, logits: np.ndarray, metric: str) -> np.ndarray:
        """Unit vectors of centred (z-scored) decoded predictions."""
        centred = sigmoid(np.asarray(logits, np.float64)) - self.prediction_center
        if metric != "centered":
            centred = centred / self.prediction_scale
        return l2_normalize(centred)

    def reference_vectors(self, metric: str) -> np.ndarray:
        centred = self.reference_predictions - self.prediction_center
        if metric != "centered":
            centred = centred / self.prediction_scale
        return l2_normalize(centred)

    def profile_terms(self, profiles: np.ndarray, metric: str) -> np.ndarray:
        """Per-profile hub term from the reference molecules: r_M (csls) or the
        log-sum-exp of β·cosines (inverted softmax). `profiles` are unit vectors."""
        reference = self.reference_vectors(metric)
        out = np.empty(len(profiles), np.float64)
        for start in range(0, len(profiles), _BLOCK):
            block = reference @ profiles[start : start + _BLOCK].T  # (n_ref, block)
            if metric == "csls":
                out[start : start + _BLOCK] = top_k_mean(block, self.csls_k, axis=0)
            else:
                out[start : start + _BLOCK] = logsumexp(self.beta * block.astype(np.float64), 0)
        return out


def candidate_vectors(
    scaled: np.ndarray, metric: str, calibration: Calibration | None = None
) -> np.ndarray:
    """What the index stores for scaled profiles."""
    check_metric(metric)
    if metric == "likelihood":
        return scaled.astype(np.float32)
    if metric == "cosine":
        return l2_normalize(scaled)
    if calibration is None:
        raise ValueError(f"{metric} scoring needs a Calibration (reference molecules)")
    base = calibration.profiles(scaled, metric)
    if metric not in HUB_CORRECTED:
        return base
    terms = calibration.profile_terms(base, metric)
    return np.hstack([base, -terms[:, None]]).astype(np.float32)


def base_width(metric: str, stored_width: int) -> int:
    """The cosine part of a stored vector (the hub-corrected ones carry one extra column)."""
    return stored_width - 1 if metric in HUB_CORRECTED else stored_width


def molecule_queries(
    logits: np.ndarray, metric: str, calibration: Calibration | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, per-query constant added to the inner product) for profile search.

    For `csls` the constant lacks −r_P(x), which needs the indexed profiles: the search adds
    it (`csls_query_terms`)."""
    check_metric(metric)
    zeros = np.zeros(len(logits), np.float32)
    if metric == "likelihood":
        return logits.astype(np.float32), -softplus(logits).sum(axis=1).astype(np.float32)
    if metric == "cosine":
        return l2_normalize(sigmoid(logits)), zeros
    if calibration is None:
        raise ValueError(f"{metric} scoring needs a Calibration (reference molecules)")
    base = calibration.predictions(logits, metric)
    ones = np.ones((len(base), 1), np.float32)
    if metric == "csls":
        return np.hstack([2.0 * base, ones]).astype(np.float32), zeros
    if metric == "inverted-softmax":
        return np.hstack([calibration.beta * base, ones]).astype(np.float32), zeros
    return base, zeros


def cosine_queries(logits: np.ndarray, metric: str, calibration: Calibration) -> np.ndarray:
    """Queries whose inner product with the stored vectors is the plain cosine (the hub
    column gets weight 0): what r_P(x) averages."""
    base = calibration.predictions(logits, metric)
    return np.hstack([base, np.zeros((len(base), 1), np.float32)]).astype(np.float32)


def molecule_candidates(
    logits: np.ndarray,
    metric: str,
    calibration: Calibration | None = None,
    query_terms: np.ndarray | None = None,
) -> np.ndarray:
    """Molecule vectors to rank against profile queries (profile → molecules): the query
    vector with its constant appended (`profile_queries` appends 1). For `csls`,
    `query_terms` are the molecules' r_P."""
    queries, constant = molecule_queries(logits, metric, calibration)
    if metric == "csls":
        if query_terms is None:
            raise ValueError("csls candidates need each molecule's r_P (query_terms)")
        constant = constant - query_terms.astype(np.float32)
    return np.hstack([queries, constant[:, None]]).astype(np.float32)


def profile_queries(stored: np.ndarray, metric: str) -> np.ndarray:
    """Profile vectors as queries against `molecule_candidates`."""
    return np.hstack([stored, np.ones((len(stored), 1), np.float32)]).astype(np.float32)


def per_feature(scores: np.ndarray, n_columns: int, metric: str) -> np.ndarray:
    """Likelihoods are reported per shared feature; the other scores as they are."""
    return scores / n_columns if metric == "likelihood" else scores


def exact_scores(
    logits: np.ndarray,
    stored: np.ndarray,
    metric: str,
    calibration: Calibration | None,
    n_columns: int,
) -> np.ndarray:
    """Every molecule's score against every stored profile vector, as search reports it
    (evaluation and diagnostics; O(molecules × profiles) memory)."""
    queries, constant = molecule_queries(logits, metric, calibration)
    scores = queries.astype(np.float64) @ stored.T.astype(np.float64) + constant[:, None]
    if metric == "csls":
        cosine = cosine_queries(logits, metric, calibration) @ stored.T
        scores -= top_k_mean(cosine.astype(np.float64), calibration.csls_k, axis=1)[:, None]
    return per_feature(scores, n_columns, metric)


def score_arrays(
    logits: np.ndarray,
    scaled_profiles: np.ndarray,
    metric: str,
    reference_logits: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of molecules (decoder logits) against profiles (min-max scaled), as an index
    built on exactly these profiles with these reference molecules would give them; for
    predictors without an index (benchmarks, baselines)."""
    calibration = None
    if metric in CALIBRATED:
        if reference_logits is None:
            raise ValueError(f"{metric} scoring needs reference logits")
        calibration = Calibration.fit(scaled_profiles, reference_logits)
    stored = candidate_vectors(np.asarray(scaled_profiles, np.float32), metric, calibration)
    return exact_scores(logits, stored, metric, calibration, stored.shape[1])
