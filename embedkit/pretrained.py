"""The one model contract: every model kind saves, loads and validates the same way.

A model kind is an `nn.Module` that also inherits `PretrainedMixin` and declares:

* `ARCHITECTURE`  the name written into config.json and looked up in `embedkit.registry`;
* `CONFIG_CLASS`  a dataclass whose fields are the constructor's keyword arguments and the
                  keys of config.json (nested dataclasses for sub-configs such as the encoder).

`config()` returns plain JSON; `from_config(dict)` validates it and calls the constructor
by keyword; `save_pretrained(folder)` writes `config.json` + `model.safetensors` into a temp
folder and renames it into place, so a crash never leaves a truncated file;
`from_pretrained(folder)` is its exact mirror. Weights are always the module's own
`state_dict()` (one weights root), stored in safetensors, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Union

from embedkit.errors import ConfigError, InputError, ModelNotFoundError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# `sha256sum` format ("<hex>  model.safetensors"), written beside the weights by
# save_pretrained and verified by `local-dir:` loading (`sha256sum -c` checks it too).
CHECKSUM_NAME = WEIGHTS_NAME + ".sha256"
# Keys written for readers of config.json and derived again on load (never constructor args).
INFO_KEYS = ("architecture", "embedding_dim", "embedkit_version", "pooling")
# Bounds that no real model reaches: a config beyond them is corrupt or hostile.
DEFAULT_INT_LIMIT = 1 << 20
# No model embedkit serves comes near this; a config beyond it would exhaust memory.
MAX_PARAMETERS = 2e9


def limits(low: float | None = None, high: float | None = None, choices: tuple = ()) -> dict:
    """Field metadata for `dataclasses.field(metadata=limits(...))`: checked on load."""
    return {"low": low, "high": high, "choices": choices}


def config_dict(config: Any) -> dict:
    """A config dataclass as plain JSON values (nested dataclasses become dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def validate_config(schema: type, data: Any, where: str, path: str = "") -> Any:
    """Build dataclass `schema` from JSON `data`, or raise one sentence naming file and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path or 'the config'} must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {path + unknown[0]!r} (known keys: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(schema)
    values = {}
    for name, spec in fields.items():
        key = path + name
        if name not in data:
            no_default = (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            )
            if no_default:
                raise ConfigError(f"{where}: missing key {key!r}")
            continue
        value = _check_type(hints[name], data[name], where, key)
        _check_limits(spec.metadata, value, where, key)
        values[name] = value
    try:
        return schema(**values)
    except ValueError as err:  # a schema's own cross-field checks (__post_init__)
        raise ConfigError(f"{where}: cannot build {path or 'the config'}: {err}") from err


def _check_type(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _check_type(options[0], value, where, key)
    if dataclasses.is_dataclass(hint):
        return validate_config(hint, value, where, key + ".")
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key!r} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key!r} must be an integer, got {value!r}")
        if abs(value) > DEFAULT_INT_LIMIT:
            raise ConfigError(f"{where}: {key!r} = {value} is absurdly large")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key!r} must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key!r} must be a string, got {value!r}")
        return value
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return [_check_type(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key!r} must be an object, got {type(value).__name__}")
        item = args[1] if args else Any
        return {k: _check_type(item, v, where, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"config field {key!r}: unsupported annotation {hint!r}")  # a schema bug


def _check_limits(meta: typing.Mapping, value: Any, where: str, key: str) -> None:
    if value is None or not meta:
        return
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices", ())
    if choices and value not in choices:
        raise ConfigError(f"{where}: {key!r} must be one of {', '.join(map(str, choices))}")
    if low is not None and value < low or high is not None and value > high:
        raise ConfigError(f"{where}: {key!r} = {value} is outside [{low}, {high}]")


def read_config(folder: Path) -> dict:
    """config.json as a dict, or one sentence saying why it cannot be read."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: missing (a model folder holds {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return config


class PretrainedMixin:
    """`config()` / `from_config()` / `save_pretrained()` / `from_pretrained()` for nn.Modules."""

    ARCHITECTURE: ClassVar[str]
    CONFIG_CLASS: ClassVar[type]

    def config_object(self) -> Any:
        """This model's configuration as a `CONFIG_CLASS` instance."""
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def input_spec(self) -> dict:
        """What a user must feed the model (the zoo card's `input`): plain JSON."""
        raise NotImplementedError

    def config(self) -> dict:
        """Plain JSON: the architecture, the constructor's arguments, and derived facts."""
        return {
            "architecture": self.ARCHITECTURE,
            "embedding_dim": self.embedding_dim,
            **config_dict(self.config_object()),
        }

    @classmethod
    def from_config(cls, config: dict, where: str = "config"):
        """Validate `config` (as written by `config()`) and build the model by keyword."""
        parsed = cls.check_config(config, where)
        size = cls.estimated_parameters(parsed)
        if size > MAX_PARAMETERS:
            raise ConfigError(
                f"{where}: describes a model of about {size:.2g} parameters, beyond the "
                f"{MAX_PARAMETERS:.0g} embedkit builds; the config is corrupt or hostile"
            )
        kwargs = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
        try:
            return cls(**kwargs)
        except (ValueError, AssertionError) as err:
            raise ConfigError(f"{where}: cannot build {cls.ARCHITECTURE}: {err}") from err

    @classmethod
    def check_config(cls, config: dict, where: str = "config"):
        """The validated `CONFIG_CLASS` instance of `config`, or a one-sentence ConfigError."""
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: must be a JSON object")
        found = config.get("architecture")
        if found != cls.ARCHITECTURE:
            raise ConfigError(
                f"{where}: 'architecture' is {found!r}, expected {cls.ARCHITECTURE!r}"
            )
        args = {k: v for k, v in config.items() if k not in INFO_KEYS}
        return validate_config(cls.CONFIG_CLASS, args, where)

    @classmethod
    def estimated_parameters(cls, parsed) -> float:
        """Hook: the parameter count a validated config describes (checked before building)."""
        return 0.0

    @classmethod
    def upgrade_legacy(cls, config: dict, names: list[str]) -> tuple[dict, dict[str, str]]:
        """Hook: migrate a folder written before the model contract: (config, {old: new}
        tensor renames). Each kind says what its older folders look like."""
        return config, {}

    def weights_to_save(self) -> dict:
        """The tensors `save_pretrained` writes: the module's own state dict."""
        return self.state_dict()

    def save_pretrained(self, folder: str | Path, dtype=None) -> Path:
        """Write config.json + model.safetensors (+ its sha256 in model.safetensors.sha256,
        which `local-dir:` loading verifies) atomically (temp folder, then rename).

        Floating tensors are cast to `dtype` (default float32). An existing model folder is
        replaced; whatever else it holds (a README.md, sub-folders) is carried over. A
        non-empty folder that is not a model folder is refused, never emptied.
        """
        import torch
        from safetensors.torch import save_file

        from embedkit.io import atomic_dir

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder} is a file; give a folder for the model")
        if folder.is_dir() and any(folder.iterdir()) and not (folder / CONFIG_NAME).is_file():
            raise InputError(
                f"{folder} is not empty and holds no {CONFIG_NAME}, so it is not a model "
                "folder; choose a new or empty folder"
            )
        dtype = dtype or torch.float32
        tensors = {
            k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
            for k, v in self.weights_to_save().items()
        }
        from embedkit.zoo import sha256_of

        with atomic_dir(folder) as staging:
            save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
            digest = sha256_of(staging / WEIGHTS_NAME)
            (staging / CHECKSUM_NAME).write_text(f"{digest}  {WEIGHTS_NAME}\n")
            (staging / CONFIG_NAME).write_text(json.dumps(self.config(), indent=2) + "\n")
            if folder.is_dir():  # carry over what other writers put there
                for other in folder.iterdir():
                    if other.name in (CONFIG_NAME, WEIGHTS_NAME, CHECKSUM_NAME):
                        continue
                    if other.is_dir():
                        shutil.copytree(other, staging / other.name, symlinks=True)
                    else:
                        shutil.copy2(other, staging / other.name, follow_symlinks=False)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, encoder_only: bool = False):
        """Load a folder written by `save_pretrained`; weights are upcast to fp32.

        `encoder_only=True` skips decoders and task heads (see `select_for_loading`).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        config = read_config(folder)
        path = folder / WEIGHTS_NAME
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: missing (a model folder holds {WEIGHTS_NAME})")
        header = _weights_header(path)
        config, renames = cls.upgrade_legacy(config, list(header))
        where = str(folder / CONFIG_NAME)
        parsed = cls.check_config(config, where)  # all of it, before any selection
        stored = sum(math.prod(shape) for shape in header.values())
        if cls.estimated_parameters(parsed) > 2 * stored + 1_000_000:
            raise ConfigError(
                f"{where}: describes about {cls.estimated_parameters(parsed):.2g} parameters "
                f"but {path.name} holds {stored:.2g}; the config does not belong to these weights"
            )
        config, keep = cls.select_for_loading(config, encoder_only)
        model = cls.from_config(config, where=where)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"{path}: not a readable safetensors file ({err})") from err
        state = {renames.get(k, k): v for k, v in state.items()}
        state = {
            k: (v.float() if v.is_floating_point() else v) for k, v in state.items() if keep(k)
        }
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise ConfigError(
                f"{path}: weights do not match {folder / CONFIG_NAME} ({what}; "
                f"{len(missing)} missing, {len(unexpected)} unexpected tensors)"
            )
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1].strip()
            raise ConfigError(f"{path}: weights do not match the config ({first})") from err
        return model.eval()

    @classmethod
    def select_for_loading(cls, config: dict, encoder_only: bool = False):
        """Hook: (config, keep(tensor_name)) for loading; `encoder_only=True` skips the parts
        beyond the encoder (decoders, task heads) that embedding does not need. A kind
        without such parts loads whole either way."""
        return config, lambda name: True


def _weights_header(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape from a safetensors header, without reading the tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"{path}: not a readable safetensors file ({err})") from err
