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
  (radius 2) bits, as the reference does; profiles compare column-standardised vectors
  (cosine of [0, 1]-scaled vectors would call almost every pair similar).

The reference code weights expression edges by the raw |z| (often > 1); we follow the
paper's text instead (perturbation edges weigh 1, every weight in (0, 1]).

Join keys: `pert_id` (first 13 characters of a Broad id) → InChIKey via LINCS / the
Repurposing Hub; molecules are merged on the InChIKey connectivity block (14 characters),
as InfoAlign does. The graph is saved as one `.npz` (no pickle) plus a JSON summary.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir  # noqa: F401 (re-exported)
from embedkit.molecules.featurize import parse_smiles
from embedkit.zoo import sha256_of

MOLECULE = "molecule"
GENE = "gene"
L1000_SPACE = "l1000"
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

    def to_dict(self) -> dict:
        return {**asdict(self), "exclude_benchmarks": list(self.exclude_benchmarks)}


@dataclass
class FeatureSpace:
    """Scaled features of the nodes that have them; `node_rows[n]` is node n's row or -1."""

    columns: list[str]
    values: np.ndarray  # rows × d, float32 in [0, 1] with NaN = missing (uint8 when binary)
    node_rows: np.ndarray  # (num_nodes,) int64
    min: np.ndarray
    max: np.ndarray
    binary: bool = False
    info: dict = field(default_factory=dict)


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
            n: {"dim": len(s.columns), "nodes": int((s.node_rows >= 0).sum())}
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
        """Columns and min-max bounds per space: what retrieval needs to undo the scaling."""
        return {
            name: {
                "columns": list(s.columns),
                "min": [float(v) for v in s.min],
                "max": [float(v) for v in s.max],
                **s.info,
            }
            for name, s in self.spaces.items()
        }

    def save(self, path: str | Path) -> Path:
        """One compressed `.npz` (plain arrays, loadable with allow_pickle=False) + `.json`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
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
                f"space__{name}__columns": np.asarray(s.columns, dtype=str),
                f"space__{name}__min": s.min,
                f"space__{name}__max": s.max,
            }
            spaces_meta[name] = {"binary": s.binary, "info": s.info}
        meta = {**self.meta, "spaces": spaces_meta, "summary": self.summary()}
        arrays["meta_json"] = np.asarray(json.dumps(meta))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
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
                spaces[name] = FeatureSpace(
                    columns,
                    values,
                    z[f"space__{name}__rows"],
                    z[f"space__{name}__min"],
                    z[f"space__{name}__max"],
                    sm["binary"],
                    sm["info"],
                )
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


# --------------------------------------------------------------------------- file readers


def read_gct(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Parse GCT v1.2/v1.3 text → (data genes × samples, row metadata, column metadata)."""
    path = Path(path)
    with open(path) as fh:
        version = fh.readline().strip()
        dims = [int(v) for v in fh.readline().split("\t") if v.strip()]
    if version == "#1.3":
        n_rows, n_cols, n_rmeta, n_cmeta = dims[:4]
    elif version == "#1.2":
        (n_rows, n_cols), n_rmeta, n_cmeta = dims[:2], 1, 0
    else:
        raise ValueError(f"{path}: not a GCT file (first line {version!r})")
    table = pd.read_csv(path, sep="\t", skiprows=2, dtype=str, keep_default_na=False)
    if table.shape != (n_cmeta + n_rows, 1 + n_rmeta + n_cols):
        raise ValueError(
            f"{path}: GCT header says {n_rows}×{n_cols} (+{n_rmeta}/{n_cmeta} "
            f"metadata) but the body is {table.shape}"
        )
    ids = table.columns[0]
    samples = list(table.columns[1 + n_rmeta :])
    col_meta = table.iloc[:n_cmeta].set_index(ids)[samples].T
    body = table.iloc[n_cmeta:].set_index(ids)
    row_meta = body.iloc[:, :n_rmeta]
    data = body[samples].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    return data, row_meta, col_meta


def _key14(inchikey: object) -> str | None:
    if not isinstance(inchikey, str) or not inchikey.strip():
        return None
    key = inchikey.strip().removeprefix("InChIKey=")
    return key[:14] if len(key) >= 14 else None


def _pert_id(broad_id: object) -> str | None:
    return broad_id[:13] if isinstance(broad_id, str) and broad_id.startswith("BRD-") else None


def _genes(targets: object) -> list[str]:
    if not isinstance(targets, str):
        return []
    return [g.strip().upper() for g in targets.split("|") if g.strip()]


class MoleculeIndex:
    """Resolves pert_id / InChIKey / SMILES to one molecule key (InChIKey-14) with a SMILES."""

    def __init__(self, lookups: list[pd.DataFrame]):
        self.by_pert: dict[str, tuple[str, str]] = {}
        self.by_key: dict[str, str] = {}
        for table in lookups:  # earlier tables win (LINCS before the Repurposing Hub)
            for pid, ik, smi in table[["pert_id", "inchikey", "smiles"]].itertuples(index=False):
                key = _key14(ik)
                if key is None or not isinstance(smi, str) or not smi:
                    continue
                self.by_pert.setdefault(pid, (key, smi))
                self.by_key.setdefault(key, smi)
        self.molecules: dict[str, str] = {}  # key → SMILES, insertion-ordered
        self.sources: dict[str, set[str]] = {}

    def add(self, source: str, pert_id=None, inchikey=None, smiles=None) -> str | None:
        """Register a molecule met in `source`; None when it has no usable structure."""
        key = _key14(inchikey)
        if key is None and pert_id in self.by_pert:
            key = self.by_pert[pert_id][0]
        if key is None and isinstance(smiles, str) and smiles:
            mol, _ = parse_smiles(smiles)
            key = _key14(Chem.MolToInchiKey(mol)) if mol is not None else None
        if key is None:
            return None
        if key not in self.molecules:  # SMILES preference: LINCS, Repurposing Hub, the file
            candidates = [
                self.by_key.get(key),
                self.by_pert.get(pert_id, (None, None))[1],
                smiles if isinstance(smiles, str) else None,
            ]
            smi = next((c for c in candidates if c), None)
            if smi is None:
                return None
            self.molecules[key] = smi
        self.sources.setdefault(key, set()).add(source)
        return key


@dataclass
class ProfileSet:
    """Aggregated profiles of one dataset: one node per row, each linked to one molecule."""

    node_type: str
    space: str
    keys: list[str]
    molecules: list[str]
    values: pd.DataFrame  # rows × feature columns (raw scale; NaN = missing)


def _aggregate(frame: pd.DataFrame, by: list[str], features: list[str]) -> pd.DataFrame:
    return frame.groupby(by, sort=False)[features].median().reset_index()


def _read_cmea(files: dict, index: MoleculeIndex) -> list[ProfileSet]:
    sets = []
    for name, node_type, space in (
        ("cmea_cp", "cp_cmea_u2os", "cp_cmea_u2os"),
        ("cmea_l1000", "l1000_cmea_u2os", L1000_SPACE),
    ):
        if name not in files:
            continue
        table = pd.read_parquet(files[name])
        features = [c for c in table.columns if not c.startswith("Metadata_")]
        rows = [
            index.add(node_type, r.Metadata_pert_id, r.Metadata_InChIKey, r.Metadata_SMILES)
            for r in table.itertuples(index=False)
        ]
        keep = np.array([k is not None for k in rows])
        table = table[keep].reset_index(drop=True)
        sets.append(
            ProfileSet(
                node_type,
                space,
                list(table.Metadata_pert_id),
                [k for k in rows if k is not None],
                table[features]
                .astype(np.float64)
                .rename(columns=str.upper if space == L1000_SPACE else str),
            )
        )
    return sets


def _read_a549(path: Path, index: MoleculeIndex) -> ProfileSet:
    """One LINCS Cell Painting plate: median of replicate wells per compound and dose."""
    table = pd.read_csv(path, low_memory=False)
    table = table[table["Metadata_pert_type"] != "control"].copy()
    features = [c for c in table.columns if not c.startswith("Metadata_")]
    table["pert"] = table["Metadata_broad_sample"].map(_pert_id)
    table["dose"] = table["Metadata_mmoles_per_liter"].astype(float).round(4)
    table = table[table["pert"].notna()]
    ik = table.groupby("pert")["Metadata_InChIKey14"].first()
    agg = _aggregate(table, ["pert", "dose"], features)
    mols = [index.add("cp_lincs_a549", p, ik.get(p)) for p in agg["pert"]]
    keep = np.array([m is not None for m in mols], dtype=bool)
    agg = agg[keep].reset_index(drop=True)
    return ProfileSet(
        "cp_lincs_a549",
        "cp_lincs_a549",
        [f"{p}@{d:g}" for p, d in zip(agg["pert"], agg["dose"], strict=True)],
        [m for m in mols if m is not None],
        agg[features],
    )


def _read_l1000_plate(path: Path, index: MoleculeIndex) -> ProfileSet:
    """A level-3 L1000 plate: robust z per gene against the plate, median per compound/dose."""
    data, row_meta, col_meta = read_gct(path)
    genes = row_meta["pr_gene_symbol"] if "pr_gene_symbol" in row_meta else data.index.to_series()
    median = data.median(axis=1)
    mad = (data.sub(median, axis=0)).abs().median(axis=1) * 1.4826
    z = data.sub(median, axis=0).div(mad.clip(lower=0.1), axis=0)
    z.index = [str(g).upper() for g in genes]
    z = (z.groupby(level=0, sort=False).mean() if z.index.duplicated().any() else z).T
    treated = col_meta["pert_type"].str.startswith("trt") if "pert_type" in col_meta else None
    meta = col_meta[treated] if treated is not None else col_meta
    frame = z.loc[meta.index].copy()
    frame["pert"] = meta["pert_id"].map(_pert_id).values
    dose = meta["pert_dose"] if "pert_dose" in meta else pd.Series(0, index=meta.index)
    frame["dose"] = pd.to_numeric(dose, errors="coerce").values
    frame = frame[frame["pert"].notna()]
    agg = _aggregate(frame, ["pert", "dose"], [c for c in z.columns])
    mols = [index.add("l1000_lincs_a375", p) for p in agg["pert"]]
    keep = np.array([m is not None for m in mols], dtype=bool)
    agg = agg[keep].reset_index(drop=True)
    return ProfileSet(
        "l1000_lincs_a375",
        L1000_SPACE,
        [f"{p}@{d:g}" for p, d in zip(agg["pert"], agg["dose"], strict=True)],
        [m for m in mols if m is not None],
        agg[list(z.columns)],
    )


def _read_targets(files: dict, index: MoleculeIndex) -> list[tuple[str, str]]:
    pairs = []
    if "repurposing" in files:
        table = pd.read_csv(files["repurposing"], sep="\t")
        for pid, targets in table[["pert_id", "target"]].itertuples(index=False):
            genes = _genes(targets)
            if genes and (key := index.add("repurposing_hub", pid)) is not None:
                pairs += [(key, g) for g in genes]
    if "jump_target" in files:
        table = pd.read_csv(files["jump_target"], sep="\t")
        for r in table.itertuples(index=False):
            genes = _genes(r.target_list)
            if (
                genes
                and (
                    key := index.add("jump_target", _pert_id(r.broad_sample), r.InChIKey, r.smiles)
                )
                is not None
            ):
                pairs += [(key, g) for g in genes]
    return pairs


def _read_benchmarks(files: dict, index: MoleculeIndex) -> None:
    for name, path in files.get("benchmarks", {}).items():
        table = pd.read_csv(path)
        smiles_col = "smiles" if "smiles" in table else "SMILES"
        keys = table["inchikey"] if "inchikey" in table else [None] * len(table)
        for smi, ik in zip(table[smiles_col], keys, strict=True):
            index.add(f"benchmark:{name}", None, ik, smi)


def _excluded_keys(files: dict) -> set[str]:
    """InChIKey-14s of held-out benchmarks: removed from the graph whatever their source.

    Excluding only the benchmark's own structure file is not enough: the same molecule
    enters through the Repurposing Hub with its targets, which are ChEMBL2K's labels.
    """
    keys: set[str] = set()
    for path in files.get("excluded_benchmarks", {}).values():
        table = pd.read_csv(path)
        if "inchikey" in table:
            keys |= {k for k in map(_key14, table["inchikey"]) if k}
            continue
        smiles_col = "smiles" if "smiles" in table else "SMILES"
        for smi in table[smiles_col]:
            mol, _ = parse_smiles(smi)
            if mol is not None:
                keys.add(_key14(Chem.MolToInchiKey(mol)))
    return keys


def _read_gene_pairs(files: dict) -> pd.DataFrame:
    frames = []
    for path in files.get("gene_gene", []):
        table = pd.read_csv(path)
        frames.append(table.iloc[:, :2].set_axis(["a", "b"], axis=1))
    if "hetionet_ppi" in files:
        table = pd.read_csv(files["hetionet_ppi"], sep="\t")
        frames.append(table[["source_symbol", "target_symbol"]].set_axis(["a", "b"], axis=1))
    if not frames:
        return pd.DataFrame({"a": [], "b": []})
    pairs = pd.concat(frames).dropna().astype(str)
    return pairs.apply(lambda s: s.str.strip().str.upper())


def locate_files(data_dir: Path, config: GraphConfig) -> dict:
    """The inputs found under `data_dir` (each optional, so partial data dirs still build)."""

    def one(pattern: str) -> Path | None:
        found = sorted(data_dir.glob(pattern))
        return found[0] if found else None

    files: dict = {}
    for name, pattern in {
        "lincs": "molecules/lincs_pertinfo.tsv*",
        "cmea_cp": "profiles/cmea_u2os_morphology.parquet",
        "cmea_l1000": "profiles/cmea_u2os_l1000.parquet",
        "a549": "profiles/lincs_a549_*.csv*",
        "a375": "profiles/l1000_*A375*.gct",
        "repurposing": "kg/repurposing_simple.tsv",
        "repurposing_samples": "kg/repurposing_samples_*.txt",
        "jump_target": "kg/jump_target1_compound_metadata.tsv",
        "hetionet_ppi": "kg/hetionet_protein_interactions.txt*",
    }.items():
        if (path := one(pattern)) is not None:
            files[name] = path
    files["gene_gene"] = sorted(data_dir.glob("kg/gene_gene_*.txt"))
    bench = {p.parent.name: p for p in sorted(data_dir.glob("benchmarks/*/structure.csv*"))}
    if (p := one("benchmarks/biogenadme/assays.csv*")) is not None:
        bench["biogenadme"] = p
    files["benchmarks"] = {k: v for k, v in bench.items() if k not in config.exclude_benchmarks}
    files["excluded_benchmarks"] = {
        k: v for k, v in bench.items() if k in config.exclude_benchmarks
    }
    return files


def _lookup_tables(files: dict) -> list[pd.DataFrame]:
    tables = []
    if "lincs" in files:
        t = pd.read_csv(files["lincs"], sep="\t", low_memory=False)
        tables.append(t.rename(columns={"inchi_key": "inchikey", "canonical_smiles": "smiles"}))
    if "repurposing_samples" in files:
        t = pd.read_csv(files["repurposing_samples"], sep="\t", comment="!")
        t["pert_id"] = t["broad_id"].map(_pert_id)
        tables.append(t.rename(columns={"InChIKey": "inchikey"}))
    return [t[["pert_id", "inchikey", "smiles"]] for t in tables]


# --------------------------------------------------------------------------- graph pieces


def minmax_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware per-column min-max to [0, 1]; constant columns map to 0."""
    lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((values - lo) / span).astype(np.float32), lo, hi


def similarity_edges(
    x: np.ndarray, threshold: float, sparsity: float, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j with cosine ≥ threshold, cut to the top (1 − sparsity) of all pairs."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    n = x.shape[0]
    rows, cols, sims = [], [], []
    for start in range(0, n, block):
        s = x[start : start + block] @ x[start:].T
        i, j = np.nonzero(s >= threshold)
        upper = j > i  # j is offset by `start`, i is local: same offset → j > i means col > row
        rows.append(i[upper] + start)
        cols.append(j[upper] + start)
        sims.append(s[i[upper], j[upper]])
    i, j, s = (np.concatenate(a) if a else np.zeros(0) for a in (rows, cols, sims))
    budget = int((1.0 - sparsity) * n * (n - 1) / 2 + 1e-6)  # tolerate float rounding
    if len(s) > budget:
        top = np.argpartition(-s, budget - 1)[:budget] if budget > 0 else np.zeros(0, int)
        i, j, s = i[top], j[top], s[top]
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.float32)


def _standardise(values: np.ndarray) -> np.ndarray:
    """Column z-scores (NaN → 0), so cosine compares profile *shapes*, not the [0,1] offset."""
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    return np.nan_to_num((values - mean) / np.where(std > 0, std, 1.0))


def _fingerprints(
    smiles: list[str], config: GraphConfig
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Parse once; return kept indices, Morgan target bits and ECFP similarity bits."""
    target = rdFingerprintGenerator.GetMorganGenerator(
        radius=config.morgan_radius, fpSize=config.morgan_bits
    )
    sim = rdFingerprintGenerator.GetMorganGenerator(radius=config.similarity_radius, fpSize=1024)
    kept, t_bits, s_bits = [], [], []
    for i, smi in enumerate(smiles):
        mol, _ = parse_smiles(smi)
        if mol is None:
            continue
        kept.append(i)
        t_bits.append(target.GetFingerprintAsNumPy(mol).astype(np.uint8))
        s_bits.append(sim.GetFingerprintAsNumPy(mol).astype(np.uint8))
    empty = np.zeros((0, config.morgan_bits), np.uint8)
    return kept, (np.stack(t_bits) if t_bits else empty), (np.stack(s_bits) if s_bits else empty)


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


# --------------------------------------------------------------------------- assembly


def build_context_graph(
    data_dir: str | Path | None = None, config: GraphConfig | None = None
) -> ContextGraph:
    """Read every source found in `data_dir` and assemble the context graph."""
    config = config or GraphConfig()
    root = resolve_data_dir(data_dir)
    files = locate_files(root, config)
    index = MoleculeIndex(_lookup_tables(files))
    profiles = _read_cmea(files, index)
    if "a549" in files:
        profiles.append(_read_a549(files["a549"], index))
    if "a375" in files:
        profiles.append(_read_l1000_plate(files["a375"], index))
    targets = _read_targets(files, index)
    _read_benchmarks(files, index)

    excluded = _excluded_keys(files)
    mol_keys = [k for k in index.molecules if k not in excluded]
    kept, morgan, ecfp = _fingerprints([index.molecules[k] for k in mol_keys], config)
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
    gg = _read_gene_pairs(files)
    gg = gg[gg.a.isin(gene_id) & gg.b.isin(gene_id)]
    edges.add("gene-gene", gg.a.map(gene_id), gg.b.map(gene_id))

    spaces = {MORGAN_SPACE: _morgan_space(morgan, n, config)}
    i, j, s = similarity_edges(ecfp, config.sim_threshold, config.sim_sparsity)
    edges.add(f"sim:{MORGAN_SPACE}", i, j, s)
    for name in space_names[1:]:
        members = [(ps, off) for ps, off in zip(profiles, offsets, strict=True) if ps.space == name]
        spaces[name], nodes, raw = _profile_space(name, members, n)
        i, j, s = similarity_edges(_standardise(raw), config.sim_threshold, config.sim_sparsity)
        edges.add(f"sim:{name}", nodes[i], nodes[j], s)

    src, dst, weight, etype = edges.build()
    type_code = {t: c for c, t in enumerate(node_types)}
    meta = {
        "format": "embedkit-context-graph/1",
        "config": config.to_dict(),
        "node_types": node_types,
        "edge_types": edge_types,
        "data_dir": str(root),
        "files": _file_records(root, files),
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
    return FeatureSpace(
        [f"Morgan_r{config.morgan_radius}_{i:04d}" for i in range(d)],
        bits,
        rows,
        np.zeros(d),
        np.ones(d),
        binary=True,
        info={"kind": "fingerprint", "radius": config.morgan_radius, "n_bits": d},
    )


def _profile_space(name: str, members: list[tuple[ProfileSet, int]], n: int):
    """Align columns by name across datasets, drop all-NaN columns, min-max scale."""
    frames = [ps.values for ps, _ in members]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    raw = np.concatenate([f.reindex(columns=columns).to_numpy(np.float64) for f in frames])
    present = ~np.isnan(raw).all(axis=0)
    raw, columns = raw[:, present], [c for c, p in zip(columns, present, strict=True) if p]
    scaled, lo, hi = minmax_scale(raw)
    nodes = np.concatenate([off + np.arange(len(ps.keys)) for ps, off in members]).astype(np.int64)
    rows = np.full(n, -1, np.int64)
    rows[nodes] = np.arange(len(nodes))
    info = {"kind": "profile", "datasets": [ps.node_type for ps, _ in members]}
    return FeatureSpace(columns, scaled, rows, lo, hi, info=info), nodes, raw


def _file_records(root: Path, files: dict) -> dict[str, str]:
    paths = [v for k, v in files.items() if isinstance(v, Path)]
    paths += list(files.get("gene_gene", [])) + list(files.get("benchmarks", {}).values())
    paths += list(files.get("excluded_benchmarks", {}).values())
    return {str(p.relative_to(root)): sha256_of(p) for p in sorted(set(paths))}


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
