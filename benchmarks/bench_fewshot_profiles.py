"""Few-shot profile classification on real data: adapt from CMEA U2OS to a LINCS A549 plate.

Pretraining (source): the CMEA U2OS consensus profiles (100 compounds, one row each, 812
CellProfiler features, rows aligned with their L1000 signatures). Target: one LINCS Cell
Painting plate of A549 (58 compounds × up to 6 doses, 454 features; DMSO left out); k
doses of each compound are its training shots, 2 more its validation, the rest its test
(`embedkit finetune --profiles`, 5 seeds, the paper's protocol). The two tables share 96
features by name, and no compound, so the transfer is across cell line, compounds, assay
batch and feature selection at once.

Encoders (MLP 96 → 256 → 128, `embedkit-profile-classifier`):

* ``pretrained (identity)``: trained on CMEA to tell its 100 compounds apart from noisy,
  feature-dropped copies of their profiles (instance discrimination; the only labels
  CMEA has);
* ``pretrained (L1000)``: trained on CMEA to predict each compound's 978-gene L1000
  signature from its morphology (cross-modal, the rows are aligned);
* ``random-init``: the same architecture from random weights, same protocol;
* and the nearest-centroid baseline on the raw (standardized) features: the 96 shared
  ones, and all 454 of the plate, beside an MLP from scratch on all 454.

    python benchmarks/bench_fewshot_profiles.py --data-dir ../shared/data

Prints a table; writes benchmarks/results/fewshot_profiles.json. Run folders (reports,
splits, models) go to --work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir
from embedkit.finetune.data import ProfileTask
from embedkit.finetune.jobs import FinetuneOptions, finetune_profiles
from embedkit.finetune.profile_classifier import ProfileClassifier
from embedkit.finetune.training import TrainSettings, fit
from embedkit.io import coerce_numeric_text, read_table

RESULTS = Path(__file__).resolve().parent / "results"
CMEA = "profiles/cmea_u2os_morphology.parquet"
CMEA_L1000 = "profiles/cmea_u2os_l1000.parquet"
A549 = "profiles/lincs_a549_SQ00015054_normalized_feature_select.csv.gz"
LABEL = "Metadata_broad_sample"
HIDDEN = [256, 128]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    p.add_argument("--work", type=Path, default=None, help="run folders  [default: a temp dir]")
    p.add_argument("--shots", default="1,2,3")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pretrain-epochs", type=int, default=300)
    p.add_argument("--out", type=Path, default=RESULTS / "fewshot_profiles.json")
    return p.parse_args(argv)


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    return np.where(std > 1e-6, (x - mean) / np.maximum(std, 1e-6), 0.0), mean, std


def pretrain_identity(cmea: pd.DataFrame, features: list[str], out: Path, epochs: int) -> Path:
    """Tell CMEA's compounds apart from noisy copies (the fine-tuning loop, no validation)."""
    x, mean, std = standardize(cmea[features].to_numpy(np.float64))
    labels = cmea["Metadata_pert_id"].astype(str).tolist()
    torch.manual_seed(0)
    model = ProfileClassifier(features, mean.tolist(), std.tolist(), HIDDEN, 0.1, labels)
    task = ProfileTask(x.astype(np.float32), np.arange(len(labels)), noise=0.5, feature_dropout=0.2)
    rows = np.arange(len(labels))
    settings = TrainSettings(epochs=epochs, patience=epochs, batch_size=32)
    result, _ = fit(model, task, rows, rows[:0], rows, settings, 0, torch.device("cpu"))
    model.extra = {"pretraining": "CMEA U2OS compound identity", "train_top1": result.top[1]}
    model.save_pretrained(out)
    return out


def pretrain_l1000(
    cmea: pd.DataFrame, l1000: pd.DataFrame, features: list[str], out: Path, epochs: int
) -> Path:
    """Predict the (standardized) L1000 signature from morphology; only the encoder is kept."""
    x, mean, std = standardize(cmea[features].to_numpy(np.float64))
    genes = [c for c in l1000.columns if not c.startswith("Metadata_")]
    assert (l1000["Metadata_pert_id"].to_numpy() == cmea["Metadata_pert_id"].to_numpy()).all()
    y, _, _ = standardize(l1000[genes].to_numpy(np.float64))
    torch.manual_seed(0)
    model = ProfileClassifier(features, mean.tolist(), std.tolist(), HIDDEN, 0.1, [])
    head = torch.nn.Linear(HIDDEN[-1], len(genes))
    params = [*model.encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            noisy = xt[chunk] + 0.5 * torch.randn(len(chunk), xt.shape[1], generator=gen)
            noisy = noisy * (torch.rand(noisy.shape, generator=gen) >= 0.2) / 0.8
            loss = torch.nn.functional.mse_loss(head(model.encoder(noisy)), yt[chunk])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.extra = {"pretraining": "CMEA U2OS morphology → L1000", "final_mse": losses[-1]}
    model.eval().save_pretrained(out)
    return out


def finetune(table: Path, out: Path, shots: int, seeds: int, model=None, **kw) -> dict:
    options = FinetuneOptions(
        LABEL,
        shots=shots,
        seeds=seeds,
        drop_labels=("DMSO",),
        baselines=kw.pop("baselines", ("random", "nearest-centroid")),
        hidden=tuple(HIDDEN),
        features=kw.pop("features", None),
        train=TrainSettings(linear_probe=kw.pop("linear_probe", False)),
        overwrite=True,
    )
    summary = finetune_profiles(table, out, options, model, log=lambda m: None)
    return summary.report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data = resolve_data_dir(args.data_dir)
    work = args.work or Path(tempfile.mkdtemp(prefix="fewshot-profiles-"))
    tick = time.perf_counter()
    cmea = pd.read_parquet(data / CMEA)
    l1000 = pd.read_parquet(data / CMEA_L1000)
    a549 = coerce_numeric_text(read_table(data / A549))
    a549_features = [c for c in a549.columns if not c.startswith("Metadata_")]
    shared = [c for c in a549_features if c in set(cmea.columns)]
    print(f"CMEA U2OS: {len(cmea)} compounds × {cmea.shape[1] - 4} features; A549: {len(a549)} "
          f"wells × {len(a549_features)} features; {len(shared)} shared")  # fmt: skip
    identity = pretrain_identity(cmea, shared, work / "cmea-identity", args.pretrain_epochs)
    l1000_model = pretrain_l1000(cmea, l1000, shared, work / "cmea-l1000", args.pretrain_epochs)
    table = data / A549

    rows: dict[str, dict] = {}
    runs = {}
    for k in [int(s) for s in args.shots.split(",")]:
        reports = {
            "identity": finetune(
                table, work / f"k{k}-identity", k, args.seeds, f"local-dir:{identity}"
            ),
            "identity-probe": finetune(
                table, work / f"k{k}-identity-probe", k, args.seeds,
                f"local-dir:{identity}", baselines=(), linear_probe=True,
            ),
            "l1000": finetune(
                table, work / f"k{k}-l1000", k, args.seeds, f"local-dir:{l1000_model}",
                baselines=(),
            ),
            "all-features": finetune(table, work / f"k{k}-all", k, args.seeds),
        }  # fmt: skip
        names = {
            ("identity", "pretrained"): "pretrained on CMEA (identity), 96 features",
            ("identity-probe", "pretrained"): "  same, linear probe (frozen encoder)",
            ("l1000", "pretrained"): "pretrained on CMEA (morphology → L1000), 96 features",
            ("identity", "random-init"): "random-init MLP, 96 features",
            ("identity", "nearest-centroid"): "nearest centroid, 96 raw features",
            ("all-features", "random-init"): "random-init MLP, all 454 features",
            ("all-features", "nearest-centroid"): "nearest centroid, all 454 raw features",
        }
        for (which, condition), name in names.items():
            s = reports[which]["summary"][condition]
            rows.setdefault(name, {})[k] = {
                m: [round(s[f"{m}_mean"], 4), round(s[f"{m}_std"], 4)] for m in ("top1", "top5")
            }
        runs[k] = {w: r["runs"] for w, r in reports.items()}
        classes = reports["identity"]["labels"]["classes"]
    shots = sorted(runs)
    header = f"{'encoder / method':56s}" + "".join(f" | k={k} top-1      top-5" for k in shots)
    print(f"\n{classes} compounds (chance top-1 {1 / classes:.3f}, top-5 {5 / classes:.3f}); "
          f"mean ± sd over {args.seeds} seeds")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name, by_k in rows.items():
        cells = "".join(
            f" | {by_k[k]['top1'][0]:.3f}±{by_k[k]['top1'][1]:.3f} {by_k[k]['top5'][0]:.3f}"
            for k in shots
        )
        print(f"{name:56s}{cells}")
    result = {
        "benchmark": "few-shot compound classification, CMEA U2OS → LINCS A549 plate",
        "classes": classes,
        "chance": {"top1": 1 / classes, "top5": 5 / classes},
        "seeds": args.seeds,
        "shared_features": len(shared),
        "table": rows,
        "runs": runs,
        "seconds": round(time.perf_counter() - tick, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "work": str(work),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['seconds']} s → {args.out}")
    return result


if __name__ == "__main__":
    main()
