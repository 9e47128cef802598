"""Our ViT weights in a plain timm `VisionTransformer` give our embeddings (issue 12 §4).

Real timm (a runtime dependency), the shipped demo model and tiny random models; the
preprocessing is written out in plain numpy/torch, as the model card tells a timm user.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import embedkit
from embedkit.errors import InputError
from embedkit.images.model import ImageModel
from embedkit.images.preprocess import crop_site, normalize
from embedkit.images.timm_export import timm_kwargs, timm_state_dict, to_timm
from embedkit.images.vit import ViTConfig
from embedkit.zoo import get_card

DEMO = "vit-s16-cellpaint-demo"
PLAIN = dict(num_classes=0, global_pool="avg", fc_norm=False)


def plain_preprocess(planes: np.ndarray) -> torch.Tensor:
    """The card's recipe without embedkit: / dtype max, then per-channel instance norm."""
    x = torch.from_numpy(planes.astype(np.float32) / np.iinfo(planes.dtype).max)[None]
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return torch.where(std > 1e-6, (x - mean) / std.clamp_min(1e-6), 0.0)


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    return embedkit.load(DEMO, device="cpu")


def test_the_shipped_demo_in_plain_timm_gives_our_embeddings(demo):
    model = demo.model
    channels, size = len(model.channels), model.crop_size
    vit = timm.create_model("vit_small_patch16_224", in_chans=channels, img_size=size, **PLAIN)
    missing, unexpected = vit.load_state_dict(timm_state_dict(model), strict=True)
    assert not missing and not unexpected
    vit.eval()

    rng = np.random.default_rng(0)
    site = rng.integers(0, 65535, (channels, size, 2 * size), dtype=np.uint16)  # two tiles
    crops, _ = crop_site(site.astype(np.float32) / 65535, size)  # embedkit's own path
    ours = demo.embed_crops(normalize(crops, model.normalization))
    planes = [site[:, :, x : x + size] for x in (0, size)]
    with torch.no_grad():
        theirs = torch.cat([vit(plain_preprocess(p)) for p in planes]).numpy()
    assert ours.shape == theirs.shape == (2, 384)
    assert np.abs(ours - theirs).max() <= 1e-6


def test_the_timm_recipe_in_the_shipped_card_runs_and_matches(demo):
    card = (get_card(DEMO).shipped_dir / "README.md").read_text()
    timm_part = card.split("## Use with timm", 1)[1]
    code = re.search(r"```python\n(.*?)```", timm_part, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # the snippet, exactly as published
    with torch.no_grad():
        expected = scope["model"].encoder(scope["x"])
    torch.testing.assert_close(scope["embedding"], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        dict(depth=2, embed_dim=24, num_heads=2),
        dict(depth=2, embed_dim=24, num_heads=2, qk_norm=True, init_values=0.1),
        dict(depth=1, embed_dim=24, num_heads=2, parallel_blocks=True, qkv_bias=False),
        dict(depth=1, embed_dim=24, num_heads=2, pos_embed_kind="sincos", final_norm=False),
        dict(depth=1, embed_dim=32, num_heads=2, patch_size=8, mlp_ratio=2.0),
    ],
)
def test_every_early_fusion_variant_loads_strictly_and_matches(config):
    torch.manual_seed(0)
    model = ImageModel(ViTConfig(img_size=32, in_chans=3, **config)).eval()
    crops = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(to_timm(model)(crops), model.encoder(crops), rtol=0, atol=1e-6)


def test_cell_line_tokens_need_a_line_and_become_timm_register_tokens():
    torch.manual_seed(0)
    lines = {"A549": [0.1, 0.2, 0.3, 0.4], "U2OS": [1.0, 0.0, -1.0, 2.0]}
    config = ViTConfig(
        img_size=32, in_chans=6, depth=2, embed_dim=24, num_heads=2, cell_line_tokens=3,
        cell_line_dim=4,
    )  # fmt: skip
    model = ImageModel(config, cell_lines=lines).eval()
    with pytest.raises(InputError, match="3 cell-line tokens .* timm cannot compute"):
        timm_state_dict(model)
    with pytest.raises(InputError, match="de novo|not in|unknown|no cell line"):
        to_timm(model, cell_line="NOPE")
    assert timm_kwargs(model, "U2OS")["reg_tokens"] == 3
    crops = torch.randn(2, 6, 32, 32)
    for line in lines:
        vector = model.cell_line_vector(line).expand(2, -1)
        with torch.no_grad():
            torch.testing.assert_close(
                to_timm(model, line)(crops), model.encoder(crops, vector), rtol=0, atol=1e-5
            )


def test_what_timm_cannot_express_is_refused_in_one_sentence():
    agnostic = ImageModel(
        ViTConfig(img_size=32, in_chans=3, depth=1, embed_dim=24, num_heads=2,
                  channel_agnostic=True, pos_embed_kind="sincos")
    )  # fmt: skip
    with pytest.raises(InputError, match="channel-agnostic") as err:
        to_timm(agnostic)
    assert "\n" not in str(err.value)
    plain = ImageModel(ViTConfig(img_size=32, in_chans=3, depth=1, embed_dim=24, num_heads=2))
    with pytest.raises(InputError, match="no cell-line tokens"):
        to_timm(plain, cell_line="A549")


def test_pretrained_cfg_overlay_without_pretrained_silently_keeps_random_weights(tmp_path):
    """The trap the card warns about (timm 1.0): the file is ignored unless pretrained=True,
    and embedkit's own model.safetensors (encoder.vit.* keys) loads nothing either."""
    torch.manual_seed(0)
    model = ImageModel(ViTConfig(img_size=32, in_chans=3, depth=1, embed_dim=24, num_heads=2))
    model.eval()
    kwargs = {k: v for k, v in timm_kwargs(model).items() if k != "model_name"}
    exported = tmp_path / "vit_timm.safetensors"
    save_file(timm_state_dict(model), str(exported))
    ours_file = model.save_pretrained(tmp_path / "m") / "model.safetensors"
    crops = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.encoder(crops)

        def timm_output(file, **extra):
            overlay = dict(file=str(file))
            vit = timm.create_model(
                "vit_small_patch16_224", pretrained_cfg_overlay=overlay, **extra, **kwargs
            )
            return vit.eval()(crops)

        assert not torch.allclose(timm_output(exported), expected, atol=1e-3)  # no pretrained
        assert not torch.allclose(timm_output(ours_file, pretrained=True), expected, atol=1e-3)
        torch.testing.assert_close(
            timm_output(exported, pretrained=True), expected, rtol=0, atol=1e-6
        )
