"""The one safe reader of third-party checkpoints (for the explicit `zoo convert` commands).

Pickles are opened only here, with `torch.load(weights_only=True)`, which refuses
arbitrary objects; safetensors files are read directly. Either way the result is a flat
name → tensor dict, or one sentence saying why the file is not one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from embedkit.errors import UntrustedFormatError

WRAPPER_KEYS = ("state_dict", "encoder_state_dict", "model_state_dict", "model")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A flat name → tensor dict from a safetensors file or a tensor-only torch pickle."""
    try:
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    except Exception:  # not safetensors (e.g. a torch pickle named model.safetensors)
        pass
    try:
        # argparse.Namespace holds the training arguments in some checkpoints; it builds
        # a plain attribute bag and runs no code, so it is safe to allow.
        # A handle, not the path: recent torch sends any *.safetensors path to safetensors,
        # and upstream OpenPhenom saves a torch pickle under that name.
        with open(path, "rb") as handle, torch.serialization.safe_globals([argparse.Namespace]):
            blob = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError…
        reason = (str(err).splitlines() or [""])[0][:200]  # EOFError of an empty file: ""
        raise UntrustedFormatError(
            f"{path}: neither safetensors nor a tensor-only torch checkpoint that can be "
            f"loaded safely ({err.__class__.__name__}: {reason}). "
            "If you trust it, re-save just its state dict: "
            "torch.save({'state_dict': ckpt['state_dict']}, 'clean.pt')"
        ) from err
    if isinstance(blob, dict):
        for key in WRAPPER_KEYS:
            if isinstance(blob.get(key), dict):
                blob = blob[key]
                break
    if (
        not isinstance(blob, dict)
        or not blob
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items())
    ):
        kind = type(blob).__name__
        keys = ", ".join(map(str, list(blob)[:5])) if isinstance(blob, dict) else ""
        raise UntrustedFormatError(
            f"{path}: expected a state dict of tensors (optionally under one of "
            f"{', '.join(WRAPPER_KEYS)}), found a {kind}" + (f" with keys {keys}" if keys else "")
        )
    return blob


def key_problems(missing, unexpected=(), wrong_shape=(), show: int = 3) -> str:
    """'missing a, b; unexpected c' for a converter's refusal: named keys, not Python lists."""
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        keys = list(keys)
        if keys:
            more = f" and {len(keys) - show} more" if len(keys) > show else ""
            parts.append(f"{label} {', '.join(keys[:show])}{more}")
    return "; ".join(parts)
