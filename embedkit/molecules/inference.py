"""Inference-only forwards of the GIN encoder over WL classes (symmetry.py), one per precision.

`ExactEncoder` (fp32, the default) runs the module's own operations on one row per class
of atoms the GIN cannot tell apart, so its embeddings equal the training forward's (and
the `infoalign` package's) bit for bit. `FrozenEncoder` (bf16) is a frozen copy instead: in
eval mode every BatchNorm is an affine map, so it folds into the Linear before it (in
fp32, before the cast, which is also more accurate than running BN in bf16). On CPUs with
oneDNN the weights are pre-packed once and bias + ReLU run inside the matmul
(`mkldnn._linear_pointwise`, the kernel `torch.compile` uses on CPU), and the three bond
embedding tables of each layer become one table over the 5 · 6 · 2 = 60 bond-code
combinations, so each message needs one row gather instead of an embedding-bag sum.
Folding changes rounding (≈ 1e-6 relative in fp32), which is why fp32 does not use it.

Measured on 2 CPU cores (NCI 5K, batch 256): see docs/molecules.md section 4.
Only μ is computed by `FrozenEncoder` (the σ half of the head is not needed for embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.molecules.batch import GraphBatch
from embedkit.molecules.featurize import BOND_VOCAB_SIZES
from embedkit.molecules.gin import FeatureEmbedding, MoleculeEncoder, _sum_pool
from embedkit.molecules.symmetry import ClassBatch, classes


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

    def __call__(self, graphs: GraphBatch | ClassBatch) -> torch.Tensor:
        """Graph batch → μ (num_graphs × dim) in `self.dtype`."""
        if isinstance(graphs, GraphBatch):
            graphs = classes(graphs, self.num_layer).to(self.atom_table.device)
        n, batch = graphs.num_graphs, graphs.batch
        vn = self.vn0.expand(n, -1)
        h = F.embedding_bag(graphs.atom_codes + self.atom_offsets, self.atom_table, mode="sum")
        for i, layer in enumerate(graphs.layers):
            # rows are WL classes, not atoms (see symmetry.py); layer 0's vn is shared.
            if i == 0:
                h_in = h.add_(self.vn0)
            else:
                h_in = h.index_select(0, layer.a_from_z).add_(vn.index_select(0, layer.a_graph))
            attr = layer.edge_attr
            bond_code = (attr[:, 0] * BOND_VOCAB_SIZES[1] + attr[:, 1]) * BOND_VOCAB_SIZES[
                2
            ] + attr[:, 2]
            messages = h_in.index_select(0, layer.edge_src)
            messages.add_(self.bond_tables[i].index_select(0, bond_code)).relu_()
            own = h_in.index_select(0, layer.z_a)
            z = torch.mul(own, self.one_plus_eps[i]).index_add_(0, layer.edge_dst, messages)
            h = self.conv2[i](self.conv1[i](z)).add_(own)
            if i < self.num_layer - 1:
                pooled = _sum_pool(h_in.index_select(0, layer.a_node), batch, n).add_(vn)
                vn = vn + self.vn2[i](self.vn1[i](pooled))
        return self.head(F.silu(_sum_pool(h.index_select(0, graphs.out_node), batch, n)))


class ExactEncoder:
    """μ of a `MoleculeEncoder` in fp32 with the module's own operations, over WL classes.

    Every row goes through the same kernels in the same order as the training forward
    (BatchNorm unfolded, sums over edges and atoms in batch order), so its embeddings equal
    the module's, and InfoAlign's, to the last bits the kernels allow; only atoms the GIN
    cannot tell apart are computed once (symmetry.py). What differs from the module only
    saves memory traffic without touching a value: rows are gathered with `index_select`,
    and additions and ReLUs write into tensors that are not read again (a + b is the same
    float as b + a, in place or not). Call under `torch.inference_mode`.
    """

    def __init__(self, encoder: MoleculeEncoder) -> None:
        self.encoder = encoder
        self.num_layer = encoder.graph_encoder.num_layer

    def __call__(self, graphs: GraphBatch | ClassBatch) -> torch.Tensor:
        gnn = self.encoder.graph_encoder
        if isinstance(graphs, GraphBatch):
            device = gnn.virtualnode_embedding.weight.device
            graphs = classes(graphs, self.num_layer).to(device)
        n, batch, last = graphs.num_graphs, graphs.batch, self.num_layer - 1
        vn0 = gnn.virtualnode_embedding.weight
        vn = vn0.expand(n, -1)
        h = gnn.atom_encoder(graphs.atom_codes)
        for i, layer in enumerate(graphs.layers):
            conv, mlp = gnn.convs[i], gnn.convs[i].mlp
            if i == 0:  # every graph's virtual node is still vn0: broadcast, no gather
                h_in = h.add_(vn0)
            else:
                h_in = h.index_select(0, layer.a_from_z).add_(vn.index_select(0, layer.a_graph))
            messages = h_in.index_select(0, layer.edge_src)
            messages.add_(conv.bond_encoder(layer.edge_attr)).relu_()
            own = h_in.index_select(0, layer.z_a)
            aggregated = own.new_zeros(own.shape).index_add_(0, layer.edge_dst, messages)
            z = ((1 + conv.eps) * own).add_(aggregated)
            # conv.mlp = Linear → BatchNorm → ReLU → Linear, called step by step to ReLU in place
            h = gnn.batch_norms[i](mlp[3](mlp[1](mlp[0](z)).relu_()))
            if i < last:
                h.relu_()
            h.add_(own)
            if i < last:
                pooled = _sum_pool(h_in.index_select(0, layer.a_node), batch, n).add_(vn)
                vn = vn + gnn.mlp_virtualnode_list[i](pooled)
        pooled = _sum_pool(h.index_select(0, graphs.out_node), batch, n)
        return self.encoder.dist_net(pooled).chunk(2, dim=1)[0]
