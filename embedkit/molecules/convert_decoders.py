"""The decoders of an upstream InfoAlign checkpoint, and the feature spaces they predict.

InfoAlign's pretraining model keeps its decoders in `decoder_list.{i}` (an MLP `fc1` →
`bn1` → GELU → dropout → `fc2`, the layout of embedkit's `make_decoder`), in the order of
its `decoder_dims`: Morgan fingerprint, gene CRISPR, gene ORF, Cell Painting (Bray),
Cell Painting (JUMP), L1000. Each predicts min-max scaled features whose column names and
ranges are not stored in the checkpoint; the user supplies them (`--feature-spaces FILE`,
JSON: `{space: {"columns": [...], "min": [...], "max": [...]}}`) so that the converted
model can score profiles. Without the file the decoders are kept all the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from embedkit.errors import InputError, UntrustedFormatError
from embedkit.molecules.feature_spaces import FINGERPRINT, PROFILE, FeatureSpaceSpec

DECODER_PREFIX = "decoder_list."
# InfoAlign's decoder_list order (models/gnn.py: decoder_dims = [1024, 1111, 862, 1783, 966,
# 978] for mol, gene (CRISPR, ORF), cell (Bray, JUMP), expression).
UPSTREAM_DECODERS = ("morgan", "gene_crispr", "gene_orf", "cp_bray", "cp_jump", "l1000")
# upstream MLP part → position in embedkit's nn.Sequential decoder
PARTS = {"fc1": "0", "bn1": "1", "fc2": "4"}


def upstream_decoders(
    state: dict[str, torch.Tensor], emb_dim: int, checkpoint: Path
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """(space → output width, embedkit state-dict entries) of the checkpoint's decoders;
    empty when it has none."""
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith(DECODER_PREFIX)})
    if not indices:
        return {}, {}
    names = (
        UPSTREAM_DECODERS
        if len(indices) == len(UPSTREAM_DECODERS)
        else tuple(f"decoder_{i}" for i in indices)
    )
    widths: dict[str, int] = {}
    tensors: dict[str, torch.Tensor] = {}
    for i, name in zip(indices, names, strict=True):
        prefix = f"{DECODER_PREFIX}{i}."
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            part, _, rest = key[len(prefix) :].partition(".")
            if part not in PARTS:
                raise UntrustedFormatError(
                    f"{checkpoint}: unexpected decoder tensor {key}; is this InfoAlign's "
                    "pretrain.pt?"
                )
            tensors[f"decoders.{name}.{PARTS[part]}.{rest}"] = value
        fc1, fc2 = state.get(f"{prefix}fc1.weight"), state.get(f"{prefix}fc2.weight")
        if fc1 is None or fc2 is None or tuple(fc1.shape) != (4 * emb_dim, emb_dim):
            raise UntrustedFormatError(
                f"{checkpoint}: decoder {i} is not an MLP {emb_dim} → {4 * emb_dim} → out "
                "(fc1, bn1, fc2); is this InfoAlign's pretrain.pt?"
            )
        widths[name] = int(fc2.shape[0])
    return widths, tensors


def read_feature_spaces(path: str | Path, widths: dict[str, int]) -> dict[str, dict]:
    """The user's column lists and ranges, checked against the decoders' widths."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict) or not data:
        raise InputError(
            f'{path}: expected a JSON object {{space: {{"columns": [...], "min": [...], '
            '"max": [...]}}}}'
        )
    spaces = {}
    for name, spec in data.items():
        if name not in widths:
            raise InputError(
                f"{path}: the checkpoint has no decoder {name!r}; it has: "
                + ", ".join(f"{n} ({w} features)" for n, w in widths.items())
            )
        if not isinstance(spec, dict) or "columns" not in spec:
            raise InputError(f'{path}: space {name!r} needs "columns" (and "min"/"max")')
        columns = [str(c) for c in spec["columns"]]
        if len(columns) != widths[name]:
            raise InputError(
                f"{path}: space {name!r} lists {len(columns)} columns but its decoder "
                f"predicts {widths[name]}"
            )
        kind = spec.get("kind", FINGERPRINT if name == "morgan" else PROFILE)
        try:
            if kind == FINGERPRINT and "min" not in spec:
                parsed = FeatureSpaceSpec.fingerprint(columns)
            else:
                parsed = FeatureSpaceSpec(columns, spec["min"], spec["max"], kind)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{path}: space {name!r}: {err}") from err
        spaces[name] = parsed.to_json()
    return spaces
