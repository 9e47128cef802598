"""ECFP4 (Morgan radius 2, 2048 bits): the baseline any learned embedding must beat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator

RDLogger.DisableLog("rdApp.*")


def ecfp4(
    smiles: Sequence[str], n_bits: int = 2048, radius: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Bit vectors as float32 (n, n_bits) and a valid mask; unparsable rows are all-NaN.

    The NaN rows mirror `MoleculeEmbedder.embed_smiles`, so the caller drops the same rows
    for every method.
    """
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.full((len(smiles), n_bits), np.nan, dtype=np.float32)
    valid = np.zeros(len(smiles), dtype=bool)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None:
            continue
        out[i] = generator.GetFingerprintAsNumPy(mol)
        valid[i] = True
    return out, valid
