"""Model cards the Hub parses (issue 12 §4): every README embedkit writes or ships has front
matter from `huggingface_hub.ModelCardData`, a lowercase licence id, the pipeline tag of the
kind's task and its usage; `publish` checks it with `huggingface_hub.ModelCard`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard

from embedkit.errors import InputError
from embedkit.images.model import ImageModel
from embedkit.images.vit import ViTConfig
from embedkit.registry import get_kind, kinds
from embedkit.zoo import list_cards
from embedkit.zoo.hub_card import PIPELINE_TAGS, card_data, check_card_text, hub_license, render
from train.publish import check_folder
from train.ship import refresh_card, ship

SHIPPED = [card for card in list_cards() if card.shipped_dir is not None]


def hub_fields(text: str) -> dict:
    return ModelCard(text, ignore_metadata_errors=False).data.to_dict()


@pytest.mark.parametrize("card", SHIPPED, ids=[c.name for c in SHIPPED])
def test_every_shipped_card_parses_on_the_hub_and_publish_takes_it(card):
    text = (card.shipped_dir / "README.md").read_text()
    meta = hub_fields(text)
    assert meta["library_name"] == "embedkit"
    assert meta["license"] == hub_license(card.license)["license"] == meta["license"].lower()
    assert meta["pipeline_tag"] == PIPELINE_TAGS[card.task]
    assert "embedkit" in meta["tags"]
    assert f'embedkit.load("{card.name}")' in text  # the usage of its own task, its own name
    assert set(check_folder(card.shipped_dir)) >= {"README.md", "config.json"}


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.architecture)
def test_render_gives_each_kind_its_pipeline_tag_and_a_hub_licence_id(kind):
    for given, expected in [("CC-BY-4.0", "cc-by-4.0"), ("MIT", "mit"), ("other", "other")]:
        text = render(card_data(kind.architecture, given, ["x", "embedkit"]), "# a model\n")
        meta = hub_fields(text)
        assert meta == {
            "library_name": "embedkit",
            "license": expected,
            "pipeline_tag": PIPELINE_TAGS[kind.task],
            "tags": ["embedkit", "x"],
        }
    odd = hub_fields(render(card_data(kind.architecture, "Non-Commercial", []), "# m\n"))
    assert (odd["license"], odd["license_name"]) == ("other", "non-commercial")


@pytest.mark.parametrize(
    "text, why",
    [
        ("# a card without front matter\n", "no YAML front matter"),
        ("---\nlibrary_name: embedkit\n---\n# card\n", "lacks license, pipeline_tag, tags"),
        (
            "---\nlibrary_name: embedkit\nlicense: CC-BY-4.0\npipeline_tag: feature-extraction\n"
            "tags:\n- embedkit\n---\n",
            "not a lowercase Hub id",
        ),
    ],
)
def test_publish_refuses_a_card_the_hub_would_not_read_in_one_sentence(tmp_path, text, why):
    folder = ImageModel(ViTConfig(img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2))
    folder = folder.save_pretrained(tmp_path / "m")
    (folder / "README.md").write_text(text)
    with pytest.raises(InputError, match=why) as err:
        check_folder(folder)
    assert "\n" not in str(err.value)


def _tiny_image_run(tmp_path, readme: str | None, cell_line_tokens: int = 0):
    torch.manual_seed(0)
    lines = {"A549": [0.5, -0.5]} if cell_line_tokens else {}
    config = ViTConfig(
        img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2,
        cell_line_tokens=cell_line_tokens, cell_line_dim=2 if cell_line_tokens else 0,
    )  # fmt: skip
    model = ImageModel(config, cell_lines=lines, extra={"simulated": "simulated plates"})
    folder = model.save_pretrained(tmp_path / "run" / "model")
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return tmp_path / "run"


@pytest.mark.parametrize("tokens", [0, 2])
def test_ship_turns_a_bare_readme_into_a_hub_card_with_usage_and_timm(tmp_path, tokens):
    run = _tiny_image_run(tmp_path, "# my ViT\n\nTrained on a laptop.\n", tokens)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    ship(run, "tiny-vit", "a tiny ViT", "CC-BY-4.0", "org/tiny-vit", zoo_dir=zoo)
    card = json.loads((zoo / "tiny-vit.card.json").read_text())
    assert card["license"] == "cc-by-4.0"
    text = (zoo / "tiny-vit" / "README.md").read_text()
    meta = check_card_text(text, "shipped")
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert "simulated-data" in meta["tags"]
    assert "Trained on a laptop." in text and "As shipped in embedkit" in text
    assert 'embedkit.load("tiny-vit")' in text and "-m tiny-vit" in text
    assert "## Use with timm" in text and "in_chans=5" in text
    assert ("reg_tokens=2" in text and 'cell_line="A549"' in text) == bool(tokens)
    check_folder(zoo / "tiny-vit")  # what publish checks

    refresh_card("tiny-vit", zoo)  # writing the card again replaces, never stacks
    again = (zoo / "tiny-vit" / "README.md").read_text()
    assert again == text
    assert again.count("## Use with timm") == again.count("## Use\n") == 1


def test_refresh_keeps_the_weights_and_pinned_files(tmp_path):
    run = _tiny_image_run(tmp_path, None)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    ship(run, "tiny-vit", "a tiny ViT", "mit", "org/tiny-vit", zoo_dir=zoo)
    folder = zoo / "tiny-vit"
    (folder / "README.md").write_text("# hand-written, no front matter\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "README.md"}
    refresh_card("tiny-vit", zoo)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "README.md"} == before
    assert check_card_text((folder / "README.md").read_text(), "refreshed")["license"] == "mit"


def test_usage_blocks_are_the_registry_snippet_of_the_kind(tmp_path):
    run = _tiny_image_run(tmp_path, None)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    ship(run, "tiny-vit", "a tiny ViT", "mit", "org/tiny-vit", zoo_dir=zoo)
    text = (zoo / "tiny-vit" / "README.md").read_text()
    use = re.search(r"<!-- embedkit:use -->(.*?)<!-- /embedkit:use -->", text, re.S).group(1)
    snippet = get_kind("embedkit-vit").usage_for("tiny-vit")
    assert "embedkit embed-images plate_dir/ -m tiny-vit -o embeddings/" in use
    assert snippet.split("\n")[1] in use
