"""`train.ship` and `train.publish` find a run's kind in the registry, for every kind.

`ship` used to take the image path whenever RUN_DIR/model/config.json existed, which an
InfoAlign run also has, so shipping an InfoAlign run failed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import embedkit
from embedkit.images.model import ImageModel
from embedkit.images.vit import ViTConfig
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import card_data, render
from train.publish import check_folder
from train.ship import ship


def hub_card(model) -> str:
    """A README with the front matter publish checks (huggingface_hub's ModelCardData)."""
    return render(card_data(model.ARCHITECTURE, "mit", ["test"]), "# card\n")


RUNS = {
    "molecules": lambda: InfoAlignModel(
        GINConfig(num_layer=2, emb_dim=16), {"morgan": 8}, extra={"data": ["real.csv"]}
    ),
    "images": lambda: ImageModel(
        ViTConfig(img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2),
        extra={"data": ["sim/plates"], "simulated": "simulated plates"},
    ),
}


@pytest.mark.parametrize("task", list(RUNS))
def test_ship_any_kind_from_a_run_folder_then_load_it_by_name(tmp_path, monkeypatch, task):
    torch.manual_seed(0)
    model = RUNS[task]().eval()
    run = tmp_path / "run"
    model.save_pretrained(run / "model")
    (run / "model" / "README.md").write_text(hub_card(model))
    (run / "metrics.jsonl").write_text("{}\n")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    card_path = ship(run, "tiny", "a tiny model", "MIT", "org/tiny", zoo_dir=zoo)

    card = json.loads(card_path.read_text())
    assert card["task"] == task and card["architecture"] == model.ARCHITECTURE
    assert card["input"] == model.input_spec()
    assert card["provenance"]["data"] == model.extra["data"]
    assert card["files"]["model.safetensors"] == sha256_of(zoo / "tiny" / "model.safetensors")
    assert "As shipped in embedkit" in (zoo / "tiny" / "README.md").read_text()

    monkeypatch.setenv("EMBEDKIT_EXTRA_CARDS", str(zoo))
    embedder = embedkit.load("tiny", task=task)
    assert embedder.run_info["model_id"] == "tiny" and embedder.run_info["source"] == "shipped"
    shipped = type(model).from_pretrained(zoo / "tiny")
    for name, tensor in model.state_dict().items():  # the fp16 cast, nothing else
        torch.testing.assert_close(
            shipped.state_dict()[name],
            tensor.half().float() if tensor.is_floating_point() else tensor,
            rtol=0,
            atol=0,
        )
    assert np.isfinite(
        embedder.embed(["CCO"] if task == "molecules" else torch.randn(1, 5, 32, 32)).embeddings
    ).all()


@pytest.mark.parametrize("task", list(RUNS))
def test_publish_dry_run_checks_any_kind(tmp_path, task):
    model = RUNS[task]()
    folder = model.save_pretrained(tmp_path / "m")
    (folder / "README.md").write_text(hub_card(model))
    files = check_folder(folder)
    assert set(files) == {
        "config.json",
        "model.safetensors",
        "model.safetensors.sha256",
        "README.md",
    }
