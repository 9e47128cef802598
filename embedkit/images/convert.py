"""Convert third-party image-encoder checkpoints into embedkit folders (safetensors + JSON).

* `convert_rxrx1_vit`: the seed paper's RxRx1 ViT (BioMicroscopyProfiler). Its training
  wrapper stores the ViT under `encoder.`; the ViT re-registers timm's patch embed, blocks
  and norm at top level, so each of those tensors also appears under `backbone.` (ignored).
  Its own `cls_token`, `pos_embed` (1 + k + N rows) and `domain_proj` (the k "GE" cell-line
  tokens) map onto ours one to one.
* `convert_openphenom`: Recursion's OpenPhenom CA-MAE ViT-S/16 (`encoder.vit_backbone.*`),
  channel-agnostic, parallel-scaling blocks with qk-norm and layer scale, sin-cos positions
  repeated per channel. Its weights are licensed for non-commercial use only: embedkit ships
  this loader, never the weights, and the converted folder says so.

Pickles are opened only here, on the user's explicit command, with
`torch.load(weights_only=True)`, which refuses arbitrary objects. Neither upstream's code is
used: the layouts were read from their sources and re-implemented.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from embedkit.checkpoints import key_problems, read_checkpoint
from embedkit.errors import InputError, UntrustedFormatError
from embedkit.images.model import ImageModel
from embedkit.images.vit import ViTConfig, sincos_2d
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import write_card

SEED_PREFIX = "encoder."
SEED_DUPLICATE = "backbone."
SEED_RENAMES = {  # upstream ViT name prefix → ours
    "patch_embed.": "vit.patch_embed.",
    "blocks.": "vit.blocks.",
    "norm.": "vit.norm.",
    "domain_proj.": "cell_line_proj.",
}
OPENPHENOM_PREFIXES = ("encoder.vit_backbone.", "module.encoder.vit_backbone.", "vit_backbone.")
OPENPHENOM_IGNORED = ("fc_norm.", "head.")  # the post-pool norm predict() does not apply
OPENPHENOM_LICENSE = (
    "OpenPhenom weights (recursionpharma/OpenPhenom) are released under a non-commercial "
    "license (code CC BY-NC 4.0, weights under Recursion's non-commercial EULA). embedkit "
    "ships only the loader; this folder was converted from the user's own download and "
    "must not be redistributed or used commercially."
)
HEAD_DIM = 64  # ViT-S/B convention; the seed checkpoints do not store the head count


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _depth(state: dict[str, torch.Tensor], prefix: str = "blocks.") -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def _load_strict(model: ImageModel, ours: dict[str, torch.Tensor], path: Path, what: str):
    expected = model.encoder.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    wrong = [k for k in expected if k in ours and ours[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise UntrustedFormatError(
            f"{path}: does not match the {what} layout ({key_problems(missing, unexpected, wrong)})"
        )
    model.encoder.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)


def _seed_encoder_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The ViT's own tensors: `encoder.` stripped, `backbone.` duplicates and heads dropped."""
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = _strip(state, "module.")
    if any(k.startswith(SEED_PREFIX) for k in state):
        state = _strip(state, SEED_PREFIX)
    if "patch_embed.proj.weight" not in state and "backbone.patch_embed.proj.weight" in state:
        # only the timm copy was kept: take patch embed, blocks and norm from it
        dup = _strip(state, SEED_DUPLICATE)
        timm_parts = ("patch_embed", "blocks", "norm")
        state = {**state, **{k: v for k, v in dup.items() if k.split(".")[0] in timm_parts}}
    needed = ("patch_embed.proj.weight", "cls_token", "pos_embed", "norm.weight")
    absent = [k for k in needed if k not in state]
    if absent:
        raise UntrustedFormatError(
            f"{path}: no {', '.join(absent)}; is this the seed paper's RxRx1 ViT checkpoint "
            "(best_{method}_vit-s.pt or final_encoder_vit-s.pt)?"
        )
    own = tuple(SEED_RENAMES)  # `backbone.*`, heads and the unused timm tokens fall out
    return {k: v for k, v in state.items() if k in ("cls_token", "pos_embed") or k.startswith(own)}


def convert_rxrx1_vit(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    cell_lines: dict[str, list[float]] | None = None,
    num_heads: int | None = None,
) -> Path:
    """The seed paper's RxRx1 ViT checkpoint → an embedkit image-model folder.

    Accepts `best_{method}_vit-s.pt` (`state_dict` with the `encoder.` prefix),
    `final_encoder_vit-s.pt` (`encoder_state_dict`) or a plain state dict. k (cell-line
    tokens) comes from `domain_proj`, the crop size from the position table (1 + k + N
    rows), the channel count from the patch conv. `cell_lines` (name → embedding of
    `domain_proj`'s input width) is stored in the folder for `--cell-line NAME`.
    """
    path = Path(checkpoint_path)
    state = _seed_encoder_state(read_checkpoint(path), path)
    conv = state["patch_embed.proj.weight"]
    dim, in_chans, patch = conv.shape[0], conv.shape[1], conv.shape[-1]
    k, line_dim = 0, 0
    if "domain_proj.weight" in state:
        out_features, line_dim = state["domain_proj.weight"].shape
        if out_features % dim:
            raise UntrustedFormatError(
                f"{path}: domain_proj has {out_features} outputs, not a multiple of {dim}"
            )
        k = out_features // dim
        if k == 0:
            state = {n: v for n, v in state.items() if not n.startswith("domain_proj.")}
            line_dim = 0
    positions = state["pos_embed"].shape[1] - 1 - k
    grid = math.isqrt(max(positions, 0))
    if positions <= 0 or grid * grid != positions:
        raise UntrustedFormatError(
            f"{path}: pos_embed has {state['pos_embed'].shape[1]} rows; with CLS and {k} "
            "cell-line tokens the rest is not a square grid of patches"
        )
    heads = num_heads or max(1, dim // HEAD_DIM)
    config = ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=dim,
        depth=_depth(state),
        num_heads=heads,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        cell_line_tokens=k,
        cell_line_dim=line_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        qk_norm="blocks.0.attn.q_norm.weight" in state,
        init_values=1e-5 if "blocks.0.ls1.gamma" in state else None,
    )
    lines = {name: [float(x) for x in vec] for name, vec in (cell_lines or {}).items()}
    bad = [name for name, vec in lines.items() if len(vec) != line_dim]
    if bad and k:
        raise InputError(
            f"cell line(s) {', '.join(bad)}: embeddings must have {line_dim} values "
            "(the input width of the checkpoint's domain_proj)"
        )
    if lines and not k:
        raise InputError(f"{path}: this checkpoint has no cell-line tokens; drop cell_lines")
    digest = sha256_of(path)
    model = ImageModel(
        config,
        normalization={"kind": "instance"},
        cell_lines=lines,
        extra={
            "converted_from": path.name,
            "source_sha256": digest,
            "upstream": "The-Real-JerryChen/BioMicroscopyProfiler (RxRx1 ViT)",
            "num_heads": f"{heads} (not stored in the checkpoint; head dim {dim // heads})",
            "input": "x/255 then per-image, per-channel instance normalization",
        },
    )
    ours = {}
    for name, tensor in state.items():
        for old, new in SEED_RENAMES.items():
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        ours[name] = tensor
    _load_strict(model, ours, path, "seed-paper ViT")
    out = model.save_pretrained(out_dir)
    write_card(
        out,
        model.ARCHITECTURE,
        "other",  # the upstream checkpoint's terms apply; embedkit grants none
        ["images", "cell-painting", "rxrx1", "converted"],
        f"# Converted RxRx1 ViT\n\nConverted by `embedkit zoo convert rxrx1-vit` from "
        f"`{path.name}` (sha256 `{digest}`): ViT with {config.depth} blocks, width {dim}, "
        f"{in_chans} channels ({', '.join(model.channels)}), {config.img_size} px crops, "
        f"{k} cell-line token(s). The embedding is the mean of the patch tokens. "
        "Cite Chen et al., ICCV 2025.\n",
        license_name="upstream-terms",
    )
    return out


def _openphenom_grid(pos: torch.Tensor, path: Path) -> int:
    """Patch grid side g: the table is a zero CLS row then one g×g block per channel."""
    rows = pos.shape[1] - 1
    for grid in range(1, math.isqrt(max(rows, 0)) + 1):
        n = grid * grid
        if rows % n:
            continue
        blocks = pos[0, 1:].reshape(rows // n, n, -1)
        if torch.equal(blocks, blocks[:1].expand_as(blocks)):
            return grid
    raise UntrustedFormatError(
        f"{path}: pos_embed ({pos.shape[1]} rows) is not one position table repeated per "
        "channel; is this a channel-agnostic OpenPhenom checkpoint?"
    )


def convert_openphenom(
    checkpoint_path: str | Path, out_dir: str | Path, legacy_mlp_bias: bool = True
) -> Path:
    """OpenPhenom's `model.safetensors` (real safetensors or a torch pickle) → embedkit folder.

    Only the encoder (`encoder.vit_backbone.*`) is kept; the MAE decoder is dropped. The
    embedding matches upstream `MAEModel.predict`: mean of the patch tokens of every
    channel, without a final norm (`global_pool="avg"` makes timm's `norm` an identity and
    `fc_norm`, applied only after pooling in `forward_head`, is not used by `predict`).
    `legacy_mlp_bias` reproduces timm 0.9.7, which OpenPhenom was trained with.
    """
    path = Path(checkpoint_path)
    state = read_checkpoint(path)
    prefix = next((p for p in OPENPHENOM_PREFIXES if f"{p}patch_embed.proj.weight" in state), None)
    if prefix is None:
        raise UntrustedFormatError(
            f"{path}: no encoder.vit_backbone.patch_embed.proj.weight; is this OpenPhenom's "
            "model.safetensors?"
        )
    enc = _strip(state, prefix)
    ignored = sorted({k.split(".")[0] for k in enc if k.startswith(OPENPHENOM_IGNORED)})
    enc = {k: v for k, v in enc.items() if not k.startswith(OPENPHENOM_IGNORED)}
    conv = enc["patch_embed.proj.weight"]
    dim, patch = conv.shape[0], conv.shape[-1]
    if conv.shape[1] != 1:
        raise UntrustedFormatError(
            f"{path}: the patch conv takes {conv.shape[1]} channels; a channel-agnostic "
            "encoder takes 1"
        )
    pos = enc.get("pos_embed")
    if pos is None or "cls_token" not in enc:
        raise UntrustedFormatError(f"{path}: the encoder has no cls_token / pos_embed")
    grid = _openphenom_grid(pos, path)
    table = pos[:, : 1 + grid * grid]
    head_dim = enc["blocks.0.q_norm.weight"].shape[0] if "blocks.0.q_norm.weight" in enc else 64
    config = ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        in_chans=6,  # named RxRx channels; any count works
        embed_dim=dim,
        depth=_depth(enc),
        num_heads=dim // head_dim,
        mlp_ratio=enc["blocks.0.mlp_out_proj.weight"].shape[1] / dim,
        channel_agnostic=True,
        qkv_bias="blocks.0.in_proj.bias" in enc,
        qk_norm="blocks.0.q_norm.weight" in enc,
        init_values=1e-4 if "blocks.0.ls.gamma" in enc else None,
        parallel_blocks=True,
        legacy_mlp_bias=legacy_mlp_bias,
        pos_embed_kind="sincos",
        final_norm="norm.weight" in enc,
    )
    digest = sha256_of(path)
    model = ImageModel(
        config,
        normalization={"kind": "instance"},
        extra={
            "converted_from": path.name,
            "source_sha256": digest,
            "upstream": "recursionpharma/OpenPhenom (CA-MAE ViT-S/16)",
            "license": "non-commercial (CC BY-NC 4.0 code, non-commercial EULA weights)",
            "redistribution": OPENPHENOM_LICENSE,
            "channels": "channel-agnostic: any subset or number of channels; names are "
            "nominal (RxRx order) for --channel-map / --drop-channel",
            "max_channels_trained": pos.shape[1] // (grid * grid),
            "pos_embed_matches_sincos": bool(
                torch.allclose(table, sincos_2d(dim, grid), atol=1e-5)
            ),
            "dropped": ignored + ["decoder"],
            "mlp_bias_layout": "timm 0.9.x" if legacy_mlp_bias else "timm >= fix of #2653",
        },
    )
    ours = {"cls_token": enc["cls_token"], "pos_embed": table}
    for name, tensor in enc.items():
        if name.startswith(("patch_embed.", "blocks.", "norm.")):
            ours[f"vit.{name}"] = tensor
        elif name not in ("cls_token", "pos_embed"):
            ours[name] = tensor  # reported as unexpected by _load_strict
    _load_strict(model, ours, path, "OpenPhenom encoder")
    out = model.save_pretrained(out_dir)
    write_card(
        out,
        model.ARCHITECTURE,
        "non-commercial",  # -> license: other, license_name: non-commercial
        ["images", "cell-painting", "openphenom", "converted", "non-commercial"],
        f"# Converted OpenPhenom encoder (non-commercial)\n\n{OPENPHENOM_LICENSE}\n\n"
        f"Converted by `embedkit zoo convert openphenom` from `{path.name}` (sha256 "
        f"`{digest}`). Channel-agnostic ViT ({config.depth} blocks, width {dim}, "
        f"{config.img_size} px crops); the embedding is the mean of the patch tokens of all "
        "channels, as `MAEModel.predict`. Cite Kraus et al., CVPR 2024.\n",
    )
    return out
