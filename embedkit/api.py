"""`embedkit.load`: one call from a zoo name, a Hub repo or a local folder to a ready model."""

from __future__ import annotations

import json

from embedkit.errors import ModelNotFoundError, UntrustedFormatError
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.model import ARCHITECTURE as GIN_ARCHITECTURE
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import resolve

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def load(
    name: str, device: str = "auto", precision: str = "fp32", with_decoders: bool = False
) -> MoleculeEmbedder:
    """Load `name[@rev]`, `hf-hub:org/repo[@rev]` or `local-dir:PATH`, verified by sha256.

    Only safetensors + JSON are read; a folder holding only pickle checkpoints is refused
    with the command that converts it.
    """
    resolved = resolve(name)
    folder = resolved.folder
    if not (folder / "model.safetensors").exists():
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise UntrustedFormatError(
                f"{folder}: {pickles[0]} is a pickle checkpoint, which embedkit does not load; "
                f"convert it first: embedkit zoo convert infoalign {folder / pickles[0]} -o OUT_DIR"
            )
    config = json.loads((folder / "config.json").read_text())
    architecture = config.get("architecture")
    if architecture != GIN_ARCHITECTURE:
        raise ModelNotFoundError(
            f"{name}: architecture {architecture!r} is not a molecule model embedkit can load"
        )
    model = InfoAlignModel.from_pretrained(folder, encoder_only=not with_decoders)
    return MoleculeEmbedder(model, resolved.run_info(), device=device, precision=precision)
