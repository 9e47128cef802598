"""`embedkit.load`: one call from a zoo name, a Hub repo or a local folder to a ready model."""

from __future__ import annotations

import warnings

from embedkit.registry import get_kind, kind_of_folder
from embedkit.zoo import get_card, resolve, split_revision


def load(
    name: str,
    device: str = "auto",
    precision: str = "fp32",
    with_heads: bool = False,
    task: str | None = None,
    command: str | None = None,
    with_decoders: bool | None = None,
):
    """Load `name[@rev]`, `hf-hub:org/repo[@rev]` or `local-dir:PATH`, verified by sha256.

    Returns the embedder of the model's kind (see `embedkit.registry`), chosen by the
    architecture in config.json: a `MoleculeEmbedder`, an `ImageEmbedder`, … `with_heads`
    also loads what lies beyond the encoder (InfoAlign's decoders, a classifier's head).
    `task` ("molecules", "images", …) refuses a model of another task in one sentence
    naming both (`command` names the asking command in that sentence). Only safetensors +
    JSON are read (pickle-only folders are refused with the command that converts them).
    """
    if not name.startswith(("local-dir:", "hf-hub:")):  # a zoo card: check before downloading
        card = get_card(split_revision(name)[0])
        get_kind(card.architecture, where=f"zoo card {card.name}").check_task(task, name, command)
    if with_decoders is not None:  # the name before the model contract (embedkit 0.1.0)
        warnings.warn(
            "embedkit.load(with_decoders=...) is now with_heads=...", DeprecationWarning, 2
        )
        with_heads = with_decoders
    resolved = resolve(name)
    kind = kind_of_folder(resolved.folder)
    kind.check_task(task, name, command)
    model = kind.model_class().from_pretrained(resolved.folder, encoder_only=not with_heads)
    return kind.embedder_class()(model, resolved.run_info(), device=device, precision=precision)
