"""Perturbations → the nodes of each source (genes, compounds), and node edges lifted back.

The user's table has one row per perturbation–gene pair (`perturbation,gene`): an siRNA
names the gene it silences, a compound one row per target gene (a `|`-separated list in
one cell is split too). A perturbation with no known gene keeps its row with an empty
`gene`. An optional `compound` column gives the id STITCH knows it by (PubChem `CID…`);
without it the perturbation's own name is looked up.

Lifting: the weight between perturbations p and q in a source is the largest weight
between any node of p and any node of q (a compound is as close to another as its
closest pair of targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.graph.readers import compound_key

PERTURBATION_COLUMN = "perturbation"
GENE_COLUMN = "gene"
COMPOUND_COLUMN = "compound"


@dataclass
class PerturbationTable:
    """The vocabulary (first-appearance order), perturbation–gene pairs, compound ids."""

    perturbations: list[str]
    genes: pd.DataFrame  # columns perturbation, gene (distinct pairs; genes upper-case)
    compounds: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    path: str | None = None

    @property
    def gene_set(self) -> set[str]:
        return set(self.genes[GENE_COLUMN])

    def node_pairs(self, level: str) -> pd.DataFrame:
        """(perturbation, node) for a source's level: gene, compound or perturbation."""
        if level == "gene":
            return self.genes.rename(columns={GENE_COLUMN: "node"})
        if level == "compound":
            keys = [self.compounds.get(p) or compound_key(p) for p in self.perturbations]
            return pd.DataFrame({PERTURBATION_COLUMN: self.perturbations, "node": keys})
        if level == "perturbation":
            return pd.DataFrame(
                {PERTURBATION_COLUMN: self.perturbations, "node": self.perturbations}
            )
        raise ValueError(f"unknown node level {level!r}")

    def shared_gene_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (i < j) of perturbations that name a common gene."""
        index = {p: i for i, p in enumerate(self.perturbations)}
        pairs = self.genes.assign(i=self.genes[PERTURBATION_COLUMN].map(index))
        joined = pairs.merge(pairs, on=GENE_COLUMN)
        joined = joined[joined["i_x"] < joined["i_y"]].drop_duplicates(["i_x", "i_y"])
        return joined["i_x"].to_numpy(np.int64), joined["i_y"].to_numpy(np.int64)


def perturbation_table(frame: pd.DataFrame, path: str | Path | None = None) -> PerturbationTable:
    """Check and tidy a `perturbation,gene[,compound]` frame (one row per pair)."""
    where = f"{path}: " if path is not None else ""
    missing = [c for c in (PERTURBATION_COLUMN, GENE_COLUMN) if c not in frame.columns]
    if missing:
        raise InputError(
            f"{where}missing column{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}; "
            f"the perturbation table needs '{PERTURBATION_COLUMN}' and '{GENE_COLUMN}' (one "
            f"row per perturbation–gene pair; columns found: "
            f"{', '.join(map(str, frame.columns[:8]))})"
        )
    names = frame[PERTURBATION_COLUMN].fillna("").astype(str).str.strip()
    empty = np.flatnonzero((names == "").to_numpy())
    if len(empty):
        raise InputError(
            f"{where}{len(empty)} row(s) have no perturbation name (first: data row {empty[0] + 1})"
        )
    if len(frame) == 0:
        raise InputError(f"{where}the perturbation table has no rows")
    genes = frame[GENE_COLUMN].fillna("").astype(str).str.split("|")
    pairs = pd.DataFrame({PERTURBATION_COLUMN: names, GENE_COLUMN: genes}).explode(GENE_COLUMN)
    pairs[GENE_COLUMN] = pairs[GENE_COLUMN].str.strip().str.upper()
    pairs = pairs[pairs[GENE_COLUMN] != ""].drop_duplicates().reset_index(drop=True)
    compounds: dict[str, str] = {}
    if COMPOUND_COLUMN in frame.columns:
        ids = frame[COMPOUND_COLUMN].fillna("").astype(str).str.strip()
        for name, cid in zip(names, ids, strict=True):
            if cid and name not in compounds:
                compounds[name] = compound_key(cid)
    return PerturbationTable(
        list(dict.fromkeys(names)),
        pairs,
        compounds,
        rows=len(frame),
        path=None if path is None else str(path),
    )


def read_perturbation_table(path: str | Path) -> PerturbationTable:
    """A `perturbation,gene[,compound]` table (.csv .tsv .txt .parquet, optionally .gz)."""
    from embedkit.io import read_table

    return perturbation_table(read_table(path), path)


def lift_edges(
    edges: pd.DataFrame, node_pairs: pd.DataFrame, perturbations: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node edges (source, target, weight) → perturbation edges (i < j, weight): the largest
    weight between any node of i and any node of j."""
    index = {p: i for i, p in enumerate(perturbations)}
    members = node_pairs.assign(i=node_pairs[PERTURBATION_COLUMN].map(index))[["node", "i"]]
    both = pd.concat(
        [
            edges[["source", "target", "weight"]],
            edges[["target", "source", "weight"]].set_axis(["source", "target", "weight"], axis=1),
        ]
    )
    lifted = both.merge(members.rename(columns={"node": "source", "i": "a"}), on="source")
    lifted = lifted.merge(members.rename(columns={"node": "target", "i": "b"}), on="target")
    lifted = lifted[(lifted["a"] < lifted["b"]) & (lifted["weight"] > 0)]
    best = lifted.groupby(["a", "b"], sort=True)["weight"].max()
    return (
        best.index.get_level_values(0).to_numpy(np.int64),
        best.index.get_level_values(1).to_numpy(np.int64),
        best.to_numpy(np.float64),
    )


def covered(node_pairs: pd.DataFrame, nodes: set[str], perturbations: list[str]) -> np.ndarray:
    """Which perturbations have at least one node the source knows."""
    known = set(node_pairs.loc[node_pairs["node"].isin(nodes), PERTURBATION_COLUMN])
    return np.array([p in known for p in perturbations], dtype=bool)
