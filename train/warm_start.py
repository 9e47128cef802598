"""Start a pretraining run from an earlier model's weights (`--init-from`).

On a shared CPU a run gets a few hundred steps; starting from the shipped model lets a
richer context graph add to what was learned instead of starting over. The encoder is
copied whole; a decoder is copied only when its feature space has the same columns in the
same order (a new or re-shaped space starts from scratch). What was copied is returned,
so the run's card can say so.
"""

from __future__ import annotations

import json

import torch

from embedkit.checkpoints import read_checkpoint
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import resolve


def warm_start(model: InfoAlignModel, spec: str, spaces: dict[str, dict]) -> dict:
    """Copy weights from `spec` (zoo name, `local-dir:PATH`, or a folder path) into `model`.

    `spaces` is the new graph's `feature_spaces_json()`; returns {"source", "sha256",
    "decoders_copied", "decoders_new"}.
    """
    if not spec.startswith(("local-dir:", "hf-hub:")) and ("/" in spec or spec.startswith(".")):
        spec = f"local-dir:{spec}"
    resolved = resolve(spec)
    config = json.loads((resolved.folder / "config.json").read_text())
    if config.get("architecture") != "infoalign-gin":
        raise ValueError(f"--init-from {spec}: not an infoalign-gin model")
    if config["encoder"] != model.encoder.config.to_dict():
        raise ValueError(
            f"--init-from {spec}: encoder {config['encoder']} differs from this run's "
            f"{model.encoder.config.to_dict()}"
        )
    weights = read_checkpoint(resolved.folder / "model.safetensors")
    old_spaces = config.get("extra", {}).get("feature_spaces", {})
    copied = [
        name
        for name in model.decoder_spaces
        if name in config.get("decoder_spaces", {})
        and name in old_spaces
        and old_spaces[name]["columns"] == spaces[name]["columns"]
    ]
    state = model.state_dict()
    take = {
        k: v.to(state[k].dtype)
        for k, v in weights.items()
        if k in state
        and (k.startswith("encoder.") or any(k.startswith(f"decoders.{n}.") for n in copied))
    }
    missing = [k for k in state if k.startswith("encoder.") and k not in take]
    if missing:
        raise ValueError(f"--init-from {spec}: encoder weights missing: {missing[:3]}")
    with torch.no_grad():
        model.load_state_dict({**state, **take})
    return {
        "source": resolved.model_id,
        "sha256": resolved.sha256.get("model.safetensors", ""),
        "decoders_copied": copied,
        "decoders_new": [n for n in model.decoder_spaces if n not in copied],
    }
