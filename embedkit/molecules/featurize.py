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

# RDKit's parse time grows faster than the length (30,000 characters of rings: 5 s; 157 KB:
# minutes), so longer strings are refused before RDKit sees them. The longest real SMILES
# (large peptides, ChEMBL) are a few thousand characters. EMBEDKIT_MAX_SMILES_LENGTH
# overrides it (read once, at import; worker processes inherit it).
MAX_SMILES_ENV = "EMBEDKIT_MAX_SMILES_LENGTH"


def _max_smiles_length() -> int:
    import os

    text = os.environ.get(MAX_SMILES_ENV, "").strip().replace("_", "")
    return int(text) if text.isdigit() and int(text) > 0 else 10_000


MAX_SMILES_LENGTH = _max_smiles_length()

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


class _Codes(dict):
    """Raw RDKit value → OGB code; anything not in the vocabulary maps to the misc bucket.

    `dict.__getitem__` through `map` keeps the per-atom loop in C; `__missing__` only runs
    for out-of-vocabulary values.
    """

    def __init__(self, mapping: dict, misc: int):
        super().__init__(mapping)
        self.misc = misc

    def __missing__(self, key: object) -> int:
        return self.misc


_ATOMIC_NUM_CODE = _Codes({z: z - 1 for z in range(1, 119)}, 118)
_CHIRAL_CODE = _Codes(_CHIRAL, 4)
_DEGREE_CODE = _Codes({d: d for d in range(11)}, 11)
_CHARGE_CODE = _Codes({c: c + 5 for c in range(-5, 6)}, 11)
_NUM_HS_CODE = _Codes({h: h for h in range(9)}, 9)
_RADICAL_CODE = _Codes({r: r for r in range(5)}, 5)
_HYBRID_CODE = _Codes(_HYBRID, 5)
_BOND_TYPE_CODE = _Codes(_BOND_TYPE, 4)

_Atom, _Bond = Chem.Atom, Chem.Bond
# Unbound getters, applied column by column with `map` (C-level loops, no per-atom frames).
_ATOM_COLUMNS = (
    (_ATOMIC_NUM_CODE, _Atom.GetAtomicNum),
    (_DEGREE_CODE, _Atom.GetTotalDegree),
    (_CHARGE_CODE, _Atom.GetFormalCharge),
    (_NUM_HS_CODE, _Atom.GetTotalNumHs),
    (_RADICAL_CODE, _Atom.GetNumRadicalElectrons),
    (_HYBRID_CODE, _Atom.GetHybridization),
)

# The only SMILES syntax that can set an atom's chiral tag or a bond's stereo: `@` (tetrahedral,
# allene, square planar, ... tags), `/` `\` (double-bond geometry) and `|` (CXSMILES extensions
# such as wiggly bonds). Without any of them every tag is CHI_UNSPECIFIED / STEREONONE.
_STEREO_MARKS = ("@", "/", "\\", "|")


def has_stereo_marks(smiles: str) -> bool:
    """Whether a SMILES can carry chiral tags or bond stereo (so they must be read per atom)."""
    return any(mark in smiles for mark in _STEREO_MARKS)


@dataclass(frozen=True)
class MolGraph:
    """One molecule as integer arrays: x (atoms × 9), edge_index (2 × 2·bonds), edge_attr."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


def mol_to_graph(mol: Chem.Mol, stereo: bool = True) -> MolGraph:
    """Featurize a parsed molecule; each bond appears in both directions, as in OGB.

    Same codes as `atom_features` / `bond_features` (and OGB's `smiles2graph`), ~2× faster:
    RDKit's Python wrappers cost ~1–2 µs per Atom/Bond object and ~0.25 µs per getter call
    (0.6 µs for enum getters), so each object is wrapped once, each feature is one `map`
    over the molecule, and the arrays are built by NumPy. `stereo=False` is only for
    molecules parsed from SMILES without stereo marks (see `has_stereo_marks`): it skips
    the chiral-tag and bond-stereo getters, whose values are then known to be 0.
    """
    n_atoms, n_bonds = mol.GetNumAtoms(), mol.GetNumBonds()
    atoms = list(map(mol.GetAtomWithIdx, range(n_atoms)))
    columns = [list(map(codes.__getitem__, map(get, atoms))) for codes, get in _ATOM_COLUMNS]
    chiral = (
        list(map(_CHIRAL_CODE.__getitem__, map(_Atom.GetChiralTag, atoms)))
        if stereo
        else [0] * n_atoms
    )
    columns.insert(1, chiral)
    columns.append(list(map(_Atom.GetIsAromatic, atoms)))
    columns.append(list(map(_Atom.IsInRing, atoms)))
    x = np.ascontiguousarray(np.array(columns, dtype=np.int64).reshape(9, n_atoms).T)
    if n_bonds == 0:
        return MolGraph(x, np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64))
    bonds = list(map(mol.GetBondWithIdx, range(n_bonds)))
    ends = np.array(
        [list(map(_Bond.GetBeginAtomIdx, bonds)), list(map(_Bond.GetEndAtomIdx, bonds))],
        dtype=np.int64,
    )
    edge_index = np.empty((2, 2 * n_bonds), np.int64)
    edge_index[:, 0::2] = ends  # bond k: (i, j) at column 2k, (j, i) at 2k + 1, as OGB
    edge_index[:, 1::2] = ends[::-1]
    bond_stereo = (
        list(map(_BOND_STEREO.__getitem__, map(_Bond.GetStereo, bonds)))
        if stereo
        else [0] * n_bonds
    )
    feats = np.array(
        [
            list(map(_BOND_TYPE_CODE.__getitem__, map(_Bond.GetBondType, bonds))),
            bond_stereo,
            list(map(_Bond.GetIsConjugated, bonds)),
        ],
        dtype=np.int64,
    )
    return MolGraph(x, edge_index, np.repeat(feats.T, 2, axis=0))


def parse_smiles(smiles: object) -> tuple[Chem.Mol | None, str]:
    """RDKit parse with a readable reason on failure (empty, not a string, or RDKit's refusal)."""
    if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)):
        return None, "empty SMILES"
    if not isinstance(smiles, str):
        return None, f"SMILES must be text, got {type(smiles).__name__}"
    text = smiles.strip()
    if not text:
        return None, "empty SMILES"
    if "\0" in text:
        return None, f"SMILES contains a NUL byte at position {text.index(chr(0)) + 1}"
    if len(text) > MAX_SMILES_LENGTH:
        return None, (
            f"SMILES of {len(text):,} characters, longer than the {MAX_SMILES_LENGTH:,} "
            f"embedkit parses (set {MAX_SMILES_ENV} to raise the limit)"
        )
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        return None, f"RDKit could not parse SMILES {text[:80]!r}"
    if mol.GetNumAtoms() == 0:
        return None, "SMILES has no atoms"
    return mol, ""


def smiles_to_graph(smiles: object) -> tuple[MolGraph | None, str]:
    """Parse and featurize one SMILES; returns (graph, "") or (None, reason)."""
    mol, error = parse_smiles(smiles)
    if mol is None:
        return None, error
    return mol_to_graph(mol, stereo=has_stereo_marks(smiles)), ""
