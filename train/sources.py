"""The data directory's input files, read into molecules, profiles and gene links.

Each reader registers the molecules it meets in one `MoleculeIndex`, which resolves
`pert_id` (first 13 characters of a Broad id) → InChIKey via LINCS / the Repurposing Hub
and merges molecules on the InChIKey connectivity block (14 characters), as InfoAlign does.
Every input is optional, so a partial data directory still builds a (smaller) graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from embedkit.graph.readers import read_hetionet, read_string
from embedkit.molecules.featurize import parse_smiles
from embedkit.profiles.aggregate import aggregate
from embedkit.zoo import sha256_of

L1000_SPACE = "l1000"  # one shared feature space for every L1000 dataset, keyed by gene


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


def smiles_key14(smiles: object) -> str | None:
    """InChIKey-14 of a SMILES string; None when RDKit cannot parse it or make a key."""
    if not isinstance(smiles, str) or not smiles:
        return None
    mol, _ = parse_smiles(smiles)
    return _key14(Chem.MolToInchiKey(mol)) if mol is not None else None


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
        if key is None:
            key = smiles_key14(smiles)
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


def _median(frame: pd.DataFrame, by: list[str], features: list[str]) -> pd.DataFrame:
    """One median profile per group of `by`, in first-appearance order (embedkit's
    pycytominer-style `aggregate`); rows with a missing key are left out."""
    frame = frame.dropna(subset=by)
    return aggregate(frame, by, "median", features)[[*by, *features]]


def read_cmea(files: dict, index: MoleculeIndex) -> list[ProfileSet]:
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


def read_a549(path: Path, index: MoleculeIndex) -> ProfileSet:
    """One LINCS Cell Painting plate: median of replicate wells per compound and dose."""
    table = pd.read_csv(path, low_memory=False)
    table = table[table["Metadata_pert_type"] != "control"].copy()
    features = [c for c in table.columns if not c.startswith("Metadata_")]
    table["pert"] = table["Metadata_broad_sample"].map(_pert_id)
    table["dose"] = table["Metadata_mmoles_per_liter"].astype(float).round(4)
    table = table[table["pert"].notna()]
    ik = table.groupby("pert")["Metadata_InChIKey14"].first()
    agg = _median(table, ["pert", "dose"], features)
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


def read_l1000_plate(path: Path, index: MoleculeIndex) -> ProfileSet:
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
    agg = _median(frame, ["pert", "dose"], list(z.columns))
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


def read_targets(files: dict, index: MoleculeIndex) -> list[tuple[str, str]]:
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


def read_all_compounds(files: dict, index: MoleculeIndex) -> None:
    """Every LINCS small molecule (`trt_cp`) and every Repurposing Hub sample becomes a
    molecule node, not only those met in a profile or target file: each brings its Morgan
    target and similarity edges (and, through `read_moa`, its mechanism of action)."""
    if "lincs" in files:
        table = pd.read_csv(files["lincs"], sep="\t", low_memory=False)
        table = table[table["pert_type"] == "trt_cp"]
        for pid, ik, smi in table[["pert_id", "inchi_key", "canonical_smiles"]].itertuples(
            index=False
        ):
            index.add("lincs", pid, ik, smi)
    if "repurposing_samples" in files:
        table = pd.read_csv(files["repurposing_samples"], sep="\t", comment="!")
        for bid, ik, smi in table[["broad_id", "InChIKey", "smiles"]].itertuples(index=False):
            index.add("repurposing_hub", _pert_id(bid), ik, smi)


def read_moa(files: dict, index: MoleculeIndex) -> list[tuple[str, str]]:
    """(molecule, mechanism of action) pairs from the Repurposing Hub ('|'-separated)."""
    if "repurposing" not in files:
        return []
    table = pd.read_csv(files["repurposing"], sep="\t")
    pairs = []
    for pid, moa in table[["pert_id", "moa"]].itertuples(index=False):
        names = [m.strip().lower() for m in moa.split("|")] if isinstance(moa, str) else []
        if names and (key := index.add("repurposing_hub", pid)) is not None:
            pairs += [(key, m) for m in names if m]
    return pairs


def entrez_symbols(files: dict) -> dict[int, str]:
    """Entrez gene id → upper-case symbol, from the LINCS gene table, then Hetionet's nodes."""
    symbols: dict[int, str] = {}
    if "consensi_genes" in files:
        table = pd.read_csv(files["consensi_genes"], sep="\t")
        for gid, sym in table[["entrez_gene_id", "symbol"]].itertuples(index=False):
            if isinstance(sym, str):
                symbols.setdefault(int(gid), sym.upper())
    if "hetionet_nodes" in files:
        table = pd.read_csv(files["hetionet_nodes"], sep="\t")
        table = table[table["kind"] == "Gene"]
        ids = pd.to_numeric(table["id"].str.removeprefix("Gene::"), errors="coerce")
        for gid, sym in zip(ids, table["name"], strict=True):
            if pd.notna(gid) and isinstance(sym, str):
                symbols.setdefault(int(gid), sym.upper())
    return symbols


def read_orf_signatures(files: dict) -> pd.DataFrame | None:
    """Gene features: LINCS L1000 consensus signatures of over-expressed genes (ORF).

    One row per over-expressed gene (upper-case symbol), one column per measured landmark
    gene (the L1000 space): the significant z-scores, 0 where a landmark was not
    significant (the consensus signature is ~0 there). Genes whose significant genes are
    all imputed carry no landmark signal and are left out; so are perturbagens whose Entrez
    id has no symbol. None when the file is absent.
    """
    if "orf" not in files:
        return None
    table = pd.read_csv(files["orf"], sep="\t")
    symbols = entrez_symbols(files)
    table = table[table["status"] == "measured"].copy()
    table["gene"] = table["perturbagen"].map(lambda g: symbols.get(int(g)))
    table = table[table["gene"].notna()]
    table["landmark"] = table["symbol"].str.upper()
    if "consensi_genes" in files:
        genes = pd.read_csv(files["consensi_genes"], sep="\t")
        landmarks = sorted(genes.loc[genes["status"] == "measured", "symbol"].str.upper())
    else:
        landmarks = sorted(table["landmark"].unique())
    wide = table.pivot_table(index="gene", columns="landmark", values="z_score", aggfunc="mean")
    return wide.reindex(columns=landmarks).fillna(0.0).astype(np.float64)


def assay_keys(files: dict) -> dict[str, set[str]]:
    """InChIKey-14s of every evaluation file (relative name → keys): the molecules whose
    target and mechanism edges are left out of the graph, since those annotations are
    (or predict) the evaluation labels. Files without a SMILES/InChIKey column are skipped."""
    out: dict[str, set[str]] = {}
    for name, path in files.get("assay_files", {}).items():
        try:
            out[name] = molecule_keys(pd.read_csv(path, low_memory=False))
        except ValueError:
            continue
    return out


def read_benchmarks(files: dict, index: MoleculeIndex) -> None:
    for name, path in files.get("benchmarks", {}).items():
        table = pd.read_csv(path)
        smiles_col = "smiles" if "smiles" in table else "SMILES"
        keys = table["inchikey"] if "inchikey" in table else [None] * len(table)
        for smi, ik in zip(table[smiles_col], keys, strict=True):
            index.add(f"benchmark:{name}", None, ik, smi)


def excluded_keys(files: dict) -> set[str]:
    """InChIKey-14s of held-out benchmarks: removed from the graph whatever their source.

    Excluding only the benchmark's own structure file is not enough: the same molecule
    enters through the Repurposing Hub with its targets, which are ChEMBL2K's labels.
    """
    keys: set[str] = set()
    for path in files.get("excluded_benchmarks", {}).values():
        keys |= molecule_keys(pd.read_csv(path))
    return keys


def molecule_keys(table: pd.DataFrame) -> set[str]:
    """InChIKey-14s of a table's molecules: from an InChIKey column, else from SMILES."""
    by_name = {c.lower().removeprefix("metadata_"): c for c in table.columns}
    if "inchikey" not in by_name and "smiles" not in by_name:
        raise ValueError(f"no InChIKey or SMILES column among {list(table.columns)[:10]}")
    n = len(table)
    inchikeys = table[by_name["inchikey"]] if "inchikey" in by_name else [None] * n
    smiles = table[by_name["smiles"]] if "smiles" in by_name else [None] * n
    keys = {_key14(k) or smiles_key14(s) for k, s in zip(inchikeys, smiles, strict=True)}
    return keys - {None}  # a row with neither usable key nor structure cannot be matched


def read_gene_pairs(files: dict) -> pd.DataFrame:
    """Gene–gene pairs (a, b), upper-case, from the pair lists and Hetionet, unweighted: the
    files are read by `embedkit.graph.readers`, the one home of these formats."""
    frames = [read_string(path) for path in files.get("gene_gene", [])]
    if "hetionet_ppi" in files:
        frames.append(read_hetionet(files["hetionet_ppi"]))
    if not frames:
        return pd.DataFrame({"a": [], "b": []})
    pairs = pd.concat(frames, ignore_index=True)
    return pairs[["source", "target"]].set_axis(["a", "b"], axis=1)


def locate_files(
    data_dir: Path, exclude_benchmarks: tuple[str, ...] = (), extra_assays: tuple[str, ...] = ()
) -> dict:
    """The inputs found under `data_dir` (each optional, so partial data dirs still build).

    Benchmarks named in `exclude_benchmarks` are listed apart, so their molecules can be
    held out of the graph. `assay_files` lists every table under `benchmarks/` plus
    `extra_assays`: the evaluation sets whose molecules get no target/mechanism edges."""

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
        "hetionet_nodes": "kg/hetionet_v1.0_nodes.tsv*",
        "orf": "profiles/lincs_orf_overexpression_signif.tsv*",
        "consensi_genes": "profiles/lincs_consensi_genes.tsv*",
    }.items():
        if (path := one(pattern)) is not None:
            files[name] = path
    files["gene_gene"] = sorted(data_dir.glob("kg/gene_gene_*.txt"))
    bench = {p.parent.name: p for p in sorted(data_dir.glob("benchmarks/*/structure.csv*"))}
    if (p := one("benchmarks/biogenadme/assays.csv*")) is not None:
        bench["biogenadme"] = p
    files["benchmarks"] = {k: v for k, v in bench.items() if k not in exclude_benchmarks}
    files["excluded_benchmarks"] = {k: v for k, v in bench.items() if k in exclude_benchmarks}
    assays = sorted(data_dir.glob("benchmarks/**/*.csv")) + sorted(
        data_dir.glob("benchmarks/**/*.csv.gz")
    )
    files["assay_files"] = {str(p.relative_to(data_dir)): p for p in assays}
    for extra in extra_assays:
        path = Path(extra)
        if not path.is_file():
            raise FileNotFoundError(f"assay file {path} does not exist")
        files["assay_files"][str(path)] = path
    return files


def lookup_tables(files: dict) -> list[pd.DataFrame]:
    tables = []
    if "lincs" in files:
        t = pd.read_csv(files["lincs"], sep="\t", low_memory=False)
        tables.append(t.rename(columns={"inchi_key": "inchikey", "canonical_smiles": "smiles"}))
    if "repurposing_samples" in files:
        t = pd.read_csv(files["repurposing_samples"], sep="\t", comment="!")
        t["pert_id"] = t["broad_id"].map(_pert_id)
        tables.append(t.rename(columns={"InChIKey": "inchikey"}))
    return [t[["pert_id", "inchikey", "smiles"]] for t in tables]


def file_records(root: Path, files: dict) -> dict[str, str]:
    paths = [v for k, v in files.items() if isinstance(v, Path)]
    paths += list(files.get("gene_gene", [])) + list(files.get("benchmarks", {}).values())
    paths += list(files.get("excluded_benchmarks", {}).values())
    paths += list(files.get("assay_files", {}).values())

    def name(p: Path) -> str:
        return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)

    return {name(p): sha256_of(p) for p in sorted(set(paths))}
