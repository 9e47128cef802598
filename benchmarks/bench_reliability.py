"""Reliability: concurrent writers and kill -9, re-run as the issue-11 probe ran them.

Every command runs as a real `embedkit` process (`python -m embedkit.cli`) on a tiny random
InfoAlign model with a profile space, in a temporary folder:

* **concurrent index add** — each trial starts `--writers` `embedkit index add` processes at
  once on one index, each adding its own profiles. *tried* = rows that commands reported
  as added, *held* = those rows found in the index afterwards, *lost* = tried − held.
* **kill -9 during index add** — each trial starts one `index add` and kills it (SIGKILL)
  at a random moment between half of an uncontended run's time (timed first; start-up
  fills the first half) and just after its end. *held* = the next `embedkit index info`
  opens an index whose rows are exactly the old ones or the old plus the new (never a
  partial or missing index) and no staging or swapped-out folder is left beside it;
  *lost* = the rest.
* **kill -9 during embed-smiles --overwrite** — each trial kills a run that replaces an
  existing output. *held* = the output at its path is the old table or the complete new
  one, and the next write removes the killed run's temporary file.

    python benchmarks/bench_reliability.py                     # 3 trials each; writes JSON
    python benchmarks/bench_reliability.py --trials 10 --writers 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.io import atomic_path, read_parquet, remove_stale_temp_files

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = [f"Cells_Feature_{i:02d}" for i in range(12)]


def embedkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "embedkit.cli", *map(str, args)]


def use_checkout(path: Path | None) -> None:
    """Run the `embedkit` commands from another checkout (e.g. an older commit, for the
    numbers before a fix); this script's own helpers stay the installed ones."""
    if path is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(path.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])]
        )


def make_model(folder: Path) -> Path:
    import torch

    from embedkit.molecules.gin import GINConfig
    from embedkit.molecules.model import InfoAlignModel

    torch.manual_seed(0)
    space = {"columns": COLUMNS, "min": [-3.0] * 12, "max": [5.0] * 12, "kind": "profile"}
    model = InfoAlignModel(
        GINConfig(num_layer=2, emb_dim=16),
        decoder_spaces={"cp": len(COLUMNS)},
        extra={"feature_spaces": {"cp": space}},
    )
    return model.save_pretrained(folder)


def profiles(n: int, prefix: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.uniform(-4, 6, (n, len(COLUMNS))), columns=COLUMNS)
    table.insert(0, "Metadata_Key", [f"{prefix}{i}" for i in range(n)])
    return table


def build(root: Path, model: Path, rows: int) -> Path:
    profiles(rows, "base", 0).to_parquet(root / "base.parquet")
    index = root / "idx"
    done = subprocess.run(
        embedkit("index", "build", root / "base.parquet", "-o", index, "-m", f"local-dir:{model}"),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return index


FAILURES: list[str] = []  # why `index info` could not open an index, for the JSON


def index_keys(index: Path) -> set[str] | None:
    """The keys an index holds, opened as users open it (recovery included); None if it
    cannot be opened."""
    done = subprocess.run(embedkit("index", "info", index), capture_output=True, text=True)
    if done.returncode:
        FAILURES.append(done.stderr.strip()[-500:])
        return None
    return set(read_parquet(index / "metadata.parquet").Metadata_Key)


def leftovers(index: Path) -> list[str]:
    return [
        p.name
        for p in index.parent.iterdir()
        if p.name.startswith(f".{index.name}.") and not p.name.endswith(".lock")
    ]


def concurrent_adds(
    root: Path, model: Path, trials: int, writers: int, rows: int, base_rows: int
) -> dict:
    tried = held = reported = 0
    for trial in range(trials):
        folder = root / f"concurrent{trial}"
        folder.mkdir()
        index = build(folder, model, base_rows)  # a big index: a long read-append-write
        files = []
        for w in range(writers):
            path = folder / f"add{w}.csv"  # text: parsing it widens the read-append-write
            profiles(rows, f"t{trial}w{w}_", 100 * trial + w + 1).to_csv(path, index=False)
            files.append(path)
        procs = [
            subprocess.Popen(
                embedkit("index", "add", f, "-i", index),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in files
        ]
        outputs = [p.communicate() for p in procs]
        keys = index_keys(index) or set()
        for w, (proc, (out, _)) in enumerate(zip(procs, outputs, strict=True)):
            if proc.returncode == 0 and f"added {rows} of {rows}" in out:
                reported += 1
                tried += rows
                held += sum(f"t{trial}w{w}_{i}" in keys for i in range(rows))
    return {
        "trials": trials,
        "writers": writers,
        "index_rows_before": base_rows,
        "commands_reporting_success": reported,
        "rows_tried": tried,
        "rows_held": held,
        "rows_lost": tried - held,
    }


def timed(command: list[str]) -> float:
    """Seconds one uncontended run takes (kills are placed over its second half)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return time.perf_counter() - start


def kill_at(rng: random.Random, seconds: float) -> float:
    """A moment in the second half of a run (start-up is in the first), or just after."""
    return rng.uniform(0.5, 1.05) * seconds


def killed_adds(root: Path, model: Path, trials: int, rows: int, rng: random.Random) -> dict:
    held = 0
    outcomes = []
    ref = root / "killed_ref"
    ref.mkdir()
    index = build(ref, model, rows)
    profiles(rows, "ref_", 999).to_parquet(ref / "add.parquet")
    seconds = timed(embedkit("index", "add", ref / "add.parquet", "-i", index))
    for trial in range(trials):
        folder = root / f"killed{trial}"
        folder.mkdir()
        index = build(folder, model, rows)
        before = index_keys(index)
        path = folder / "add.parquet"
        new = profiles(rows, f"k{trial}_", 1000 + trial)
        new.to_parquet(path)
        start = time.perf_counter()
        proc = subprocess.Popen(
            embedkit("index", "add", path, "-i", index),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = kill_at(rng, seconds)
        while proc.poll() is None and time.perf_counter() - start < delay:
            time.sleep(0.005)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = index_keys(index)
        ok = after is not None and (after == before or after == before | set(new.Metadata_Key))
        clean = not leftovers(index)
        held += ok and clean
        outcomes.append(
            {
                "killed_at_s": round(delay, 2),
                "had_finished": finished,
                "index_opens": after is not None,
                "rows_old_or_old_plus_new": ok,
                "nothing_left_beside": clean,
            }
        )
    return {
        "trials": trials,
        "held": held,
        "lost": trials - held,
        "uncontended_run_s": round(seconds, 2),
        "runs": outcomes,
    }


def nci_smiles(n: int) -> list[str]:
    """RDKit's bundled NCI molecules (Data/NCI/first_5K.smi)."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()][:n]


SMILES = nci_smiles(100)


def killed_embeds(root: Path, model: Path, trials: int, rng: random.Random) -> dict:
    held = 0
    outcomes = []
    source = root / "mols.csv"
    pd.DataFrame({"smiles": SMILES * 40}).to_csv(source, index=False)
    out = root / "emb.parquet"
    model_arg = f"local-dir:{model}"
    command = embedkit("embed-smiles", source, "-o", out, "-m", model_arg, "--overwrite", "-n", 0)
    seconds = timed(command)
    old = out.read_bytes()
    for _ in range(trials):
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = kill_at(rng, seconds)
        while proc.poll() is None and time.perf_counter() - start < delay:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = out.read_bytes()
        try:
            rows = len(read_parquet(out))
        except Exception:  # noqa: BLE001 - a torn file is what this counts
            rows = -1
        intact = data == old or rows == len(SMILES) * 40
        temps_before = [p.name for p in root.iterdir() if p.name.startswith(".emb.parquet.tmp-")]
        remove_stale_temp_files(out)  # what the next write of this output does first
        temps_after = [p.name for p in root.iterdir() if p.name.startswith(".emb.parquet.tmp-")]
        held += intact and not temps_after
        outcomes.append(
            {
                "killed_at_s": round(delay, 2),
                "output_intact": intact,
                "temp_files_left_by_kill": len(temps_before),
                "temp_files_after_next_write": len(temps_after),
            }
        )
        old = data
    return {
        "trials": trials,
        "held": held,
        "lost": trials - held,
        "uncontended_run_s": round(seconds, 2),
        "runs": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20_000, help="Profiles per added file.")
    parser.add_argument(
        "--base-rows", type=int, default=10_000, help="Profiles in the concurrent trials' index."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkout", type=Path, default=None, help="Run the commands from this source tree."
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_reliability.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_model(root / "model")
        use_checkout(args.checkout)
        tick = time.perf_counter()
        results = {
            "concurrent_index_add": concurrent_adds(
                root, model, args.trials, args.writers, args.rows, args.base_rows
            ),
            "kill9_index_add": killed_adds(root, model, args.trials, args.rows, rng),
            "kill9_embed_smiles_overwrite": killed_embeds(root, model, args.trials, rng),
        }
        seconds = time.perf_counter() - tick
    c, k, e = (results[n] for n in results)
    print(f"{'experiment':<34} {'tried':>6} {'held':>6} {'lost':>6}")
    print(
        f"{'concurrent index add (rows)':<34} {c['rows_tried']:>6} {c['rows_held']:>6} "
        f"{c['rows_lost']:>6}   ({c['trials']} trials x {c['writers']} writers, "
        f"{c['commands_reporting_success']} reported success)"
    )
    print(f"{'kill -9 during index add (runs)':<34} {k['trials']:>6} {k['held']:>6} {k['lost']:>6}")
    print(
        f"{'kill -9 during embed-smiles (runs)':<34} {e['trials']:>6} {e['held']:>6} {e['lost']:>6}"
    )
    print(f"{seconds:.0f} s on {os.cpu_count()} cores")
    record = {
        "index_info_failures": FAILURES,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "seconds": round(seconds, 1),
        "settings": vars(args) | {"json": str(args.json), "checkout": str(args.checkout)},
        **results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.json) as tmp_json:
        tmp_json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"→ {args.json}")


if __name__ == "__main__":
    main()
