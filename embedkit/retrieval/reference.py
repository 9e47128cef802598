"""The reference molecule set stored with an index: what "a typical molecule's decoding"
looks like, for the calibrated and hubness-corrected scorings and for `index info`'s
hubness diagnostics.

The default set ships with embedkit: 1,000 LINCS L1000 compounds (dhimmel/lincs pertinfo,
CC0; sampled with seed 0, the 100 CMEA compounds of the benchmark left out). Users can give
their own (`index build --reference TABLE`). Invalid SMILES are left out and counted.
The index stores the valid molecules' SMILES and their decoded logits on its shared columns
(`reference.npz`), so queries and `index add` never re-embed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFERENCE_FILE = "reference.npz"
DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference_molecules.csv"
DEFAULT_REFERENCE_NAME = "embedkit:reference_molecules.csv"


@dataclass
class ReferenceSet:
    """Decoded reference molecules: logits per decoder space (valid molecules only)."""

    smiles: list[str]  # the valid molecules, in input order
    logits: dict[str, np.ndarray]  # decoder space → (len(smiles), the space's full width)
    source: str
    rows: int  # molecules given
    invalid: list[int] = field(default_factory=list)  # 0-based rows left out

    def describe(self) -> dict:
        """The manifest's account of the set (the arrays go to `reference.npz`)."""
        return {
            "source": self.source,
            "molecules": self.rows,
            "used": len(self.smiles),
            "invalid": len(self.invalid),
            "invalid_rows": self.invalid[:20],
        }


def save_reference(path: Path, smiles: list[str], logits: np.ndarray) -> None:
    np.savez(path, smiles=np.asarray(smiles, dtype=str), logits=logits.astype(np.float32))


def load_reference(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [str(s) for s in data["smiles"]], np.asarray(data["logits"], np.float32)
