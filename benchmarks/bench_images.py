"""Image embedding throughput, memory and encoder utilisation on this machine.

Three measurements, each against a baseline taken in the same run:

1. **Decoding hidden behind compute.** `embed_images` end to end (PNG decoding, cropping
   and normalization in DataLoader workers, the encoder, per-plate Parquet output) on a
   plate of N sites, vs the encoder alone on the same crops already decoded into memory.
   Target: end to end >= 80 % of encoder-only sites/s.
2. **Bounded memory.** Peak RSS of `embedkit embed-images` (a fresh process) on plates of
   1,000 and 10,000 sites: it should stay flat as the plate grows.
3. **Utilisation.** Encoder FLOPs per crop (torch's FlopCounterMode) x crops/s, as a
   fraction of this machine's matmul peak measured in the same run (same precision).

Sites are 5-channel 8-bit PNGs of one crop each, cut from SIMULATED Cell Painting fields
(`embedkit.datasets.synthetic`), so the model does the same work per site as on real data.

    python benchmarks/bench_images.py                       # demo model, fp32 and bf16
    python benchmarks/bench_images.py --sites 200 --rss-sizes 200,1000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from embedkit.api import load
from embedkit.cli.options import DEFAULT_IMAGE_MODEL
from embedkit.images.discovery import discover
from embedkit.images.jobs import (
    EmbedImagesOptions,
    default_decode_workers,
    embed_images,
)
from embedkit.images.preprocess import instance_normalize
from embedkit.images.reading import read_site
from embedkit.io import atomic_path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_IMAGE_MODEL)
    p.add_argument("--sites", type=int, default=1000, help="plate size for throughput")
    p.add_argument("--rss-sizes", default="1000,10000")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--rss-precision", default="bf16", help="precision of the memory runs")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: embed-images' default for this machine)",
    )
    p.add_argument("--batch", type=int, default=16, help="sites per batch")
    p.add_argument("--out", type=Path, default=RESULTS / "bench_images.json")
    return p.parse_args(argv)


def field_pool(size: int, n: int = 8) -> list[np.ndarray]:
    """A few simulated 5-channel fields (DNA, ER, RNA, AGP, Mito from RxRx w1, w2, w4, w3, w5)."""
    from embedkit.datasets.synthetic import SynthConfig, SyntheticScreen

    screen = SyntheticScreen(SynthConfig(size=size, wells=4, sites=2))
    pool = []
    for _, image in screen.sites():
        pool.append(image[[0, 1, 3, 2, 4]])
        if len(pool) == n:
            break
    return pool


def write_plate(root: Path, n_sites: int, pool: list[np.ndarray]) -> Path:
    """RxRx layout, one site per (well, site); PNGs re-encoded from the pool (real decoding)."""
    plate = root / "Plate1"
    plate.mkdir(parents=True)
    rows = "BCDEFGHIJKLMNO"
    for i in range(n_sites):
        well = f"{rows[(i // 22) % len(rows)]}{2 + i % 22:02d}"
        site = 1 + i // (22 * len(rows))
        image = np.roll(pool[i % len(pool)], i % 7, axis=-1)
        for c in range(image.shape[0]):
            Image.fromarray(image[c]).save(plate / f"{well}_s{site}_w{c + 1}.png")
    return root


def encoder_only(embedder, crops: torch.Tensor, batch: int) -> float:
    embedder.embed_crops(crops[:batch], None, batch)  # warm-up
    tick = time.perf_counter()
    embedder.embed_crops(crops, None, batch)
    return len(crops) / (time.perf_counter() - tick)


def end_to_end(root: Path, embedder, out: Path, workers: int, batch: int) -> float:
    index = discover([root])
    options = EmbedImagesOptions(sites_per_batch=batch, crop_batch=batch, num_workers=workers)
    tick = time.perf_counter()
    summary = embed_images(index, embedder, out, options)
    seconds = time.perf_counter() - tick
    assert sum(p.invalid for p in summary.plates) == 0
    return sum(p.sites for p in summary.plates) / seconds


def matmul_peak(precision: str, n: int = 2048, repeats: int = 5) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    tick = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - tick)


def flops_per_crop(embedder, crop: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        embedder.model.encoder(crop[None])
    return counter.get_total_flops()


def peak_rss_of_cli(root: Path, model: str, workers: int, batch: int, precision: str) -> float:
    """Peak RSS (MB) of a fresh `embedkit embed-images` process, children included."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "embedkit.cli",
            "embed-images",
            str(root),
            "-o",
            out,
            "-m",
            model,
            "-n",
            str(workers),
            "-b",
            str(batch),
            "--no-progress",
        ]
        proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak = 0.0
        while proc.poll() is None:
            try:
                procs = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs) / 2**20)
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.read().decode())
    return peak


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.workers is None:
        args.workers = default_decode_workers()
    probe = load(args.model)
    size = probe.model.crop_size
    pool = field_pool(size)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "decode_workers": args.workers,
        "model": probe.run_info,
        "crop_size": size,
        "throughput": [],
        "memory": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = write_plate(Path(tmp) / "plate", args.sites, pool)
        sites = discover([root]).sites()
        crops = instance_normalize(
            torch.from_numpy(
                np.stack(
                    [read_site([r[f"w{c}"] for c in range(1, 6)]) for _, r in sites.iterrows()]
                )
            )
        )
        print(
            f"{'precision':<9} {'encoder-only':>13} {'end-to-end':>11} {'ratio':>6} "
            f"{'GFLOP/crop':>10} {'achieved':>9} {'peak':>7} {'util':>6}"
        )
        for precision in args.precisions.split(","):
            embedder = load(args.model, precision=precision)
            model_rate = encoder_only(embedder, crops, args.batch)
            e2e_rate = end_to_end(
                root, embedder, Path(tmp) / f"out-{precision}", args.workers, args.batch
            )
            flops = flops_per_crop(embedder, crops[0])
            peak = matmul_peak(precision)
            row = {
                "precision": precision,
                "sites": args.sites,
                "encoder_only_sites_per_s": round(model_rate, 2),
                "end_to_end_sites_per_s": round(e2e_rate, 2),
                "ratio": round(e2e_rate / model_rate, 3),
                "gflop_per_crop": flops / 1e9,
                "achieved_gflops": round(flops * model_rate / 1e9, 1),
                "matmul_peak_gflops": round(peak / 1e9, 1),
                "utilisation": round(flops * model_rate / peak, 3),
            }
            report["throughput"].append(row)
            print(
                f"{precision:<9} {model_rate:>13.1f} {e2e_rate:>11.1f} {row['ratio']:>6.2f} "
                f"{row['gflop_per_crop']:>10.2f} {row['achieved_gflops']:>9.1f} "
                f"{row['matmul_peak_gflops']:>7.1f} {row['utilisation']:>6.1%}"
            )
    for n in (int(s) for s in args.rss_sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = write_plate(Path(tmp) / "plate", n, pool)
            rss = peak_rss_of_cli(root, args.model, args.workers, args.batch, args.rss_precision)
        report["memory"].append({"sites": n, "peak_rss_mb": round(rss, 1)})
        print(f"peak RSS, {n:>6,} sites: {rss:7.0f} MB")
    first, last = report["memory"][0], report["memory"][-1]
    report["rss_growth"] = round(last["peak_rss_mb"] / first["peak_rss_mb"], 3)
    best = max(r["ratio"] for r in report["throughput"])
    report["target_end_to_end_ratio"] = 0.8
    report["target_met"] = best >= 0.8
    print(
        f"end-to-end / encoder-only: best {best:.2f} (target >= 0.80); RSS x"
        f"{report['rss_growth']:.2f} from {first['sites']:,} to {last['sites']:,} sites"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_file:
        tmp_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
