"""Shared fixtures: tiny random models in temp folders, RDKit's bundled molecules, real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from rdkit import RDConfig

from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The project's real data (../shared/data) or $EMBEDKIT_DATA_DIR; None if absent."""
    env = os.environ.get("EMBEDKIT_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "MANIFEST.json").exists():
            return path
    return None


@pytest.fixture
def real_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not present (set EMBEDKIT_DATA_DIR or place ../shared/data)")
    return path


def nci_smiles(n: int | None = None) -> list[str]:
    """RDKit's bundled NCI molecules (Data/NCI/first_5K.smi)."""
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    smiles = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return smiles[:n] if n else smiles


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 16-d randomly initialized model folder (config.json + model.safetensors)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_model")
    model = InfoAlignModel(GINConfig(num_layer=2, emb_dim=16), decoder_spaces={"morgan": 32})
    calibrate_batch_norm(model)
    model.save_pretrained(folder)
    return folder


def calibrate_batch_norm(model: InfoAlignModel) -> None:
    """Run a few training-mode passes so BatchNorm statistics are realistic, not 0/1."""
    from embedkit.molecules.batch import collate
    from embedkit.molecules.featurize import smiles_to_graph

    graphs = [smiles_to_graph(s)[0] for s in nci_smiles(256)]
    model.train()
    with torch.no_grad():
        for start in range(0, len(graphs), 64):
            model.encoder(collate(graphs[start : start + 64]))
    model.eval()


def model_with_nontrivial_norms(model_dir: Path, seed: int) -> InfoAlignModel:
    """The tiny model in eval mode with non-trivial BatchNorm affine, GIN ε and virtual node,
    so that folding and the symmetry shortcut are really exercised (default BN is the
    identity, the default virtual node zero)."""
    from embedkit.molecules.embedder import freeze_embedding_norms

    model = InfoAlignModel.from_pretrained(model_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
        for conv in model.encoder.graph_encoder.convs:
            conv.eps.fill_(0.1)
        # trained models have a non-zero virtual node (it is initialised to zero)
        model.encoder.graph_encoder.virtualnode_embedding.weight.normal_()
    freeze_embedding_norms(model)
    return model.eval()
