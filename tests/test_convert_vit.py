"""`embedkit zoo convert rxrx1-vit | openphenom` reproduce the upstream encoders.

Each test builds RANDOM weights in the UPSTREAM key layout (small dims, true structure),
saves them the way upstream does, converts through the CLI, loads with `embedkit.load`, and
compares embeddings with a reference forward written here in plain torch ops directly on
the upstream state dict (it shares no code with embedkit's encoder).

Upstream layouts (read from the sources, not copied):
* Seed paper (BioMicroscopyProfiler `src/models/vit.py`, via shared/papers/
  reference-implementations.md A2/A3): training wrapper prefix `encoder.`; the ViT's own
  `cls_token`, `pos_embed` [1, 1+k+N, D], `domain_proj` Linear(ge_dim, D·k); timm's
  `patch_embed`/`blocks`/`norm` at top level *and* again under `backbone.` (with timm's
  unused `backbone.cls_token`/`backbone.pos_embed`).
* OpenPhenom (recursionpharma/maes_microscopy `huggingface_mae.py`, `mae_modules.py`,
  `vit.py`): `encoder.vit_backbone.` + timm VisionTransformer keys with a 1-channel
  `patch_embed.proj`, `pos_embed` [1, 1 + 11·N, D] (zero CLS row, sin-cos table repeated
  for 11 channels), ParallelScalingBlock keys, `fc_norm` (global_pool="avg" makes `norm`
  an identity), plus `decoder.*`, `encoder_decoder_proj.*`, `decoder_pred.*`; saved as
  torch.save({"state_dict": ...}) in a file named model.safetensors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from timm.layers import LayerNorm
from timm.models.vision_transformer import ParallelScalingBlock, VisionTransformer

from embedkit.api import load
from embedkit.cli import main
from embedkit.errors import UntrustedFormatError
from embedkit.images.convert import convert_openphenom, convert_rxrx1_vit
from embedkit.images.model import RXRX1
from embedkit.images.vit import ImageEncoder, ViTConfig
from embedkit.zoo.hub_card import check_card_text

EPS = 1e-6  # timm's LayerNorm eps in every ViT here
DIM, HEADS, DEPTH, PATCH, GRID = 192, 3, 2, 16, 4  # head dim 64 as in ViT-S; 64 px crops
IMG = PATCH * GRID


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


# --- reference forwards (plain torch on the upstream tensors) -------------------------------


def ln(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], EPS)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, H, L, d) each → (B, L, H·d), softmax(q kᵀ / √d) v."""
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def seed_reference(sd: dict, x: torch.Tensor, line: torch.Tensor | None = None) -> torch.Tensor:
    """The seed ViT: conv patchify, [CLS, GE_1..k, patches] + pos, pre-norm blocks, final
    norm, mean of the patch tokens. `sd` holds the `encoder.`-stripped upstream tensors."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    conv = sd["patch_embed.proj.weight"]
    dim, batch = conv.shape[0], x.shape[0]
    t = F.conv2d(x, conv, sd["patch_embed.proj.bias"], stride=conv.shape[-1])
    t = t.flatten(2).transpose(1, 2)
    prefix = [sd["cls_token"].expand(batch, 1, dim)]
    k = 0
    if "domain_proj.weight" in sd:
        k = sd["domain_proj.weight"].shape[0] // dim
        ge = F.linear(line.double(), sd["domain_proj.weight"], sd["domain_proj.bias"])
        prefix.append(ge.view(batch, k, dim))
    t = torch.cat([*prefix, t], dim=1) + sd["pos_embed"]
    length = t.shape[1]
    depth = len({n.split(".")[1] for n in sd if n.startswith("blocks.")})
    for i in range(depth):
        b = f"blocks.{i}."
        h = ln(t, sd, b + "norm1")
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, kk, v = qkv.view(batch, length, 3, HEADS, dim // HEADS).permute(2, 0, 3, 1, 4)
        t = t + F.linear(attention(q, kk, v), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.gelu(
            F.linear(ln(t, sd, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])
        )
        t = t + F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    t = ln(t, sd, "norm")
    return t[:, 1 + k :].mean(dim=1).float()


def parallel_block(sd: dict, b: str, t: torch.Tensor, heads: int, legacy: bool) -> torch.Tensor:
    """timm's ParallelScalingBlock without qkv bias: one LayerNorm, one fused projection
    [MLP-in | q | k | v], per-head LayerNorm on q and k, attention ∥ GELU-MLP, summed output
    projections, layer scale, residual. timm 0.9.x (`legacy`) added the MLP bias at offset 3·D
    of the fused projection; later timm adds it to the MLP input."""
    batch, length, dim = t.shape
    weight = sd[b + "in_proj.weight"]
    hidden = weight.shape[0] - 3 * dim
    y = F.linear(ln(t, sd, b + "in_norm"), weight)
    mlp_bias = sd[b + "mlp_bias"]
    if legacy:
        y = y + torch.cat([torch.zeros(3 * dim, dtype=y.dtype), mlp_bias])
    x_mlp, q, k, v = torch.split(y, [hidden, dim, dim, dim], dim=-1)
    if not legacy:
        x_mlp = x_mlp + mlp_bias
    shape = (batch, length, heads, dim // heads)
    q = ln(q.view(shape), sd, b + "q_norm").transpose(1, 2)
    k = ln(k.view(shape), sd, b + "k_norm").transpose(1, 2)
    v = v.view(shape).transpose(1, 2)
    out = F.linear(attention(q, k, v), sd[b + "attn_out_proj.weight"], sd[b + "attn_out_proj.bias"])
    out = out + F.linear(F.gelu(x_mlp), sd[b + "mlp_out_proj.weight"], sd[b + "mlp_out_proj.bias"])
    return t + sd[b + "ls.gamma"] * out


def openphenom_reference(state: dict, x: torch.Tensor, legacy: bool = True) -> torch.Tensor:
    """OpenPhenom `MAEModel.predict` on normalized input: the shared 1-channel conv on each
    channel, tokens channel by channel, CLS, pos_embed[:, :1 + C·N], parallel blocks,
    (`norm` is an identity), mean of all patch tokens."""
    p = "encoder.vit_backbone."
    sd = {k[len(p) :]: v.double() for k, v in state.items() if k.startswith(p)}
    x = x.double()
    conv = sd["patch_embed.proj.weight"]
    batch, chans = x.shape[:2]
    per_channel = [
        F.conv2d(x[:, c : c + 1], conv, sd["patch_embed.proj.bias"], stride=conv.shape[-1])
        .flatten(2)
        .transpose(1, 2)
        for c in range(chans)
    ]
    t = torch.cat([sd["cls_token"].expand(batch, -1, -1), *per_channel], dim=1)
    t = t + sd["pos_embed"][:, : t.shape[1]]
    depth = len({n.split(".")[1] for n in sd if n.startswith("blocks.")})
    for i in range(depth):
        t = parallel_block(sd, f"blocks.{i}.", t, HEADS, legacy)
    return t[:, 1:].mean(dim=1).float()


# --- upstream checkpoints --------------------------------------------------------------------


def seed_vit_state(
    in_chans: int = 6, k: int = 0, line_dim: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The seed ViT's own state dict (no `encoder.` prefix), `backbone.*` duplicates included."""
    g = torch.Generator().manual_seed(seed)
    hidden = 4 * DIM
    sd = {
        "cls_token": randn(g, 1, 1, DIM),
        "pos_embed": randn(g, 1, 1 + k + GRID * GRID, DIM, scale=0.5),
        "patch_embed.proj.weight": randn(
            g, DIM, in_chans, PATCH, PATCH, scale=(in_chans * PATCH * PATCH) ** -0.5
        ),
        "patch_embed.proj.bias": randn(g, DIM, scale=0.1),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            sd[f"{b}{norm}.weight"] = 1 + randn(g, DIM, scale=0.2)
            sd[f"{b}{norm}.bias"] = randn(g, DIM, scale=0.1)
        for name, (out, inp) in {
            "attn.qkv": (3 * DIM, DIM),
            "attn.proj": (DIM, DIM),
            "mlp.fc1": (hidden, DIM),
            "mlp.fc2": (DIM, hidden),
        }.items():
            sd[f"{b}{name}.weight"] = randn(g, out, inp, scale=inp**-0.5)
            sd[f"{b}{name}.bias"] = randn(g, out, scale=0.1)
    sd["norm.weight"] = 1 + randn(g, DIM, scale=0.2)
    sd["norm.bias"] = randn(g, DIM, scale=0.1)
    if k:
        sd["domain_proj.weight"] = randn(g, k * DIM, line_dim, scale=line_dim**-0.5)
        sd["domain_proj.bias"] = randn(g, k * DIM, scale=0.1)
    timm_copy = {
        f"backbone.{n}": v.clone()
        for n, v in sd.items()
        if n.split(".")[0] in ("patch_embed", "blocks", "norm")
    }
    timm_copy["backbone.cls_token"] = randn(g, 1, 1, DIM)  # timm's own, unused upstream
    timm_copy["backbone.pos_embed"] = randn(g, 1, 1 + GRID * GRID, DIM)
    return {**sd, **timm_copy}


def save_best_checkpoint(path: Path, vit: dict[str, torch.Tensor]) -> Path:
    """`best_{method}_vit-s.pt`: epoch, wrapper state dict (`encoder.` + heads), optimizer…"""
    wrapper = {f"encoder.{n}": v for n, v in vit.items()}
    wrapper["projector.0.weight"] = torch.randn(64, DIM)  # SSL head: not part of the encoder
    wrapper["projector.0.bias"] = torch.zeros(64)
    torch.save(
        {
            "epoch": 7,
            "state_dict": wrapper,
            "optimizer_state_dict": {
                "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(3)}},
                "param_groups": [{"lr": 1e-3, "params": [0]}],
            },
            "scheduler_state_dict": {"last_epoch": 7, "base_lrs": [1e-3]},
            "loss": 0.25,
            "config": argparse.Namespace(method="simclr", ge_token=0, model_type="small"),
        },
        path,
    )
    return path


def own(vit: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: v for n, v in vit.items() if not n.startswith("backbone.")}


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory):
    vit = seed_vit_state()
    path = save_best_checkpoint(tmp_path_factory.mktemp("seed") / "best_simclr_vit-s.pt", vit)
    return vit, path


@pytest.fixture(scope="module")
def seed_converted(seed_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_out") / "rxrx1"
    result = run_cli("zoo", "convert", "rxrx1-vit", seed_checkpoint[1], "-o", out)
    assert result.exit_code == 0, result.output
    return out


MAX_CHANS = 11  # OpenPhenom's max_in_chans


def sincos_rows(dim: int, grid: int) -> torch.Tensor:
    """OpenPhenom's table as the model card / ANCHORS describe it: [sin h, cos h, sin w, cos w]
    with frequencies 10000^(-i/(D/4)), h the row index (slowest)."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4) / (dim // 4))
    h, w = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ah, aw = h.reshape(-1, 1) * freqs, w.reshape(-1, 1) * freqs
    return torch.cat([ah.sin(), ah.cos(), aw.sin(), aw.cos()], dim=1)


def openphenom_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Full MAEModel state dict: encoder.vit_backbone.* (the part we keep) + decoder."""
    g = torch.Generator().manual_seed(seed)
    hidden = 4 * DIM
    p = "encoder.vit_backbone."
    table = sincos_rows(DIM, GRID)
    sd = {
        p + "cls_token": randn(g, 1, 1, DIM),
        p + "pos_embed": torch.cat([torch.zeros(1, DIM), table.repeat(MAX_CHANS, 1)])[None],
        p + "patch_embed.proj.weight": randn(g, DIM, 1, PATCH, PATCH, scale=1 / PATCH),
        p + "patch_embed.proj.bias": randn(g, DIM, scale=0.1),
        p + "fc_norm.weight": 1 + randn(g, DIM, scale=0.2),  # post-pool, unused by predict()
        p + "fc_norm.bias": randn(g, DIM, scale=0.1),
    }
    for i in range(DEPTH):
        b = f"{p}blocks.{i}."
        sd[b + "mlp_bias"] = randn(g, hidden, scale=0.5)
        for norm, width in (("in_norm", DIM), ("q_norm", DIM // HEADS), ("k_norm", DIM // HEADS)):
            sd[f"{b}{norm}.weight"] = 1 + randn(g, width, scale=0.2)
            sd[f"{b}{norm}.bias"] = randn(g, width, scale=0.1)
        sd[b + "in_proj.weight"] = randn(g, hidden + 3 * DIM, DIM, scale=DIM**-0.5)
        sd[b + "attn_out_proj.weight"] = randn(g, DIM, DIM, scale=DIM**-0.5)
        sd[b + "attn_out_proj.bias"] = randn(g, DIM, scale=0.1)
        sd[b + "mlp_out_proj.weight"] = randn(g, DIM, hidden, scale=hidden**-0.5)
        sd[b + "mlp_out_proj.bias"] = randn(g, DIM, scale=0.1)
        sd[b + "ls.gamma"] = randn(g, DIM, scale=0.5)  # trained layer scale (init 1e-4)
    sd["decoder.mask_token"] = randn(g, 1, 1, 32)
    sd["decoder.pos_embeddings"] = torch.zeros(1, 1 + 6 * GRID * GRID, 32)
    sd["decoder.blocks.0.norm1.weight"] = torch.ones(32)
    sd["encoder_decoder_proj.weight"] = randn(g, 32, DIM)
    sd["encoder_decoder_proj.bias"] = torch.zeros(32)
    sd["decoder_pred.weight"] = randn(g, PATCH * PATCH, 32)
    sd["decoder_pred.bias"] = torch.zeros(PATCH * PATCH)
    return sd


@pytest.fixture(scope="module")
def openphenom_converted(tmp_path_factory):
    state = openphenom_state()
    folder = tmp_path_factory.mktemp("openphenom")
    # upstream MAEModel.save_pretrained: a torch pickle *named* model.safetensors
    torch.save({"state_dict": state}, folder / "model.safetensors")
    out = folder / "converted"
    result = run_cli("zoo", "convert", "openphenom", folder / "model.safetensors", "-o", out)
    assert result.exit_code == 0, result.output
    assert "non-commercial" in result.output
    return state, out


# --- seed paper ------------------------------------------------------------------------------


def test_seed_checkpoint_converts_and_embeds_like_upstream(seed_checkpoint, seed_converted):
    vit, _ = seed_checkpoint
    embedder = load(f"local-dir:{seed_converted}", device="cpu")
    config = json.loads((seed_converted / "config.json").read_text())
    assert embedder.model.channels == RXRX1
    assert config["encoder"]["img_size"] == IMG and config["encoder"]["in_chans"] == 6
    assert config["encoder"]["cell_line_tokens"] == 0
    assert config["normalization"] == {"kind": "instance"}
    assert check_card_text((seed_converted / "README.md").read_text(), "card")["license"] == "other"
    x = torch.randn(5, 6, IMG, IMG, generator=torch.Generator().manual_seed(1))
    ours = torch.from_numpy(embedder.embed_crops(x))
    assert (ours - seed_reference(own(vit), x)).abs().max() < 1e-4


def test_seed_dropping_mito_keeps_the_other_five_channels(
    seed_checkpoint, seed_converted, tmp_path
):
    """RxRx1 → 5-channel plates: `--drop-channel Mito` (w5) keeps the weights of the rest, so
    the embedding equals upstream's with channel 5 zeroed."""
    vit, _ = seed_checkpoint
    rng = np.random.default_rng(0)
    plate = tmp_path / "exp" / "Plate1"
    plate.mkdir(parents=True)
    fields = {}
    for site in (1, 2):
        planes = []
        for w in (1, 2, 3, 4, 6):  # no w5 (Mito)
            image = rng.integers(0, 256, (IMG, IMG), dtype=np.uint8)
            Image.fromarray(image).save(plate / f"B02_s{site}_w{w}.png")
            planes.append(image)
        fields[site] = np.stack(planes).astype(np.float64) / 255
    out = tmp_path / "emb"
    model = f"local-dir:{seed_converted}"
    args = ["embed-images", tmp_path / "exp", "-o", out, "-m", model, "-n", 0, "--device", "cpu"]
    result = run_cli(*args, "--drop-channel", "Mito")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "plates" / "Plate1.parquet")
    ours = torch.tensor(table.filter(like="Emb_").to_numpy(), dtype=torch.float32)
    crops = []
    for site in (1, 2):
        x = torch.from_numpy(fields[site])
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
        x = (x - mean) / std
        crops.append(torch.cat([x[:4], torch.zeros(1, IMG, IMG), x[4:]]))  # Mito zeroed
    reference = seed_reference(own(vit), torch.stack(crops).float())
    assert (ours - reference).abs().max() < 1e-4


def test_seed_cell_line_tokens_round_trip_with_cell_lines(tmp_path):
    """k = 2 GE tokens from `final_encoder_vit-s.pt` (`encoder_state_dict`, no prefix)."""
    line_dim = 16
    vit = seed_vit_state(k=2, line_dim=line_dim, seed=3)
    path = tmp_path / "final_encoder_vit-s.pt"
    torch.save({"encoder_state_dict": vit}, path)
    g = torch.Generator().manual_seed(5)
    lines = {"U2OS": randn(g, line_dim).tolist(), "HUVEC": randn(g, line_dim).tolist()}
    out = convert_rxrx1_vit(path, tmp_path / "out", cell_lines=lines)
    config = json.loads((out / "config.json").read_text())
    assert config["encoder"]["cell_line_tokens"] == 2
    assert config["encoder"]["cell_line_dim"] == line_dim
    assert set(config["cell_lines"]) == {"U2OS", "HUVEC"}
    embedder = load(f"local-dir:{out}", device="cpu")
    x = torch.randn(3, 6, IMG, IMG, generator=g)
    results = {}
    for name in lines:
        vector = embedder.model.cell_line_vector(name)
        ours = torch.from_numpy(embedder.embed_crops(x, vector))
        reference = seed_reference(own(vit), x, torch.tensor(lines[name]).expand(3, -1))
        assert (ours - reference).abs().max() < 1e-4
        results[name] = ours
    assert not torch.allclose(results["U2OS"], results["HUVEC"], atol=1e-3)


def test_seed_bad_cell_line_width_and_non_state_dict_pickles_are_refused(tmp_path):
    path = tmp_path / "final_encoder_vit-s.pt"
    torch.save({"encoder_state_dict": seed_vit_state(k=1, line_dim=8)}, path)
    with pytest.raises(Exception, match="8 values"):
        convert_rxrx1_vit(path, tmp_path / "o1", cell_lines={"RPE": [0.0] * 5})

    not_weights = tmp_path / "config.pt"
    torch.save({"lr": 0.1, "names": ["a", "b"]}, not_weights)
    result = run_cli("zoo", "convert", "rxrx1-vit", not_weights, "-o", tmp_path / "o2")
    assert result.exit_code == 2
    assert "expected a state dict of tensors" in result.output
    assert "Traceback" not in result.output

    # objects other than tensors and containers are refused by weights_only, never built
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "when": datetime.date(2024, 1, 1)},
        tmp_path / "evil.pt",
    )
    with pytest.raises(UntrustedFormatError, match="loaded safely"):
        convert_rxrx1_vit(tmp_path / "evil.pt", tmp_path / "o3")

    openphenom_weights = tmp_path / "op.pt"
    torch.save({"state_dict": openphenom_state()}, openphenom_weights)
    with pytest.raises(UntrustedFormatError, match="RxRx1 ViT"):
        convert_rxrx1_vit(openphenom_weights, tmp_path / "o4")
    assert not (tmp_path / "o4").exists()


def test_unreadable_checkpoints_say_which_problem_they_have(tmp_path):
    """Empty, not a checkpoint, damaged, unsafe: four different sentences, each with the path;
    only the unsafe pickle gets the re-save advice (it cannot help the others)."""
    real = tmp_path / "real.pt"
    torch.save({"state_dict": seed_vit_state()}, real)
    cases = {
        "empty.pt": (b"", "the file is empty (0 bytes)"),
        "notes.pt": (b"these are my notes\n", "neither a safetensors file nor a torch checkpoint"),
        "cut.pt": (real.read_bytes()[:400], "a damaged torch checkpoint"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        result = CliRunner().invoke(
            main, ["zoo", "convert", "rxrx1-vit", str(tmp_path / name), "-o", str(tmp_path / "o")]
        )
        assert result.exit_code == 2, result.output
        assert f"{name}: {expected}" in result.output
        assert "re-save" not in result.output and "Traceback" not in result.output
    torch.save({"state_dict": {"w": torch.zeros(1)}, "when": datetime.date(2024, 1, 1)}, real)
    with pytest.raises(
        UntrustedFormatError, match=r"cannot be loaded safely \(it holds a datetime"
    ):
        convert_rxrx1_vit(real, tmp_path / "o")
    assert not (tmp_path / "o").exists()


# --- OpenPhenom ------------------------------------------------------------------------------


def test_reference_block_is_timms_parallel_scaling_block():
    """The reference's block is timm's ParallelScalingBlock (qk-norm, layer scale, no qkv
    bias); its legacy bias placement differs exactly where the MLP bias lands."""
    torch.manual_seed(0)
    block = ParallelScalingBlock(
        DIM, HEADS, qkv_bias=False, qk_norm=True, init_values=1e-4, norm_layer=LayerNorm
    ).eval()
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    sd = {f"b.{k}": v.double() for k, v in block.state_dict().items()}
    x = torch.randn(2, 7, DIM)
    with torch.no_grad():
        expected = block(x).double()
    assert (parallel_block(sd, "b.", x.double(), HEADS, legacy=False) - expected).abs().max() < 1e-4
    assert (parallel_block(sd, "b.", x.double(), HEADS, legacy=True) - expected).abs().max() > 1e-3
    sd["b.mlp_bias"] = torch.zeros_like(sd["b.mlp_bias"])  # no bias: both layouts agree
    with torch.no_grad():
        block.mlp_bias.zero_()
        expected = block(x).double()
    assert (parallel_block(sd, "b.", x.double(), HEADS, legacy=True) - expected).abs().max() < 1e-4


def test_openphenom_key_layout_is_timms():
    """The hand-built upstream keys are exactly timm's VisionTransformer(block_fn=
    ParallelScalingBlock, qkv_bias=False, qk_norm=True, init_values, global_pool="avg")."""
    timm_vit = VisionTransformer(
        img_size=IMG,
        patch_size=PATCH,
        in_chans=1,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        num_classes=0,
        global_pool="avg",
        class_token=True,
        block_fn=ParallelScalingBlock,
        qkv_bias=False,
        qk_norm=True,
        init_values=1e-4,
    )
    p = "encoder.vit_backbone."
    ours = {k[len(p) :]: v.shape for k, v in openphenom_state().items() if k.startswith(p)}
    theirs = {k: v.shape for k, v in timm_vit.state_dict().items() if k != "pos_embed"}
    assert {k: v for k, v in ours.items() if k != "pos_embed"} == theirs


def test_openphenom_converts_and_embeds_3_and_6_channels_like_upstream(openphenom_converted):
    state, out = openphenom_converted
    config = json.loads((out / "config.json").read_text())
    enc = config["encoder"]
    assert enc["channel_agnostic"] and enc["parallel_blocks"] and enc["qk_norm"]
    assert not enc["qkv_bias"] and enc["pos_embed_kind"] == "sincos" and not enc["final_norm"]
    assert enc["img_size"] == IMG and enc["num_heads"] == HEADS
    assert "non-commercial" in config["extra"]["license"]
    assert "must not be redistributed" in config["extra"]["redistribution"]
    assert config["extra"]["pos_embed_matches_sincos"] is True
    assert config["extra"]["max_channels_trained"] == MAX_CHANS
    card = check_card_text((out / "README.md").read_text(), "card")  # as the Hub parses it
    assert (card["license"], card["license_name"]) == ("other", "non-commercial")
    embedder = load(f"local-dir:{out}", device="cpu")
    g = torch.Generator().manual_seed(2)
    for chans in (3, 6):
        x = torch.randn(4, chans, IMG, IMG, generator=g)
        ours = torch.from_numpy(embedder.embed_crops(x))
        assert ours.shape == (4, DIM)
        assert (ours - openphenom_reference(state, x)).abs().max() < 1e-4
    # dropping a channel is a no-op on the weights: the encoder takes any channel count
    embedder.model.encoder.keep_channels([0, 1, 3])
    x = torch.randn(2, 3, IMG, IMG, generator=g)
    ours = torch.from_numpy(embedder.embed_crops(x))
    assert (ours - openphenom_reference(state, x)).abs().max() < 1e-4


def test_openphenom_real_safetensors_and_modern_bias_layout(tmp_path):
    state = openphenom_state(seed=4)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    out = convert_openphenom(path, tmp_path / "modern", legacy_mlp_bias=False)
    embedder = load(f"local-dir:{out}", device="cpu")
    x = torch.randn(2, 5, IMG, IMG, generator=torch.Generator().manual_seed(3))
    ours = torch.from_numpy(embedder.embed_crops(x))
    assert (ours - openphenom_reference(state, x, legacy=False)).abs().max() < 1e-4
    assert (ours - openphenom_reference(state, x, legacy=True)).abs().max() > 1e-3


def test_default_encoder_keys_are_unchanged():
    """New ViTConfig fields default to today's encoder: same state-dict keys as before."""
    config = ViTConfig(img_size=32, in_chans=5, depth=2, embed_dim=48, num_heads=3)
    keys = set(ImageEncoder(config).state_dict())
    timm_vit = VisionTransformer(
        img_size=32,
        in_chans=5,
        embed_dim=48,
        depth=2,
        num_heads=3,
        num_classes=0,
        global_pool="",
        class_token=False,
        pos_embed="none",
    )
    assert keys == {f"vit.{k}" for k in timm_vit.state_dict()} | {"cls_token", "pos_embed"}
