"""`embedkit zoo convert infoalign` reproduces the upstream model exactly.

The `infoalign` package (PyPI, MIT, in the dev extra) builds InfoAlign's own GIN; we give it
random weights (with BatchNorm statistics calibrated on real molecules so activations have
realistic scale), save them in the upstream `pretrain.pt` format, convert, and compare
embeddings on RDKit's bundled NCI molecules.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import nci_smiles

# The upstream package (and the torch_geometric it brings) is in the dev extra only.
pytest.importorskip("infoalign", reason="needs the dev extra: pip install -e '.[dev]'")
pytest.importorskip("torch_geometric", reason="needs the dev extra: pip install -e '.[dev]'")
from infoalign.models.gnn import PretrainedGNN  # noqa: E402
from infoalign.utils import convert_smiles_to_graph  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402

from embedkit.api import load  # noqa: E402
from embedkit.errors import UntrustedFormatError  # noqa: E402
from embedkit.molecules.featurize import parse_smiles  # noqa: E402
from embedkit.zoo.hub_card import check_card_text  # noqa: E402


def run_convert(checkpoint, out) -> subprocess.CompletedProcess:
    """`embedkit zoo convert infoalign CHECKPOINT -o OUT`, as a user runs it."""
    cmd = ["zoo", "convert", "infoalign", str(checkpoint), "-o", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "embedkit.cli", *cmd], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    torch.manual_seed(1)
    model = PretrainedGNN(gnn_type="gin-virtual", num_layer=5, emb_dim=300, graph_pooling="sum")
    # The upstream featurizer crashes on SMILES RDKit rejects, so compare on the parsable ones.
    smiles = [s for s in nci_smiles() if parse_smiles(s)[0] is not None]
    graphs = convert_smiles_to_graph(smiles)
    model.train()
    with torch.no_grad():
        for batch in DataLoader(graphs[:1000], batch_size=100, shuffle=True):
            model(batch)
    model.eval()
    with torch.no_grad():
        reference = torch.cat([model(b) for b in DataLoader(graphs, batch_size=64)]).numpy()
    checkpoint = tmp_path_factory.mktemp("upstream") / "pretrain.pt"
    torch.save(model.state_dict(), checkpoint)
    return smiles, reference, checkpoint


def test_converted_embeddings_equal_upstream(upstream, tmp_path):
    smiles, reference, checkpoint = upstream
    out = tmp_path / "converted"
    result = run_convert(checkpoint, out)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    assert check_card_text((out / "README.md").read_text(), "card")["pipeline_tag"]
    embedder = load(f"local-dir:{out}", device="cpu")
    ours, valid = embedder.embed_smiles(smiles, num_workers=0)
    assert valid.all()
    assert len(smiles) > 4900
    assert np.abs(ours - reference).max() < 1e-4
    # Not trivially equal: embeddings differ between molecules and have realistic scale.
    assert np.linalg.norm(reference, axis=1).mean() > 1.0
    assert np.std(reference[:, 0]) > 0.1


def test_pickle_with_code_is_refused(tmp_path):
    evil = tmp_path / "pretrain.pt"
    torch.save({"graph_encoder.x": torch.zeros(1), "obj": object()}, evil)
    with pytest.raises(UntrustedFormatError):
        from embedkit.molecules.convert import convert_infoalign

        convert_infoalign(evil, tmp_path / "out")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"backbone.weight": torch.zeros(3, 3)}, other)
    result = run_convert(other, tmp_path / "out")
    assert result.returncode == 2
    assert "graph_encoder" in result.stderr
    assert "Traceback" not in result.stderr
