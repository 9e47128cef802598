"""Start-up: how long `embedkit` takes before it does anything, against `python -c pass`.

Each command runs as a fresh process (the installed `embedkit` console script when it sits
beside this Python, else `python -m embedkit.cli`), a few times, interleaved with the
baseline so that machine load hits every row alike; the table reports the median wall time
and its ratio to the baseline's median, and which heavy modules (torch, timm, faiss) the
command imported. `import torch` is timed too, as the cost the commands avoid.

    python benchmarks/bench_startup.py                 # 7 repeats; writes JSON
    python benchmarks/bench_startup.py --repeats 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from embedkit.io import atomic_path

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = ("torch", "timm", "faiss")
COMMANDS = {
    "embedkit --help": ["--help"],
    "embedkit zoo list": ["zoo", "list"],
    "embedkit normalize --help": ["normalize", "--help"],
}
# Run a command in-process the way the console script does, then report the heavy modules.
PROBE = (
    "import sys; from embedkit.cli import main\n"
    "try:\n    main(sys.argv[1:], prog_name='embedkit')\n"
    "except SystemExit:\n    pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS / "bench_startup.json")
    return p.parse_args(argv)


def entry_point() -> list[str]:
    script = Path(sys.executable).with_name("embedkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "embedkit.cli"]


def wall(cmd: list[str]) -> float:
    tick = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - tick


def heavy_modules(args: list[str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    names = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return [n for n in names.split(",") if n]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    baseline = [sys.executable, "-c", "pass"]
    runs = {
        "python -c pass": baseline,
        **{name: entry_point() + cmd for name, cmd in COMMANDS.items()},
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    for cmd in runs.values():  # warm the file cache once
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved: load drifts hit every row alike
        for name, cmd in runs.items():
            times[name].append(wall(cmd))
    base = statistics.median(times["python -c pass"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        cli_args = COMMANDS.get(name)
        rows.append(
            {
                "command": name,
                "median_s": round(median, 4),
                "min_s": round(min(samples), 4),
                "max_s": round(max(samples), 4),
                "ratio_to_python": round(median / base, 2),
                "heavy_modules": heavy_modules(cli_args) if cli_args is not None else None,
            }
        )
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  {'median':>8}  {'min':>7}  {'max':>7}  {'x python':>8}  heavy")
    for r in rows:
        heavy = "-" if r["heavy_modules"] is None else (",".join(r["heavy_modules"]) or "none")
        print(
            f"{r['command']:<{width}}  {r['median_s']:>7.3f}s  {r['min_s']:>6.3f}s  "
            f"{r['max_s']:>6.3f}s  {r['ratio_to_python']:>8.2f}  {heavy}"
        )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "entry_point": " ".join(Path(p).name for p in entry_point()),
        "repeats": args.repeats,
        "baseline": "python -c pass",
        "results": rows,
        "embedkit_on_path": shutil.which("embedkit") is not None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
