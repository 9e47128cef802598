"""Zero-shot molecule → morphology retrieval on real data: CMEA U2OS, scaffold folds.

For each fold, the fold's CMEA compounds are held out of pretraining entirely (molecule
node, Cell Painting and L1000 profiles, target edges — by InChIKey-14, whatever source
brought them in; ChEMBL2K stays excluded as for the shipped model), a model is pretrained
with the project's own recipe (`train.infoalign`, `torchrun`, 2 processes), and each
held-out compound's measured profile is retrieved among all the fold's held-out profiles.
Scored in the same run: the pretrained model (InfoAlign likelihood, as the paper, and
the other scorings embedkit offers), the same pipeline with an untrained encoder and
decoders, and an ECFP4 → features ridge regression fitted on the other folds' CMEA
compounds. Chance is printed beside every metric.

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
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir
from embedkit.evaluation.splits import scaffold_folds

RESULTS = Path(__file__).resolve().parent / "results"
CMEA = "profiles/cmea_u2os_morphology.parquet"
KEY = "Metadata_InChIKey"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    p.add_argument("--work", type=Path, default=Path("runs/retrieval-cmea"))
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes per fold")
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all")
    p.add_argument("--seed", type=int, default=0)
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
                "--exclude-benchmark",
                "chembl2k",
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
    ranks: dict[str, list[np.ndarray]] = {}
    counts: dict[str, list[np.ndarray]] = {}
    for fold, model in enumerate(models):
        for method, (r, n) in evaluate_fold(table, fold, model, args.seed).items():
            ranks.setdefault(method, []).append(r)
            counts.setdefault(method, []).append(n)
            print(f"fold {fold} {method:<34} mean rank {r.mean():5.1f} of {n.mean():.0f}")
    in_sample = in_sample_reference(table)
    report = summarize(ranks, counts, in_sample, table, args)
    write_outputs(report, ranks, args.out)
    print(report["table_markdown"])
    return 0


def pipeline_ranks(embedder, held: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """embedkit's own path: index the held-out profiles, rank each compound's own profile."""
    from embedkit.retrieval.index import build_index
    from embedkit.retrieval.jobs import evaluate_ranks

    spaces = embedder.model.extra["feature_spaces"]
    index, _ = build_index(held, spaces, embedder.run_info, CMEA, "cp_cmea_u2os", metric)
    ev = evaluate_ranks(held.Metadata_SMILES.tolist(), held[KEY].tolist(), index, embedder, KEY)
    return ev.ranks, np.full(len(ev.ranks), index.count)


def untrained_copy(model_dir: Path, out: Path, seed: int) -> Path:
    """Same config (and feature-space scaling), random weights: the baseline to beat."""
    import torch

    from embedkit.molecules.model import InfoAlignModel

    config = json.loads((model_dir / "config.json").read_text())
    torch.manual_seed(seed)
    model = InfoAlignModel.from_config(config)
    # BatchNorm statistics stay at their defaults, as in the property benchmark's baseline.
    return model.save_pretrained(out)


def ridge_ranks(
    train: pd.DataFrame, held: pd.DataFrame, space
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ECFP4 → scaled features ridge regression fitted on the other folds' compounds."""
    from sklearn.linear_model import RidgeCV

    from embedkit.evaluation.fingerprints import ecfp4
    from embedkit.retrieval.metrics import truth_ranks
    from embedkit.retrieval.scoring import l2_normalize
    from embedkit.retrieval.spaces import scale_profiles

    x_train, _ = ecfp4(train.Metadata_SMILES.tolist())
    x_held, _ = ecfp4(held.Metadata_SMILES.tolist())
    y_train = scale_profiles(train[space.columns].to_numpy(np.float64), space)
    y_held = scale_profiles(held[space.columns].to_numpy(np.float64), space)
    fit = RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(x_train, y_train)
    pred = fit.predict(x_held).astype(np.float32)
    truth = np.arange(len(held))
    n = np.full(len(held), len(held))
    cosine = l2_normalize(pred) @ l2_normalize(y_held).T
    sq = -((pred[:, None, :] - y_held[None, :, :]) ** 2).sum(axis=2)
    return {
        "ECFP4 ridge, cosine": (truth_ranks(cosine, truth), n),
        "ECFP4 ridge, -L2 (Gaussian likelihood)": (truth_ranks(sq, truth), n),
    }


def evaluate_fold(
    table: pd.DataFrame, fold: int, model_dir: Path, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from embedkit.api import load
    from embedkit.retrieval.spaces import match_feature_space, profile_feature_columns

    held = table[table.Fold == fold].reset_index(drop=True)
    train = table[table.Fold != fold].reset_index(drop=True)
    pretrained = load(f"local-dir:{model_dir}", with_heads=True)
    out = {
        "pretrained, likelihood (paper)": pipeline_ranks(pretrained, held, "likelihood"),
        "pretrained, cosine": pipeline_ranks(pretrained, held, "cosine"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = untrained_copy(model_dir, Path(tmp) / "untrained", seed)
        untrained = load(f"local-dir:{folder}", with_heads=True)
        out["untrained encoder, likelihood"] = pipeline_ranks(untrained, held, "likelihood")
        out["untrained encoder, cosine"] = pipeline_ranks(untrained, held, "cosine")
    spaces = pretrained.model.extra["feature_spaces"]
    space = match_feature_space(profile_feature_columns(table), spaces, "cp_cmea_u2os")
    out.update(ridge_ranks(train, held, space))
    return out


def in_sample_reference(table: pd.DataFrame) -> dict:
    """The shipped model on all 100 compounds, whose profiles it *was* trained on."""
    from embedkit.api import load
    from embedkit.cli.options import DEFAULT_MOLECULE_MODEL
    from embedkit.retrieval.metrics import retrieval_metrics

    shipped = load(DEFAULT_MOLECULE_MODEL, with_heads=True)
    return {
        metric: retrieval_metrics(*pipeline_ranks(shipped, table, metric)).to_dict()
        for metric in ("likelihood", "cosine")
    }


def summarize(ranks, counts, in_sample, table, args) -> dict:
    from embedkit.retrieval.metrics import retrieval_metrics

    metrics = {
        m: retrieval_metrics(np.concatenate(ranks[m]), np.concatenate(counts[m])).to_dict()
        for m in ranks
    }
    first = next(iter(metrics.values()))
    lines = [
        "| method | HIT@1 % | HIT@10 % | NDCG@1 % | NDCG@10 % | mean rank |",
        "|---|---:|---:|---:|---:|---:|",
        f"| chance | {first['chance_hit_1']:.1f} | {first['chance_hit_10']:.1f} | "
        f"{first['chance_ndcg_1']:.1f} | {first['chance_ndcg_10']:.1f} | "
        f"{first['chance_mean_rank']:.1f} |",
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | {m['hit_1']:.1f} | {m['hit_10']:.1f} | {m['ndcg_1']:.1f} | "
            f"{m['ndcg_10']:.1f} | {m['mean_rank']:.1f} |"
        )
    return {
        "dataset": f"{CMEA} ({len(table)} compounds, U2OS)",
        "protocol": (
            f"{args.folds} Murcko-scaffold folds; each fold's compounds held out of "
            f"pretraining ({args.epochs} epochs, bf16, {args.nproc} gloo processes); "
            "candidates = the fold's held-out profiles"
        ),
        "folds": np.bincount(table.Fold).tolist(),
        "metrics": metrics,
        "in_sample_shipped_model_not_zero_shot": in_sample,
        "table_markdown": "\n".join(lines),
    }


def write_outputs(report: dict, ranks: dict, out: Path) -> None:
    from embedkit.io import atomic_path
    from embedkit.retrieval.metrics import plot_rank_histogram

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    shown = [
        "pretrained, likelihood (paper)",
        "untrained encoder, likelihood",
        "ECFP4 ridge, cosine",
    ]
    plot_rank_histogram(
        {m: np.concatenate(ranks[m]) for m in shown if m in ranks},
        int(max(report["folds"])),
        out.with_suffix(".png"),
        "CMEA U2OS zero-shot, scaffold folds",
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
