"""Is the SIMULATED world grounded in real priors good for what it is meant for?

`embedkit.datasets.synthetic` with a real gene graph (STRING ∪ Hetionet PPI from
../shared/data/kg) and the real scVI cell-line embeddings: four lines (HUVEC, RPE, HEPG2
for pretraining, U2OS held out as the de novo line). Measured, on the ground truth and on
the rendered images:

1. **The graph carries signal beyond a perturbation's own images** (what a graph loss can
   use): correlation of the phenotypes (and of per-gene image profiles) of linked vs
   unlinked genes; and, with one site per gene ("few labels"), how well the gene's
   held-out image profile is predicted by its own site alone vs its site pooled with its
   graph neighbours' single sites (and, as a control, with random "neighbours").
2. **The de novo line responds differently, in a way its embedding predicts** (what
   cell-line tokens can use): over all 55 lines of the table, Spearman correlation of
   embedding similarity with response similarity; leave-one-line-out prediction of a
   line's knock-down effects from its embedding-nearest lines vs from all lines; for U2OS,
   the correlation of its effects (and image profiles) with each pretraining line's.

The graph is built here with pandas from the pair lists (STRING pairs weigh 1, Hetionet-
only pairs 0.5) and written in the `embedkit graph build` .npz format, then the generator
picks `--genes` of its nodes (`load_gene_graph`). Everything is simulated except the two
input files; see docs/synthetic.md.

    python benchmarks/bench_synthetic_world.py                  # ~1-2 min on 2 cores
    python benchmarks/bench_synthetic_world.py --genes 100 --sites 3 --size 48   # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.stats import spearmanr

from embedkit.cell_lines import read_cell_line_table
from embedkit.datasets.synthetic import CONTROL_GENE, SynthConfig, SyntheticScreen
from embedkit.datasets.synthetic.biology import expression_programs, gene_expression
from embedkit.datasets.synthetic.config import well_names
from embedkit.datasets.synthetic.grounding import (
    descriptors_from_embeddings,
    load_cell_line_descriptors,
    load_gene_graph,
)
from embedkit.io import atomic_path

RESULTS = Path(__file__).resolve().parent / "results"
LINES = ("HUVEC", "RPE", "HEPG2", "U2OS")
PRETRAIN, DE_NOVO = ("HUVEC", "RPE", "HEPG2"), "U2OS"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    p.add_argument("--genes", type=int, default=200)
    p.add_argument("--sites", type=int, default=4, help="sites per gene and line")
    p.add_argument("--controls", type=int, default=48, help="control sites per line")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--table-dims", type=int, default=256, choices=(64, 128, 256, 512))
    p.add_argument("--line-specificity", type=float, default=1.0)
    p.add_argument("--graph-smoothing", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "synthetic_world.json")
    return p.parse_args(argv)


def write_real_graph(kg: Path, path: Path) -> dict:
    """STRING ∪ Hetionet PPI as a perturbation-graph .npz (the `embedkit graph build` format)."""
    string = pd.read_csv(kg / "gene_gene_StringDB.txt")
    string.columns = ["a", "b"]
    het = pd.read_csv(
        kg / "hetionet_protein_interactions.txt.gz",
        sep="\t",
        usecols=["source_symbol", "target_symbol"],
    )
    het.columns = ["a", "b"]
    genes = np.array(sorted(set(string.a) | set(string.b) | set(het.a) | set(het.b)), dtype=str)
    index = pd.Series(np.arange(len(genes)), index=genes)
    parts = []
    for pairs, weight in ((het, 0.5), (string, 1.0)):
        pairs = pairs[pairs.a != pairs.b]
        i, j = index[pairs.a].to_numpy(), index[pairs.b].to_numpy()
        w = np.full(len(i), weight)
        parts.append(scipy.sparse.coo_matrix((w, (i, j)), shape=(len(genes),) * 2).tocsr())
        parts.append(parts[-1].T.tocsr())
    adj = parts[0]
    for part in parts[1:]:
        adj = adj.maximum(part)
    adj = adj.tocsr()
    scipy.sparse.save_npz(path, adj)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["perturbations"] = genes
    arrays["sources"] = np.array(
        json.dumps(
            {"string": "gene_gene_StringDB.txt", "hetionet": "hetionet_protein_interactions.txt.gz"}
        )
    )
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return {"nodes": len(genes), "edges": int(adj.nnz // 2)}


def site_features(image: np.ndarray) -> np.ndarray:
    """30 simple per-site image features: per channel mean, std, p90, foreground share and
    foreground mean (threshold 30 of 255)."""
    x = image.reshape(image.shape[0], -1).astype(np.float64)
    fg = x > 30
    share = fg.mean(1)
    fg_mean = np.where(fg.any(1), (x * fg).sum(1) / np.maximum(fg.sum(1), 1), 0.0)
    return np.concatenate([x.mean(1), x.std(1), np.percentile(x, 90, axis=1), share, fg_mean])


def linked_vs_unlinked(matrix: np.ndarray, adj: np.ndarray) -> dict:
    upper = np.triu_indices(len(matrix), 1)
    corr = np.corrcoef(matrix)[upper]
    weight = adj[upper]
    linked = weight > 0
    return {
        "linked": round(float(corr[linked].mean()), 4),
        "linked_weighted_by_edge_weight": round(float((weight * corr).sum() / weight.sum()), 4),
        "unlinked": round(float(corr[~linked].mean()), 4),
        "linked_pairs": int(linked.sum()),
    }


def neighbour_pooling(one: np.ndarray, rest: np.ndarray, adj: np.ndarray) -> dict:
    """Held-out profile (mean of the other sites) predicted from one site per gene: alone,
    or plus `lam` x the edge-weighted mean of its graph neighbours' single sites; as a
    control, the same with the graph's gene labels shuffled (same degrees, random genes).
    Mean Pearson correlation over genes with at least one neighbour."""
    has = adj.sum(1) > 0
    perm = np.random.default_rng(0).permutation(len(adj))
    shuffled = adj[np.ix_(perm, perm)]

    def score(pred: np.ndarray) -> float:
        r = [np.corrcoef(pred[i], rest[i])[0, 1] for i in np.flatnonzero(has)]
        return round(float(np.mean(r)), 4)

    def pooled(a: np.ndarray, lam: float) -> np.ndarray:
        mean = (a @ one) / np.maximum(a.sum(1, keepdims=True), 1e-12)
        return one + lam * mean

    out = {"genes_with_neighbours": int(has.sum()), "own_site_only": score(one)}
    for lam in (0.5, 1.0, 2.0):
        out[f"own_plus_{lam:g}x_neighbour_mean"] = score(pooled(adj, lam))
        out[f"own_plus_{lam:g}x_random_genes_mean"] = score(pooled(shuffled, lam))
    out["neighbour_mean_only"] = score(pooled(adj, 1e6))
    out["random_genes_mean_only"] = score(pooled(shuffled, 1e6))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (args.data / "kg").is_dir():
        print(f"real data not found under {args.data} (needs kg/ and cell_lines/)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result: dict = {"simulated": True, "args": {k: str(v) for k, v in vars(args).items()}}
    table_path = args.data / "cell_lines" / f"scvi_cell_line_embeddings_{args.table_dims}.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        graph_path = Path(tmp) / "string_hetionet.npz"
        result["full_graph"] = write_real_graph(args.data / "kg", graph_path)
        graph = load_gene_graph(graph_path, args.genes, args.seed)
    lines = load_cell_line_descriptors(table_path, LINES)
    config = SynthConfig(
        cell_lines=LINES,
        gene_graph=graph,
        cell_line_descriptors=lines,
        line_specificity=args.line_specificity,
        graph_smoothing=args.graph_smoothing,
        size=args.size,
        seed=args.seed,
    )
    screen = SyntheticScreen(config)
    adj = graph.adjacency()
    n = len(graph.genes)
    result["graph"] = {
        "source": graph.source,
        "genes": n,
        "edges": len(graph.edges),
        "isolated": int((adj.sum(1) == 0).sum()),
        "modules": len(set(graph.modules)),
    }
    result["descriptors"] = {d.name: {"row": d.row, "source": d.source} for d in lines}

    # 1. the graph in the ground truth
    truth = {"phenotypes": linked_vs_unlinked(screen.phenotypes, adj)}
    for line in LINES:
        truth[f"effects_{line}"] = linked_vs_unlinked(screen.effects_matrix(line), adj)
    flat = SyntheticScreen(dataclasses.replace(config, graph_smoothing=0.0))
    truth["phenotypes_without_smoothing"] = linked_vs_unlinked(flat.phenotypes, adj)
    result["graph_signal_ground_truth"] = truth

    # 2. lines: all 55 of the table
    table = read_cell_line_table(table_path)
    names = list(table)
    every = descriptors_from_embeddings(table, names)
    w = screen._response_w
    log_resp = np.array([0.35 * w @ np.asarray(d.descriptor) for d in every])
    programs = expression_programs(graph, config.seed, config.graph_smoothing)
    s = config.line_specificity

    def effects(desc) -> np.ndarray:
        gate = 1 - s + s * gene_expression(programs, np.asarray(desc.descriptor)) if s else 1.0
        resp = desc.profile.response_gain * np.exp(0.35 * w @ np.asarray(desc.descriptor))
        return (screen.phenotypes * resp[None] * np.reshape(gate, (-1, 1))).ravel()

    eff = np.array([effects(d) for d in every])
    emb = np.array([table[x] for x in names], dtype=float)
    emb -= emb.mean(0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    pairs = np.triu_indices(len(names), 1)
    eff_corr = np.corrcoef(eff)
    loo_knn, loo_mean = [], []
    for i in range(len(names)):
        others = np.delete(np.arange(len(names)), i)
        near = others[np.argsort(-sim[i, others])[:5]]
        for store, pred in ((loo_knn, eff[near].mean(0)), (loo_mean, eff[others].mean(0))):
            store.append(1 - ((eff[i] - pred) ** 2).sum() / ((eff[i] - eff[i].mean()) ** 2).sum())
    idx = {x: names.index(x) for x in LINES}
    u = idx[DE_NOVO]
    pre = [idx[x] for x in PRETRAIN]
    weights = np.exp(sim[u, pre] / 0.1)
    weights /= weights.sum()

    def r2(pred: np.ndarray) -> float:
        return round(
            float(1 - ((eff[u] - pred) ** 2).sum() / ((eff[u] - eff[u].mean()) ** 2).sum()), 4
        )

    result["cell_lines_ground_truth"] = {
        "lines_in_table": len(names),
        "spearman_embedding_similarity_vs_log_response_correlation": round(
            float(spearmanr(sim[pairs], np.corrcoef(log_resp)[pairs])[0]), 4
        ),
        "spearman_embedding_similarity_vs_effect_correlation": round(
            float(spearmanr(sim[pairs], eff_corr[pairs])[0]), 4
        ),
        "leave_one_line_out_r2_5_nearest_by_embedding": round(float(np.mean(loo_knn)), 4),
        "leave_one_line_out_r2_mean_of_all_other_lines": round(float(np.mean(loo_mean)), 4),
        "de_novo": DE_NOVO,
        "embedding_cosine_to_pretraining_lines": {
            x: round(float(sim[u, idx[x]]), 4) for x in PRETRAIN
        },
        "effect_correlation_to_pretraining_lines": {
            x: round(float(eff_corr[u, idx[x]]), 4) for x in PRETRAIN
        },
        "effect_correlation_between_pretraining_lines": {
            f"{a}-{b}": round(float(eff_corr[idx[a], idx[b]]), 4)
            for i, a in enumerate(PRETRAIN)
            for b in PRETRAIN[i + 1 :]
        },
        "de_novo_r2_from_pretraining_mean": r2(eff[pre].mean(0)),
        "de_novo_r2_from_pretraining_weighted_by_embedding_similarity": r2(weights @ eff[pre]),
    }

    # 3. the images: per-gene profiles (z-scored against each line's control sites)
    t0 = time.perf_counter()
    wells = well_names()
    profiles, singles, rests = {}, {}, {}
    for line in LINES:
        control = np.array(
            [
                site_features(
                    screen.render_site(
                        line, CONTROL_GENE, 1, 1, wells[k % len(wells)], 1 + k // len(wells)
                    )
                )
                for k in range(args.controls)
            ]
        )
        mu, sd = control.mean(0), control.std(0) + 1e-6
        per_gene = np.empty((n, args.sites, mu.size))
        for g, gene in enumerate(graph.genes):
            for k in range(args.sites):
                well = wells[(g * args.sites + k) % len(wells)]
                per_gene[g, k] = (
                    site_features(screen.render_site(line, gene, 1, 1, well, 1 + k)) - mu
                ) / sd
        profiles[line] = per_gene.mean(1)
        singles[line] = per_gene[:, 0]
        rests[line] = per_gene[:, 1:].mean(1)
    render_s = time.perf_counter() - t0
    images = {
        "sites_rendered": len(LINES) * (n * args.sites + args.controls),
        "render_seconds": round(render_s, 1),
    }
    for line in LINES:
        images[f"profiles_{line}"] = linked_vs_unlinked(profiles[line], adj)
    images[f"few_labels_{DE_NOVO}"] = neighbour_pooling(singles[DE_NOVO], rests[DE_NOVO], adj)
    images[f"few_labels_{PRETRAIN[0]}"] = neighbour_pooling(
        singles[PRETRAIN[0]], rests[PRETRAIN[0]], adj
    )
    images["per_gene_profile_correlation_de_novo_vs_pretraining"] = {
        x: round(
            float(
                np.mean([np.corrcoef(profiles[DE_NOVO][g], profiles[x][g])[0, 1] for g in range(n)])
            ),
            4,
        )
        for x in PRETRAIN
    }
    images["per_gene_profile_correlation_between_pretraining_lines"] = {
        f"{a}-{b}": round(
            float(np.mean([np.corrcoef(profiles[a][g], profiles[b][g])[0, 1] for g in range(n)])), 4
        )
        for i, a in enumerate(PRETRAIN)
        for b in PRETRAIN[i + 1 :]
    }
    result["images"] = images
    result["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_file:
        tmp_file.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
