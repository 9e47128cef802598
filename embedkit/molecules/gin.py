"""GIN with a virtual node and an information-bottleneck head (InfoAlign's molecule encoder).

Written from the InfoAlign paper (ICLR 2025, appendix B) and the OGB GIN-virtual design:
5 layers × 300, batch norm, residual connections, sum readout, and a head
`SiLU → Linear(300, 600)` whose halves are μ and the pre-softplus σ. The embedding is μ.

Parameter names follow the layout of InfoAlign's released `pretrain.pt`
(`graph_encoder.*`, `dist_net.*`) so conversion is a key filter, not a remapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from embedkit.molecules.featurize import ATOM_VOCAB_SIZES, BOND_VOCAB_SIZES
from embedkit.pretrained import limits


@dataclass(frozen=True)
class GINConfig:
    """Everything needed to rebuild the encoder; stored as plain JSON in `config.json`."""

    num_layer: int = field(default=5, metadata=limits(1, 64))
    emb_dim: int = field(default=300, metadata=limits(1, 16384))
    drop_ratio: float = field(default=0.5, metadata=limits(0.0, 1.0))
    readout: str = field(default="sum", metadata=limits(choices=("sum",)))

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureEmbedding(nn.Module):
    """Sum of one embedding table per integer feature column (OGB's Atom/BondEncoder)."""

    def __init__(self, vocab_sizes: list[int], dim: int, list_name: str):
        super().__init__()
        tables = nn.ModuleList(nn.Embedding(n, dim, max_norm=1.0) for n in vocab_sizes)
        for table in tables:
            nn.init.xavier_uniform_(table.weight)
        setattr(self, list_name, tables)
        self._list_name = list_name
        self._fused: tuple[torch.Tensor, torch.Tensor] | None = None

    def fuse(self) -> None:
        """For inference: one concatenated table + offsets, summed by a single embedding_bag.

        Nine lookups and eight additions of (nodes × dim) tensors become one kernel. The
        tables must no longer change (call after `max_norm` renormalization is frozen).
        """
        tables = getattr(self, self._list_name)
        sizes = torch.tensor([t.num_embeddings for t in tables])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)[:-1]])
        weight = torch.cat([t.weight.detach() for t in tables])
        self._fused = (weight, offsets.to(weight.device))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self._fused is not None and not self.training:
            weight, offsets = self._fused
            return F.embedding_bag(
                codes + offsets.to(codes.device), weight.to(codes.device), mode="sum"
            )
        tables = getattr(self, self._list_name)
        out = tables[0](codes[:, 0])
        for i in range(1, len(tables)):
            out = out + tables[i](codes[:, i])
        return out


def apply_embedding_max_norm(module: nn.Module) -> None:
    """Renormalize every row of every `nn.Embedding(max_norm=…)` in `module`, in place.

    The rule is torch's own lookup renormalization (`embedding_renorm_`): a row whose norm
    exceeds `max_norm` is scaled by `max_norm / (norm + 1e-7)`, other rows are untouched.
    Applied to all rows at once it makes later lookups' in-place renorm a no-op: training
    calls it after each optimizer step (DDP replicas look up different rows, so they would
    drift apart otherwise) and inference before switching `max_norm` off.
    """
    with torch.no_grad():
        for emb in module.modules():
            if isinstance(emb, nn.Embedding) and emb.max_norm is not None:
                norms = emb.weight.norm(p=emb.norm_type, dim=1, keepdim=True)
                scale = torch.where(norms > emb.max_norm, emb.max_norm / (norms + 1e-7), 1.0)
                emb.weight.mul_(scale)


def _mlp(dim: int, hidden: int, final_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, dim))
    if final_norm:
        layers += [nn.BatchNorm1d(dim), nn.ReLU()]
    return nn.Sequential(*layers)


class GINEdgeConv(nn.Module):
    """h_i' = MLP((1 + ε)·h_i + Σ_j ReLU(h_j + e_ji)); messages flow edge_index[0] → [1]."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = _mlp(dim, 2 * dim, final_norm=False)
        self.eps = nn.Parameter(torch.zeros(1))
        self.bond_encoder = FeatureEmbedding(BOND_VOCAB_SIZES, dim, "bond_embedding_list")

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor):
        messages = F.relu(h[edge_index[0]] + self.bond_encoder(edge_attr))
        aggregated = torch.zeros_like(h).index_add_(0, edge_index[1], messages)
        return self.mlp((1 + self.eps) * h + aggregated)


class VirtualNodeGIN(nn.Module):
    """Node encoder: each layer adds the virtual node, convolves, normalizes, adds the residual."""

    def __init__(self, config: GINConfig):
        super().__init__()
        dim, n = config.emb_dim, config.num_layer
        self.num_layer = n
        self.drop_ratio = config.drop_ratio
        self.atom_encoder = FeatureEmbedding(ATOM_VOCAB_SIZES, dim, "atom_embedding_list")
        self.virtualnode_embedding = nn.Embedding(1, dim)
        nn.init.zeros_(self.virtualnode_embedding.weight)
        self.convs = nn.ModuleList(GINEdgeConv(dim) for _ in range(n))
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(n))
        self.mlp_virtualnode_list = nn.ModuleList(
            _mlp(dim, 2 * dim, final_norm=True) for _ in range(n - 1)
        )

    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int) -> torch.Tensor:
        vn = self.virtualnode_embedding.weight.expand(num_graphs, -1)
        h = self.atom_encoder(x)
        for layer in range(self.num_layer):
            h_in = h + vn[batch]
            h = self.batch_norms[layer](self.convs[layer](h_in, edge_index, edge_attr))
            if layer < self.num_layer - 1:
                h = F.relu(h)
            h = F.dropout(h, self.drop_ratio, self.training) + h_in
            if layer < self.num_layer - 1:
                pooled = _sum_pool(h_in, batch, num_graphs) + vn
                vn = vn + F.dropout(
                    self.mlp_virtualnode_list[layer](pooled), self.drop_ratio, self.training
                )
        return h


def _sum_pool(h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    out = h.new_zeros((num_graphs, h.shape[1]))
    return out.index_add_(0, batch, h)


class MoleculeEncoder(nn.Module):
    """Graph batch → (μ, σ) of q(z|x); `embed` returns μ, the representation users get."""

    def __init__(self, config: GINConfig | None = None):
        super().__init__()
        self.config = config or GINConfig()
        if self.config.readout != "sum":
            raise ValueError(f"only sum readout is implemented, got {self.config.readout!r}")
        self.graph_encoder = VirtualNodeGIN(self.config)
        self.dist_net = nn.Sequential(
            nn.SiLU(), nn.Linear(self.config.emb_dim, 2 * self.config.emb_dim)
        )

    @property
    def embedding_dim(self) -> int:
        return self.config.emb_dim

    def distribution(self, graphs) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.graph_encoder(
            graphs.x, graphs.edge_index, graphs.edge_attr, graphs.batch, graphs.num_graphs
        )
        mu, s = self.dist_net(_sum_pool(h, graphs.batch, graphs.num_graphs)).chunk(2, dim=1)
        return mu, F.softplus(s) + 1e-7

    def forward(self, graphs) -> torch.Tensor:
        return self.distribution(graphs)[0]
