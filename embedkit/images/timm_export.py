"""Our image encoder as a plain timm `VisionTransformer`: kwargs for `timm.create_model` and a
state dict that loads into it strictly, so timm users need no embedkit at inference.

The early-fusion encoder *is* timm's ViT: `encoder.vit.*` are timm's own modules and our CLS
token and position table sit where timm keeps them. Stripping `encoder.` / `encoder.vit.`
gives timm's keys; with `global_pool="avg", fc_norm=False` timm pools the patch tokens after
the final norm exactly as we do (measured max |Δ| = 0 on the shipped demo model).

What timm cannot reproduce is refused, never approximated: the channel-agnostic layout (one
shared 1-channel patch conv per channel) and timm 0.9's misplaced parallel-block MLP bias.
Cell-line tokens are computed from a line's embedding by our projection, which timm lacks;
for *one* line they are constants, so `cell_line=NAME` bakes them in as timm register tokens
(`reg_tokens=k`, which timm places right after CLS, as we do): one timm model per line.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from embedkit.errors import InputError
from embedkit.images.vit import ViTConfig

TIMM_NAME = "vit_small_patch16_224"
# vit_small_patch16_224's own architecture; only differences from it become kwargs.
VIT_S16 = {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0}


def _encoder(model) -> nn.Module:
    """The `ImageEncoder` of an ImageModel, an image classifier or a loaded ImageEmbedder."""
    inner = getattr(model, "model", model)  # an embedder holds the model
    encoder = getattr(inner, "encoder", inner)
    if not hasattr(encoder, "vit") or not hasattr(encoder, "config"):
        raise InputError(f"{type(model).__name__} is not an embedkit image model (embedkit-vit)")
    return encoder


def timm_blocker(config: ViTConfig) -> str | None:
    """Why timm cannot rebuild an encoder of this config at all, or None."""
    if config.channel_agnostic:
        return (
            "this model is channel-agnostic (one shared 1-channel patch conv, tokens channel by "
            "channel), which timm's VisionTransformer cannot express; use embedkit to embed"
        )
    if config.parallel_blocks and config.legacy_mlp_bias:
        return (
            "this model's parallel blocks use timm 0.9's MLP bias layout, which timm 1.0 "
            "computes differently; use embedkit to embed"
        )
    return None


def _check_exportable(config: ViTConfig, cell_line: str | None) -> None:
    blocker = timm_blocker(config)
    if blocker:
        raise InputError(blocker)
    if config.cell_line_tokens and cell_line is None:
        raise InputError(
            f"this model prepends {config.cell_line_tokens} cell-line tokens projected from a "
            "cell line's embedding, which timm cannot compute; pass cell_line=NAME to bake one "
            "line's tokens into a timm model as register tokens (one timm model per line)"
        )
    if not config.cell_line_tokens and cell_line is not None:
        raise InputError("this model has no cell-line tokens: leave cell_line out")


def timm_kwargs(model, cell_line: str | None = None) -> dict:
    """Keyword arguments for `timm.create_model(TIMM_NAME, **kwargs)` that rebuild the encoder
    (the model name is in the result as "model_name")."""
    config = _encoder(model).config
    _check_exportable(config, cell_line)
    return _kwargs(config)


def _kwargs(config: ViTConfig) -> dict:
    kwargs: dict = {
        "in_chans": config.in_chans,
        "img_size": config.img_size,
        "num_classes": 0,
        "global_pool": "avg",
        "fc_norm": False,
    }
    kwargs.update({k: getattr(config, k) for k, v in VIT_S16.items() if getattr(config, k) != v})
    if not config.qkv_bias:
        kwargs["qkv_bias"] = False
    if config.qk_norm:
        kwargs["qk_norm"] = True
    if config.init_values is not None:
        kwargs["init_values"] = config.init_values
    if not config.final_norm:
        kwargs["final_norm"] = False
    if config.parallel_blocks:
        from timm.models.vision_transformer import ParallelScalingBlock

        kwargs["block_fn"] = ParallelScalingBlock
    if config.cell_line_tokens:
        kwargs["reg_tokens"] = config.cell_line_tokens
    return {"model_name": TIMM_NAME, **kwargs}


def timm_state_dict(model, cell_line: str | None = None) -> dict[str, torch.Tensor]:
    """The encoder's tensors under timm's names (`encoder.vit.` and `encoder.` stripped), fp32,
    ready for `load_state_dict(strict=True)` or `safetensors.torch.save_file`.

    `cell_line` (models with cell-line tokens only): that line's tokens, projected here, become
    timm's `reg_token`; the line is looked up in the model's own cell-line table.
    """
    encoder = _encoder(model)
    _check_exportable(encoder.config, cell_line)
    out = {}
    for name, tensor in encoder.state_dict().items():
        if name.startswith("cell_line_proj."):
            continue
        key = name.removeprefix("vit.")
        out[key] = tensor.detach().float().cpu().contiguous()
    if cell_line is not None:
        owner = getattr(model, "model", model)
        if not hasattr(owner, "cell_line_vector"):
            raise InputError("cell_line needs the image model (its table of lines), not an encoder")
        vector = owner.cell_line_vector(cell_line)
        k, dim = encoder.config.cell_line_tokens, encoder.config.embed_dim
        with torch.no_grad():
            proj = encoder.cell_line_proj
            tokens = proj(vector.to(proj.weight.device, proj.weight.dtype))
        out["reg_token"] = tokens.float().cpu().view(1, k, dim).contiguous()
    return out


def to_timm(model, cell_line: str | None = None) -> nn.Module:
    """A timm `VisionTransformer` (eval mode, CPU) with this model's weights, loaded strictly:
    `to_timm(m)(crops)` equals `m.encoder(crops)` for the same normalized crops."""
    import timm

    kwargs = timm_kwargs(model, cell_line)
    net = timm.create_model(kwargs.pop("model_name"), pretrained=False, **kwargs)
    net.load_state_dict(timm_state_dict(model, cell_line), strict=True)
    return net.eval()


def card_lines(config: dict, spec: str) -> list[str]:
    """ "## Use with timm" for a model card, from the folder's config.json: the create_model
    call, the strict state-dict load, the preprocessing, and what timm cannot do."""
    vit = ViTConfig(**config["encoder"])
    head = ["## Use with timm", ""]
    blocker = timm_blocker(vit)
    if blocker:
        return [*head, f"timm cannot rebuild this encoder: {blocker}."]
    kwargs = _kwargs(vit)
    name = kwargs.pop("model_name")
    channels, size = config["channels"], config["crop_size"]
    block = kwargs.pop("block_fn", None)
    literal = {k: json.dumps(v) if isinstance(v, str) else repr(v) for k, v in kwargs.items()}
    args = [f"    {k}={v}," for k, v in literal.items()]
    if block is not None:
        args.append("    block_fn=ParallelScalingBlock,")
    line_arg = ""
    if vit.cell_line_tokens:
        first = min(config.get("cell_lines") or {"NAME": None})
        line_arg = f", cell_line={json.dumps(first)}"
    norm = config.get("normalization") or {"kind": "instance"}
    if norm.get("kind", "instance") == "instance":
        normalize = [
            "mean = x.mean(dim=(2, 3), keepdim=True)",
            "std = x.std(dim=(2, 3), keepdim=True, unbiased=False)",
            "x = torch.where(std > 1e-6, (x - mean) / std.clamp_min(1e-6), 0.0)  # per crop and "
            "channel",
        ]
        how = "instance normalization: each crop's channel to zero mean and unit variance"
    else:
        normalize = [
            f"mean = torch.tensor({norm['mean']!r}).view(1, -1, 1, 1)",
            f"std = torch.tensor({norm['std']!r}).view(1, -1, 1, 1)",
            "x = (x - mean) / std.clamp_min(1e-6)",
        ]
        how = "the card's fixed per-channel mean and std"
    code = [
        "import numpy as np",
        "import timm",
        "import torch",
        *(["from timm.models.vision_transformer import ParallelScalingBlock"] if block else []),
        "",
        "import embedkit",
        "from embedkit.images.timm_export import timm_state_dict",
        "",
        f"model = embedkit.load({json.dumps(spec)}).model",
        "vit = timm.create_model(",
        f"    {json.dumps(name)},",
        *args,
        ")",
        f"vit.load_state_dict(timm_state_dict(model{line_arg}))  # strict: every key matches",
        "vit.eval()",
        "",
        f"# a crop: {len(channels)} planes in this order: {', '.join(channels)}",
        "rng = np.random.default_rng(0)",
        f"planes = rng.integers(0, 65535, ({len(channels)}, {size}, {size}), dtype=np.uint16)",
        "x = torch.from_numpy(planes.astype(np.float32) / 65535)[None]  # / the dtype's maximum",
        *normalize,
        "with torch.no_grad():",
        f"    embedding = vit(x)  # (1, {vit.embed_dim}), the same as model.encoder(x)",
    ]
    lines = [
        *head,
        f"The encoder is timm's `VisionTransformer` (`{name}` with the arguments below); "
        "`timm_state_dict` strips embedkit's `encoder.vit.` prefix and the strict load leaves "
        "no key out. Preprocessing: pixels / the dtype's maximum (255 or 65535), channels in "
        f"the order below, crops of {size} px, {how}. `embed-images` embeds a site as the "
        f"mean over its non-overlapping {size} px tiles.",
        "",
        "```python",
        *code,
        "```",
        "",
        "For timm alone, save the weights once with "
        '`safetensors.torch.save_file(timm_state_dict(model), "vit_timm.safetensors")` and '
        'pass `pretrained=True, pretrained_cfg_overlay=dict(file="vit_timm.safetensors")` to '
        "the same `create_model` call. **Without `pretrained=True` timm ignores the file**, "
        "and given this folder's `model.safetensors` (keys `encoder.vit.…`) it matches no key: "
        "either way the model keeps random weights, with at most a log line (timm 1.0.31).",
    ]
    if vit.cell_line_tokens:
        lines += [
            "",
            f"**Cell-line tokens:** this model prepends {vit.cell_line_tokens} tokens computed "
            "from a cell line's embedding by a projection timm does not have. `cell_line=NAME` "
            f"bakes one line's tokens into timm's register tokens (`reg_tokens="
            f"{vit.cell_line_tokens}`): one timm model per line; a line not in config.json "
            "(a de novo line) needs embedkit.",
        ]
    return lines
