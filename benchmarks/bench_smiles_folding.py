"""What BatchNorm folding would buy in fp32: one-thread CPU time per molecule, in-process.

    python benchmarks/bench_smiles_folding.py [--rows 2000] [--rounds 3] \
        [--out benchmarks/results/bench_smiles_folding.json]

fp32 inference runs `ExactEncoder`, bit-exact with the training forward and with the
`infoalign` package, because the parity test's absolute 1e-4 bound sits below one fp32 ulp
at the converted test weights' output scale (~12,900). `FrozenEncoder` in fp32 (BatchNorm
folded into the linears, ReLU fused, pre-packed oneDNN matmuls: what bf16 runs) is the
obvious faster path if parity were relaxed to a relative bound; this measures how much
faster, end to end (parse, featurize, forward), and how far it moves the embeddings.
Memory is kept as in the worker processes (`retain_freed_memory`). Methods interleave
within each round; CPU time (`process_time`) because wall time on a
shared machine moves with other jobs. The ratio is against `ExactEncoder` in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2000, help="NCI molecules (default 2000)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "bench_smiles_folding.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from embedkit.molecules.pipeline import retain_freed_memory

    retain_freed_memory()  # as in embedkit's worker processes, which run the model on CPU
    from rdkit import RDConfig

    import embedkit
    from embedkit.molecules.inference import FrozenEncoder

    nci = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    smiles = [line.split()[0] for line in nci.read_text().splitlines() if line.strip()]
    smiles = smiles[: args.rows]
    model = embedkit.load("infoalign-gin-lincs-small", device="cpu")
    encoders = {
        "exact fp32 (default)": model._encoder,
        "folded fp32": FrozenEncoder(model.model.encoder, torch.float32, "cpu"),
        "folded bf16 (--precision bf16)": FrozenEncoder(model.model.encoder, torch.bfloat16, "cpu"),
    }
    times: dict[str, list[float]] = {name: [] for name in encoders}
    embeddings = {}
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            model._encoder = encoder
            tick = time.process_time()
            emb, _valid = model.embed_smiles(smiles, num_workers=0)
            times[name].append((time.process_time() - tick) / len(smiles) * 1e3)
            embeddings.setdefault(name, emb)
    exact = embeddings["exact fp32 (default)"]
    ok = ~np.isnan(exact).any(axis=1)
    scale = float(np.abs(exact[ok]).max())
    base = float(np.median(times["exact fp32 (default)"]))
    rows = []
    print(f"{'method':32s} {'ms/mol':>8s} {'× exact':>8s} {'max |Δ|':>10s} {'max |Δ|/max|x|':>15s}")
    for name, values in times.items():
        diff = float(np.abs(embeddings[name][ok] - exact[ok]).max())
        row = {
            "method": name,
            "median_ms_per_molecule": round(float(np.median(values)), 4),
            "rounds_ms_per_molecule": [round(v, 4) for v in values],
            "speedup_vs_exact": round(base / float(np.median(values)), 3),
            "max_abs_diff_vs_exact": diff,
            "max_rel_diff_vs_exact": diff / scale,
        }
        rows.append(row)
        print(
            f"{name:32s} {row['median_ms_per_molecule']:8.3f} {row['speedup_vs_exact']:8.2f} "
            f"{diff:10.2e} {diff / scale:15.2e}"
        )
    report = {
        "benchmark": "bench_smiles_folding",
        "rows": len(smiles),
        "valid": int(ok.sum()),
        "rounds": args.rounds,
        "embedding_max_abs": scale,
        "results": rows,
        "environment": {
            "embedkit": embedkit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": 1,
            "cpu_count": os.cpu_count(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
