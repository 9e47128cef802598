"""The one safe reader of third-party checkpoints (for the explicit `zoo convert` commands).

Pickles are opened only here, with `torch.load(weights_only=True)`, which refuses
arbitrary objects; safetensors files are read directly. Either way the result is a flat
name → tensor dict, or one sentence saying why the file is not one.
"""

from __future__ import annotations

import argparse
import pickle
import re
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
        raise UntrustedFormatError(_unreadable(path, err)) from err
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


def _unreadable(path: Path, err: Exception) -> str:
    """Why the file could not be read: empty, not a checkpoint at all, or an unsafe pickle
    (only the last one is helped by re-saving a trusted file)."""
    if path.stat().st_size == 0:
        return f"{path}: the file is empty (0 bytes); an interrupted download or copy?"
    with open(path, "rb") as handle:
        head = handle.read(2)
    is_pickle = head == b"PK" or head[:1] == b"\x80"  # torch's zip archive or a bare pickle
    if not is_pickle:
        return f"{path}: neither a safetensors file nor a torch checkpoint; is it the right file?"
    if not isinstance(err, pickle.UnpicklingError):
        return (
            f"{path}: a damaged torch checkpoint ({err.__class__.__name__} while reading it); "
            "download it again and compare its size and sha256"
        )
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    what = f"it holds a {refused.group(1)}" if refused else "it holds more than tensors"
    return (
        f"{path}: a torch pickle that cannot be loaded safely ({what}). If you trust it, "
        "re-save just its state dict: torch.save({'state_dict': ckpt['state_dict']}, 'clean.pt')"
    )


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
