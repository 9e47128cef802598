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


class UpstreamMLP(torch.nn.Module):
    """InfoAlign's decoder MLP as its models/gnn.py lays it out (fc1, bn1, GELU, dropout,
    fc2): the parameter names of `decoder_list.{i}` in the released pretrain.pt."""

    def __init__(self, emb_dim: int, out: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(emb_dim, 4 * emb_dim)
        self.bn1 = torch.nn.BatchNorm1d(4 * emb_dim)
        self.act = torch.nn.GELU()
        self.drop1 = torch.nn.Dropout(0.5)
        self.fc2 = torch.nn.Linear(4 * emb_dim, out)

    def forward(self, x):
        return self.fc2(self.drop1(self.act(self.bn1(self.fc1(x)))))


# small stand-ins for the upstream widths [1024, 1111, 862, 1783, 966, 978]
WIDTHS = {"morgan": 16, "gene_crispr": 5, "gene_orf": 4, "cp_bray": 7, "cp_jump": 6, "l1000": 3}


@pytest.fixture(scope="module")
def with_decoders(upstream, tmp_path_factory):
    smiles, reference, checkpoint = upstream
    torch.manual_seed(2)
    decoders = [UpstreamMLP(300, w) for w in WIDTHS.values()]
    for mlp in decoders:  # BatchNorm statistics away from their defaults
        mlp.train()
        with torch.no_grad():
            mlp(torch.from_numpy(reference[:500]))
        mlp.eval()
    state = torch.load(checkpoint, weights_only=True)
    for i, mlp in enumerate(decoders):
        state |= {f"decoder_list.{i}.{k}": v for k, v in mlp.state_dict().items()}
    path = tmp_path_factory.mktemp("upstream_decoders") / "pretrain.pt"
    torch.save(state, path)
    return smiles, reference, path, decoders


def test_decoders_are_kept_and_decode_as_upstream(with_decoders, tmp_path):
    """`zoo convert infoalign` dropped the decoders, so the released weights could not
    score profiles; now they are kept, and the user's column lists make retrieval work."""
    import json

    import pandas as pd

    from embedkit.retrieval import build_index

    smiles, reference, checkpoint, decoders = with_decoders
    columns = [f"Cells_F{i}" for i in range(WIDTHS["cp_jump"])]
    spaces = {"cp_jump": {"columns": columns, "min": [-2.0] * 6, "max": [2.0] * 6}}
    (tmp_path / "spaces.json").write_text(json.dumps(spaces))
    out = tmp_path / "converted"
    cmd = ["zoo", "convert", "infoalign", str(checkpoint), "-o", str(out)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedkit.cli",
            *cmd,
            "--feature-spaces",
            str(tmp_path / "spaces.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    model = load(f"local-dir:{out}", device="cpu", with_heads=True)
    assert dict(model.model.decoder_spaces) == WIDTHS
    mu = torch.from_numpy(reference[:200])
    with torch.no_grad():
        for (name, _), mlp in zip(WIDTHS.items(), decoders, strict=True):
            ours = model.model.decoders[name](mu).numpy()
            np.testing.assert_allclose(ours, mlp(mu).numpy(), atol=1e-4)
    assert model.model.extra["feature_spaces"]["cp_jump"]["columns"] == columns
    table = pd.DataFrame(np.random.default_rng(0).normal(size=(5, 6)), columns=columns)
    table.insert(0, "Metadata_Key", list("abcde"))
    index, _ = build_index(
        table, model.model.extra["feature_spaces"], model.run_info, "t", metric="likelihood"
    )
    assert index.space.name == "cp_jump" and index.count == 5

    # without the file the decoders are kept all the same (retrieval then needs the file)
    assert run_convert(checkpoint, tmp_path / "bare").returncode == 0
    bare = load(f"local-dir:{tmp_path / 'bare'}", device="cpu", with_heads=True)
    assert dict(bare.model.decoder_spaces) == WIDTHS
    assert "feature_spaces" not in bare.model.extra


def test_a_feature_space_file_that_does_not_fit_is_refused(with_decoders, upstream, tmp_path):
    import json

    _, _, checkpoint, _ = with_decoders
    cases = {
        "wrong width": {"cp_jump": {"columns": ["a", "b"], "min": [0, 0], "max": [1, 1]}},
        "unknown space": {"cp_other": {"columns": ["a"], "min": [0], "max": [1]}},
    }
    messages = {
        "wrong width": "space 'cp_jump' lists 2 columns but its decoder predicts 6",
        "unknown space": "the checkpoint has no decoder 'cp_other'",
    }
    for case, spaces in cases.items():
        path = tmp_path / f"{case}.json"
        path.write_text(json.dumps(spaces))
        cmd = ["zoo", "convert", "infoalign", str(checkpoint), "-o", str(tmp_path / case)]
        result = subprocess.run(
            [sys.executable, "-m", "embedkit.cli", *cmd, "--feature-spaces", str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and messages[case] in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / case).exists()
    # an encoder-only checkpoint has nothing for the file to describe
    _, _, bare_checkpoint = upstream
    cmd = ["zoo", "convert", "infoalign", str(bare_checkpoint), "-o", str(tmp_path / "x")]
    result = subprocess.run(
        [sys.executable, "-m", "embedkit.cli", *cmd, "--feature-spaces", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "has no decoders" in result.stderr
