"""Convert third-party checkpoints into embedkit folders (safetensors + JSON config).

Upstream checkpoints are pickles. They are opened only here, only on the user's explicit
command, and with `torch.load(weights_only=True)`, which refuses arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path

from embedkit.checkpoints import key_problems, read_checkpoint
from embedkit.errors import UntrustedFormatError
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import write_card

INFOALIGN_PREFIXES = ("graph_encoder.", "dist_net.")
# InfoAlign's GNN keeps an unused top-level bond encoder; it carries no information.
INFOALIGN_UNUSED = "graph_encoder.bond_encoder."


def convert_infoalign(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """InfoAlign's `pretrain.pt` → an embedkit folder with the encoder and VIB head.

    The decoders of the upstream checkpoint target feature spaces whose column names are
    not published with it, so they are not carried over: the converted model embeds, it
    does not do retrieval.
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
    model = InfoAlignModel(
        config,
        extra={
            "converted_from": checkpoint.name,
            "source_sha256": sha256_of(checkpoint),
            "upstream": "liuganghuggingface/InfoAlign-Pretrained",
        },
    )
    prefixed = {f"encoder.{k}": v for k, v in kept.items()}
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
        f"`{checkpoint.name}` (sha256 `{sha256_of(checkpoint)}`). Encoder and VIB head only; "
        "the embedding is μ (300-d). Cite Liu et al., ICLR 2025.\n",
        license_name="upstream-terms",
    )
    return out
