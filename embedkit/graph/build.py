"""Sources → one perturbation graph: normalize each source, lift it to perturbations, combine.

Each source is normalized to weights in [0, 1] by its reader (STRING and STITCH score/1000
above 200, pair lists 1, Hetionet by the smoothed walk divided by its largest value, image
features by cosine, other edge lists kept in [0, 1] or divided by their largest weight),
then lifted from its nodes (genes, compounds, perturbations) to perturbations
(`embedkit.graph.mapping.lift_edges`: the strongest pair of their nodes).

Combination (the paper "combines and normalizes" its sources without saying how):

* `mean` (default): for each pair of perturbations, the mean of the weights of the sources
  that know *both* of them; a source that knows both and has no edge counts as 0, one that
  lacks either perturbation does not vote. So agreement between sources strengthens an
  edge, and a source's silence on genes it never measured does not weaken it. The result
  stays in [0, 1].
* `max`: the strongest source wins.

Two perturbations that name a common gene (two siRNAs of IQCB1, two compounds sharing a
target) are then joined with weight 1, whatever the sources say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedkit.errors import InputError
from embedkit.graph.graph import PerturbationGraph
from embedkit.graph.mapping import PerturbationTable, covered, lift_edges
from embedkit.graph.readers import (
    STRING_THRESHOLD,
    read_edge_list,
    read_hetionet,
    read_stitch,
    read_string,
)
from embedkit.graph.similarity import IMAGE_THRESHOLD, cosine_edges, perturbation_profiles
from embedkit.graph.walk import MIN_WEIGHT, WALK_STEPS, random_walk_weights

COMBINE_RULES = ("mean", "max")


@dataclass
class Source:
    """One source's edges between its own nodes, and every node it knows (coverage)."""

    name: str
    level: str  # "gene", "compound" or "perturbation"
    edges: pd.DataFrame  # source, target, weight in [0, 1]
    nodes: set[str]
    details: dict = field(default_factory=dict)


def _file_details(path: Path, kind: str, weighting: str) -> dict:
    from embedkit.zoo import sha256_of

    return {"kind": kind, "path": str(path), "sha256": sha256_of(path), "weighting": weighting}


def _genes_only(edges: pd.DataFrame, genes: set[str]) -> pd.DataFrame:
    both = edges["source"].isin(genes) & edges["target"].isin(genes)
    return edges[both].reset_index(drop=True)


def string_source(
    path: str | Path, table: PerturbationTable, threshold: float = STRING_THRESHOLD
) -> Source:
    path = Path(path)
    edges = read_string(path, threshold)
    nodes = (set(edges["source"]) | set(edges["target"])) & table.gene_set
    scored = not (edges["weight"] == 1.0).all()
    rule = f"combined_score ≥ {threshold:g}/1000, weight score/1000" if scored else "pairs, 1"
    return Source(
        f"string:{path.name}",
        "gene",
        _genes_only(edges, nodes),
        nodes,
        _file_details(path, "string", rule) | {"lines": len(edges)},
    )


def hetionet_source(
    path: str | Path,
    table: PerturbationTable,
    steps: int = WALK_STEPS,
    min_weight: float = MIN_WEIGHT,
) -> Source:
    path = Path(path)
    edges = read_hetionet(path)
    nodes = (set(edges["source"]) | set(edges["target"])) & table.gene_set
    rule = (
        f"{steps}-step random walk on the whole network, mean visiting probability of steps "
        f"1..{steps}, symmetrized, / max, kept ≥ {min_weight:g}"
    )
    return Source(
        f"hetionet:{path.name}",
        "gene",
        random_walk_weights(edges, nodes, steps, min_weight),
        nodes,
        _file_details(path, "hetionet", rule) | {"lines": len(edges)},
    )


def edge_list_source(path: str | Path, table: PerturbationTable) -> Source:
    path = Path(path)
    edges = read_edge_list(path)
    nodes = (set(edges["source"]) | set(edges["target"])) & table.gene_set
    return Source(
        f"edges:{path.name}",
        "gene",
        _genes_only(edges, nodes),
        nodes,
        _file_details(path, "edges", "weight kept in [0, 1], else / max; none → 1")
        | {"lines": len(edges)},
    )


def stitch_source(
    path: str | Path, table: PerturbationTable, threshold: float = STRING_THRESHOLD
) -> Source:
    path = Path(path)
    edges = read_stitch(path, threshold)
    wanted = set(table.node_pairs("compound")["node"])
    nodes = (set(edges["source"]) | set(edges["target"])) & wanted
    both = edges["source"].isin(nodes) & edges["target"].isin(nodes)
    return Source(
        f"stitch:{path.name}",
        "compound",
        edges[both].reset_index(drop=True),
        nodes,
        _file_details(path, "stitch", f"score ≥ {threshold:g}/1000, weight score/1000")
        | {"lines": len(edges)},
    )


def image_source(
    frame: pd.DataFrame,
    label_column: str,
    table: PerturbationTable,
    features: list[str] | None = None,
    threshold: float = IMAGE_THRESHOLD,
    path: str | Path | None = None,
) -> Source:
    labels, values = perturbation_profiles(frame, label_column, features)
    known = set(table.perturbations)
    keep = np.array([lab in known for lab in labels], dtype=bool)
    kept = [lab for lab, k in zip(labels, keep, strict=True) if k]
    details = {
        "kind": "image",
        "label_column": label_column,
        "weighting": f"cosine of standardized per-perturbation means, kept ≥ {threshold:g}",
        "labels": len(labels),
        "labels_not_in_table": int((~keep).sum()),
        "features": int(values.shape[1]),
    }
    if path is not None:
        from embedkit.zoo import sha256_of

        details |= {"path": str(path), "sha256": sha256_of(Path(path))}
    name = f"image:{Path(path).name}" if path is not None else "image"
    return Source(
        name, "perturbation", cosine_edges(kept, values[keep], threshold), set(kept), details
    )


@dataclass
class BuildReport:
    """What the builder did, for the summary line and warnings."""

    perturbations: int
    edges: int
    isolated: int
    uncovered: list[str]  # perturbations no source knows
    shared_gene_pairs: int
    per_source: dict[str, dict]


def build_graph(
    table: PerturbationTable, sources: list[Source], combine: str = "mean"
) -> tuple[PerturbationGraph, BuildReport]:
    """Combine the sources' lifted edges into one graph over `table.perturbations`."""
    if combine not in COMBINE_RULES:
        raise InputError(f"unknown combine rule {combine!r}; use one of {', '.join(COMBINE_RULES)}")
    if not sources:
        raise InputError(
            "no graph source given: pass at least one of --string, --hetionet, --edges, "
            "--stitch or --image-features"
        )
    perts = table.perturbations
    n = len(perts)
    coverage = np.zeros((n, len(sources)), dtype=bool)
    matrices = []
    per_source: dict[str, dict] = {}
    for s, source in enumerate(sources):
        pairs = table.node_pairs(source.level)
        coverage[:, s] = covered(pairs, source.nodes, perts)
        i, j, w = lift_edges(source.edges, pairs, perts)
        matrices.append(sp.coo_matrix((w, (i, j)), shape=(n, n)).tocsr())
        name = source.name if source.name not in per_source else f"{source.name}#{s}"
        per_source[name] = source.details | {
            "covered_perturbations": int(coverage[:, s].sum()),
            "edges": len(w),
        }

    if combine == "max":
        upper = matrices[0]
        for m in matrices[1:]:
            upper = upper.maximum(m)
        upper = upper.tocoo()
        rows, cols, weights = upper.row, upper.col, upper.data
    else:
        total = sum(matrices[1:], matrices[0]).tocoo()
        rows, cols = total.row, total.col
        voters = (coverage[rows] & coverage[cols]).sum(axis=1)
        weights = total.data / np.maximum(voters, 1)

    si, sj = table.shared_gene_pairs()
    rows = np.concatenate([rows, si])
    cols = np.concatenate([cols, sj])
    weights = np.concatenate([weights, np.ones(len(si))])  # from_edges keeps the largest

    uncovered = [p for p, c in zip(perts, coverage.any(axis=1), strict=True) if not c]
    provenance = {
        "perturbation_table": {
            "path": table.path,
            "rows": table.rows,
            "perturbations": n,
            "genes": len(table.gene_set),
        },
        "combine": combine,
        "combine_rule": (
            "mean of the sources that know both perturbations (no edge = 0)"
            if combine == "mean"
            else "largest weight over sources"
        ),
        "shared_gene_rule": "perturbations naming a common gene are joined with weight 1",
        "shared_gene_pairs": len(si),
        "inputs": per_source,
        "uncovered_perturbations": len(uncovered),
    }
    if table.path is not None and Path(table.path).is_file():
        from embedkit.zoo import sha256_of

        provenance["perturbation_table"]["sha256"] = sha256_of(Path(table.path))
    graph = PerturbationGraph.from_edges(perts, rows, cols, weights, provenance)
    info = graph.info()
    report = BuildReport(n, info["edges"], info["isolated"], uncovered, len(si), per_source)
    return graph, report
