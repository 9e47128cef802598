"""RDKit molecule → OGB-compatible integer graph features, without depending on `ogb`.

The vocabularies follow OGB's published `allowable_features` so that InfoAlign's released
weights (trained on OGB features) see the same integer codes. Each vocabulary ends in a
"misc" bucket that catches values outside the list, as OGB does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")

ATOMIC_NUMBERS = list(range(1, 119)) + ["misc"]
CHIRAL_TAGS = [
    "CHI_UNSPECIFIED",
    "CHI_TETRAHEDRAL_CW",
    "CHI_TETRAHEDRAL_CCW",
    "CHI_OTHER",
    "misc",
]
DEGREES = list(range(11)) + ["misc"]
FORMAL_CHARGES = list(range(-5, 6)) + ["misc"]
NUM_HS = list(range(9)) + ["misc"]
RADICAL_ELECTRONS = list(range(5)) + ["misc"]
HYBRIDIZATIONS = ["SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"]
BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"]
BOND_STEREOS = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]

ATOM_VOCAB_SIZES = [
    len(ATOMIC_NUMBERS),
    len(CHIRAL_TAGS),
    len(DEGREES),
    len(FORMAL_CHARGES),
    len(NUM_HS),
    len(RADICAL_ELECTRONS),
    len(HYBRIDIZATIONS),
    2,
    2,
]
BOND_VOCAB_SIZES = [len(BOND_TYPES), len(BOND_STEREOS), 2]


def _enum_lookup(enum_type: type, vocab: list) -> dict:
    """RDKit enum value → vocabulary index, keyed by the enum itself.

    Matching on names once here avoids converting every atom's enum to a string.
    """
    values = enum_type.values.values()
    return {value: vocab.index(str(value)) for value in values if str(value) in vocab}


_CHIRAL = _enum_lookup(Chem.rdchem.ChiralType, CHIRAL_TAGS)
_HYBRID = _enum_lookup(Chem.rdchem.HybridizationType, HYBRIDIZATIONS)
_BOND_TYPE = _enum_lookup(Chem.rdchem.BondType, BOND_TYPES)
_BOND_STEREO = _enum_lookup(Chem.rdchem.BondStereo, BOND_STEREOS)


def _clip(value: int, low: int, high: int, misc: int) -> int:
    return value - low if low <= value <= high else misc


def atom_features(atom: Chem.Atom) -> list[int]:
    """The 9 OGB atom codes: element, chirality, degree, charge, #H, radicals, hybridisation,
    aromatic, in ring."""
    return [
        _clip(atom.GetAtomicNum(), 1, 118, 118),
        _CHIRAL.get(atom.GetChiralTag(), 4),
        _clip(atom.GetTotalDegree(), 0, 10, 11),
        _clip(atom.GetFormalCharge(), -5, 5, 11),
        _clip(atom.GetTotalNumHs(), 0, 8, 9),
        _clip(atom.GetNumRadicalElectrons(), 0, 4, 5),
        _HYBRID.get(atom.GetHybridization(), 5),
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    ]


def bond_features(bond: Chem.Bond) -> list[int]:
    """The 3 OGB bond codes: type, stereo, conjugated."""
    return [
        _BOND_TYPE.get(bond.GetBondType(), 4),
        _BOND_STEREO[bond.GetStereo()],
        int(bond.GetIsConjugated()),
    ]


@dataclass(frozen=True)
class MolGraph:
    """One molecule as integer arrays: x (atoms × 9), edge_index (2 × 2·bonds), edge_attr."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


def mol_to_graph(mol: Chem.Mol) -> MolGraph:
    """Featurise a parsed molecule; each bond appears in both directions, as in OGB."""
    x = np.array([atom_features(a) for a in mol.GetAtoms()], dtype=np.int64).reshape(-1, 9)
    bonds = mol.GetBonds()
    if len(bonds) == 0:
        return MolGraph(x, np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64))
    src, dst, feats = [], [], []
    for bond in bonds:
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        f = bond_features(bond)
        src += [i, j]
        dst += [j, i]
        feats += [f, f]
    return MolGraph(x, np.array([src, dst], dtype=np.int64), np.array(feats, dtype=np.int64))


def parse_smiles(smiles: object) -> tuple[Chem.Mol | None, str]:
    """RDKit parse with a readable reason on failure (empty, not a string, or RDKit's refusal)."""
    if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)):
        return None, "empty SMILES"
    if not isinstance(smiles, str):
        return None, f"SMILES must be text, got {type(smiles).__name__}"
    text = smiles.strip()
    if not text:
        return None, "empty SMILES"
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        return None, f"RDKit could not parse SMILES {text[:80]!r}"
    if mol.GetNumAtoms() == 0:
        return None, "SMILES has no atoms"
    return mol, ""


def smiles_to_graph(smiles: object) -> tuple[MolGraph | None, str]:
    """Parse and featurise one SMILES; returns (graph, "") or (None, reason)."""
    mol, error = parse_smiles(smiles)
    if mol is None:
        return None, error
    return mol_to_graph(mol), ""
