"""`evaluate_property`: several featurizers x several runs on one benchmark -> a table.

Two protocols, both in one call when asked:

* **per-seed** (`seeds`): each seed is a different scaffold split *and* a different head
  initialization (and random-init weights): the spread includes the split's luck.
* **fixed-split** (`fixed_split_runs`): the paper's protocol, N runs on one scaffold split
  (`fixed_split_seed`), each run a different head initialization (and random-init weights).

Rows whose SMILES any method cannot featurize are dropped for every method, so all methods
are scored on identical molecules and splits. Classification rows also give the share of
scorable tasks whose test ROC-AUC is ≥ 0.80 / 0.85 / 0.90 (the reference's "success"
fractions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from embedkit.evaluation.datasets import PropertyDataset, resolve_dataset
from embedkit.evaluation.fingerprints import ecfp4
from embedkit.evaluation.metrics import METRIC_NAMES, per_task_roc_auc
from embedkit.evaluation.probe import (
    HeadResult,
    ProbeConfig,
    fit_mlp_probe,
    fit_random_forest,
)
from embedkit.evaluation.splits import scaffold_groups, scaffold_split
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel

logger = logging.getLogger(__name__)

# (smiles, seed) -> (features (n, d) with NaN rows, valid mask)
Featurizer = Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]]

PER_SEED, FIXED_SPLIT = "per-seed", "fixed-split"
AUC_LEVELS = (80, 85, 90)
RESULT_COLUMNS = [
    "dataset",
    "protocol",
    "method",
    "head",
    "seed",
    "split_seed",
    "metric",
    "test_score",
    *[f"tasks_auc_ge_{level}" for level in AUC_LEVELS],
    "n_scored_tasks",
    "valid_score",
    "best_epoch",
    "n_train",
    "n_valid",
    "n_test",
    "n_tasks",
    "n_dropped",
    "feature_dim",
    "featurize_s",
    "fit_s",
]


@dataclass
class Method:
    """A featurizer plus a head ("mlp" or "rf")."""

    name: str
    featurize: Featurizer
    head: str = "mlp"
    features_key: str = ""  # methods sharing a key share features (ECFP for MLP and RF)
    seed_dependent: bool = False  # features change with the seed (a random-init encoder)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head not in ("mlp", "rf"):
            raise ValueError(f"{self.name}: head must be 'mlp' or 'rf', got {self.head!r}")
        self.features_key = self.features_key or self.name


def embedder_method(
    name: str, embedder: MoleculeEmbedder, batch_size: int = 256, head: str = "mlp"
) -> Method:
    """Frozen embeddings from a loaded model (the embedding is the VIB mean)."""

    def featurize(smiles: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
        return embedder.embed_smiles(list(smiles), batch_size=batch_size)

    return Method(name, featurize, head, info=dict(embedder.run_info))


def random_init_method(
    name: str = "random-init",
    like: MoleculeEmbedder | None = None,
    precision: str = "fp32",
    batch_size: int = 256,
) -> Method:
    """The same architecture with random weights, re-drawn for every seed.

    A pretrained encoder has to beat this to claim that pretraining, not the architecture,
    carries the signal.
    """
    config = like.model.encoder.config if like is not None else GINConfig()

    def featurize(smiles: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
        torch.manual_seed(seed)
        model = InfoAlignModel(GINConfig(**config.to_dict()))
        embedder = MoleculeEmbedder(
            model, {"model_id": "random-init"}, device="cpu", precision=precision
        )
        return embedder.embed_smiles(list(smiles), batch_size=batch_size)

    return Method(name, featurize, "mlp", seed_dependent=True, info={"model_id": "random-init"})


def ecfp_methods(heads: Sequence[str] = ("mlp", "rf"), n_bits: int = 2048) -> list[Method]:
    """ECFP4 with each head; the fingerprints are computed once and shared."""

    def featurize(smiles: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
        return ecfp4(smiles, n_bits=n_bits)

    return [
        Method(f"ecfp4-{head}", featurize, head, features_key="ecfp4", info={"n_bits": n_bits})
        for head in heads
    ]


def subsample(dataset: PropertyDataset, n: int | None, seed: int = 12345) -> PropertyDataset:
    """A fixed random subset of `n` molecules (the same for every method and seed)."""
    if n is None or n >= len(dataset):
        return dataset
    index = np.sort(np.random.default_rng(seed).choice(len(dataset), n, replace=False))
    return dataset.subset(index)


def _featurize_all(
    methods: Sequence[Method], smiles: list[str], seeds: Sequence[int]
) -> tuple[dict[tuple[str, int | None], np.ndarray], np.ndarray, dict[str, float]]:
    features: dict[tuple[str, int | None], np.ndarray] = {}
    seconds: dict[str, float] = {}
    valid = np.ones(len(smiles), dtype=bool)
    for method in methods:
        for seed in seeds if method.seed_dependent else [None]:
            key = (method.features_key, seed)
            if key in features:
                continue
            start = time.perf_counter()
            x, ok = method.featurize(smiles, 0 if seed is None else seed)
            seconds[method.features_key] = seconds.get(method.features_key, 0.0) + (
                time.perf_counter() - start
            )
            features[key] = np.asarray(x, dtype=np.float32)
            valid &= np.asarray(ok, dtype=bool)
            logger.info("featurized %s (seed %s): %.1fs", key[0], seed, seconds[key[0]])
    return features, valid, seconds


def _fit(
    head: str,
    arrays: list[np.ndarray],
    task_type: str,
    seed: int,
    probe: ProbeConfig | None,
    rf_trees: int,
    in_worker: bool,
) -> tuple[HeadResult, float]:
    """One (method, seed) fit; a worker process runs it on one thread."""
    if in_worker:
        torch.set_num_threads(1)
    start = time.perf_counter()
    if head == "mlp":
        result = fit_mlp_probe(*arrays, task_type, seed, config=probe)
    else:
        result = fit_random_forest(*arrays, task_type, seed, n_estimators=rf_trees, n_jobs=1)
    return result, time.perf_counter() - start


def task_shares(task_type: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """% of scorable tasks with test ROC-AUC ≥ each level (NaN for regression)."""
    keys = [f"tasks_auc_ge_{level}" for level in AUC_LEVELS]
    if task_type != "classification":
        return {**dict.fromkeys(keys, float("nan")), "n_scored_tasks": 0}
    auc = per_task_roc_auc(y_true, y_pred)
    scored = auc[np.isfinite(auc)]
    if not len(scored):
        return {**dict.fromkeys(keys, float("nan")), "n_scored_tasks": 0}
    shares = {
        k: 100.0 * float((scored >= lv / 100).mean())
        for k, lv in zip(keys, AUC_LEVELS, strict=True)
    }
    return {**shares, "n_scored_tasks": int(len(scored))}


def evaluate_property(
    dataset: str | Path | PropertyDataset,
    methods: Sequence[Method],
    seeds: Sequence[int] = (0, 1, 2),
    data_dir: str | Path | None = None,
    probe: ProbeConfig | None = None,
    max_molecules: int | None = None,
    rf_trees: int = 200,
    n_jobs: int = 1,
    fixed_split_runs: int = 0,
    fixed_split_seed: int = 0,
) -> pd.DataFrame:
    """Score every method on every run; one row per (protocol, method, run).

    `dataset` is a benchmark name, an assay file path or a loaded dataset. Scores are in
    the paper's units: ROC-AUC in % (classification, higher better) or MAE x100
    (regression, lower better), taken on test at the best validation epoch. `seeds` are the
    per-seed-split runs, `fixed_split_runs` the runs on split `fixed_split_seed`.
    `n_jobs` > 1 runs that many single-threaded fits in parallel processes, which uses
    cores better than threads inside one small fit; results do not depend on it.
    """
    if not isinstance(dataset, PropertyDataset):
        dataset = resolve_dataset(dataset, data_dir)
    dataset = subsample(dataset, max_molecules)
    runs = [(PER_SEED, s, s) for s in seeds]
    runs += [(FIXED_SPLIT, fixed_split_seed, r) for r in range(fixed_split_runs)]
    if not runs:
        raise ValueError("nothing to run: no seeds and no fixed-split runs")
    run_seeds = list(dict.fromkeys(r for _, _, r in runs))
    features, valid, seconds = _featurize_all(methods, dataset.smiles, run_seeds)
    keep = np.flatnonzero(valid)
    n_dropped = len(dataset) - len(keep)
    if n_dropped:
        logger.info("%s: dropped %d unfeaturizable rows", dataset.name, n_dropped)
    kept = dataset.subset(keep)
    groups = scaffold_groups(kept.smiles)
    splits = {
        s: scaffold_split(kept.smiles, s, groups=groups)
        for s in dict.fromkeys(s for _, s, _ in runs)
    }
    # forests are the slowest fits: start them first so parallel workers finish together
    jobs = sorted(((run, m) for run in runs for m in methods), key=lambda job: job[1].head != "rf")

    def x_of(method: Method, seed: int) -> np.ndarray:
        return features[(method.features_key, seed if method.seed_dependent else None)]

    def arrays(run: tuple[str, int, int], method: Method) -> list[np.ndarray]:
        _, split_seed, seed = run
        x = x_of(method, seed)[keep]
        y, split = kept.labels, splits[split_seed]
        return [
            x[split.train],
            y[split.train],
            x[split.valid],
            y[split.valid],
            x[split.test],
            y[split.test],
        ]

    outputs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit)(m.head, arrays(run, m), kept.task_type, run[2], probe, rf_trees, n_jobs != 1)
        for run, m in jobs
    )
    rows = []
    for (run, method), (result, fit_s) in zip(jobs, outputs, strict=True):
        protocol, split_seed, seed = run
        split = splits[split_seed]
        logger.info(
            "%s %s seed %d %s: test %.2f valid %.2f (%.1fs)",
            dataset.name,
            protocol,
            seed,
            method.name,
            result.test_score,
            result.valid_score,
            fit_s,
        )
        rows.append(
            {
                "dataset": dataset.name,
                "protocol": protocol,
                "method": method.name,
                "head": method.head,
                "seed": seed,
                "split_seed": split_seed,
                "metric": METRIC_NAMES[kept.task_type],
                "test_score": result.test_score,
                **task_shares(kept.task_type, kept.labels[split.test], result.test_pred),
                "valid_score": result.valid_score,
                "best_epoch": result.best_epoch,
                "n_train": len(split.train),
                "n_valid": len(split.valid),
                "n_test": len(split.test),
                "n_tasks": kept.labels.shape[1],
                "n_dropped": n_dropped,
                "feature_dim": x_of(method, seed).shape[1],
                "featurize_s": seconds[method.features_key],
                "fit_s": fit_s,
            }
        )
    order = {m.name: i for i, m in enumerate(methods)}
    run_order = {run: i for i, run in enumerate(runs)}
    rows.sort(
        key=lambda row: (
            run_order[(row["protocol"], row["split_seed"], row["seed"])],
            order[row["method"]],
        )
    )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
