"""The architecture registry: one entry per model kind, the single source of truth.

`embedkit.load`, `embedkit zoo list|show|convert`, `train.ship` / `train.publish` and every
command find a model kind here by the `architecture` in its config.json. An entry names its
classes by import path, so reading the registry imports neither torch nor timm.

Adding a model kind is one new module (an `nn.Module` + `embedkit.pretrained.PretrainedMixin`)
and one `register(ModelKind(...))` call at the bottom of this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from embedkit.errors import ConfigError, ModelNotFoundError, WrongTaskError

# Tasks a command can ask for; a kind serves one or more of them.
TASKS = ("molecules", "images", "image-classification", "profile-classification")


def _import(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Converter:
    """`embedkit zoo convert NAME CHECKPOINT -o OUT` for a third-party checkpoint format."""

    name: str
    function: str  # "module:function(checkpoint, out_dir) -> Path"
    help: str
    note: str = ""  # printed after converting (license terms…)
    options: tuple[str, ...] = ()  # keyword options the function takes (`--feature-spaces`)

    def run(self, checkpoint: Path, out_dir: Path, **options) -> Path:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"converter {self.name} takes no option {unknown[0]!r}")
        return _import(self.function)(checkpoint, out_dir, **options)


@dataclass(frozen=True)
class ModelKind:
    """What embedkit knows about one architecture."""

    architecture: str
    tasks: tuple[str, ...]  # the first is the kind's own task (shown in the zoo)
    model: str  # "module:Class", a PretrainedMixin nn.Module
    embedder: str  # "module:Class", an `embedkit.embedder.Embedder`
    usage: str  # copy-paste snippet; `{spec}` is replaced by the model spec
    citation: str = ""
    converters: tuple[Converter, ...] = field(default_factory=tuple)

    @property
    def task(self) -> str:
        return self.tasks[0]

    def model_class(self):
        return _import(self.model)

    def embedder_class(self):
        return _import(self.embedder)

    def usage_for(self, spec: str) -> str:
        return self.usage.format(spec=spec)

    def check_task(self, task: str | None, spec: str, command: str | None = None) -> None:
        """One sentence naming both tasks when a command is given a model of another task."""
        if task is None or task in self.tasks:
            return
        who = f"`embedkit {command}`" if command else "this call"
        raise WrongTaskError(
            f"{spec} is a model for {self.task} ({self.architecture}); {who} needs a model "
            f"for {task} (see `embedkit zoo list`)"
        )


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    if kind.architecture in _KINDS:
        raise ValueError(f"architecture {kind.architecture!r} is registered twice")
    unknown = [t for t in kind.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"{kind.architecture}: unknown task {unknown[0]!r}; known: {TASKS}")
    _KINDS[kind.architecture] = kind
    return kind


def kinds() -> list[ModelKind]:
    return list(_KINDS.values())


def get_kind(architecture: object, where: str = "config.json") -> ModelKind:
    kind = _KINDS.get(architecture) if isinstance(architecture, str) else None
    if kind is None:
        raise ConfigError(
            f"{where}: architecture {architecture!r} is not one embedkit knows "
            f"(known: {', '.join(_KINDS)})"
        )
    return kind


def kind_of_folder(folder: str | Path) -> ModelKind:
    """The kind of a model folder, read from its config.json alone (no weights, no torch)."""
    from embedkit.pretrained import read_config

    path = Path(folder) / "config.json"
    return get_kind(read_config(Path(folder)).get("architecture"), where=str(path))


def converters() -> dict[str, Converter]:
    return {c.name: c for kind in _KINDS.values() for c in kind.converters}


def get_converter(name: str) -> Converter:
    found = converters().get(name)
    if found is None:
        raise ModelNotFoundError(f"no converter named {name!r}; known: {', '.join(converters())}")
    return found


# ---- the built-in kinds: one register call each ---------------------------------------------

register(
    ModelKind(
        architecture="infoalign-gin",
        tasks=("molecules",),
        model="embedkit.molecules.model:InfoAlignModel",
        embedder="embedkit.molecules.embedder:MoleculeEmbedder",
        usage=(
            "# command line\n"
            "embedkit embed-smiles molecules.csv -m {spec} -o embeddings.parquet\n"
            "\n# Python\nimport embedkit\nmodel = embedkit.load({spec!r})\n"
            'embeddings, valid = model.embed_smiles(["CCO", "c1ccccc1O"])\n'
        ),
        citation="Liu G. et al., Learning Molecular Representation in a Cell, ICLR 2025 "
        "(InfoAlign)",
        converters=(
            Converter(
                "infoalign",
                "embedkit.molecules.convert:convert_infoalign",
                "InfoAlign's pretrain.pt (molecule GIN encoder, VIB head and decoders; "
                "--feature-spaces FILE names the decoders' columns for retrieval)",
                options=("feature_spaces",),
            ),
        ),
    )
)

register(
    ModelKind(
        architecture="embedkit-vit",
        tasks=("images",),
        model="embedkit.images.model:ImageModel",
        embedder="embedkit.images.embedder:ImageEmbedder",
        usage=(
            "# command line\n"
            "embedkit embed-images plate_dir/ -m {spec} -o embeddings/\n"
            "# (a model with cell-line tokens also needs --cell-line NAME)\n"
            "\n# Python\n# crops: float (N, C, S, S), normalized per crop and channel\n"
            "import embedkit, torch\nmodel = embedkit.load({spec!r})\n"
            "spec = model.model  # channels, crop size, normalization\n"
            "crops = torch.randn(4, len(spec.channels), spec.crop_size, spec.crop_size)\n"
            "# with cell-line tokens: the line's embedding (any line of spec.cell_lines)\n"
            "line = spec.cell_line_vector(min(spec.cell_lines)) if spec.cell_lines else None\n"
            "embeddings = model.embed_crops(crops, line)  # (4, embedding_dim) float32\n"
        ),
        citation="ViT-S/16 for multi-channel microscopy, as in the seed paper on biological "
        "knowledge for de novo cell lines",
        converters=(
            Converter(
                "rxrx1-vit",
                "embedkit.images.convert:convert_rxrx1_vit",
                "the seed paper's RxRx1 ViT: best_{method}_vit-s.pt, final_encoder_vit-s.pt or "
                'a plain state dict (6 channels w1..w6, optional cell-line "GE" tokens)',
            ),
            Converter(
                "openphenom",
                "embedkit.images.convert:convert_openphenom",
                "Recursion's OpenPhenom channel-agnostic ViT-S/16 (its model.safetensors). "
                "Its weights are NON-COMMERCIAL: embedkit ships this loader, never the weights",
                note="OpenPhenom weights are licensed for non-commercial use only",
            ),
        ),
    )
)

register(
    ModelKind(
        architecture="embedkit-vit-classifier",
        tasks=("image-classification", "images"),
        model="embedkit.finetune.image_classifier:ImageClassifier",
        embedder="embedkit.finetune.image_classifier:ImageClassifierEmbedder",
        usage=(
            "# command line (written by `embedkit finetune`)\n"
            "embedkit predict plate_dir/ -m {spec} -o predictions.parquet\n"
            "embedkit embed-images plate_dir/ -m {spec} -o embeddings/\n"
            "\n# Python\nimport embedkit, torch\n"
            "model = embedkit.load({spec!r}, with_heads=True)\n"
            "spec = model.model  # channels, crop size, labels\n"
            "crops = torch.randn(4, len(spec.channels), spec.crop_size, spec.crop_size)\n"
            "embeddings = model.embed_crops(crops)  # (4, embedding_dim) float32\n"
            "probabilities = model.probabilities(embeddings)  # (4, len(spec.labels))\n"
        ),
        citation="few-shot fine-tuning on a de novo cell line, as in the seed paper on "
        "biological knowledge for de novo cell lines",
    )
)

register(
    ModelKind(
        architecture="embedkit-profile-classifier",
        tasks=("profile-classification",),
        model="embedkit.finetune.profile_classifier:ProfileClassifier",
        embedder="embedkit.finetune.profile_classifier:ProfileEmbedder",
        usage=(
            "# command line (written by `embedkit finetune --profiles`)\n"
            "embedkit predict --profiles profiles.parquet -m {spec} -o predictions.parquet\n"
            "\n# Python\nimport embedkit, numpy as np\n"
            "model = embedkit.load({spec!r}, with_heads=True)\n"
            "profiles = np.zeros((4, len(model.model.features)), np.float32)  # or a table\n"
            "embeddings = model.embed(profiles).embeddings  # (4, embedding_dim) float32\n"
            "probabilities = model.probabilities(embeddings)  # (4, classes)\n"
        ),
    )
)
