"""Murcko scaffold split (60/15/25), seeded, as in InfoAlign's evaluation.

Scaffold groups are shuffled by seed and filled in order into train, then valid, then
test by count cutoffs. Unlike the reference code, a group never straddles a cutoff (it goes
to the first split it still fits in), so no scaffold is shared between splits and test
molecules are genuinely out-of-scaffold; sizes stay within a group's size of 60/15/25.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.valid), len(self.test)


def murcko_scaffold(smiles: object) -> str:
    """Canonical Murcko scaffold SMILES ('' for acyclic molecules); the input if unparsable."""
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles else None
    if mol is None:
        return f"<unparsable>{smiles}"
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_groups(smiles: Sequence[str]) -> list[np.ndarray]:
    """Row indices grouped by scaffold, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s), []).append(i)
    return [np.asarray(g, dtype=np.int64) for g in groups.values()]


def scaffold_split(
    smiles: Sequence[str],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    groups: list[np.ndarray] | None = None,
) -> Split:
    """Shuffle scaffold groups with `seed` and assign whole groups by count cutoffs.

    Pass precomputed `groups` (from `scaffold_groups`) to split many seeds cheaply.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    groups = scaffold_groups(smiles) if groups is None else groups
    n = sum(len(g) for g in groups)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    order = np.random.default_rng(seed).permutation(len(groups))
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    counts = [0, 0]
    for g in order:
        group = groups[g]
        if counts[0] + len(group) <= n_train:
            target = 0
        elif counts[1] + len(group) <= n_valid:
            target = 1
        else:
            target = 2
        parts[target].append(group)
        if target < 2:
            counts[target] += len(group)

    def cat(p: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64)

    return Split(cat(parts[0]), cat(parts[1]), cat(parts[2]))


def scaffold_folds(smiles: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per row; whole scaffolds go to one fold, folds balanced by size.

    Largest scaffold groups are placed first, each into the currently smallest fold
    (ties between equal-sized groups broken by `seed`).
    """
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    groups = scaffold_groups(smiles)
    order = np.random.default_rng(seed).permutation(len(groups))
    order = sorted(order, key=lambda g: -len(groups[g]))
    folds = np.zeros(len(smiles), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for g in order:
        target = int(np.argmin(sizes))
        folds[groups[g]] = target
        sizes[target] += len(groups[g])
    return folds
