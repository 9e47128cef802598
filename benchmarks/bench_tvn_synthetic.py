"""Does `normalize --method tvn` remove batch effects from image embeddings? (SIMULATED plates)

The whole user path on a simulated screen (`embedkit.datasets.synthetic`; one cell line,
several batches with per-batch stain gain/offset, plate illumination and well drift):
`embed-images` (site level) → join the plate metadata → `aggregate` to wells →
`normalize` (each method, statistics from the negative-control wells, per batch) →
`batch_effect_report`: how well a cross-validated logistic regression predicts the batch
(lower is better) and the perturbed gene with whole batches held out (higher is better).
The same screen is also rendered with every technical effect switched off, as a reference
for how much of the batch signal is technical.

    python benchmarks/bench_tvn_synthetic.py                      # demo model
    python benchmarks/bench_tvn_synthetic.py --wells 24 --batches 3  # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from embedkit.api import load
from embedkit.cli.options import DEFAULT_IMAGE_MODEL
from embedkit.datasets.synthetic import SynthConfig, write_synthetic_dataset
from embedkit.images.discovery import discover
from embedkit.images.jobs import EmbedImagesOptions, embed_images
from embedkit.io import atomic_path
from embedkit.profiles.aggregate import aggregate
from embedkit.profiles.diagnostics import batch_effect_report
from embedkit.profiles.normalize import normalize

RESULTS = Path(__file__).resolve().parent / "results"
NEGCON = "Metadata_PertType == 'negcon'"
METHODS = ("standardize", "mad_robustize", "pca_centerscale", "tvn")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_IMAGE_MODEL)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--wells", type=int, default=64)
    p.add_argument("--sites", type=int, default=2)
    p.add_argument("--genes", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "tvn_synthetic.json")
    return p.parse_args(argv)


def well_profiles(config: SynthConfig, embedder, tmp: Path, workers: int) -> pd.DataFrame:
    """Simulate → embed sites → join metadata → median per well."""
    meta = write_synthetic_dataset(tmp / "screen", config)
    index = discover([tmp / "screen"], layout="rxrx")
    embed_images(index, embedder, tmp / "emb", EmbedImagesOptions(num_workers=workers))
    sites = pd.concat(
        [pd.read_parquet(p) for p in sorted((tmp / "emb" / "plates").glob("*.parquet"))]
    )
    meta = meta.astype({"Metadata_Site": sites["Metadata_Site"].dtype})
    joined = sites.merge(meta, on=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
    assert len(joined) == len(sites) == len(meta), "every site must match its metadata"
    joined = joined.drop(columns=["Metadata_Error", "Metadata_Crops"])
    return aggregate(joined, strata=("Metadata_Plate", "Metadata_Well"), method="median")


def report(table: pd.DataFrame) -> dict:
    out = batch_effect_report(
        table, "Metadata_Batch", "Metadata_Gene", label_rows="Metadata_PertType == 'trt'"
    )
    return {
        k: out[k]
        for k in (
            "rows",
            "batches",
            "labels",
            "batch_accuracy",
            "batch_chance",
            "label_accuracy",
            "label_chance",
        )
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    embedder = load(args.model)
    size = embedder.model.crop_size
    common = dict(
        cell_lines=("U2OS",),
        batches=args.batches,
        wells=args.wells,
        sites=args.sites,
        size=size,
        n_genes=args.genes,
        n_modules=3,
        seed=args.seed,
        channels=5,
    )
    rows = {}
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        wells = well_profiles(SynthConfig(**common), embedder, Path(tmp) / "fx", args.workers)
        clean = well_profiles(
            SynthConfig(**common, batch_effect=0, illumination=0, well_drift=0),
            embedder,
            Path(tmp) / "clean",
            args.workers,
        )
    rows["raw (no technical effects simulated)"] = report(clean)
    rows["raw"] = report(wells)
    for method in METHODS:
        rows[method] = report(normalize(wells, method, controls=NEGCON, by="Metadata_Batch"))
    first = rows["raw"]
    print(
        f"SIMULATED screen: {first['rows']} wells, {first['batches']} batches, "
        f"{first['labels']} genes; model {args.model}; {time.perf_counter() - tick:.0f} s"
    )
    print(f"{'features':<40} {'batch acc ↓':>11} {'gene acc ↑':>11}")
    print(f"{'chance':<40} {first['batch_chance']:>11.3f} {first['label_chance']:>11.3f}")
    for name, r in rows.items():
        print(f"{name:<40} {r['batch_accuracy']:>11.3f} {r['label_accuracy']:>11.3f}")
    result = {
        "simulated": True,
        "model": embedder.run_info,
        "config": common,
        "rows": rows,
        "tvn_reduces_batch_accuracy": rows["tvn"]["batch_accuracy"] < rows["raw"]["batch_accuracy"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_file:
        tmp_file.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
