"""The featurizer gives OGB's integer codes, so converted InfoAlign weights see the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import nci_smiles
from rdkit import Chem

from embedkit.molecules.featurize import (
    ATOM_VOCAB_SIZES,
    BOND_VOCAB_SIZES,
    has_stereo_marks,
    mol_to_graph,
    parse_smiles,
    smiles_to_graph,
)


def test_vocabularies_match_ogb():
    from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims

    assert ATOM_VOCAB_SIZES == get_atom_feature_dims()
    assert BOND_VOCAB_SIZES == get_bond_feature_dims()


def test_codes_equal_ogb_on_nci_molecules():
    from ogb.utils import smiles2graph

    checked = 0
    for smiles in nci_smiles(1500):
        graph, error = smiles_to_graph(smiles)
        if graph is None:
            continue
        reference = smiles2graph(smiles)
        np.testing.assert_array_equal(graph.x, reference["node_feat"])
        np.testing.assert_array_equal(graph.edge_index, reference["edge_index"])
        np.testing.assert_array_equal(graph.edge_attr, reference["edge_feat"])
        checked += 1
    assert checked > 1400


@pytest.mark.parametrize(
    "smiles",
    [
        "CC(=O)[O-].[Na+]",  # salt: two fragments, charges
        "N[C@@H](Cc1ccc(O)c(O)c1)C(=O)O",  # stereo center
        "C/C=C/C",  # bond stereo
        "c1ccncc1",  # aromatic
        "[NH4+]",  # single atom, no bonds
        "F[P-](F)(F)(F)(F)F",  # hypervalent
        "[Xe]",  # noble gas
        "C[C@@H](F)Cl",  # chiral tag: read per atom (stereo marks present)
        "F/C=C\\F",  # cis double bond
        "CC=CC |w:1.0|",  # CXSMILES wiggly bond: STEREOANY without / or \\
    ],
)
def test_special_molecules_match_ogb(smiles):
    from ogb.utils import smiles2graph

    graph, error = smiles_to_graph(smiles)
    assert error == ""
    reference = smiles2graph(smiles)
    np.testing.assert_array_equal(graph.x, reference["node_feat"])
    np.testing.assert_array_equal(graph.edge_attr.reshape(-1, 3), reference["edge_feat"])


def test_edges_are_bidirectional():
    graph, _ = smiles_to_graph("CCO")
    pairs = {tuple(p) for p in graph.edge_index.T}
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1)}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        (float("nan"), "empty"),
        ("C(C)(C)(C)(C)C", "could not parse"),
        ("not a molecule", "could not parse"),
        (42, "must be text"),
    ],
)
def test_invalid_inputs_give_reasons(value, reason):
    mol, error = parse_smiles(value)
    assert mol is None
    assert reason in error


def test_chiral_tag_is_encoded():
    cw, _ = smiles_to_graph("F[C@H](Cl)Br")
    ccw, _ = smiles_to_graph("F[C@@H](Cl)Br")
    assert cw.x[1, 1] != ccw.x[1, 1]
    assert Chem.MolFromSmiles("F[C@H](Cl)Br") is not None


def test_stereo_shortcut_only_without_marks():
    """Chiral tags / bond stereo are skipped only for SMILES that cannot carry them."""
    assert not has_stereo_marks("CC(=O)Oc1ccccc1C(=O)O")
    for smiles in ["F[C@H](Cl)Br", "F/C=C/F", "F\\C=C\\F", "CC=CC |w:1.0|"]:
        assert has_stereo_marks(smiles)
        full = mol_to_graph(Chem.MolFromSmiles(smiles), stereo=True)
        fast, _ = smiles_to_graph(smiles)
        np.testing.assert_array_equal(fast.x, full.x)
        np.testing.assert_array_equal(fast.edge_attr, full.edge_attr)
    for smiles in nci_smiles(300):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None or has_stereo_marks(smiles):
            continue
        full, fast = mol_to_graph(mol, stereo=True), mol_to_graph(mol, stereo=False)
        np.testing.assert_array_equal(fast.x, full.x)
        np.testing.assert_array_equal(fast.edge_attr, full.edge_attr)
