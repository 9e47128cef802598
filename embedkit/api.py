"""`embedkit.load`: one call from a zoo name, a Hub repo or a local folder to a ready model."""

from __future__ import annotations

from embedkit.registry import kind_of_folder
from embedkit.zoo import resolve


def load(
    name: str,
    device: str = "auto",
    precision: str = "fp32",
    with_heads: bool = False,
    task: str | None = None,
    command: str | None = None,
):
    """Load `name[@rev]`, `hf-hub:org/repo[@rev]` or `local-dir:PATH`, verified by sha256.

    Returns the embedder of the model's kind (see `embedkit.registry`), chosen by the
    architecture in config.json: a `MoleculeEmbedder`, an `ImageEmbedder`, … `with_heads`
    also loads what lies beyond the encoder (InfoAlign's decoders, a classifier's head).
    `task` ("molecules", "images", …) refuses a model of another task in one sentence
    naming both (`command` names the asking command in that sentence). Only safetensors +
    JSON are read (pickle-only folders are refused with the command that converts them).
    """
    resolved = resolve(name)
    kind = kind_of_folder(resolved.folder)
    kind.check_task(task, name, command)
    model = kind.model_class().from_pretrained(resolved.folder, encoder_only=not with_heads)
    return kind.embedder_class()(model, resolved.run_info(), device=device, precision=precision)
