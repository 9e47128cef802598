"""How much cellular signal the context graph gives the encoder, and what more of it buys.

Two measurements, both on the real files of a data folder:

1. **Walk signal** (cheap, no training): for graphs keeping a share of the profile nodes
   (`--fractions`), the α-weighted share of walk positions 1..4 that land on a node with
   features of each space, over every molecule (walks as in training: 4 uniform steps, α =
   the cumulative product of edge weights). It is the share of the loss's targets that are
   not the molecule's own fingerprint or its neighbours' fingerprints.
2. **Learning curve** (`--train-steps N`): for each fraction, pretrain N steps (optionally
   from `--init-from`), then score the model with `embedkit evaluate property`'s report
   beside random-init and ECFP4 (`--eval-*` settings). Slow on a CPU: hours for a
   meaningful curve.

    python benchmarks/bench_pretrain_curve.py --data-dir ../shared/data --work /tmp/curve
    python benchmarks/bench_pretrain_curve.py --data-dir ../shared/data --work /tmp/curve \\
        --train-steps 2000 --fractions 0,0.25,0.5,1 --eval-datasets biogenadme
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `train/` runs from a checkout (it is not in the wheel)
    sys.path.insert(0, str(REPO))


def walk_signal(graph, walks_per_molecule: int = 4, length: int = 4, seed: int = 0) -> dict:
    """α-weighted share of walk positions 1..length on nodes of each feature space."""
    from train.walks import CSRGraph, random_walks

    csr = CSRGraph.from_edges(graph.src, graph.dst, graph.weight, graph.num_nodes)
    generator = torch.Generator().manual_seed(seed)
    start = torch.arange(graph.num_molecules).repeat(walks_per_molecule)
    nodes, alpha = random_walks(csr, start, length, generator)
    nodes, alpha = nodes[:, 1:].numpy(), alpha[:, 1:].numpy()
    total = float(alpha.sum())
    out = {"alpha_mass_per_walk": total / len(start)}
    for name, space in graph.spaces.items():
        has = np.zeros(graph.num_nodes + 1, bool)
        has[:-1] = space.node_rows >= 0
        hit = has[np.where(nodes >= 0, nodes, graph.num_nodes)]
        out[name] = {
            "alpha_share": float((alpha * hit).sum() / total) if total else 0.0,
            "molecules_reaching": float(
                hit.reshape(walks_per_molecule, -1, length).any(axis=(0, 2)).mean()
            ),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--work", type=Path, required=True, help="graphs, runs and models go here")
    p.add_argument("--fractions", default="0.25,0.5,1", help="profile shares (default %(default)s)")
    p.add_argument(
        "--first-graph", action="store_true", help="also the first shipped model's graph"
    )
    p.add_argument("--train-steps", type=int, default=0, help="0: walk signal only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--init-from", default=None, help="start every run from this model")
    p.add_argument("--eval-datasets", default="chembl2k,broad6k,biogenadme")
    p.add_argument("--eval-runs", type=int, default=10, help="fixed-split runs")
    p.add_argument("--out", type=Path, default=RESULTS / "pretrain_curve.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from train.context_graph import ContextGraph, GraphConfig, build_context_graph

    points = []
    if args.first_graph:  # the rules the first shipped model was trained with
        first = GraphConfig(
            keep_eval_annotations=True,
            all_compounds=False,
            moa_edges=False,
            gene_features=False,
            molecule_similarity="cosine",
            exclude_benchmarks=("chembl2k",),
        )
        path = args.work / "graph_first.npz"
        if not path.exists():
            build_context_graph(args.data_dir, first).save(path)
        graph = ContextGraph.load(path)
        signal = walk_signal(graph)
        print(f"first graph: {json.dumps(signal)}", flush=True)
        points.append({"graph": "first", "summary": graph.summary(), "walk_signal": signal})
    for fraction in [float(f) for f in args.fractions.split(",")]:
        config = GraphConfig(profile_fraction=fraction)
        path = args.work / f"graph_{fraction:g}.npz"
        if not path.exists():
            build_context_graph(args.data_dir, config).save(path)
        graph = ContextGraph.load(path)
        point = {
            "graph": "default",
            "profile_fraction": fraction,
            "summary": graph.summary(),
            "walk_signal": walk_signal(graph),
        }
        print(f"fraction {fraction:g}: {json.dumps(point['walk_signal'])}", flush=True)
        if args.train_steps:
            point["evaluation"] = _train_and_score(args, path, fraction)
        points.append(point)

    from embedkit.evaluation.report import write_report

    write_report(
        {
            "benchmark": "pretrain_curve",
            "config": vars(args) | {"work": str(args.work), "out": str(args.out)},
            "points": points,
        },
        args.out,
    )
    print(f"wrote {args.out}")
    return 0


def _train_and_score(args, graph_path: Path, fraction: float) -> dict:
    from embedkit.evaluation.report import run_property_report
    from train.infoalign import run_training
    from train.trainer import TrainConfig

    out = args.work / f"run_{fraction:g}"
    cfg = TrainConfig(
        batch_size=args.batch_size,
        epochs=10_000,
        max_steps=args.train_steps,
        bf16=True,
        init_from=args.init_from,
    )
    tick = time.perf_counter()
    folder = run_training(cfg, out, graph_path, resume=(out / "checkpoint.pt").exists(), threads=1)
    seconds = time.perf_counter() - tick
    report = run_property_report(
        f"local-dir:{folder}",
        args.data_dir,
        args.eval_datasets.split(","),
        protocol="fixed-split",
        fixed_split_runs=args.eval_runs,
        forest=False,
        jobs=1,
    )
    return {
        "train_seconds": round(seconds, 1),
        "summary": report["summary"],
        "margins": report["margins"],
    }


if __name__ == "__main__":
    sys.exit(main())
