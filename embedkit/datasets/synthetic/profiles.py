"""Seeded synthetic profile tables with known batch effects, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from embedkit.io import embeddings_frame


def synthetic_profiles(
    *,
    batches: int = 4,
    plates_per_batch: int = 2,
    controls_per_plate: int = 16,
    perturbations: int = 8,
    replicates: int = 2,
    features: int = 32,
    signal_rank: int = 8,
    signal: float = 1.5,
    additive: float = 2.0,
    multiplicative: float = 0.3,
    seed: int = 0,
) -> pd.DataFrame:
    """Well profiles: biology + noise, distorted per batch as x·a_b + c_b.

    Each perturbation shifts a `signal_rank`-dimensional subspace by `signal` (controls: no
    shift) on top of unit noise and a shared non-zero baseline. Each batch then multiplies every
    feature by exp(N(0, multiplicative)) and adds N(0, additive) — so a raw linear probe tells
    batches apart almost perfectly. Columns: Metadata_Batch/Plate/Well/PertType/Perturbation,
    then Emb_0000….
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((features, signal_rank)))[0]
    effects = signal * rng.standard_normal((perturbations, signal_rank)) @ basis.T
    effects *= np.sqrt(features / signal_rank)  # per-feature scale ≈ signal
    baseline = 3.0 * rng.standard_normal(features)
    labels = ["negcon"] * controls_per_plate + [
        f"pert_{p:02d}" for p in range(perturbations) for _ in range(replicates)
    ]
    rows, blocks = [], []
    for b in range(batches):
        scale = np.exp(multiplicative * rng.standard_normal(features))
        shift = additive * rng.standard_normal(features)
        for p in range(plates_per_batch):
            plate = f"B{b}P{p}"
            for w, label in enumerate(labels):
                rows.append(
                    {
                        "Metadata_Batch": f"batch_{b}",
                        "Metadata_Plate": plate,
                        "Metadata_Well": f"W{w:03d}",
                        "Metadata_PertType": "negcon" if label == "negcon" else "trt",
                        "Metadata_Perturbation": label,
                    }
                )
            bio = np.array(
                [np.zeros(features) if lab == "negcon" else effects[int(lab[5:])] for lab in labels]
            )
            x = baseline + bio + rng.standard_normal((len(labels), features))
            blocks.append(x * scale + shift)
    return embeddings_frame(pd.DataFrame(rows), np.vstack(blocks).astype(np.float32))
