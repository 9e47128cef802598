"""InfoAlign's cellular context graph, built from the public files of a data directory.

Nodes: molecules (Morgan target; every LINCS compound and Repurposing Hub sample, plus the
benchmark structures), Cell Painting profiles (one feature space per dataset, because
CellProfiler feature sets differ), L1000 profiles (one shared space keyed by gene symbol),
genes and mechanisms of action. Genes over-expressed in LINCS (ORF) carry their L1000
consensus signature (space `l1000_orf`), as the paper's genes carry CRISPR/ORF morphology;
the other genes and the mechanisms are walk-through nodes. Edges (undirected, weight in
(0, 1]):

* perturbation edges, weight 1: molecule–profile, molecule–target gene, molecule–mechanism,
  molecule–gene for the top fraction of |L1000 z| entries (the paper's "top 1 %"),
  gene–gene interactions;
* similarity edges inside one feature space (`train.similarity`): molecules by Tanimoto on
  ECFP4 inside Murcko scaffold blocks with the 99.5 % sparsity budget (the reference's
  rule); profiles and gene signatures by cosine ≥ 0.8 *and* among the top 0.5 % of pairs,
  on column-standardized vectors.

**Evaluation sets.** Molecules of every table under `benchmarks/` (and of
`exclude_assays`) keep their structure but get no target or mechanism edges: for ChEMBL2K
those edges are its labels. `meta["eval_annotation_exclusion"]` records what was removed;
`keep_eval_annotations` turns this off. `exclude_benchmarks` removes a benchmark's
molecules entirely.

The reference code weights expression edges by the raw |z| (often > 1); we follow the
paper's text instead (perturbation edges weigh 1, every weight in (0, 1]).

Join keys: `pert_id` (first 13 characters of a Broad id) → InChIKey via LINCS / the
Repurposing Hub; molecules are merged on the InChIKey connectivity block (14 characters),
as InfoAlign does. The graph is saved as one `.npz` (no pickle) plus a JSON summary.

File readers and the molecule index live in `train.sources`, fingerprints and cosine
similarity edges in `train.similarity`; this module assembles the graph and stores it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedkit.data_dir import resolve_data_dir
from embedkit.evaluation.splits import scaffold_groups
from embedkit.io import atomic_path
from embedkit.molecules.feature_spaces import PROFILE, FeatureSpaceSpec
from embedkit.profiles.normalize import standardize
from train.similarity import fingerprints, similarity_edges, tanimoto_block_edges
from train.sources import (
    L1000_SPACE,
    MoleculeIndex,
    ProfileSet,
    assay_keys,
    excluded_keys,
    file_records,
    locate_files,
    lookup_tables,
    read_a549,
    read_all_compounds,
    read_benchmarks,
    read_cmea,
    read_gene_pairs,
    read_l1000_plate,
    read_moa,
    read_orf_signatures,
    read_targets,
)

MOLECULE = "molecule"
GENE = "gene"
MOA = "moa"
MORGAN_SPACE = "morgan"
GENE_SPACE = "l1000_orf"  # gene nodes: L1000 consensus signature of the gene's ORF


@dataclass(frozen=True)
class GraphConfig:
    """Construction choices; stored in the graph's summary so a run can be reproduced."""

    morgan_radius: int = 4  # decoder target, as InfoAlign's released checkpoint (1024 bits)
    morgan_bits: int = 1024
    similarity_radius: int = 2  # ECFP4 for molecule–molecule similarity (reference: radius 2)
    sim_threshold: float = 0.8
    sim_sparsity: float = 0.995
    # "tanimoto-scaffold": the reference's rule (Tanimoto inside Murcko scaffold blocks,
    # 99.5 % sparsity budget); "cosine": cosine over all pairs (this project's first rule).
    molecule_similarity: str = "tanimoto-scaffold"
    expression_top_fraction: float = 0.01
    expression_min_edges: int = 1000
    exclude_benchmarks: tuple[str, ...] = ()
    # InChIKey-14s held out of pretraining (zero-shot retrieval folds), whatever their source.
    exclude_molecules: tuple[str, ...] = ()
    # Evaluation-set molecules get no target/mechanism edges unless this is set: those
    # annotations are (or predict) the labels of the benchmarks.
    keep_eval_annotations: bool = False
    exclude_assays: tuple[str, ...] = ()  # more assay files, besides DATA/benchmarks/**
    all_compounds: bool = True  # every LINCS compound and Repurposing Hub sample is a node
    moa_edges: bool = True  # molecule–mechanism-of-action nodes (Repurposing Hub)
    gene_features: bool = True  # ORF over-expression L1000 signatures on gene nodes
    profile_fraction: float = 1.0  # keep this share of profile nodes (learning curves)
    subsample_seed: int = 0

    def __post_init__(self) -> None:
        if self.molecule_similarity not in ("tanimoto-scaffold", "cosine"):
            raise ValueError(
                f"molecule_similarity must be 'tanimoto-scaffold' or 'cosine', "
                f"got {self.molecule_similarity!r}"
            )
        if not 0.0 <= self.profile_fraction <= 1.0:
            raise ValueError(f"profile_fraction must be in [0, 1], got {self.profile_fraction}")

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "exclude_benchmarks": list(self.exclude_benchmarks),
            "exclude_molecules": sorted(self.exclude_molecules),
            "exclude_assays": list(self.exclude_assays),
        }

    @classmethod
    def from_dict(cls, data: dict) -> GraphConfig:
        """The inverse of `to_dict` (unknown keys refused by the constructor)."""
        tuples = ("exclude_benchmarks", "exclude_molecules", "exclude_assays")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


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
    files = locate_files(root, config.exclude_benchmarks, config.exclude_assays)
    index = MoleculeIndex(lookup_tables(files))
    profiles = read_cmea(files, index)
    if "a549" in files:
        profiles.append(read_a549(files["a549"], index))
    if "a375" in files:
        profiles.append(read_l1000_plate(files["a375"], index))
    targets = read_targets(files, index)
    moa = read_moa(files, index) if config.moa_edges else []
    if config.all_compounds:
        read_all_compounds(files, index)
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
    moa = [(m, a) for m, a in moa if m in mol_id]
    targets, moa, exclusion = _without_eval_annotations(files, config, targets, moa, mol_id)
    orf = read_orf_signatures(files) if config.gene_features else None
    orf_genes = [] if orf is None else list(orf.index)
    genes = sorted({g for _, g in targets} | {g for _, g in expression} | set(orf_genes))
    mechanisms = sorted({a for _, a in moa})
    profiles = [_subsample(_only_molecules(ps, mol_id), config) for ps in profiles]
    profiles = [ps for ps in profiles if ps.keys]

    node_types = [MOLECULE, GENE] + ([MOA] if mechanisms else [])
    node_types += sorted({ps.node_type for ps in profiles})
    types = [MOLECULE] * len(mol_keys) + [GENE] * len(genes) + [MOA] * len(mechanisms)
    keys = [f"{MOLECULE}:{k}" for k in mol_keys] + [f"{GENE}:{g}" for g in genes]
    keys += [f"{MOA}:{a}" for a in mechanisms]
    gene_id = {g: len(mol_keys) + i for i, g in enumerate(genes)}
    moa_id = {a: len(mol_keys) + len(genes) + i for i, a in enumerate(mechanisms)}
    offsets = []
    for ps in profiles:
        offsets.append(len(types))
        types += [ps.node_type] * len(ps.keys)
        keys += [f"{ps.node_type}:{k}" for k in ps.keys]
    n = len(types)

    space_names = [MORGAN_SPACE] + sorted({ps.space for ps in profiles})
    edge_types = ["mol-profile", "mol-gene:target", "mol-gene:expression", "gene-gene"]
    edge_types += ["mol-moa"] if mechanisms else []
    edge_types += [f"sim:{s}" for s in space_names]
    edge_types += [f"sim:{GENE_SPACE}"] if orf_genes and config.profile_fraction > 0 else []
    edges = _EdgeList(edge_types)
    for ps, off in zip(profiles, offsets, strict=True):
        edges.add("mol-profile", [mol_id[m] for m in ps.molecules], off + np.arange(len(ps.keys)))
    for kind, pairs in (("mol-gene:target", targets), ("mol-gene:expression", expression)):
        edges.add(kind, [mol_id[m] for m, _ in pairs], [gene_id[g] for _, g in pairs])
    if mechanisms:
        edges.add("mol-moa", [mol_id[m] for m, _ in moa], [moa_id[a] for _, a in moa])
    gg = read_gene_pairs(files)
    gg = gg[gg.a.isin(gene_id) & gg.b.isin(gene_id)]
    edges.add("gene-gene", gg.a.map(gene_id), gg.b.map(gene_id))

    spaces = {MORGAN_SPACE: _morgan_space(morgan, n, config)}
    similarity = _molecule_similarity(ecfp, [index.molecules[k] for k in mol_keys], config)
    edges.add(f"sim:{MORGAN_SPACE}", *similarity[:3])
    for name in space_names[1:]:
        members = [(ps, off) for ps, off in zip(profiles, offsets, strict=True) if ps.space == name]
        spaces[name], nodes, raw = _profile_space(name, members, n)
        i, j, s = similarity_edges(_zscores(raw), config.sim_threshold, config.sim_sparsity)
        edges.add(f"sim:{name}", nodes[i], nodes[j], s)
    gene_rows = _subsample_rows(len(orf_genes), config)
    if len(gene_rows):
        nodes = np.array([gene_id[orf_genes[r]] for r in gene_rows], np.int64)
        raw = orf.to_numpy(np.float64)[gene_rows]
        spaces[GENE_SPACE] = _node_space(raw, list(orf.columns), nodes, n, "gene_orf_l1000")
        i, j, s = similarity_edges(raw, config.sim_threshold, config.sim_sparsity)
        edges.add(f"sim:{GENE_SPACE}", nodes[i], nodes[j], s)

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
        "excluded_benchmarks": sorted(files.get("excluded_benchmarks", {})),
        "eval_annotation_exclusion": exclusion,
        "molecule_similarity": {"rule": config.molecule_similarity, **similarity[3]},
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


def _without_eval_annotations(
    files: dict, config: GraphConfig, targets: list, moa: list, mol_id: dict
) -> tuple[list, list, dict]:
    """Drop target and mechanism edges of every evaluation-set molecule (unless
    `keep_eval_annotations`); say per file how many of its molecules were in the graph."""
    per_file = {} if config.keep_eval_annotations else assay_keys(files)
    held = set().union(*per_file.values()) if per_file else set()
    kept_targets = [(m, g) for m, g in targets if m not in held]
    kept_moa = [(m, a) for m, a in moa if m not in held]
    in_graph = held & set(mol_id)
    record = {
        "applied": not config.keep_eval_annotations,
        "edge_types": ["mol-gene:target", "mol-moa"],
        "assay_files": {
            name: {"molecules": len(k), "in_graph": len(k & in_graph)}
            for name, k in sorted(per_file.items())
        },
        "molecules_in_graph": len(in_graph),
        "molecules_that_lost_edges": len(
            {m for m, _ in targets if m in held} | {m for m, _ in moa if m in held}
        ),
        "target_edges_removed": len(targets) - len(kept_targets),
        "moa_edges_removed": len(moa) - len(kept_moa),
        "keys_sha256": hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest(),
    }
    return kept_targets, kept_moa, record


def _molecule_similarity(ecfp: np.ndarray, smiles: list[str], config: GraphConfig):
    """(i, j, weight, info) of molecule–molecule edges under the configured rule."""
    if config.molecule_similarity == "cosine":
        i, j, s = similarity_edges(ecfp, config.sim_threshold, config.sim_sparsity)
        return i, j, s, {"threshold": config.sim_threshold}
    groups = scaffold_groups(smiles)
    i, j, s, threshold = tanimoto_block_edges(
        ecfp, groups, config.sim_sparsity, min_threshold=config.sim_threshold
    )
    blocks = sum(len(g) >= 2 for g in groups)
    return i, j, s, {"threshold": round(threshold, 4), "scaffold_blocks": int(blocks)}


def _subsample_rows(n: int, config: GraphConfig) -> np.ndarray:
    """A seeded, sorted share `profile_fraction` of n rows (all of them at 1.0)."""
    if config.profile_fraction >= 1.0 or n == 0:
        return np.arange(n)
    k = int(round(config.profile_fraction * n))
    k = max(1, k) if config.profile_fraction > 0 else 0
    rng = np.random.default_rng(config.subsample_seed)
    return np.sort(rng.choice(n, k, replace=False))


def _subsample(ps: ProfileSet, config: GraphConfig) -> ProfileSet:
    rows = _subsample_rows(len(ps.keys), config)
    if len(rows) == len(ps.keys):
        return ps
    return ProfileSet(
        ps.node_type,
        ps.space,
        [ps.keys[r] for r in rows],
        [ps.molecules[r] for r in rows],
        ps.values.iloc[rows].reset_index(drop=True),
    )


def _node_space(raw: np.ndarray, columns: list[str], nodes: np.ndarray, n: int, dataset: str):
    """A min–max scaled feature space on the given nodes (one row each, in order)."""
    spec = FeatureSpaceSpec.fit(raw, columns, datasets=[dataset])
    rows = np.full(n, -1, np.int64)
    rows[nodes] = np.arange(len(nodes))
    return FeatureSpace(spec, spec.scale(raw), rows)


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


def exclusion_line(record: dict) -> str:
    """One line on what the evaluation sets lost (or that they kept their annotations)."""
    if not record["applied"]:
        return "evaluation-set molecules KEEP their target/mechanism edges (as asked)"
    return (
        f"evaluation sets: {record['molecules_that_lost_edges']:,} molecules of "
        f"{len(record['assay_files'])} files lost {record['target_edges_removed']:,} target "
        f"and {record['moa_edges_removed']:,} mechanism edges"
    )


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
