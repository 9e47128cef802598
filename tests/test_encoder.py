"""The GIN + VIB encoder: invariances, batching, inference fast path and save/load."""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pytest
import torch
from conftest import model_with_nontrivial_norms, nci_smiles
from rdkit import Chem

from embedkit.device import SlowPrecisionWarning
from embedkit.molecules.batch import collate
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.featurize import smiles_to_graph
from embedkit.molecules.inference import FrozenEncoder
from embedkit.molecules.model import InfoAlignModel


def test_embedding_is_independent_of_atom_order(tiny_model_dir):
    embedder = MoleculeEmbedder(InfoAlignModel.from_pretrained(tiny_model_dir), device="cpu")
    mol = Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O")
    shuffled = Chem.MolToSmiles(
        Chem.RenumberAtoms(mol, list(reversed(range(mol.GetNumAtoms())))), canonical=False
    )
    a, _ = embedder.embed_smiles(["CC(=O)Oc1ccccc1C(=O)O"])
    b, _ = embedder.embed_smiles([shuffled])
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_embedding_is_independent_of_batch_composition(tiny_model_dir):
    embedder = MoleculeEmbedder(InfoAlignModel.from_pretrained(tiny_model_dir), device="cpu")
    smiles = nci_smiles(40)
    together, _ = embedder.embed_smiles(smiles, batch_size=40)
    alone, _ = embedder.embed_smiles(smiles, batch_size=1)
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    assert np.abs(together[0] - together[1]).max() > 1e-3


def test_inference_fast_path_equals_training_layout(tiny_model_dir):
    model = InfoAlignModel.from_pretrained(tiny_model_dir)
    graphs = [g for g in (smiles_to_graph(s)[0] for s in nci_smiles(64)) if g is not None]
    with torch.no_grad():
        plain = model.encoder(collate(graphs)).numpy()
    fast, _ = MoleculeEmbedder(model, device="cpu").embed_smiles(nci_smiles(64))
    np.testing.assert_allclose(fast[~np.isnan(fast).any(1)], plain, rtol=1e-5, atol=1e-5)


def test_save_load_roundtrip_and_fp16(tiny_model_dir, tmp_path):
    model = InfoAlignModel.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    again = InfoAlignModel.from_pretrained(tmp_path / "fp16")
    assert again.config() == model.config()
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3, msg=name)
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < (
        tiny_model_dir / "model.safetensors"
    ).stat().st_size


def test_bf16_is_close_to_fp32(tiny_model_dir):
    model = InfoAlignModel.from_pretrained(tiny_model_dir)
    smiles = nci_smiles(50)
    fp32, _ = MoleculeEmbedder(model, device="cpu").embed_smiles(smiles)
    bf16, _ = MoleculeEmbedder(
        InfoAlignModel.from_pretrained(tiny_model_dir), device="cpu", precision="bf16"
    ).embed_smiles(smiles)
    ok = ~np.isnan(fp32).any(1)
    cos = (
        (fp32[ok] * bf16[ok]).sum(1)
        / np.linalg.norm(fp32[ok], axis=1)
        / np.linalg.norm(bf16[ok], axis=1)
    )
    assert cos.min() > 0.98


def test_frozen_encoder_is_an_exact_rewrite(tiny_model_dir):
    """BatchNorm folding, fused ReLU and the combined bond table change rounding only (fp32)."""
    model = model_with_nontrivial_norms(tiny_model_dir, seed=1)  # folding really exercised
    smiles = nci_smiles(64) + ["C/C=C/C", "C[C@@H](N)O", "[Na+].[Cl-]"]
    batch = collate([g for g in (smiles_to_graph(s)[0] for s in smiles) if g is not None])
    with torch.inference_mode():
        reference = model.encoder(batch)
        frozen = FrozenEncoder(model.encoder, torch.float32, "cpu")(batch)
    torch.testing.assert_close(frozen, reference, rtol=1e-4, atol=1e-4)


def test_bf16_worker_processes_match_in_process(tiny_model_dir):
    smiles = nci_smiles(2100)  # enough rows for worker processes
    embedder = MoleculeEmbedder(
        InfoAlignModel.from_pretrained(tiny_model_dir), device="cpu", precision="bf16"
    )
    serial = embedder.embed(smiles, batch_size=128, num_workers=0)
    parallel = embedder.embed(smiles, batch_size=128, num_workers=2)
    np.testing.assert_array_equal(serial.valid, parallel.valid)
    np.testing.assert_allclose(serial.embeddings, parallel.embeddings, rtol=1e-2, atol=1e-2)
    assert serial.errors == parallel.errors


@pytest.mark.parametrize("amx", [False, True])
def test_bf16_warns_where_it_is_slower_than_fp32(tiny_model_dir, monkeypatch, amx):
    """Only the hardware probe is replaced: the warning logic and the embedder are real."""
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")  # the warning is x86's
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    model = InfoAlignModel.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MoleculeEmbedder(model, device="cpu", precision="bf16")
        MoleculeEmbedder(model, device="cpu", precision="fp32")
    slow = [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
    assert len(slow) == (0 if amx else 1)
    if slow:
        assert "without AMX" in str(slow[0].message) and slow[0].filename == __file__


def test_cli_prints_embedkit_warnings_as_one_line(tiny_model_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from embedkit.cli import main

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    (tmp_path / "in.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("always", SlowPrecisionWarning)  # pyproject ignores it in tests
        result = CliRunner().invoke(
            main,
            ["embed-smiles", str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.parquet")]
            + ["-m", f"local-dir:{tiny_model_dir}", "--precision", "bf16"],
        )
        hook_after = warnings.showwarning
    assert result.exit_code == 0, result.output
    assert hook_after.__module__ != "embedkit.cli.options"  # the caller's hook is back
    warning_lines = [line for line in result.stderr.splitlines() if "AMX" in line]
    assert warning_lines == [
        "warning: bf16 on a CPU without AMX: slower than fp32 in embedkit's measurements; "
        "fp32, the default, is also exact"
    ]


def test_bf16_does_not_warn_off_x86(tiny_model_dir, monkeypatch):
    """ARM CPUs have their own bf16 instructions, which embedkit has not measured."""
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MoleculeEmbedder(InfoAlignModel.from_pretrained(tiny_model_dir), precision="bf16")
    assert not [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
