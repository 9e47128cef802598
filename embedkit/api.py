"""`embedkit.load`: one call from a zoo name, a Hub repo or a local folder to a ready model."""

from __future__ import annotations

import json

from embedkit.errors import ModelNotFoundError
from embedkit.images.embedder import ImageEmbedder
from embedkit.images.model import ARCHITECTURE as IMAGE_ARCHITECTURE
from embedkit.images.model import ImageModel
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.model import ARCHITECTURE as GIN_ARCHITECTURE
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import resolve


def load(
    name: str, device: str = "auto", precision: str = "fp32", with_decoders: bool = False
) -> MoleculeEmbedder | ImageEmbedder:
    """Load `name[@rev]`, `hf-hub:org/repo[@rev]` or `local-dir:PATH`, verified by sha256.

    Returns a `MoleculeEmbedder` or an `ImageEmbedder`, by the architecture in config.json.
    Only safetensors + JSON are read (the zoo refuses pickle-only folders with the command
    that converts them).
    """
    resolved = resolve(name)
    folder = resolved.folder
    config = json.loads((folder / "config.json").read_text())
    architecture = config.get("architecture")
    if architecture == GIN_ARCHITECTURE:
        model = InfoAlignModel.from_pretrained(folder, encoder_only=not with_decoders)
        return MoleculeEmbedder(model, resolved.run_info(), device=device, precision=precision)
    if architecture == IMAGE_ARCHITECTURE:
        image_model = ImageModel.from_pretrained(folder)
        return ImageEmbedder(image_model, resolved.run_info(), device=device, precision=precision)
    raise ModelNotFoundError(f"{name}: architecture {architecture!r} is not one embedkit can load")
