"""The one model contract (`embedkit.pretrained`), the registry and the `Embedder` protocol.

Every registered kind saves atomically, loads exactly, validates its config.json in one
sentence, refuses the wrong task by name, and means the same thing by `precision`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import embedkit
from embedkit import registry
from embedkit.embedder import BaseEmbedder, Embedder, EmbedResult
from embedkit.errors import ConfigError, InputError, WrongTaskError
from embedkit.finetune.image_classifier import ImageClassifier
from embedkit.finetune.profile_classifier import ProfileClassifier
from embedkit.images.model import ImageModel
from embedkit.images.vit import ViTConfig
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.pretrained import PretrainedMixin, limits
from embedkit.zoo import list_cards

REPO = Path(__file__).resolve().parents[1]


def tiny_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "infoalign-gin": InfoAlignModel(GINConfig(num_layer=2, emb_dim=16), {"morgan": 8}),
        "embedkit-vit": ImageModel(
            ViTConfig(img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2)
        ),
        "embedkit-vit-classifier": ImageClassifier(
            ViTConfig(img_size=32, in_chans=5, depth=1, embed_dim=24, num_heads=2),
            labels=["siA", "siB", "siC"],
        ),
        "embedkit-profile-classifier": ProfileClassifier(
            [f"Cells_F{i}" for i in range(6)], hidden=[16, 8], labels=["a", "b"]
        ),
    }


def tiny_inputs(architecture: str):
    """Three inputs of the kind each tiny model embeds (the last SMILES is invalid)."""
    if architecture == "infoalign-gin":
        return ["CCO", "c1ccccc1O", "not a smiles"]
    if architecture == "embedkit-profile-classifier":
        return np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    return torch.randn(3, 5, 32, 32)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


# --- the registry ----------------------------------------------------------------------------


def test_every_registered_kind_has_a_contract_model_and_an_embedder():
    assert {k.architecture for k in registry.kinds()} >= set(tiny_models())
    for kind in registry.kinds():
        model_class = kind.model_class()
        assert issubclass(model_class, PretrainedMixin) and issubclass(model_class, nn.Module)
        assert model_class.ARCHITECTURE == kind.architecture
        assert issubclass(kind.embedder_class(), BaseEmbedder)
        assert kind.task in registry.TASKS and kind.usage_for("x")


def test_the_contract_tests_cover_every_registered_kind():
    """A new kind must add a tiny instance to `tiny_models`, so every test below runs on it."""
    assert set(tiny_models()) == {k.architecture for k in registry.kinds()}


def test_every_shipped_card_names_a_registered_architecture_with_its_task():
    for card in list_cards():
        kind = registry.get_kind(card.architecture)
        assert card.task == kind.task, card.name


@pytest.mark.parametrize("card", [c.name for c in list_cards()])
def test_zoo_show_usage_snippet_runs_as_printed(card):
    """`zoo show` used to print the embed-smiles snippet for the image model."""
    shown = run_cli("zoo", "show", card)
    assert shown.returncode == 0, shown.stderr
    usage = shown.stdout.split("\nUsage:\n", 1)[1]
    command_line, python = usage.split("# Python", 1)
    raw = run_cli("zoo", "show", card, "--json")  # the card itself, for scripts
    kind = registry.get_kind(json.loads(raw.stdout)["architecture"])
    assert ("embed-smiles" in command_line) == (kind.task == "molecules")
    namespace: dict = {}
    exec(compile(python, f"<usage of {card}>", "exec"), namespace)  # noqa: S102
    out = namespace.get("embeddings")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and np.isfinite(out).all()


def test_zoo_convert_offers_exactly_the_registered_converters():
    result = run_cli("zoo", "convert", "--help")
    assert result.returncode == 0
    for name, converter in registry.converters().items():
        assert name in result.stdout and converter.help.split()[0] in result.stdout


# --- save / load -----------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", list(tiny_models()))
def test_save_then_load_gives_the_same_model(tmp_path, architecture):
    model = tiny_models()[architecture].eval()
    model.save_pretrained(tmp_path / "m")
    again = type(model).from_pretrained(tmp_path / "m")
    assert again.config() == model.config()
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == model.config()
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left


@pytest.mark.parametrize("architecture", list(tiny_models()))
def test_a_crash_while_saving_leaves_the_previous_model_whole(tmp_path, architecture, monkeypatch):
    import safetensors.torch

    model = tiny_models()[architecture]
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "README.md").write_text("card")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)  # a truncated file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_saving_over_a_model_keeps_its_readme(tmp_path):
    model = tiny_models()["infoalign-gin"]
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "README.md").write_text("the card")
    model.save_pretrained(tmp_path / "m", dtype=torch.float16)
    assert (tmp_path / "m" / "README.md").read_text() == "the card"


def test_encoder_only_skips_the_decoders(tmp_path):
    model = tiny_models()["infoalign-gin"]
    model.save_pretrained(tmp_path / "m")
    slim = InfoAlignModel.from_pretrained(tmp_path / "m", encoder_only=True)
    assert not any(k.startswith("decoders.") for k in slim.state_dict())


# --- config.json validation ------------------------------------------------------------------


def _gin_config() -> dict:
    return tiny_models()["infoalign-gin"].config()


def _vit_config() -> dict:
    return tiny_models()["embedkit-vit"].config()


def _edit(config: dict, path: str, value) -> dict:
    keys = path.split(".")
    target = config
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return config


MALFORMED = [  # (config factory, edit, words the one-line message must contain)
    (_gin_config, ("encoder.emb_dim", "16"), ["encoder.emb_dim", "integer"]),
    (_gin_config, ("encoder.num_layer", True), ["encoder.num_layer", "integer"]),
    (_gin_config, ("encoder.emb_dim", 10**9), ["encoder.emb_dim", "absurdly large"]),
    (_gin_config, ("encoder.num_layer", -3), ["encoder.num_layer", "outside"]),
    (_gin_config, ("encoder.hidden", 4), ["unknown key", "encoder.hidden"]),
    (_gin_config, ("decoder_dropout", "high"), ["decoder_dropout", "number"]),
    (_gin_config, ("decoder_spaces", {"morgan": "eight"}), ["decoder_spaces.morgan"]),
    (_gin_config, ("architecture", "resnet-9000"), ["architecture", "resnet-9000"]),
    (_vit_config, ("encoder.depth", 0), ["encoder.depth", "outside"]),
    (_vit_config, ("encoder.num_heads", 5), ["cannot build", "embedkit-vit"]),
    (_vit_config, ("channels", ["DNA"]), ["cannot build", "channel"]),
    (_vit_config, ("encoder.pos_embed_kind", "rope"), ["encoder.pos_embed_kind", "one of"]),
    (_vit_config, ("encoder", [1, 2]), ["encoder", "object"]),
    (_vit_config, ("crop_size", 1e40), ["crop_size", "integer"]),
    (_vit_config, ("crop_size", 64), ["cannot build", "img_size"]),
    (_vit_config, ("normalization", {"kind": "bogus"}), ["cannot build", "normalization"]),
    (_vit_config, ("normalization", {"kind": "fixed"}), ["cannot build", "mean"]),
    (_gin_config, ("decoder_spaces", {"a.b": 8}), ["cannot build", "a.b"]),
    (_gin_config, ("decoder_spaces", {"": 8}), ["cannot build", "non-empty"]),
    (_gin_config, ("encoder", {"emb_dim": 16384, "num_layer": 64}), ["parameters"]),
]


@pytest.mark.parametrize("factory, edit, words", MALFORMED)
def test_malformed_config_is_one_sentence_naming_file_and_key(tmp_path, factory, edit, words):
    config = factory()
    architecture = config["architecture"]
    model = tiny_models()[architecture]
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps(_edit(config, *edit)))
    with pytest.raises(ConfigError) as err:
        embedkit.load(f"local-dir:{tmp_path / 'm'}")
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message


def test_config_that_is_not_json_or_not_an_object(tmp_path):
    tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    for text, word in [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=word):
            embedkit.load(f"local-dir:{tmp_path / 'm'}")


def test_weights_that_do_not_match_the_config_are_named(tmp_path):
    tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "m")
    other = InfoAlignModel(GINConfig(num_layer=3, emb_dim=16), {"morgan": 8})
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "m" / "config.json").read_text())
    with pytest.raises(ConfigError, match="weights do not match"):
        embedkit.load(f"local-dir:{tmp_path / 'other'}")


def test_malformed_config_on_the_command_line_is_one_line_exit_2(tmp_path):
    tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder"]["emb_dim"] = "sixteen"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "in.csv").write_text("smiles\nCCO\n")
    result = run_cli(
        "embed-smiles",
        tmp_path / "in.csv",
        "-o",
        tmp_path / "o.parquet",
        "-m",
        f"local-dir:{tmp_path / 'm'}",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "encoder.emb_dim" in result.stderr


# --- tasks -----------------------------------------------------------------------------------


def test_a_model_of_the_wrong_task_is_one_sentence_naming_both(tmp_path):
    (tmp_path / "in.csv").write_text("smiles\nCCO\n")
    result = run_cli(
        "embed-smiles",
        tmp_path / "in.csv",
        "-o",
        tmp_path / "o.parquet",
        "-m",
        "vit-s16-cellpaint-demo",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "model for images" in line and "model for molecules" in line and "embed-smiles" in line
    assert not (tmp_path / "o.parquet").exists()

    tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "gin")
    with pytest.raises(WrongTaskError, match="model for molecules .* needs a model for images"):
        embedkit.load(f"local-dir:{tmp_path / 'gin'}", task="images")


# --- the Embedder protocol and precision -----------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_means_the_same_for_every_kind(tmp_path, precision):
    """bf16 = bf16 arithmetic; the loaded model (decoders included) stays fp32; fp32 output."""
    for architecture, model in tiny_models().items():
        model.save_pretrained(tmp_path / architecture)
        embedder = embedkit.load(
            f"local-dir:{tmp_path / architecture}", precision=precision, with_heads=True
        )
        assert isinstance(embedder, Embedder)
        assert embedder.precision == precision
        dtypes = {p.dtype for p in embedder.model.parameters()}
        assert dtypes == {torch.float32}, (architecture, dtypes)
        inputs = tiny_inputs(architecture)
        result = embedder.embed(inputs, batch_size=2)
        assert isinstance(result, EmbedResult)
        assert result.embeddings.dtype == np.float32
        assert result.embeddings.shape == (3, embedder.embedding_dim)
        exact = embedkit.load(f"local-dir:{tmp_path / architecture}").embed(inputs, batch_size=2)
        ok = result.valid
        if precision == "fp32":
            np.testing.assert_array_equal(result.embeddings[ok], exact.embeddings[ok])
        else:  # bf16 arithmetic really ran: close to fp32, not equal to it
            assert not np.array_equal(result.embeddings[ok], exact.embeddings[ok])
            np.testing.assert_allclose(result.embeddings[ok], exact.embeddings[ok], atol=0.1)


def test_bf16_molecule_embedder_scores_with_fp32_decoders(tmp_path):
    """Retrieval through the Python API in bf16 used to decode with bf16 logits."""
    from embedkit.molecules.embedder import MoleculeEmbedder

    model = tiny_models()["infoalign-gin"]
    model.save_pretrained(tmp_path / "m")
    bf16 = embedkit.load(f"local-dir:{tmp_path / 'm'}", precision="bf16", with_heads=True)
    fp32 = MoleculeEmbedder(InfoAlignModel.from_pretrained(tmp_path / "m"), device="cpu")
    z = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            bf16.model.decoders["morgan"](z), fp32.model.decoders["morgan"](z)
        )
    assert bf16.model.decoders["morgan"](z).dtype == torch.float32


# --- a new kind is one module and one register call ------------------------------------------


@dataclass
class ToyConfig:
    width: int = field(default=4, metadata=limits(1, 64))
    extra: dict = field(default_factory=dict)


class ToyModel(PretrainedMixin, nn.Module):
    ARCHITECTURE = "toy-linear"
    CONFIG_CLASS = ToyConfig

    def __init__(self, width: int = 4, extra: dict | None = None):
        super().__init__()
        self.width, self.extra = width, dict(extra or {})
        self.encoder = nn.Linear(3, width)

    @property
    def embedding_dim(self) -> int:
        return self.width

    def input_spec(self) -> dict:
        return {"type": "3 numbers"}

    def config_object(self) -> ToyConfig:
        return ToyConfig(self.width, self.extra)


class ToyEmbedder(BaseEmbedder):
    def embed(self, inputs, batch_size: int = 8, progress: bool = False) -> EmbedResult:
        with torch.no_grad(), self.autocast():
            out = self.model.encoder(torch.as_tensor(inputs, dtype=torch.float32)).float()
        return EmbedResult(out.numpy(), np.ones(len(out), bool), [""] * len(out))


def test_a_new_kind_needs_one_module_and_one_register_call(tmp_path):
    kind = registry.register(
        registry.ModelKind(
            architecture="toy-linear",
            tasks=("images",),
            model=f"{__name__}:ToyModel",
            embedder=f"{__name__}:ToyEmbedder",
            usage="embedkit.load({spec!r})",
        )
    )
    try:
        ToyModel(width=5).save_pretrained(tmp_path / "toy")
        embedder = embedkit.load(f"local-dir:{tmp_path / 'toy'}", task="images")
        assert isinstance(embedder, ToyEmbedder) and embedder.embedding_dim == 5
        assert embedder.embed([[1.0, 2.0, 3.0]]).embeddings.shape == (1, 5)
        assert registry.kind_of_folder(tmp_path / "toy") is kind
        with pytest.raises(WrongTaskError):
            embedkit.load(f"local-dir:{tmp_path / 'toy'}", task="molecules")
    finally:
        registry._KINDS.pop("toy-linear")


def _infoalign_checkpoint(path: Path) -> Path:
    """A tiny checkpoint in InfoAlign's upstream key layout (graph_encoder.*, dist_net.*)."""
    encoder = tiny_models()["infoalign-gin"].encoder
    torch.save({"state_dict": dict(encoder.state_dict())}, path)
    return path


def test_zoo_convert_refuses_an_existing_output_unless_overwrite(tmp_path):
    """`zoo convert` used to replace its output folder silently."""
    checkpoint = _infoalign_checkpoint(tmp_path / "pretrain.pt")
    out = tmp_path / "converted"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("zoo", "convert", "infoalign", checkpoint, "-o", out)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    forced = run_cli("zoo", "convert", "infoalign", checkpoint, "-o", out, "--overwrite")
    assert forced.returncode == 2 and "not a model folder" in forced.stderr
    assert (out / "keep.txt").read_text() == "mine"  # a folder of other things is never emptied

    model_dir = tmp_path / "model"
    assert run_cli("zoo", "convert", "infoalign", checkpoint, "-o", model_dir).returncode == 0
    (model_dir / "runs").mkdir()
    (model_dir / "runs" / "log.txt").write_text("kept")
    again = run_cli("zoo", "convert", "infoalign", checkpoint, "-o", model_dir, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert (model_dir / "runs" / "log.txt").read_text() == "kept"
    assert embedkit.load(f"local-dir:{model_dir}").embedding_dim == 16


def test_saving_into_a_folder_that_is_not_a_model_folder_is_refused(tmp_path):
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "project" / "data" / "plate.csv").write_text("x")
    with pytest.raises(InputError, match="not a model folder"):
        tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "project")
    assert (tmp_path / "project" / "data" / "plate.csv").read_text() == "x"


def test_an_empty_checkpoint_is_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    result = run_cli("zoo", "convert", "infoalign", tmp_path / "empty.pt", "-o", tmp_path / "o")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "empty.pt" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_image_folder_written_before_the_contract_still_loads(tmp_path):
    """embedkit 0.1.0 wrote `normalisation` and the encoder's tensors without a prefix."""
    from safetensors.torch import save_file

    model = tiny_models()["embedkit-vit"].eval()
    old = tmp_path / "old"
    old.mkdir()
    config = model.config()
    config["normalisation"] = config.pop("normalization")
    (old / "config.json").write_text(json.dumps(config))
    save_file(dict(model.encoder.state_dict()), str(old / "model.safetensors"))
    loaded = embedkit.load(f"local-dir:{old}")
    x = torch.randn(2, 5, 32, 32)
    np.testing.assert_array_equal(loaded.embed_crops(x), model.encoder(x).detach().numpy())


def test_with_decoders_is_still_understood_with_a_warning(tmp_path):
    tiny_models()["infoalign-gin"].save_pretrained(tmp_path / "m")
    with pytest.warns(DeprecationWarning, match="with_heads"):
        embedder = embedkit.load(f"local-dir:{tmp_path / 'm'}", with_decoders=True)
    assert "morgan" in embedder.model.decoders


def test_zoo_list_survives_a_card_of_an_unknown_architecture(tmp_path):
    card = json.loads((REPO / "embedkit/zoo/infoalign-gin-lincs-small.card.json").read_text())
    card.update(name="from-the-future", architecture="quantum-gin", shipped=False)
    (tmp_path / "from-the-future.card.json").write_text(json.dumps(card))
    result = run_cli("zoo", "list", env={"EMBEDKIT_EXTRA_CARDS": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("from-the-future"))
    assert "quantum-gin" in line and "unknown architecture" in line
    assert "infoalign-gin-lincs-small" in result.stdout
