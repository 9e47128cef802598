"""How much cellular signal the context graph gives the encoder, and what more of it buys.

Two measurements, both on the real files of a data folder:

1. **Walk signal** (cheap, no training): for graphs keeping a share of the profile nodes
   (`--fractions`), the α-weighted share of walk positions 1..4 that land on a node with
   features of each space, over every molecule (walks as in training: 4 uniform steps, α =
   the cumulative product of edge weights). It is the share of the loss's targets that are
   not the molecule's own fingerprint or its neighbours' fingerprints.
2. **Learning curve** (`--train-steps N`, rounded to whole epochs): for each fraction,
   pretrain N steps from scratch (or from `--init-from`) with the paper's optimiser, the
   cosine schedule planned over those steps; then score every fraction's model in **one**
   property report, beside random-init and ECFP4 (`--eval-*` settings), so all rows share
   splits and baselines.
   Training resumes from its checkpoint; `--no-score` only trains (run fractions in
   parallel processes), `--score-only` scores the models already in `--work`.

    python benchmarks/bench_pretrain_curve.py --data-dir ../shared/data --work /tmp/curve
    python benchmarks/bench_pretrain_curve.py --data-dir ../shared/data --work /tmp/curve \\
        --train-steps 1500 --fractions 0,0.5,1 --eval-datasets chembl2k,biogenadme
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
    p.add_argument("--eval-jobs", type=int, default=2, help="parallel probe fits")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--no-score", action="store_true", help="train only")
    p.add_argument("--score-only", action="store_true", help="score the trained models in --work")
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
        if args.train_steps and not args.score_only:
            point["train"] = _train(args, path, fraction)
        elif args.score_only:  # trained earlier (e.g. in parallel processes): its losses
            metrics = _run_dir(args, fraction) / "metrics.jsonl"
            point["train"] = {"held_out_loss": _last_validation(metrics)}
        points.append(point)
    if (args.train_steps or args.score_only) and not args.no_score:
        evaluation = _score(args, [p for p in points if "profile_fraction" in p])
        for point in points:
            point["evaluation"] = evaluation.get(point.get("model_id"))
        curve = {"table_markdown": evaluation.pop("table_markdown"), **evaluation.pop("_report")}
    else:
        curve = None

    from embedkit.evaluation.report import write_report

    write_report(
        {
            "benchmark": "pretrain_curve",
            "config": vars(args) | {"work": str(args.work), "out": str(args.out)},
            "points": points,
            "report": curve,
        },
        args.out,
    )
    print(f"wrote {args.out}")
    return 0


def _run_dir(args, fraction: float) -> Path:
    return args.work / f"run_{fraction:g}"


def _train(args, graph_path: Path, fraction: float) -> dict:
    """Pretrain one fraction's model (resumable); the schedule ends at `--train-steps`."""
    from train.context_graph import ContextGraph
    from train.infoalign import run_training
    from train.trainer import TrainConfig

    graph = ContextGraph.load(graph_path)
    cfg = TrainConfig(batch_size=args.batch_size, seed=args.seed, bf16=True)
    train_molecules = graph.num_molecules * (1 - cfg.val_fraction)
    steps_per_epoch = max(int(train_molecules // args.batch_size), 1)
    cfg.epochs = max(round(args.train_steps / steps_per_epoch), 1)  # whole epochs: each
    # ends with the held-out losses, and the schedule ends where training does
    cfg.init_from = args.init_from
    out = _run_dir(args, fraction)
    tick = time.perf_counter()
    run_training(
        cfg, out, graph_path, resume=(out / "checkpoint.pt").exists(), threads=args.threads
    )
    return {
        "train_seconds": round(time.perf_counter() - tick, 1),
        "steps": cfg.epochs * steps_per_epoch,
        "epochs": cfg.epochs,
        "batch_size": args.batch_size,
        "held_out_loss": _last_validation(out / "metrics.jsonl"),
    }


def _last_validation(metrics: Path) -> dict:
    """The held-out reconstruction losses of the last epoch record (per feature space)."""
    if not metrics.exists():
        return {}
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    last = next((r for r in reversed(records) if "val_loss" in r), {})
    return {k[4:]: round(v, 4) for k, v in last.items() if k.startswith("val_")}


def _score(args, points: list[dict]) -> dict:
    """One property report over every fraction's model: shared splits, baselines once."""
    from embedkit.evaluation.report import run_property_report

    models = []
    for point in points:
        folder = _run_dir(args, point["profile_fraction"]) / "model"
        if not folder.exists():
            raise SystemExit(f"error: no trained model in {folder}; train it first")
        point["model_id"] = f"local-dir:{folder}"
        models.append(point["model_id"])
    report = run_property_report(
        models[0],
        args.data_dir,
        args.eval_datasets.split(","),
        protocol="fixed-split",
        fixed_split_runs=args.eval_runs,
        forest=False,
        jobs=args.eval_jobs,
        extra_models=models[1:],
    )
    infos = [report["model"], *report["extra_models"]]  # in the order the models were given
    # every run folder ends in ".../model", which portable provenance paths would collapse
    # into one name: label each model by its profile share instead
    labels = {
        str(info.get("model_id", model)): f"profiles {point['profile_fraction']:g}"
        for model, info, point in zip(models, infos, points, strict=True)
    }
    table = report["table_markdown"]
    for name, label in labels.items():
        table = table.replace(f"| {name} |", f"| {label} |")
    summary = [{**r, "method": labels.get(r["method"], r["method"])} for r in report["summary"]]
    margins = [{**m, "model": labels.get(m["model"], m["model"])} for m in report["margins"]]
    print(table, flush=True)
    by_model = {}
    for point in points:
        label = f"profiles {point['profile_fraction']:g}"
        point["model_id"] = label
        by_model[label] = {
            "rows": [r for r in summary if r["method"] == label],
            "margins": [m for m in margins if m["model"] == label],
        }
    by_model["table_markdown"] = table
    by_model["_report"] = {"summary": summary, "margins": margins}
    return by_model


if __name__ == "__main__":
    sys.exit(main())
