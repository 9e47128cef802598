"""Training inputs taken from a context graph: its molecules as GIN graphs, and the split.

RDKit featurization of every graph molecule is slow, so it runs once per SMILES list and is
cached as one `.npz` that later runs (and the other DDP ranks) read back. The held-out split
hashes the molecule key rather than its position, so it survives rebuilding the graph.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np

from embedkit.io import atomic_path
from embedkit.molecules.featurize import MolGraph, smiles_to_graph
from train.context_graph import ContextGraph


def featurize_cached(smiles: list[str], cache: Path) -> list[MolGraph]:
    """RDKit → graphs once per SMILES list; later runs (and other ranks) read the `.npz`."""
    key = hashlib.sha256("\n".join(smiles).encode()).hexdigest()
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"][()]) == key:
                return _split_graphs(z)
    graphs = []
    for smi in smiles:
        graph, error = smiles_to_graph(smi)
        if graph is None:
            raise ValueError(f"context-graph molecule failed to featurize: {error}")
        graphs.append(graph)
    atoms = np.cumsum([0] + [g.num_nodes for g in graphs])
    bonds = np.cumsum([0] + [g.edge_index.shape[1] for g in graphs])
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:  # OGB codes fit in uint8
        np.savez_compressed(
            handle,
            key=np.asarray(key),
            atoms=atoms,
            bonds=bonds,
            x=np.concatenate([g.x for g in graphs]).astype(np.uint8),
            edge_index=np.concatenate([g.edge_index for g in graphs], axis=1).astype(np.int32),
            edge_attr=np.concatenate([g.edge_attr for g in graphs]).astype(np.uint8),
        )
    return graphs


def _split_graphs(z) -> list[MolGraph]:
    atoms, bonds = z["atoms"], z["bonds"]
    x, ei, ea = (z[k].astype(np.int64) for k in ("x", "edge_index", "edge_attr"))
    return [
        MolGraph(
            x[atoms[i] : atoms[i + 1]], ei[:, bonds[i] : bonds[i + 1]], ea[bonds[i] : bonds[i + 1]]
        )
        for i in range(len(atoms) - 1)
    ]


def split_molecules(graph: ContextGraph, val_fraction: float) -> tuple[list[int], list[int]]:
    """A stable split by a hash of the molecule key, so it survives graph rebuilds."""
    train, val = [], []
    for i, key in enumerate(graph.node_key[: graph.num_molecules]):
        bucket = zlib.crc32(str(key).encode()) % 10_000
        (val if bucket < val_fraction * 10_000 else train).append(i)
    return train, val
