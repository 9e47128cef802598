"""The InfoAlign molecule model as a unit that saves and loads as a Hub-layout folder.

`save_pretrained(dir)` writes `config.json` (plain JSON) + `model.safetensors`;
`from_pretrained(dir)` is its exact mirror (see `embedkit.pretrained`). Decoders are
optional: embedding needs only the encoder, retrieval and training need the decoders too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from embedkit.molecules.decoders import FeatureDecoders
from embedkit.molecules.gin import GINConfig, MoleculeEncoder
from embedkit.pretrained import PretrainedMixin, limits

ARCHITECTURE = "infoalign-gin"


@dataclass
class InfoAlignConfig:
    """config.json of an InfoAlign model (the constructor's keyword arguments)."""

    encoder: GINConfig = field(default_factory=GINConfig)
    decoder_spaces: dict[str, int] = field(default_factory=dict)  # space → number of features
    decoder_dropout: float = field(default=0.5, metadata=limits(0.0, 1.0))
    extra: dict = field(default_factory=dict)  # provenance, feature-space column lists

    def __post_init__(self):
        for space, width in self.decoder_spaces.items():
            if not space or "." in space:
                raise ValueError(f"decoder space name {space!r} must be non-empty, without '.'")
            if width < 1:
                raise ValueError(f"decoder space {space!r} must have at least 1 feature")


class InfoAlignModel(PretrainedMixin, nn.Module):
    """Encoder (GIN + VIB head) and named feature-space decoders."""

    ARCHITECTURE = ARCHITECTURE
    CONFIG_CLASS = InfoAlignConfig

    def __init__(
        self,
        encoder: GINConfig | None = None,
        decoder_spaces: dict[str, int] | None = None,
        decoder_dropout: float = 0.5,
        extra: dict | None = None,
    ):
        super().__init__()
        InfoAlignConfig(encoder or GINConfig(), dict(decoder_spaces or {}))  # validates
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

    def input_spec(self) -> dict:
        return {
            "type": "SMILES",
            "featurizer": "RDKit → OGB 9 atom / 3 bond integer features",
            "embedding": "mu of q(z|x)",
        }

    def config_object(self) -> InfoAlignConfig:
        return InfoAlignConfig(
            self.encoder.config, self.decoder_spaces, self.decoder_dropout, self.extra
        )

    @classmethod
    def estimated_parameters(cls, parsed: InfoAlignConfig) -> float:
        """A lower bound: each GIN layer's MLP (d → 2d → d) and each decoder (d → 4d → out)."""
        d = parsed.encoder.emb_dim
        decoders = sum(4 * d * (d + width) for width in parsed.decoder_spaces.values())
        return 4.0 * d * d * parsed.encoder.num_layer + decoders

    @classmethod
    def select_for_loading(cls, config: dict, encoder_only: bool = False):
        """`encoder_only=True` skips the decoders (embedding needs only the encoder)."""
        if not encoder_only:
            return config, lambda name: True
        return {**config, "decoder_spaces": {}}, lambda name: not name.startswith("decoders.")
