"""Zero-shot molecule → morphology retrieval on real data: CMEA U2OS, scaffold folds.

For each fold, the fold's CMEA compounds are held out of pretraining entirely (molecule
node, Cell Painting and L1000 profiles, target edges — by InChIKey-14, whatever source
brought them in; the graph is otherwise the shipped model's default one, without any
benchmark's target or mechanism edges), a model is pretrained with the shipped model's
recipe (`train.infoalign`, `torchrun`, 2 processes of one thread, bf16, batch 64,
10 epochs), and each held-out compound's measured profile is retrieved among all the
fold's held-out profiles.
Every scoring embedkit offers (InfoAlign's likelihood, cosine, centred and z-scored cosine,
CSLS, inverted softmax) is scored in the same run for: the pretrained model, the same
pipeline with an untrained encoder and decoders, an ECFP4 → features ridge regression
fitted on the other folds' CMEA compounds, and an L1000 → Cell Painting ridge fitted the
same way (the same compounds' L1000 profiles: a ceiling from the other modality, not a
molecule-only method). For each: HIT@1/@10, NDCG@1/@10 and mean rank beside chance, for all
compounds and for the active ones (their profile's RMS robust z-distance from the median of
all 100 profiles above 2), and hubness (distinct rank-1 hits, the most frequent rank-1
hit's share, k-occurrence skewness at k = 10) per fold. Which scoring is embedkit's default
is decided on these numbers (docs/retrieval.md §4).

    python benchmarks/bench_retrieval_cmea.py --data-dir ../shared/data            # train + eval
    python benchmarks/bench_retrieval_cmea.py --data-dir ../shared/data --stage eval

Trained fold models are kept in --work (resumable); results go to
benchmarks/results/retrieval_cmea.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir
from embedkit.evaluation.splits import scaffold_folds
from embedkit.retrieval.activity import ACTIVE_THRESHOLD, ActivityScale
from embedkit.retrieval.hubness import Hubness

RESULTS = Path(__file__).resolve().parent / "results"
CMEA = "profiles/cmea_u2os_morphology.parquet"
L1000 = "profiles/cmea_u2os_l1000.parquet"
KEY = "Metadata_InChIKey"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    p.add_argument("--work", type=Path, default=Path("runs/retrieval-cmea"))
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument(
        "--batch-size", type=int, default=64, help="global batch (the shipped model's recipe)"
    )
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes per fold")
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads for evaluation")
    p.add_argument("--out", type=Path, default=RESULTS / "retrieval_cmea.json")
    return p.parse_args(argv)


def fold_table(data_dir: Path, folds: int, seed: int) -> pd.DataFrame:
    table = pd.read_parquet(data_dir / CMEA)
    table["Fold"] = scaffold_folds(table["Metadata_SMILES"].tolist(), folds, seed)
    return table


def run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT)


def train_fold(table: pd.DataFrame, fold: int, args: argparse.Namespace, data_dir: Path) -> Path:
    """Held-out list → context graph without them → pretrained model folder (resumable)."""
    work = args.work / f"fold{fold}"
    model = work / "model"
    if (model / "model.safetensors").exists():
        return model
    work.mkdir(parents=True, exist_ok=True)
    held = work / "heldout.csv"
    table.loc[table.Fold == fold, ["Metadata_pert_id", KEY, "Metadata_SMILES"]].to_csv(
        held, index=False
    )
    graph = work / "context_graph.npz"
    log = work / "train.log"
    if not graph.exists():
        run(
            [
                sys.executable,
                "-m",
                "train.infoalign",
                "build-graph",
                "--data-dir",
                str(data_dir),
                "--out",
                str(graph),
                "--exclude-molecules",
                str(held),
            ],
            log,
        )
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc}",
    ]
    run(
        launcher
        + [
            "-m",
            "train.infoalign",
            "train",
            "--graph",
            str(graph),
            "--out",
            str(work),
            "--bf16",
            "--threads",
            "1",
            "--batch-size",
            str(args.batch_size),
            "--checkpoint-every",
            "50",
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--resume",
            "--license",
            "CC-BY-4.0",
        ],
        log,
    )
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    table = fold_table(data_dir, args.folds, args.seed)
    print(
        f"CMEA U2OS: {len(table)} compounds in {args.folds} scaffold folds of "
        f"{np.bincount(table.Fold).tolist()}",
        flush=True,
    )
    models = []
    for fold in range(args.folds):
        tick = time.perf_counter()
        if args.stage in ("all", "train"):
            models.append(train_fold(table, fold, args, data_dir))
            print(f"fold {fold}: model ready in {time.perf_counter() - tick:.0f} s", flush=True)
        else:
            models.append(args.work / f"fold{fold}" / "model")
    if args.stage == "train":
        return 0
    import torch

    torch.set_num_threads(args.threads)
    l1000 = pd.read_parquet(data_dir / L1000)
    if not (l1000[KEY].to_numpy() == table[KEY].to_numpy()).all():
        raise SystemExit(f"{L1000} rows are not aligned with {CMEA}")
    active = activity_of(table) > ACTIVE_THRESHOLD
    results: dict[str, list[FoldResult]] = {}
    for fold, model in enumerate(models):
        for method, result in evaluate_fold(table, l1000, fold, model, args.seed).items():
            results.setdefault(method, []).append(result)
            r = result.ranks
            print(
                f"fold {fold} {method:<36} mean rank {r.mean():5.1f} of {result.candidates:.0f}; "
                f"{result.hubness.distinct_top1} distinct rank-1, top share "
                f"{result.hubness.top1_share:.2f}",
                flush=True,
            )
    in_sample = in_sample_reference(table)
    report = summarize(results, active, in_sample, table, args)
    write_outputs(report, results, args.out)
    print(report["table_markdown"])
    print(report["hubness_markdown"])
    return 0


@dataclass
class FoldResult:
    """One method on one fold: the true profile's rank per held-out compound (in fold
    order), the fold's candidate count and the hubness of the fold's rankings."""

    ranks: np.ndarray
    candidates: int
    hubness: Hubness
    rows: np.ndarray  # the compounds' rows in the CMEA table


def activity_of(table: pd.DataFrame) -> np.ndarray:
    """RMS robust z-distance of each profile from the median of all of them (embedkit's
    Profile_Activity, fitted on the whole table so that every fold uses one scale)."""
    from embedkit.retrieval.spaces import profile_feature_columns

    values = table[profile_feature_columns(table.drop(columns=["Fold"]))].to_numpy(np.float64)
    return ActivityScale.fit(values).score(values)


def reference_smiles() -> list[str]:
    from embedkit.retrieval.reference import DEFAULT_REFERENCE

    return pd.read_csv(DEFAULT_REFERENCE)["smiles"].tolist()


def pipeline_results(embedder, held: pd.DataFrame, rows: np.ndarray) -> dict[str, FoldResult]:
    """embedkit's own path for every scoring: index the held-out profiles with the shipped
    reference molecules, rank each compound's own profile (`evaluate_ranks`)."""
    from embedkit.retrieval.index import build_index
    from embedkit.retrieval.jobs import evaluate_ranks
    from embedkit.retrieval.scoring import METRICS
    from embedkit.retrieval.search import decode_reference

    spaces = embedder.model.extra["feature_spaces"]
    reference = decode_reference(embedder, reference_smiles(), "embedkit:reference_molecules")
    out = {}
    for metric in METRICS:
        index, _ = build_index(
            held, spaces, embedder.run_info, CMEA, "cp_cmea_u2os", metric, reference=reference
        )
        ev = evaluate_ranks(held.Metadata_SMILES.tolist(), held[KEY].tolist(), index, embedder, KEY)
        if ev.skipped:
            raise SystemExit(f"{ev.skipped} held-out compounds could not be scored")
        out[metric] = FoldResult(ev.ranks, index.count, ev.hubness, rows)
    return out


def untrained_copy(model_dir: Path, out: Path, seed: int) -> Path:
    """Same config (and feature-space scaling), random weights: the baseline to beat."""
    import torch

    from embedkit.molecules.model import InfoAlignModel

    config = json.loads((model_dir / "config.json").read_text())
    torch.manual_seed(seed)
    model = InfoAlignModel.from_config(config)
    # BatchNorm statistics stay at their defaults, as in the property benchmark's baseline.
    return model.save_pretrained(out)


def logit(p: np.ndarray) -> np.ndarray:
    """Ridge predictions of scaled features as decoder-like logits (clipped to 1e-4)."""
    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def ridge_results(
    x_train: np.ndarray,
    x_held: np.ndarray,
    x_reference: np.ndarray,
    y_train: np.ndarray,
    y_held: np.ndarray,
    rows: np.ndarray,
) -> dict[str, FoldResult]:
    """A ridge regression to the scaled features, its predictions scored as decodings
    (σ⁻¹ of the clipped prediction) with every scoring; the reference molecules'
    predictions play the reference set."""
    from sklearn.linear_model import RidgeCV

    from embedkit.retrieval.hubness import hubness_from_scores
    from embedkit.retrieval.metrics import truth_ranks
    from embedkit.retrieval.scoring import METRICS, score_arrays

    fit = RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(x_train, y_train)
    pred, ref = logit(fit.predict(x_held)), logit(fit.predict(x_reference))
    out = {}
    for metric in METRICS:
        scores = score_arrays(pred, y_held, metric, ref)
        ranks = truth_ranks(scores, np.arange(len(y_held)))
        out[metric] = FoldResult(ranks, len(y_held), hubness_from_scores(scores), rows)
    return out


def evaluate_fold(
    table: pd.DataFrame, l1000: pd.DataFrame, fold: int, model_dir: Path, seed: int
) -> dict[str, FoldResult]:
    from embedkit.api import load
    from embedkit.evaluation.fingerprints import ecfp4
    from embedkit.retrieval.spaces import (
        match_feature_space,
        profile_feature_columns,
        scale_profiles,
    )

    rows = np.flatnonzero(table.Fold == fold)
    train_rows = np.flatnonzero(table.Fold != fold)
    held = table.iloc[rows].reset_index(drop=True)
    train = table.iloc[train_rows].reset_index(drop=True)
    pretrained = load(f"local-dir:{model_dir}", with_heads=True)
    out = {f"pretrained, {m}": r for m, r in pipeline_results(pretrained, held, rows).items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = untrained_copy(model_dir, Path(tmp) / "untrained", seed)
        untrained = load(f"local-dir:{folder}", with_heads=True)
        for m, r in pipeline_results(untrained, held, rows).items():
            out[f"untrained encoder, {m}"] = r
    spaces = pretrained.model.extra["feature_spaces"]
    space = match_feature_space(profile_feature_columns(table), spaces, "cp_cmea_u2os")
    y_train = scale_profiles(train[space.columns].to_numpy(np.float64), space)
    y_held = scale_profiles(held[space.columns].to_numpy(np.float64), space)
    x_train, _ = ecfp4(train.Metadata_SMILES.tolist())
    x_held, _ = ecfp4(held.Metadata_SMILES.tolist())
    x_ref, ok = ecfp4(reference_smiles())
    for m, r in ridge_results(x_train, x_held, x_ref[ok], y_train, y_held, rows).items():
        out[f"ECFP4 ridge, {m}"] = r
    genes = profile_feature_columns(l1000)
    l_train = l1000.iloc[train_rows][genes].to_numpy(np.float64)
    l_held = l1000.iloc[rows][genes].to_numpy(np.float64)
    # no L1000 profiles for the reference molecules: the training compounds play them
    for m, r in ridge_results(l_train, l_held, l_train, y_train, y_held, rows).items():
        out[f"L1000 ridge (ceiling), {m}"] = r
    return out


def in_sample_reference(table: pd.DataFrame) -> dict:
    """The shipped model on all 100 compounds, whose profiles it *was* trained on."""
    from embedkit.api import load
    from embedkit.cli.options import DEFAULT_MOLECULE_MODEL
    from embedkit.retrieval.metrics import retrieval_metrics

    shipped = load(DEFAULT_MOLECULE_MODEL, with_heads=True)
    rows = np.arange(len(table))
    results = pipeline_results(shipped, table.drop(columns=["Fold"]), rows)
    return {
        metric: {
            **retrieval_metrics(r.ranks, r.candidates).to_dict(),
            "hubness": r.hubness.to_dict(),
        }
        for metric, r in results.items()
    }


def fold_metrics(results: list[FoldResult], mask: np.ndarray | None = None) -> dict:
    from embedkit.retrieval.metrics import retrieval_metrics

    ranks, counts = [], []
    for r in results:
        keep = np.ones(len(r.ranks), bool) if mask is None else mask[r.rows]
        ranks.append(r.ranks[keep])
        counts.append(np.full(int(keep.sum()), r.candidates))
    return retrieval_metrics(np.concatenate(ranks), np.concatenate(counts)).to_dict()


def summarize(results, active, in_sample, table, args) -> dict:
    metrics = {m: fold_metrics(r) for m, r in results.items()}
    active_metrics = {m: fold_metrics(r, active) for m, r in results.items()}
    hubness = {
        m: {
            "per_fold": [x.hubness.to_dict() for x in r],
            "distinct_top1_mean": float(np.mean([x.hubness.distinct_top1 for x in r])),
            "top1_share_mean": float(np.mean([x.hubness.top1_share for x in r])),
            "k_occurrence_skewness_mean": float(
                np.mean([x.hubness.k_occurrence_skewness for x in r])
            ),
        }
        for m, r in results.items()
    }
    per_fold_ndcg10 = {m: [fold_metrics([x])["ndcg_10"] for x in r] for m, r in results.items()}
    first, first_active = next(iter(metrics.values())), next(iter(active_metrics.values()))
    lines = [
        "| method | HIT@1 % | HIT@10 % | NDCG@10 % | mean rank | active HIT@10 % | "
        "active NDCG@10 % | active mean rank |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| chance | {first['chance_hit_1']:.1f} | {first['chance_hit_10']:.1f} | "
        f"{first['chance_ndcg_10']:.1f} | {first['chance_mean_rank']:.1f} | "
        f"{first_active['chance_hit_10']:.1f} | {first_active['chance_ndcg_10']:.1f} | "
        f"{first_active['chance_mean_rank']:.1f} |",
    ]
    for name, m in metrics.items():
        a = active_metrics[name]
        lines.append(
            f"| {name} | {m['hit_1']:.1f} | {m['hit_10']:.1f} | {m['ndcg_10']:.1f} | "
            f"{m['mean_rank']:.1f} | {a['hit_10']:.1f} | {a['ndcg_10']:.1f} | "
            f"{a['mean_rank']:.1f} |"
        )
    hub_lines = [
        "| method | distinct rank-1 (of ~33) | top rank-1 share | k-occurrence skewness | "
        "NDCG@10 % per fold |",
        "|---|---:|---:|---:|---|",
    ]
    for name, h in hubness.items():
        folds = " / ".join(f"{v:.1f}" for v in per_fold_ndcg10[name])
        hub_lines.append(
            f"| {name} | {h['distinct_top1_mean']:.1f} | {h['top1_share_mean']:.2f} | "
            f"{h['k_occurrence_skewness_mean']:.2f} | {folds} |"
        )
    return {
        "dataset": f"{CMEA} ({len(table)} compounds, U2OS)",
        "protocol": (
            f"{args.folds} Murcko-scaffold folds; each fold's compounds held out of "
            f"pretraining ({args.epochs} epochs of batch {args.batch_size}, bf16, "
            f"{args.nproc} gloo processes of one thread: the shipped model's recipe); "
            "candidates = the fold's held-out profiles; reference molecules = the 1,000 "
            "LINCS compounds shipped with embedkit (the 100 CMEA compounds are not among "
            "them); ridge baselines fitted on the other folds, their reference = ECFP4 "
            "ridge: the same 1,000 molecules, L1000 ridge: the training compounds"
        ),
        "active_definition": (
            f"RMS robust z-distance of the compound's profile from the median of all "
            f"{len(table)} profiles > {ACTIVE_THRESHOLD:g}"
        ),
        "active_compounds": int(active.sum()),
        "folds": np.bincount(table.Fold).tolist(),
        "metrics": metrics,
        "metrics_active": active_metrics,
        "hubness": hubness,
        "ndcg_10_per_fold": per_fold_ndcg10,
        "ranks_per_fold": {m: [x.ranks.tolist() for x in r] for m, r in results.items()},
        "in_sample_shipped_model_not_zero_shot": in_sample,
        "table_markdown": "\n".join(lines),
        "hubness_markdown": "\n".join(hub_lines),
    }


def write_outputs(report: dict, results: dict, out: Path) -> None:
    from embedkit.io import atomic_path
    from embedkit.retrieval.metrics import plot_rank_histogram
    from embedkit.retrieval.scoring import DEFAULT_METRIC

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    shown = [
        "pretrained, likelihood",
        f"pretrained, {DEFAULT_METRIC}",
        f"ECFP4 ridge, {DEFAULT_METRIC}",
        f"L1000 ridge (ceiling), {DEFAULT_METRIC}",
    ]
    plot_rank_histogram(
        {m: np.concatenate([r.ranks for r in results[m]]) for m in shown if m in results},
        int(max(report["folds"])),
        out.with_suffix(".png"),
        "CMEA U2OS zero-shot, scaffold folds",
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
