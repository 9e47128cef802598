"""Similarity edges inside one feature space: cosine ≥ threshold *and* in the top pairs.

The top-pairs cut is the paper's 99.5 % sparsity rule. Molecules compare ECFP4 (radius 2)
bits, as the reference does; profiles compare column-standardized vectors (cosine of
[0, 1]-scaled vectors would call almost every pair similar; `train.context_graph`
standardizes with `embedkit.profiles.normalize.standardize`).
"""

from __future__ import annotations

import numpy as np
from rdkit.Chem import rdFingerprintGenerator

from embedkit.molecules.featurize import parse_smiles


def similarity_edges(
    x: np.ndarray, threshold: float, sparsity: float, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j with cosine ≥ threshold, cut to the top (1 − sparsity) of all pairs."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    n = x.shape[0]
    rows, cols, sims = [], [], []
    for start in range(0, n, block):
        s = x[start : start + block] @ x[start:].T
        i, j = np.nonzero(s >= threshold)
        upper = j > i  # j is offset by `start`, i is local: same offset → j > i means col > row
        rows.append(i[upper] + start)
        cols.append(j[upper] + start)
        sims.append(s[i[upper], j[upper]])
    i, j, s = (np.concatenate(a) if a else np.zeros(0) for a in (rows, cols, sims))
    budget = int((1.0 - sparsity) * n * (n - 1) / 2 + 1e-6)  # tolerate float rounding
    if len(s) > budget:
        top = np.argpartition(-s, budget - 1)[:budget] if budget > 0 else np.zeros(0, int)
        i, j, s = i[top], j[top], s[top]
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.float32)


def fingerprints(
    smiles: list[str], target_radius: int, target_bits: int, similarity_radius: int
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Parse once; return kept indices, Morgan target bits and ECFP similarity bits (1024)."""
    target = rdFingerprintGenerator.GetMorganGenerator(radius=target_radius, fpSize=target_bits)
    sim = rdFingerprintGenerator.GetMorganGenerator(radius=similarity_radius, fpSize=1024)
    kept, t_bits, s_bits = [], [], []
    for i, smi in enumerate(smiles):
        mol, _ = parse_smiles(smi)
        if mol is None:
            continue
        kept.append(i)
        t_bits.append(target.GetFingerprintAsNumPy(mol).astype(np.uint8))
        s_bits.append(sim.GetFingerprintAsNumPy(mol).astype(np.uint8))
    empty = np.zeros((0, target_bits), np.uint8)
    return kept, (np.stack(t_bits) if t_bits else empty), (np.stack(s_bits) if s_bits else empty)
