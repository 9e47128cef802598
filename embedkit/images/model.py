"""An image model as a Hub-layout folder: config.json (architecture, channels, crop size,
normalization, cell-line embeddings) + model.safetensors (see `embedkit.pretrained`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from embedkit.cell_lines import cell_line_vector
from embedkit.errors import InputError
from embedkit.images.vit import ImageEncoder, ViTConfig
from embedkit.pretrained import PretrainedMixin, limits

ARCHITECTURE = "embedkit-vit"
CELL_PAINTING = ["DNA", "ER", "RNA", "AGP", "Mito"]
CELL_PAINTING_ALIASES = {  # stain / RxRx / CellProfiler names; Phenix "chN" numbers vary: map them
    "DNA": ["w1", "Hoechst", "DAPI", "OrigDNA"],
    "ER": ["w2", "ConA", "ERSyto", "OrigER"],
    "RNA": ["w4", "Syto14", "ERSytoBleed", "OrigRNA"],
    "AGP": ["w3", "Phalloidin", "Ph_golgi", "OrigAGP"],
    "Mito": ["w5", "MitoTracker", "OrigMito"],
}
RXRX1 = ["DNA", "ER", "Actin", "RNA", "Mito", "Golgi"]  # RxRx1 w1..w6
RXRX1_ALIASES = {name: [f"w{i + 1}"] for i, name in enumerate(RXRX1)}


def default_channels(in_chans: int) -> tuple[list[str], dict[str, list[str]]]:
    if in_chans == len(CELL_PAINTING):
        return CELL_PAINTING, CELL_PAINTING_ALIASES
    if in_chans == len(RXRX1):
        return RXRX1, RXRX1_ALIASES
    return [f"c{i + 1}" for i in range(in_chans)], {}


@dataclass
class ImageModelConfig:
    """config.json of an image model (the constructor's keyword arguments)."""

    encoder: ViTConfig = field(default_factory=ViTConfig)
    channels: list[str] | None = None  # names in input order; default by channel count
    channel_aliases: dict[str, list[str]] | None = None
    crop_size: int | None = field(default=None, metadata=limits(1, 16384))
    normalization: dict | None = None  # {"kind": "instance"} or the card's statistics
    cell_lines: dict[str, list[float]] = field(default_factory=dict)  # name → embedding
    extra: dict = field(default_factory=dict)  # recipe, data, provenance


class ImageModel(PretrainedMixin, nn.Module):
    """The encoder plus what a user needs to feed it: channel names, crop size, normalization."""

    ARCHITECTURE = ARCHITECTURE
    CONFIG_CLASS = ImageModelConfig

    def __init__(
        self,
        encoder: ViTConfig | None = None,
        channels: list[str] | None = None,
        channel_aliases: dict[str, list[str]] | None = None,
        crop_size: int | None = None,
        normalization: dict | None = None,
        cell_lines: dict[str, list[float]] | None = None,
        extra: dict | None = None,
    ):
        super().__init__()
        config = encoder or ViTConfig()
        names, aliases = default_channels(config.in_chans)
        self.channels = list(channels or names)
        if len(self.channels) != config.in_chans:
            raise ValueError(f"{len(self.channels)} channel names for {config.in_chans} inputs")
        self.channel_aliases = dict(aliases if channel_aliases is None else channel_aliases)
        self.crop_size = crop_size or config.img_size
        if self.crop_size != config.img_size:
            raise ValueError(
                f"crop_size {self.crop_size} differs from the encoder's img_size {config.img_size}"
            )
        self.normalization = dict(normalization or {"kind": "instance"})
        check_normalization(self.normalization, config.in_chans)
        self.cell_lines = dict(cell_lines or {})
        for line, vector in self.cell_lines.items():
            if len(vector) != config.cell_line_dim:
                raise ValueError(
                    f"cell line {line!r} has {len(vector)} values, cell_line_dim is "
                    f"{config.cell_line_dim}"
                )
        self.extra = dict(extra or {})
        self.encoder = ImageEncoder(config)

    @property
    def embedding_dim(self) -> int:
        return self.encoder.config.embed_dim

    def input_spec(self) -> dict:
        return {
            "channels": self.channels,
            "channel_aliases": self.channel_aliases,
            "crop_size": self.crop_size,
            "bit_depth": "8- or 16-bit (scaled by the dtype's maximum, then normalized)",
            "normalization": self.normalization,
            "cell_lines": sorted(self.cell_lines),
        }

    def config_object(self) -> ImageModelConfig:
        return ImageModelConfig(
            self.encoder.config,
            self.channels,
            self.channel_aliases,
            self.crop_size,
            self.normalization,
            self.cell_lines,
            self.extra,
        )

    def config(self) -> dict:
        return {**super().config(), "pooling": "mean of patch tokens"}

    @classmethod
    def estimated_parameters(cls, parsed: ImageModelConfig) -> float:
        """A lower bound: attention (4 D²) and MLP (2 · ratio · D²) in every block."""
        e = parsed.encoder
        return (4 + 2 * e.mlp_ratio) * e.embed_dim**2 * e.depth

    @classmethod
    def upgrade_legacy(cls, config: dict, names: list[str]) -> tuple[dict, dict[str, str]]:
        """Folders written before the model contract (embedkit 0.1.0, converted RxRx1 /
        OpenPhenom folders, MAE runs) spell `normalisation` and store the encoder's tensors
        without the `encoder.` prefix; both are read as they are meant."""
        if "normalisation" in config and "normalization" not in config:
            config = {**config, "normalization": config["normalisation"]}
            del config["normalisation"]
        if names and not any(name.startswith("encoder.") for name in names):
            return config, {name: f"encoder.{name}" for name in names}
        return config, {}

    def cell_line_vector(self, name: str | None, table: dict | None = None) -> torch.Tensor | None:
        """The embedding of cell line `name` (from `table`, else the config); None if unused."""
        if self.encoder.config.cell_line_tokens == 0:
            return None
        lines = {**self.cell_lines, **(table or {})}
        if name is None:
            known = ", ".join(sorted(self.cell_lines))
            raise InputError(
                "this model conditions on the cell line: pass --cell-line NAME "
                + (f"(it knows {known}) " if known else "")
                + "or --cell-line-embeddings FILE"
            )
        vector = cell_line_vector(
            lines,
            name,
            source="the model's cell lines" + (" and --cell-line-embeddings" if table else ""),
            hint="give its embedding with --cell-line-embeddings FILE (a de novo line needs "
            "only its expression: `embedkit cell-lines embed`)",
        )
        if vector.shape != (self.encoder.config.cell_line_dim,):
            raise InputError(
                f"cell line {name!r}: embedding has {vector.size} values, the model expects "
                f"{self.encoder.config.cell_line_dim}"
            )
        return torch.from_numpy(vector)


def check_normalization(spec: dict, channels: int) -> None:
    """{"kind": "instance"} or {"kind": "fixed", "mean": [...], "std": [...]} per channel."""
    kind = spec.get("kind")
    if kind == "instance":
        return
    if kind != "fixed":
        raise ValueError(f"normalization kind {kind!r} is not 'instance' or 'fixed'")
    for key in ("mean", "std"):
        values = spec.get(key)
        if not isinstance(values, list) or len(values) != channels:
            raise ValueError(f"fixed normalization needs {channels} '{key}' values")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"fixed normalization '{key}' must hold numbers")
