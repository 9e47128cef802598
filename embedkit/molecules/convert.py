"""Convert third-party checkpoints into embedkit folders (safetensors + JSON config).

Upstream checkpoints are pickles. They are opened only here, only on the user's explicit
command, and with `torch.load(weights_only=True)`, which refuses arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path

from embedkit.checkpoints import key_problems, read_checkpoint
from embedkit.errors import InputError, UntrustedFormatError
from embedkit.molecules.convert_decoders import read_feature_spaces, upstream_decoders
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import write_card

INFOALIGN_PREFIXES = ("graph_encoder.", "dist_net.")
# InfoAlign's GNN keeps an unused top-level bond encoder; it carries no information.
INFOALIGN_UNUSED = "graph_encoder.bond_encoder."


def convert_infoalign(
    checkpoint: str | Path, out_dir: str | Path, feature_spaces: str | Path | None = None
) -> Path:
    """InfoAlign's `pretrain.pt` → an embedkit folder with the encoder, the VIB head and,
    when the checkpoint has them, the decoders (`convert_decoders`).

    The decoders' feature spaces (column names, min/max) are not in the checkpoint: with
    `feature_spaces` (a JSON file the user supplies) they are recorded and the converted
    model can score profiles (`embedkit index build`); without it the decoders are kept
    but retrieval needs the file.
    """
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    kept = {
        k: v
        for k, v in state.items()
        if k.startswith(INFOALIGN_PREFIXES) and not k.startswith(INFOALIGN_UNUSED)
    }
    if not kept:
        raise UntrustedFormatError(
            f"{checkpoint}: no graph_encoder.* / dist_net.* tensors; "
            "is this InfoAlign's pretrain.pt?"
        )
    virtual_node = kept.get("graph_encoder.virtualnode_embedding.weight")
    num_layer = len({k.split(".")[2] for k in kept if k.startswith("graph_encoder.convs.")})
    if virtual_node is None or virtual_node.dim() != 2 or num_layer == 0:
        raise UntrustedFormatError(
            f"{checkpoint}: no virtual-node embedding or no GIN layers under graph_encoder.*; "
            "is this InfoAlign's pretrain.pt?"
        )
    emb_dim = virtual_node.shape[1]
    config = GINConfig(num_layer=num_layer, emb_dim=emb_dim)
    widths, decoder_tensors = upstream_decoders(state, emb_dim, checkpoint)
    if feature_spaces is not None and not widths:
        raise InputError(
            f"{checkpoint} has no decoders (decoder_list.*), so --feature-spaces has nothing "
            "to describe; convert without it"
        )
    spaces = read_feature_spaces(feature_spaces, widths) if feature_spaces is not None else {}
    extra = {
        "converted_from": checkpoint.name,
        "source_sha256": sha256_of(checkpoint),
        "upstream": "liuganghuggingface/InfoAlign-Pretrained",
    }
    if spaces:
        extra["feature_spaces"] = spaces
    model = InfoAlignModel(config, decoder_spaces=widths, extra=extra)
    prefixed = {f"encoder.{k}": v for k, v in kept.items()} | decoder_tensors
    missing, unexpected = model.load_state_dict(prefixed, strict=False)
    if missing or unexpected:
        raise UntrustedFormatError(
            f"{checkpoint}: does not match the InfoAlign GIN layout "
            f"({key_problems(missing, unexpected)})"
        )
    out = model.save_pretrained(out_dir)
    write_card(
        out,
        model.ARCHITECTURE,
        "other",  # the upstream checkpoint's terms apply; embedkit grants none
        ["molecules", "infoalign", "converted"],
        f"# Converted InfoAlign encoder\n\nConverted by `embedkit zoo convert infoalign` from "
        f"`{checkpoint.name}` (sha256 `{sha256_of(checkpoint)}`). {decoder_note(widths, spaces)} "
        "The embedding is μ (300-d). Cite Liu et al., ICLR 2025.\n",
        license_name="upstream-terms",
    )
    return out


def decoder_note(widths: dict[str, int], spaces: dict) -> str:
    """What the card says about the decoders."""
    if not widths:
        return "Encoder and VIB head only (the checkpoint has no decoders)."
    listed = ", ".join(f"{n} ({w})" for n, w in widths.items())
    usable = ", ".join(spaces) or "none (convert with --feature-spaces FILE to add them)"
    return (
        f"Encoder, VIB head and decoders {listed}; feature spaces recorded for retrieval: {usable}."
    )
