"""The InfoAlign molecule model as a unit that saves and loads as a Hub-layout folder.

`save_pretrained(dir)` writes `config.json` (plain JSON) + `model.safetensors`;
`from_pretrained(dir)` is its exact mirror. Decoders are optional: embedding needs only the
encoder, retrieval and training need the decoders too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from embedkit.molecules.decoders import FeatureDecoders
from embedkit.molecules.gin import GINConfig, MoleculeEncoder

ARCHITECTURE = "infoalign-gin"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class InfoAlignModel(nn.Module):
    """Encoder (GIN + VIB head) and named feature-space decoders."""

    def __init__(
        self,
        encoder: GINConfig | None = None,
        decoder_spaces: dict[str, int] | None = None,
        decoder_dropout: float = 0.5,
        extra: dict | None = None,
    ):
        super().__init__()
        self.encoder = MoleculeEncoder(encoder or GINConfig())
        self.decoder_spaces = dict(decoder_spaces or {})
        self.decoder_dropout = decoder_dropout
        self.decoders = FeatureDecoders(
            self.encoder.embedding_dim, self.decoder_spaces, decoder_dropout
        )
        self.extra = dict(extra or {})

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    def config(self) -> dict:
        return {
            "architecture": ARCHITECTURE,
            "encoder": self.encoder.config.to_dict(),
            "embedding_dim": self.embedding_dim,
            "decoder_spaces": self.decoder_spaces,
            "decoder_dropout": self.decoder_dropout,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> InfoAlignModel:
        if config.get("architecture") != ARCHITECTURE:
            raise ValueError(
                f"config.json describes architecture {config.get('architecture')!r}, "
                f"expected {ARCHITECTURE!r}"
            )
        return cls(
            GINConfig(**config["encoder"]),
            config.get("decoder_spaces", {}),
            config.get("decoder_dropout", 0.5),
            config.get("extra"),
        )

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write config.json and model.safetensors (floating tensors cast to `dtype`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
            for k, v in self.state_dict().items()
        }
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        (folder / CONFIG_NAME).write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, encoder_only: bool = False) -> InfoAlignModel:
        """Load a folder written by `save_pretrained`; weights are upcast to fp32."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_NAME).read_text())
        if encoder_only:
            config = {**config, "decoder_spaces": {}}
        model = cls.from_config(config)
        state = load_file(str(folder / WEIGHTS_NAME))
        if encoder_only:
            state = {k: v for k, v in state.items() if not k.startswith("decoders.")}
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        model.load_state_dict(state, strict=True)
        return model.eval()
