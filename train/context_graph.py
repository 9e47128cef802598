"""InfoAlign's cellular context graph, built from the public files of a data directory.

Nodes: molecules (Morgan target), Cell Painting profiles (one feature space per dataset,
because CellProfiler feature sets differ), L1000 profiles (one shared space keyed by gene
symbol) and genes. Genes carry **no feature vector** here (no CRISPR/ORF profiles are
available): they are walk-through nodes that connect molecules sharing targets or
regulated genes. Edges (undirected, weight in (0, 1]):

* perturbation edges, weight 1: molecule–profile, molecule–target gene, molecule–gene for
  the top fraction of |L1000 z| entries (the paper's "top 1 %"), gene–gene interactions;
* similarity edges inside one feature space: cosine ≥ 0.8 *and* among the top 0.5 % of
  pairs (the paper's 99.5 % sparsity rule); weight = cosine. Molecules compare ECFP4
  (radius 2) bits, as the reference does; profiles compare column-standardized vectors
  (cosine of [0, 1]-scaled vectors would call almost every pair similar).

The reference code weights expression edges by the raw |z| (often > 1); we follow the
paper's text instead (perturbation edges weigh 1, every weight in (0, 1]).

Join keys: `pert_id` (first 13 characters of a Broad id) → InChIKey via LINCS / the
Repurposing Hub; molecules are merged on the InChIKey connectivity block (14 characters),
as InfoAlign does. The graph is saved as one `.npz` (no pickle) plus a JSON summary.

File readers and the molecule index live in `train.sources`, fingerprints and cosine
similarity edges in `train.similarity`; this module assembles the graph and stores it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedkit.data_dir import resolve_data_dir
from embedkit.io import atomic_path
from embedkit.molecules.feature_spaces import PROFILE, FeatureSpaceSpec
from embedkit.profiles.normalize import standardize
from train.similarity import fingerprints, similarity_edges
from train.sources import (
    L1000_SPACE,
    MoleculeIndex,
    ProfileSet,
    excluded_keys,
    file_records,
    locate_files,
    lookup_tables,
    read_a549,
    read_benchmarks,
    read_cmea,
    read_gene_pairs,
    read_l1000_plate,
    read_targets,
)

MOLECULE = "molecule"
GENE = "gene"
MORGAN_SPACE = "morgan"


@dataclass(frozen=True)
class GraphConfig:
    """Construction choices; stored in the graph's summary so a run can be reproduced."""

    morgan_radius: int = 4  # decoder target, as InfoAlign's released checkpoint (1024 bits)
    morgan_bits: int = 1024
    similarity_radius: int = 2  # ECFP4 for molecule–molecule cosine (reference: radius 2)
    sim_threshold: float = 0.8
    sim_sparsity: float = 0.995
    expression_top_fraction: float = 0.01
    expression_min_edges: int = 1000
    exclude_benchmarks: tuple[str, ...] = ()
    # InChIKey-14s held out of pretraining (zero-shot retrieval folds), whatever their source.
    exclude_molecules: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "exclude_benchmarks": list(self.exclude_benchmarks),
            "exclude_molecules": sorted(self.exclude_molecules),
        }


@dataclass
class FeatureSpace:
    """One decoder target space: its spec (columns, min–max range) and the scaled values of
    the nodes that have them; `node_rows[n]` is node n's row or -1."""

    spec: FeatureSpaceSpec
    values: np.ndarray  # rows × d, float32 in [0, 1] with NaN = missing (uint8 when binary)
    node_rows: np.ndarray  # (num_nodes,) int64
    binary: bool = False


@dataclass
class ContextGraph:
    """Nodes [0, num_molecules) are molecules (with `smiles`); edges are stored once (i < j)."""

    node_type: np.ndarray  # int8 codes into meta["node_types"]
    node_key: np.ndarray  # str, "type:id"
    smiles: np.ndarray  # str, one per molecule node
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    edge_type: np.ndarray  # int8 codes into meta["edge_types"]
    spaces: dict[str, FeatureSpace]
    meta: dict

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def num_molecules(self) -> int:
        return int(self.smiles.shape[0])

    def summary(self) -> dict:
        nodes = {t: int((self.node_type == i).sum()) for i, t in enumerate(self.meta["node_types"])}
        edges = {t: int((self.edge_type == i).sum()) for i, t in enumerate(self.meta["edge_types"])}
        spaces = {
            n: {"dim": len(s.spec.columns), "nodes": int((s.node_rows >= 0).sum())}
            for n, s in self.spaces.items()
        }
        return {
            "num_nodes": self.num_nodes,
            "num_edges": int(self.src.shape[0]),
            "nodes": nodes,
            "edges": edges,
            "spaces": spaces,
        }

    def feature_spaces_json(self) -> dict:
        """Each space's spec as plain JSON: what retrieval needs to scale profiles alike."""
        return {name: s.spec.to_json() for name, s in self.spaces.items()}

    def save(self, path: str | Path) -> Path:
        """One compressed `.npz` (plain arrays, loadable with allow_pickle=False) + `.json`,
        each written atomically."""
        path = Path(path)
        arrays = {
            "node_type": self.node_type,
            "node_key": self.node_key,
            "smiles": self.smiles,
            "src": self.src,
            "dst": self.dst,
            "weight": self.weight,
            "edge_type": self.edge_type,
        }
        spaces_meta = {}
        for name, s in self.spaces.items():
            values = np.packbits(s.values, axis=1) if s.binary else s.values
            arrays |= {
                f"space__{name}__values": values,
                f"space__{name}__rows": s.node_rows,
                f"space__{name}__columns": np.asarray(s.spec.columns, dtype=str),
                f"space__{name}__min": s.spec.min,
                f"space__{name}__max": s.spec.max,
            }
            spaces_meta[name] = {"binary": s.binary, "info": {"kind": s.spec.kind, **s.spec.info}}
        meta = {**self.meta, "spaces": spaces_meta, "summary": self.summary()}
        arrays["meta_json"] = np.asarray(json.dumps(meta))
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # no ".npz" appended
            np.savez_compressed(handle, **arrays)
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ContextGraph:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"][()]))
            spaces = {}
            for name, sm in meta["spaces"].items():
                values = z[f"space__{name}__values"]
                columns = [str(c) for c in z[f"space__{name}__columns"]]
                if sm["binary"]:
                    values = np.unpackbits(values, axis=1, count=len(columns))
                info = dict(sm["info"])
                kind = info.pop("kind", PROFILE)
                spec = FeatureSpaceSpec(
                    columns, z[f"space__{name}__min"], z[f"space__{name}__max"], kind, info
                )
                spaces[name] = FeatureSpace(spec, values, z[f"space__{name}__rows"], sm["binary"])
            return cls(
                z["node_type"],
                z["node_key"],
                z["smiles"],
                z["src"],
                z["dst"],
                z["weight"],
                z["edge_type"],
                spaces,
                meta,
            )


def _expression_edges(ps: ProfileSet, config: GraphConfig) -> list[tuple[str, str]]:
    """The top fraction of |z| entries of the profile × gene matrix → molecule–gene pairs."""
    z = np.abs(ps.values.to_numpy(np.float64))
    finite = np.isfinite(z)
    n_keep = max(int(config.expression_top_fraction * finite.sum()), config.expression_min_edges)
    n_keep = min(n_keep, int(finite.sum()))
    if n_keep == 0:
        return []
    flat = np.where(finite, z, -np.inf).ravel()
    top = np.argpartition(-flat, n_keep - 1)[:n_keep]
    r, c = np.unravel_index(top, z.shape)
    genes = ps.values.columns
    return [(ps.molecules[i], str(genes[j])) for i, j in zip(r, c, strict=True)]


class _EdgeList:
    def __init__(self, edge_types: list[str]):
        self.types = edge_types
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    def add(self, kind: str, a, b, w=None) -> None:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        w = np.ones(len(a), np.float32) if w is None else np.asarray(w, np.float32)
        self.parts.append((a, b, w, self.types.index(kind)))

    def build(self) -> tuple[np.ndarray, ...]:
        """Undirected, no self-loops; a pair met twice keeps its largest weight."""
        if not self.parts:
            return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32), np.zeros(0, np.int8))
        a = np.concatenate([p[0] for p in self.parts])
        b = np.concatenate([p[1] for p in self.parts])
        w = np.concatenate([p[2] for p in self.parts])
        t = np.concatenate([np.full(len(p[0]), p[3], np.int8) for p in self.parts])
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo != hi
        lo, hi, w, t = lo[keep], hi[keep], w[keep], t[keep]
        order = np.lexsort((-w, hi, lo))
        lo, hi, w, t = lo[order], hi[order], w[order], t[order]
        first = np.ones(len(lo), bool)
        first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
        return lo[first], hi[first], w[first], t[first]


def build_context_graph(
    data_dir: str | Path | None = None, config: GraphConfig | None = None
) -> ContextGraph:
    """Read every source found in `data_dir` and assemble the context graph."""
    config = config or GraphConfig()
    root = resolve_data_dir(data_dir)
    files = locate_files(root, config.exclude_benchmarks)
    index = MoleculeIndex(lookup_tables(files))
    profiles = read_cmea(files, index)
    if "a549" in files:
        profiles.append(read_a549(files["a549"], index))
    if "a375" in files:
        profiles.append(read_l1000_plate(files["a375"], index))
    targets = read_targets(files, index)
    read_benchmarks(files, index)

    excluded = excluded_keys(files) | set(config.exclude_molecules)
    mol_keys = [k for k in index.molecules if k not in excluded]
    kept, morgan, ecfp = fingerprints(
        [index.molecules[k] for k in mol_keys],
        config.morgan_radius,
        config.morgan_bits,
        config.similarity_radius,
    )
    dropped_molecules = len(mol_keys) - len(kept)
    mol_keys = [mol_keys[i] for i in kept]
    mol_id = {k: i for i, k in enumerate(mol_keys)}

    expression = [
        p for ps in profiles if ps.space == L1000_SPACE for p in _expression_edges(ps, config)
    ]
    expression = [(m, g) for m, g in expression if m in mol_id]
    targets = [(m, g) for m, g in targets if m in mol_id]
    genes = sorted({g for _, g in targets} | {g for _, g in expression})
    profiles = [_only_molecules(ps, mol_id) for ps in profiles]

    node_types = [MOLECULE, GENE] + sorted({ps.node_type for ps in profiles})
    types = [MOLECULE] * len(mol_keys) + [GENE] * len(genes)
    keys = [f"{MOLECULE}:{k}" for k in mol_keys] + [f"{GENE}:{g}" for g in genes]
    gene_id = {g: len(mol_keys) + i for i, g in enumerate(genes)}
    offsets = []
    for ps in profiles:
        offsets.append(len(types))
        types += [ps.node_type] * len(ps.keys)
        keys += [f"{ps.node_type}:{k}" for k in ps.keys]
    n = len(types)

    space_names = [MORGAN_SPACE] + sorted({ps.space for ps in profiles})
    edge_types = ["mol-profile", "mol-gene:target", "mol-gene:expression", "gene-gene"] + [
        f"sim:{s}" for s in space_names
    ]
    edges = _EdgeList(edge_types)
    for ps, off in zip(profiles, offsets, strict=True):
        edges.add("mol-profile", [mol_id[m] for m in ps.molecules], off + np.arange(len(ps.keys)))
    for kind, pairs in (("mol-gene:target", targets), ("mol-gene:expression", expression)):
        edges.add(kind, [mol_id[m] for m, _ in pairs], [gene_id[g] for _, g in pairs])
    gg = read_gene_pairs(files)
    gg = gg[gg.a.isin(gene_id) & gg.b.isin(gene_id)]
    edges.add("gene-gene", gg.a.map(gene_id), gg.b.map(gene_id))

    spaces = {MORGAN_SPACE: _morgan_space(morgan, n, config)}
    i, j, s = similarity_edges(ecfp, config.sim_threshold, config.sim_sparsity)
    edges.add(f"sim:{MORGAN_SPACE}", i, j, s)
    for name in space_names[1:]:
        members = [(ps, off) for ps, off in zip(profiles, offsets, strict=True) if ps.space == name]
        spaces[name], nodes, raw = _profile_space(name, members, n)
        i, j, s = similarity_edges(_zscores(raw), config.sim_threshold, config.sim_sparsity)
        edges.add(f"sim:{name}", nodes[i], nodes[j], s)

    src, dst, weight, etype = edges.build()
    type_code = {t: c for c, t in enumerate(node_types)}
    meta = {
        "format": "embedkit-context-graph/1",
        "config": config.to_dict(),
        "node_types": node_types,
        "edge_types": edge_types,
        "data_dir": str(root),
        "files": file_records(root, files),
        "dropped_molecules": dropped_molecules,
        "excluded_molecules": len(excluded),
        "molecule_sources": _source_counts(index, mol_keys),
    }
    return ContextGraph(
        np.array([type_code[t] for t in types], np.int8),
        np.array(keys, str),
        np.array([index.molecules[k] for k in mol_keys], str),
        src,
        dst,
        weight,
        etype,
        spaces,
        meta,
    )


def _only_molecules(ps: ProfileSet, mol_id: dict) -> ProfileSet:
    keep = np.array([m in mol_id for m in ps.molecules], dtype=bool)
    return ProfileSet(
        ps.node_type,
        ps.space,
        [k for k, f in zip(ps.keys, keep, strict=True) if f],
        [m for m, f in zip(ps.molecules, keep, strict=True) if f],
        ps.values[keep].reset_index(drop=True),
    )


def _morgan_space(bits: np.ndarray, n: int, config: GraphConfig) -> FeatureSpace:
    rows = np.full(n, -1, np.int64)
    rows[: len(bits)] = np.arange(len(bits))
    d = config.morgan_bits
    spec = FeatureSpaceSpec.fingerprint(
        [f"Morgan_r{config.morgan_radius}_{i:04d}" for i in range(d)],
        radius=config.morgan_radius,
        n_bits=d,
    )
    return FeatureSpace(spec, bits, rows, binary=True)


def _profile_space(name: str, members: list[tuple[ProfileSet, int]], n: int):
    """Align columns by name across datasets, drop all-NaN columns, min-max scale."""
    frames = [ps.values for ps, _ in members]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    raw = np.concatenate([f.reindex(columns=columns).to_numpy(np.float64) for f in frames])
    present = ~np.isnan(raw).all(axis=0)
    raw, columns = raw[:, present], [c for c, p in zip(columns, present, strict=True) if p]
    spec = FeatureSpaceSpec.fit(raw, columns, datasets=[ps.node_type for ps, _ in members])
    nodes = np.concatenate([off + np.arange(len(ps.keys)) for ps, off in members]).astype(np.int64)
    rows = np.full(n, -1, np.int64)
    rows[nodes] = np.arange(len(nodes))
    return FeatureSpace(spec, spec.scale(raw), rows), nodes, raw


def _zscores(raw: np.ndarray) -> np.ndarray:
    """Column z-scores over every profile of the space (missing → 0), so cosine compares
    profile shapes, not the offset of [0, 1]-scaled values."""
    everyone = np.ones(len(raw), dtype=bool)
    return np.nan_to_num(standardize(raw, everyone, [("all", np.arange(len(raw)))], None))


def _source_counts(index: MoleculeIndex, keys: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k in keys:
        for s in index.sources.get(k, ()):
            counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def format_summary(summary: dict) -> str:
    """A small plain-text table for the terminal and the logs."""
    lines = [f"context graph: {summary['num_nodes']:,} nodes, {summary['num_edges']:,} edges"]
    lines += [f"  node {k:<22} {v:>8,}" for k, v in summary["nodes"].items()]
    lines += [f"  edge {k:<22} {v:>8,}" for k, v in summary["edges"].items()]
    lines += [
        f"  space {k:<21} {v['dim']:>5}-d on {v['nodes']:,} nodes"
        for k, v in summary["spaces"].items()
    ]
    return "\n".join(lines)
