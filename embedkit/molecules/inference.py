"""An inference-only copy of the GIN encoder for reduced precision: BatchNorm folded, ReLU fused.

In eval mode every BatchNorm is an affine map, so it folds into the Linear before it (in
fp32, before the cast, which is also more accurate than running BN in bf16). On CPUs with
oneDNN the weights are pre-packed once and bias + ReLU run inside the matmul
(`mkldnn._linear_pointwise`, the kernel `torch.compile` uses on CPU), and the three bond
embedding tables of each layer become one table over the 5 · 6 · 2 = 60 bond-code
combinations, so each message needs one row gather instead of an embedding-bag sum.

Measured on 2 CPU cores (NCI 5K, bf16, batch 256): see docs/molecules.md section 4.
Only μ is computed (the σ half of the head is not needed for embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.molecules.featurize import BOND_VOCAB_SIZES
from embedkit.molecules.gin import FeatureEmbedding, MoleculeEncoder


def _fold(linear: nn.Linear, bn: nn.BatchNorm1d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (weight, bias) of `bn(linear(x))` as one affine map."""
    weight = linear.weight.detach().float()
    bias = linear.bias.detach().float()
    if bn is None:
        return weight, bias
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.detach().float() - bn.running_mean.float() * scale
    return weight * scale[:, None], bias * scale + shift


def _mkldnn_usable(dtype: torch.dtype, device: torch.device) -> bool:
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(
        torch.ops.mkldnn, "_reorder_linear_weight"
    )


class _Linear:
    """y = x Wᵀ + b, optionally ReLU'd; oneDNN pre-packed where available, else F.linear."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        relu: bool,
        dtype: torch.dtype,
        device: torch.device,
        packed: bool,
    ):
        self.weight = weight.to(device=device, dtype=dtype).contiguous()
        self.bias = bias.to(device=device, dtype=dtype).contiguous()
        self.relu = relu
        self.packed = None
        if packed:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            attr = "relu" if self.relu else "none"
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, attr, [], "")
        y = F.linear(x, self.weight, self.bias)
        return F.relu(y) if self.relu else y


def _bond_table(encoder: FeatureEmbedding, device: torch.device, dtype: torch.dtype):
    """Sum of the bond tables for every (type, stereo, conjugated) code combination."""
    tables = [t.weight.detach().float() for t in encoder.bond_embedding_list]
    n_type, n_stereo, n_conj = BOND_VOCAB_SIZES
    combined = (
        tables[0][:, None, None, :] + tables[1][None, :, None, :] + tables[2][None, None, :, :]
    )
    return combined.reshape(n_type * n_stereo * n_conj, -1).to(device=device, dtype=dtype)


class FrozenEncoder:
    """μ of a `MoleculeEncoder` in eval mode, for inference in `dtype` (usually bf16).

    Built from the fp32 module (after `freeze_embedding_norms`); it holds its own weights,
    so the source module can be cast or freed afterwards. Call under `torch.inference_mode`.
    """

    def __init__(
        self, encoder: MoleculeEncoder, dtype: torch.dtype, device: torch.device | str
    ) -> None:
        device = torch.device(device)
        gnn = encoder.graph_encoder
        packed = _mkldnn_usable(dtype, device)
        self.dtype = dtype
        self.num_layer = gnn.num_layer
        last = gnn.num_layer - 1

        def lin(linear: nn.Linear, bn: nn.BatchNorm1d | None, relu: bool) -> _Linear:
            weight, bias = _fold(linear, bn)
            return _Linear(weight, bias, relu, dtype, device, packed)

        atom = gnn.atom_encoder
        atom.fuse()
        weight, offsets = atom._fused  # type: ignore[misc]
        self.atom_table = weight.detach().to(device=device, dtype=dtype)
        self.atom_offsets = offsets.to(device)
        self.vn0 = gnn.virtualnode_embedding.weight.detach().to(device=device, dtype=dtype)
        self.bond_tables = [_bond_table(c.bond_encoder, device, dtype) for c in gnn.convs]
        self.one_plus_eps = [float(1 + c.eps.detach()) for c in gnn.convs]
        # conv MLP: Linear → BN → ReLU → Linear, then the layer's BN (and ReLU but last).
        self.conv1 = [lin(c.mlp[0], c.mlp[1], True) for c in gnn.convs]
        self.conv2 = [
            lin(c.mlp[3], bn, i < last)
            for i, (c, bn) in enumerate(zip(gnn.convs, gnn.batch_norms, strict=True))
        ]
        # virtual-node MLP: Linear → BN → ReLU → Linear → BN → ReLU.
        self.vn1 = [lin(m[0], m[1], True) for m in gnn.mlp_virtualnode_list]
        self.vn2 = [lin(m[3], m[4], True) for m in gnn.mlp_virtualnode_list]
        head = encoder.dist_net[1]
        dim = encoder.embedding_dim
        self.head = _Linear(
            head.weight.detach().float()[:dim],
            head.bias.detach().float()[:dim],
            False,
            dtype,
            device,
            packed,
        )

    def __call__(self, graphs) -> torch.Tensor:
        """Graph batch → μ (num_graphs × dim) in `self.dtype`."""
        x, batch, n = graphs.x, graphs.batch, graphs.num_graphs
        src, dst = graphs.edge_index[0], graphs.edge_index[1]
        n_stereo, n_conj = BOND_VOCAB_SIZES[1], BOND_VOCAB_SIZES[2]
        attr = graphs.edge_attr
        bond_code = attr[:, 0] * (n_stereo * n_conj) + attr[:, 1] * n_conj + attr[:, 2]
        h = F.embedding_bag(x + self.atom_offsets, self.atom_table, mode="sum")
        vn = self.vn0.expand(n, -1)
        for layer in range(self.num_layer):
            h_in = h + vn[batch]
            messages = F.relu(h_in[src] + F.embedding(bond_code, self.bond_tables[layer]))
            aggregated = torch.zeros_like(h_in).index_add_(0, dst, messages)
            z = torch.add(aggregated, h_in, alpha=self.one_plus_eps[layer])
            h = self.conv2[layer](self.conv1[layer](z)) + h_in
            if layer < self.num_layer - 1:
                pooled = h_in.new_zeros((n, h_in.shape[1])).index_add_(0, batch, h_in) + vn
                vn = vn + self.vn2[layer](self.vn1[layer](pooled))
        pooled = h.new_zeros((n, h.shape[1])).index_add_(0, batch, h)
        return self.head(F.silu(pooled))
