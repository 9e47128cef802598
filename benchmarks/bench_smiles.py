"""Molecules/s of `embed_smiles` vs the `infoalign` package's `predict()`, same run, same machine.

    python benchmarks/bench_smiles.py [--repeats 3] [--rows 5000] \
        [--out benchmarks/results/bench_smiles.json]

Each method runs in its own subprocess (so peak RSS is its own; worker processes that
embedkit forks are reported separately, as the largest worker's peak) on RDKit's bundled NCI
molecules (`Data/NCI/first_5K.smi`). The infoalign package crashes on SMILES RDKit rejects,
so both are timed on the parsable ones; embedkit is also timed on all 5,000 rows.
Timings include featurization and exclude model construction. The fp32 check loads the
package's random weights into embedkit through `embedkit zoo convert infoalign`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NCI = "NCI/first_5K.smi"


def nci_smiles() -> list[str]:
    """The first `--rows` SMILES of NCI first_5K.smi (passed to children in EMBEDKIT_BENCH_ROWS)."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / NCI
    rows = int(os.environ.get("EMBEDKIT_BENCH_ROWS", "5000"))
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()][:rows]


def parsable(smiles: list[str]) -> list[str]:
    from embedkit.molecules.featurize import parse_smiles

    return [s for s in smiles if parse_smiles(s)[0] is not None]


def child(method: str, model: str, subset: str, repeats: int, save: str | None) -> None:
    """Runs inside a subprocess: time `repeats` runs, print one JSON line."""
    import torch

    smiles = nci_smiles()
    if subset == "parsable":
        smiles = parsable(smiles)
    if method.startswith("infoalign-package"):
        import contextlib
        import io

        from infoalign.representer import InfoAlignRepresenter

        torch.manual_seed(0)
        rep = InfoAlignRepresenter.__new__(InfoAlignRepresenter)
        _build_infoalign(rep, save)
        run = lambda: rep.predict(smiles, batch_size=32)  # noqa: E731 (its default batch)
        quiet = contextlib.redirect_stderr(io.StringIO())
    else:
        from embedkit.api import load

        precision = "bf16" if method.endswith("bf16") else "fp32"
        embedder = load(model, device="cpu", precision=precision)
        run = lambda: embedder.embed_smiles(smiles)[0]  # noqa: E731
        quiet = _null()
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        with quiet:
            out = run()
        times.append(time.perf_counter() - start)
    if save and not method.startswith("infoalign-package"):
        np.save(save, out)
    best = min(times)
    # Largest waited-for child: embedkit's forked workers (0 if none). Forked workers share
    # the parent's pages, so main + worker overstates the total.
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "method": method,
                "rows": len(smiles),
                "seconds_best": best,
                "seconds_all": times,
                "mol_per_s": len(smiles) / best,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_rss_worker_mb": worker_rss / 1024,
            }
        )
    )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _build_infoalign(rep, save: str | None) -> None:
    """The package's own model and predict(), with random weights saved as pretrain.pt."""
    import torch
    from infoalign.models.gnn import PretrainedGNN
    from infoalign.representer import ModelConfig

    rep.config = ModelConfig()
    rep.device = torch.device("cpu")
    rep.model = PretrainedGNN(gnn_type="gin-virtual", num_layer=5, emb_dim=300, graph_pooling="sum")
    _calibrate_batch_norm(rep.model)
    if save:
        torch.save(rep.model.state_dict(), save)
        np.save(save + ".emb.npy", rep.predict(parsable(nci_smiles()), batch_size=32))


def _calibrate_batch_norm(model) -> None:
    """Training-mode passes over 1,000 molecules: BatchNorm statistics of realistic scale.

    With default statistics (mean 0, var 1) a random GIN's sum readout reaches ~1e5, where
    fp32 rounding alone exceeds 1e-4; calibrated, |μ| is ~370, like the released weights.
    """
    import torch
    from infoalign.utils import convert_smiles_to_graph
    from torch_geometric.loader import DataLoader

    graphs = convert_smiles_to_graph(parsable(nci_smiles())[:1000])
    model.train()
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=100):
            model(batch)
    model.eval()


def spawn(method: str, model: str, subset: str, repeats: int, save: str | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--model",
        model,
        "--subset",
        subset,
        "--repeats",
        str(repeats),
    ] + (["--save", save] if save else [])
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _combine(results: list[dict]) -> dict:
    """Median molecules/s over rounds; the largest peak RSS."""
    speeds = sorted(r["mol_per_s"] for r in results)
    median = float(np.median(speeds))
    return {
        "method": results[0]["method"],
        "rows": results[0]["rows"],
        "seconds_median": results[0]["rows"] / median,
        "mol_per_s": median,
        "mol_per_s_rounds": [r["mol_per_s"] for r in results],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "peak_rss_worker_mb": max(r.get("peak_rss_worker_mb", 0.0) for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="infoalign-gin-lincs-small")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument("--out", default="benchmarks/results/bench_smiles.json")
    parser.add_argument(
        "--rows", type=int, default=5000, help="First N NCI rows (fewer for a quick run)."
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--subset", default="parsable", help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.subset, args.repeats, args.save)
        return
    os.environ["EMBEDKIT_BENCH_ROWS"] = str(args.rows)  # children inherit it

    methods = [
        ("infoalign-package predict()", "parsable"),
        ("embedkit fp32", "parsable"),
        ("embedkit bf16", "parsable"),
        ("embedkit fp32 (all rows)", "all"),
    ]
    # Interleaved rounds: this machine's speed drifts by ±20 % over minutes, so each round
    # runs every method once (2 timed passes each) and the ratio uses per-method medians.
    runs: dict[str, list[dict]] = {m: [] for m, _ in methods}
    for _ in range(args.repeats):
        for method, subset in methods:
            runs[method].append(spawn(method, args.model, subset, 2))
    rows = [_combine(runs[m]) for m, _ in methods]
    baseline = rows[0]["mol_per_s"]
    for row in rows:
        row["ratio_vs_infoalign"] = row["mol_per_s"] / baseline
        row["ratio_per_round"] = [
            r["mol_per_s"] / b["mol_per_s"]
            for r, b in zip(runs[row["method"]], runs[rows[0]["method"]], strict=True)
        ]

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "pretrain.pt")
        spawn("infoalign-package (save)", args.model, "parsable", 1, save=ckpt)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "embedkit.cli",
                "zoo",
                "convert",
                "infoalign",
                ckpt,
                "-o",
                os.path.join(tmp, "conv"),
            ],
            check=True,
            capture_output=True,
        )
        ours = os.path.join(tmp, "ours.npy")
        spawn("embedkit fp32 (converted)", f"local-dir:{tmp}/conv", "parsable", 1, save=ours)
        max_abs = float(np.abs(np.load(ours) - np.load(ckpt + ".emb.npy")).max())

    print(
        f"\nNCI first_5K.smi on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()})\n"
    )
    print(
        "| method | rows | median s | median mol/s | × infoalign (median) | "
        "× per round | peak RSS MB | largest worker RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        per_round = " ".join(f"{x:.2f}" for x in r["ratio_per_round"])
        print(
            f"| {r['method']} | {r['rows']} | {r['seconds_median']:.2f} | "
            f"{r['mol_per_s']:,.0f} | {r['ratio_vs_infoalign']:.2f} | {per_round} | "
            f"{r['peak_rss_mb']:,.0f} | {r['peak_rss_worker_mb']:,.0f} |"
        )
    print(
        f"\nfp32 parity (converted random infoalign weights): max |Δ| = {max_abs:.2e} "
        f"({'PASS' if max_abs < 1e-4 else 'FAIL'} at 1e-4)"
    )
    # Issue 13's targets: fp32 (the default) ≥ 2×, bf16 ≥ 4× the package.
    goal = {r["method"]: 4.0 if "bf16" in r["method"] else 2.0 for r in rows[1:]}
    target = {
        m: next(r for r in rows if r["method"] == m)["ratio_vs_infoalign"] >= g
        for m, g in goal.items()
    }
    for method, met in target.items():
        print(f"target {method} ≥ {goal[method]:g}× infoalign: {'PASS' if met else 'FAIL'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "rows": rows,
                "fp32_max_abs_diff": max_abs,
                "cpu_count": os.cpu_count(),
                "target_ratio": goal,
                "target_met": target,
                "model": args.model,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
