"""WL classes (symmetry.py): atoms computed once give the module's embeddings bit for bit."""

from __future__ import annotations

import numpy as np
import torch
from conftest import model_with_nontrivial_norms, nci_smiles

import embedkit.molecules.symmetry as symmetry
from embedkit.molecules.batch import collate
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.featurize import smiles_to_graph
from embedkit.molecules.inference import ExactEncoder
from embedkit.molecules.model import InfoAlignModel


def _batch(smiles: list[str]):
    return collate([g for g in (smiles_to_graph(s)[0] for s in smiles) if g is not None])


def _model(tiny_model_dir) -> InfoAlignModel:
    return model_with_nontrivial_norms(tiny_model_dir, seed=2)


def test_symmetric_atoms_share_rows_and_layer_zero_spans_molecules():
    # benzene: 6 equal atoms at every depth; toluene's ring atoms differ by distance to CH3.
    batch = _batch(["c1ccccc1", "c1ccccc1", "Cc1ccccc1"])
    found = symmetry.classes(batch, num_layer=3)
    assert found.atom_codes.shape[0] == 3  # aromatic CH, aromatic C, CH3
    assert len(found.layers[0].z_a) < batch.x.shape[0]
    # from layer 1 on, classes stay inside one molecule: each benzene keeps one row.
    benzene_rows = found.layers[1].a_node[:12].unique()
    assert len(benzene_rows) == 2
    assert len(found.layers[2].z_a) < batch.x.shape[0]


def test_exact_encoder_equals_the_module_bit_for_bit(tiny_model_dir):
    model = _model(tiny_model_dir)
    batch = _batch(nci_smiles(80) + ["C/C=C/C", "C[C@@H](N)O", "[Na+].[Cl-]", "CC(C)(C)C"])
    with torch.inference_mode():
        reference = model.encoder(batch)
        exact = ExactEncoder(model.encoder)(batch)
    assert torch.equal(exact, reference)


def test_exact_encoder_is_exact_at_depth_and_leaves_the_weights_alone(tmp_path):
    """3 layers (two virtual-node updates), calibrated BatchNorm: the in-place additions of
    `ExactEncoder` neither change a value nor write into a parameter or buffer."""
    from conftest import calibrate_batch_norm

    from embedkit.molecules.gin import GINConfig

    torch.manual_seed(3)
    model = InfoAlignModel(GINConfig(num_layer=3, emb_dim=24))
    calibrate_batch_norm(model)
    model.save_pretrained(tmp_path)
    model = model_with_nontrivial_norms(tmp_path, seed=4)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    batch = _batch(nci_smiles(60) + ["C/C=C/C", "[Na+].[Cl-]"])
    with torch.inference_mode():
        first = ExactEncoder(model.encoder)(batch)
        second = ExactEncoder(model.encoder)(batch)
        reference = model.encoder(batch)
    assert torch.equal(first, reference) and torch.equal(second, reference)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_fp32_embedder_equals_the_training_forward_bit_for_bit(tiny_model_dir):
    model = _model(tiny_model_dir)
    smiles = nci_smiles(100)
    batch = _batch(smiles)
    with torch.inference_mode():
        reference = model.encoder(batch).numpy()
    ours, valid = MoleculeEmbedder(model, device="cpu").embed_smiles(smiles, batch_size=32)
    np.testing.assert_array_equal(ours[valid], reference)


def test_hash_collisions_cannot_merge_different_atoms(tiny_model_dir, monkeypatch):
    """With every row hashing alike, the row check falls back to exact grouping."""
    model = _model(tiny_model_dir)
    batch = _batch(nci_smiles(40))
    with torch.inference_mode():
        reference = ExactEncoder(model.encoder)(batch)
        normal = [len(layer.z_a) for layer in symmetry.classes(batch, 2).layers]
        monkeypatch.setattr(symmetry, "_HASH_WEIGHTS", np.zeros(64, np.uint64))
        collided = symmetry.classes(batch, 2)
        assert [len(layer.z_a) for layer in collided.layers] == normal
        assert torch.equal(ExactEncoder(model.encoder)(collided), reference)
