"""Similarity edges inside one feature space.

Molecules (`tanimoto_block_edges`, the reference's rule): Tanimoto on ECFP4 (radius 2,
1024 bits) between molecules of the same Murcko scaffold only (singleton scaffolds add
nothing); the threshold is the 99.5th percentile of the nonzero within-block
similarities, clipped to [0.8, 0.99] (the reference bisects for the same point), so about
0.5 % of them become edges; weights are the similarities rounded to 2 decimals. Cosine over
all pairs (`similarity_edges`) keeps for molecules only what passes 0.8, which on
fingerprints is far below the budget, so the budget never bound.

Profiles (`similarity_edges`): cosine ≥ threshold *and* among the top (1 − sparsity) of all
pairs, on column-standardized vectors (cosine of [0, 1]-scaled vectors would call almost
every pair similar; `train.context_graph` standardizes with
`embedkit.profiles.normalize.standardize`).
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


def tanimoto_block_edges(
    bits: np.ndarray,
    blocks: list[np.ndarray],
    sparsity: float = 0.995,
    min_threshold: float = 0.8,
    max_threshold: float = 0.99,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Pairs i < j of one block with Tanimoto ≥ the budget threshold; returns it too.

    `blocks` are row-index arrays (Murcko scaffold groups); blocks of one row are skipped.
    """
    x = np.asarray(bits, dtype=np.float32)
    pop = x.sum(axis=1)
    rows, cols, sims = [], [], []
    for block in blocks:
        if len(block) < 2:
            continue
        b = np.sort(np.asarray(block, np.int64))
        inter = x[b] @ x[b].T
        union = pop[b][:, None] + pop[b][None, :] - inter
        sim = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        i, j = np.triu_indices(len(b), k=1)
        s = sim[i, j]
        nonzero = s > 0
        rows.append(b[i[nonzero]])
        cols.append(b[j[nonzero]])
        sims.append(s[nonzero])
    if not sims or not sum(len(s) for s in sims):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), float(min_threshold)
    i, j, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)
    threshold = float(np.clip(np.quantile(s, sparsity), min_threshold, max_threshold))
    keep = s >= threshold - 1e-6
    weight = np.round(s[keep], 2).astype(np.float32)
    return i[keep].astype(np.int64), j[keep].astype(np.int64), weight, threshold


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
