"""`embedkit embed-images`: stream plates through the encoder, one output file per plate.

Sites are read and cropped in DataLoader worker processes while the model runs, so memory
stays bounded by the batch, not the plate. Each plate is written atomically to
`OUT/plates/<plate>.parquet` with a `<plate>.json` sidecar (rows, sha256, counts) written
last: the sidecar is the completion marker `--resume` verifies. `--shard I/N` takes every
N-th plate, so N processes (or machines) split a screen without coordination; `manifest.json`
is rebuilt from the sidecars at the end of every run.

An output folder holds one run's settings (everything that changes the output: model,
channels, level, crops, cell line, precision): a plate already there is refused unless
`--resume` keeps it (same settings, verified) or `--overwrite` replaces it, and plates
embedded with other settings are refused even with `--resume`. With `--overwrite`, plates
of other settings outside this run are removed, so the manifest's settings describe every
plate it lists. A site that cannot be read (corrupt
file, missing channel, mixed bit depth, mismatched sizes) keeps its row, with
`Metadata_Valid = False` and the reason; the others are embedded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import EmbedkitError, InputError, NothingEmbeddedError
from embedkit.images.channels import ChannelPlan, plan_channels
from embedkit.io import atomic_path, embeddings_frame, remove_stale_temp_files_in
from embedkit.outputs import (
    OutputExistsError,
    check_output_dir,
    check_output_file,
    summary_line,
)
from embedkit.zoo import sha256_of

if TYPE_CHECKING:  # torch is imported where a model runs, not to parse a command line
    import torch

    from embedkit.images.discovery import PlateIndex
    from embedkit.images.embedder import ImageEmbedder
    from embedkit.profiles.platemap import PlateMap, PlatemapReport

LEVELS = ("crop", "site", "well")
MANIFEST = "manifest.json"
SITE_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


@dataclass
class EmbedImagesOptions:
    level: str = "site"
    crop_mode: str = "tiles"
    n_random: int = 4
    sites_per_batch: int = 8
    crop_batch: int = 64
    num_workers: int = 0
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    cell_line: str | None = None
    cell_line_table: dict = field(default_factory=dict)
    channel_map: dict = field(default_factory=dict)
    drop_channels: tuple[str, ...] = ()
    progress: bool = False
    seed: int = 0
    overwrite: bool = False  # replace plates already in the output folder
    platemap: PlateMap | None = None  # joined onto every plate's rows (read_platemap)


def default_decode_workers() -> int:
    """Decoding processes: none on <= 2 cores, else cores - 1 (max 8).

    On 2 cores there is no core to hide decoding behind: a decoding worker competing with
    the model's threads measured 0.79 of encoder-only speed and a main-process RSS that grew
    with the plate (x1.54 from 1k to 10k sites); decoding in-process measured 0.85 and flat
    memory (benchmarks/bench_images.py).
    """
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


def parse_shard(text: str | None) -> tuple[int, int]:
    """`"2/4"` → (1, 4): 1-based on the command line, 0-based inside."""
    if not text:
        return (0, 1)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return int(match[1]) - 1, int(match[2])


class SiteDataset:
    """One item per site: normalized crops, or the reason the site could not be read (a
    map-style dataset for torch's DataLoader)."""

    def __init__(self, sites: pd.DataFrame, plan: ChannelPlan, model_spec: dict, options):
        self.sites = sites.reset_index(drop=True)
        self.plan = plan
        self.crop_size = model_spec["crop_size"]
        self.normalization = dict(model_spec["normalization"])
        if self.normalization.get("kind") == "fixed":
            self.normalization["mean"] = [self.normalization["mean"][i] for i in plan.kept]
            self.normalization["std"] = [self.normalization["std"][i] for i in plan.kept]
        self.options = options

    def __len__(self) -> int:
        return len(self.sites)

    def __getitem__(self, i: int):
        from embedkit.images.preprocess import crop_site, normalize
        from embedkit.images.reading import read_site

        row = self.sites.iloc[i]
        missing = [c for c in self.plan.sources if not isinstance(row.get(c), str)]
        if missing:
            return i, None, None, f"missing channel file(s) {', '.join(missing)}"
        try:
            site = read_site([row[c] for c in self.plan.sources])
            rng = np.random.default_rng([self.options.seed, i])
            crops, positions = crop_site(
                site, self.crop_size, self.options.crop_mode, self.options.n_random, rng
            )
        except (EmbedkitError, ValueError) as err:
            return i, None, None, str(err)
        except MemoryError:  # one site, one invalid row: never an aborted run
            return i, None, None, "out of memory while reading or cropping this site"
        # numpy, not a tensor: worker → main then goes through a pipe as bytes instead of
        # one shared-memory segment per site, which kept the main process's RSS growing
        # with the plate (measured: +555 MB at 10k sites vs +155 MB at 1k).
        return i, normalize(crops, self.normalization).numpy(), positions, ""


def _collate(items):
    return items


@dataclass
class PlateResult:
    plate: str
    rows: int
    sites: int
    invalid: int
    reasons: Counter
    seconds: float
    skipped: bool = False


def safe_name(plate: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", plate).strip("_") or "plate"


def _site_rows(sites: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Metadata_Plate": sites["plate"].astype(str).to_numpy(),
            "Metadata_Well": sites["well"].astype(str).to_numpy(),
            "Metadata_Site": sites["site"].to_numpy(),
        }
    )


def embed_plate(
    sites: pd.DataFrame,
    embedder: ImageEmbedder,
    plan: ChannelPlan,
    options: EmbedImagesOptions,
    cell_line: torch.Tensor | None,
    bar,
) -> tuple[pd.DataFrame, list[str]]:
    """All sites of one plate → a table at the requested level (rows in site order), and
    one error string per site ("" = embedded)."""
    import torch
    from torch.utils.data import DataLoader

    from embedkit.embedder import NON_FINITE

    model = embedder.model
    spec = {"crop_size": model.crop_size, "normalization": model.normalization}
    loader = DataLoader(
        SiteDataset(sites, plan, spec, options),
        batch_size=options.sites_per_batch,
        num_workers=options.num_workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    dim = embedder.embedding_dim
    per_site: list[np.ndarray | None] = [None] * len(sites)
    positions: list = [None] * len(sites)
    errors = [""] * len(sites)
    for items in loader:
        good = [it for it in items if it[1] is not None]
        for i, _, _, err in items:
            errors[i] = err
        if good:
            crops = torch.from_numpy(np.concatenate([it[1] for it in good]))
            vectors = embedder.embed_crops(crops, cell_line, options.crop_batch)
            start = 0
            for i, c, pos, _ in good:
                site = vectors[start : start + len(c)]
                start += len(c)
                if not np.isfinite(site).all():  # never a valid row of NaNs
                    errors[i] = NON_FINITE
                    continue
                per_site[i] = site
                positions[i] = pos
        bar.update(len(items))
    meta = _site_rows(sites)
    meta["Metadata_Valid"] = [v is not None for v in per_site]
    meta["Metadata_Error"] = errors
    if options.level == "crop":
        return _crop_table(meta, per_site, positions, dim), errors
    table = meta.copy()
    table["Metadata_Crops"] = [0 if v is None else len(v) for v in per_site]
    means = (
        np.stack([np.full(dim, np.nan, np.float32) if v is None else v.mean(0) for v in per_site])
        if per_site
        else np.zeros((0, dim), np.float32)
    )
    out = embeddings_frame(table, means)
    return (_well_table(out) if options.level == "well" else out), errors


def _crop_table(meta, per_site, positions, dim) -> pd.DataFrame:
    rows, vectors = [], []
    for i, v in enumerate(per_site):
        base = meta.iloc[i].to_dict()
        if v is None:
            rows.append({**base, "Metadata_Crop": -1, "Metadata_CropY": -1, "Metadata_CropX": -1})
            vectors.append(np.full(dim, np.nan, np.float32))
            continue
        for c, (y, x) in enumerate(positions[i]):
            rows.append({**base, "Metadata_Crop": c, "Metadata_CropY": y, "Metadata_CropX": x})
            vectors.append(v[c])
    return embeddings_frame(
        pd.DataFrame(rows), np.stack(vectors) if vectors else np.zeros((0, dim))
    )


def _well_table(sites: pd.DataFrame) -> pd.DataFrame:
    """Mean of a well's valid sites; a well with none keeps a NaN row and the reasons."""
    features = [c for c in sites.columns if c.startswith("Emb_")]
    keys = ["Metadata_Plate", "Metadata_Well"]
    grouped = sites.groupby(keys, sort=False)
    table = grouped[features].mean()  # NaN rows of invalid sites are skipped by mean
    info = grouped.agg(
        Metadata_Sites=("Metadata_Valid", "sum"),
        Metadata_Error=("Metadata_Error", lambda e: "; ".join(sorted({x for x in e if x}))),
    )
    out = info.join(table).reset_index()
    out.insert(2, "Metadata_Valid", out["Metadata_Sites"] > 0)
    return out


def plate_files(out_dir: Path, plate: str) -> tuple[Path, Path]:
    base = out_dir / "plates" / safe_name(plate)
    return base.with_suffix(".parquet"), base.with_suffix(".json")


def read_sidecar(out_dir: Path, plate: str) -> dict | None:
    """A plate's completion record, or None when absent or unreadable."""
    _, sidecar = plate_files(out_dir, plate)
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def plate_state(out_dir: Path, plate: str, run_info: dict) -> str:
    """What `out_dir` holds for `plate`:

    * "absent": nothing;
    * "complete": written by the same settings, and the parquet file still has the sha256
      its sidecar recorded (what `--resume` keeps);
    * "other-settings": a complete plate written by other settings (refused even with
      `--resume`, unless `--overwrite`);
    * "incomplete": a file without a valid sidecar, or whose sha256 changed (a crashed write;
      `--resume` redoes it)."""
    data, sidecar = plate_files(out_dir, plate)
    if not (data.exists() or sidecar.exists()):
        return "absent"
    record = read_sidecar(out_dir, plate)
    if record is None or not data.exists() or record.get("sha256") != sha256_of(data):
        return "incomplete"
    return "complete" if record.get("run") == run_hash(run_info) else "other-settings"


def plate_is_complete(out_dir: Path, plate: str, run_info: dict) -> bool:
    """The sidecar exists, was written by the same run settings, and the parquet file still
    has the sha256 it recorded."""
    return plate_state(out_dir, plate, run_info) == "complete"


def run_hash(run_info: dict) -> str:
    """What produced a plate's output; `--resume` only keeps plates with the same hash."""
    return hashlib.sha256(json.dumps(run_info, sort_keys=True, default=str).encode()).hexdigest()


def run_settings(
    embedder: ImageEmbedder,
    plan: ChannelPlan,
    options: EmbedImagesOptions,
    cell_line: torch.Tensor | None,
) -> dict:
    """Every setting that changes a plate's output (its hash is what `--resume` compares);
    recorded in each plate's file, sidecar and the manifest."""
    model = embedder.model
    settings = {
        "embedkit_version": __version__,
        **embedder.run_info,
        "channels": plan.describe(),
        "level": options.level,
        "crop_mode": options.crop_mode,
        "crop_size": model.crop_size,
        "normalization": model.normalization,
        "cell_line": options.cell_line,
        "precision": embedder.precision,
    }
    if options.crop_mode == "random":  # which crops are drawn
        settings["n_crops"] = options.n_random
        settings["crop_seed"] = options.seed
    if cell_line is not None:  # the vector used, wherever it came from (config or a table)
        vector = np.ascontiguousarray(cell_line.detach().cpu().numpy(), dtype=np.float32)
        settings["cell_line_embedding_sha256"] = hashlib.sha256(vector.tobytes()).hexdigest()
    if options.platemap is not None:  # its content, not where it lies: other metadata, other
        # output; the same table at another path (a resume from another folder) is the same
        settings["platemap"] = {k: v for k, v in options.platemap.provenance.items() if k != "file"}
    return settings


def settings_diff(old: dict | None, new: dict) -> str:
    """'crop_mode tiles, not center; …' for a refusal message."""
    if not old:
        return "settings not recorded"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = (f"{k} {_setting(old.get(k))}, not {_setting(new.get(k))}" for k in keys[:3])
    return "; ".join(shown) or "?"


def _setting(value) -> str:
    """A recorded setting for a message: text quoted, numbers and objects as the manifest
    spells them (JSON), no setting as `unset`; never a Python repr (None, True)."""
    if value is None:
        return "unset"
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def recorded_plates(out_dir: Path) -> list[dict]:
    """The readable plate sidecars in `out_dir` (not other shards' temp files)."""
    records = []
    for sidecar in sorted((out_dir / "plates").glob("[!.]*.json")):
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # another shard is replacing it right now; its own run lists it
        if isinstance(record, dict) and "plate" in record:
            records.append(record)
    return records


def check_plate_outputs(
    out_dir: Path, mine: Sequence[str], settings: dict, options: EmbedImagesOptions
) -> list[str]:
    """The output policy for a folder of plates; returns the plates to embed.

    Refuses what would be replaced without `--overwrite`; with it, removes plates of other
    settings that this run does not rewrite, so the folder holds one run's settings."""
    check_output_dir(out_dir, overwrite=True)  # a file named as the folder, or as a parent
    if (
        out_dir.is_dir()
        and any(out_dir.iterdir())
        and not ((out_dir / "plates").is_dir() or (out_dir / MANIFEST).exists())
        and not options.overwrite
    ):
        raise OutputExistsError(
            f"{out_dir} exists, is not empty and holds no embedded plates; choose another "
            "-o, or pass --overwrite to write into it"
        )
    states = {p: plate_state(out_dir, p, settings) for p in mine}
    ours = run_hash(settings)
    others = [
        r for r in recorded_plates(out_dir) if r["plate"] not in states and r.get("run") != ours
    ]
    if not options.overwrite:
        other = [p for p, s in states.items() if s == "other-settings"] + [
            r["plate"] for r in others
        ]
        if other:
            record = next((r for r in recorded_plates(out_dir) if r["plate"] == other[0]), {})
            raise OutputExistsError(
                f"{out_dir} holds {len(other)} plate(s) embedded with other settings "
                f"({other[0]}: {settings_diff(record.get('settings'), settings)}); choose "
                "another -o, or pass --overwrite to replace them"
            )
        if not options.resume:
            there = [p for p, s in states.items() if s != "absent"]
            if there:
                raise OutputExistsError(
                    f"{out_dir} already holds plate(s) {', '.join(map(str, there[:3]))}"
                    f"{' …' if len(there) > 3 else ''}; pass --resume to keep the complete "
                    "ones and embed the rest, or --overwrite to replace them"
                )
    for record in others:  # --overwrite: the folder keeps one run's settings
        for path in plate_files(out_dir, record["plate"]):
            path.unlink(missing_ok=True)
    keep = options.resume
    return [p for p, s in states.items() if not (keep and s == "complete")]


def plate_input(plate_sites: pd.DataFrame, plan: ChannelPlan) -> dict:
    """`{"input": folder}`: the folder holding the plate's images, as a portable path
    (`embedkit.provenance`: relative to the working folder, else its name)."""
    from embedkit.provenance import portable_path

    paths = [str(p) for c in plan.sources for p in plate_sites[c].dropna()]
    return {"input": portable_path(os.path.commonpath(paths))} if paths else {}


def write_plate(
    out_dir: Path,
    plate: str,
    table: pd.DataFrame,
    run_info: dict,
    stats: dict,
    inputs: dict | None = None,
):
    """The plate's table (its run info: `run_info` plus `inputs`, where its images are) and
    its sidecar (`settings`: `run_info` alone, what `--resume` compares)."""
    from embedkit.io import write_table

    data, sidecar = plate_files(out_dir, plate)
    write_table(table, data, {**run_info, **(inputs or {})})
    record = {
        "plate": plate,
        "file": data.name,
        "rows": len(table),
        "run": run_hash(run_info),
        "sha256": sha256_of(data),
        **stats,
        "settings": run_info,
    }
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def write_manifest(out_dir: Path, settings: dict, shard: str = "1/1") -> Path:
    """Rebuilt from the plate sidecars, so concurrent shards never disagree for long.

    Lists only plates embedded with `settings`, so the settings at its top describe every
    plate it lists (plates of other settings are named under `other_settings_plates`)."""
    ours = run_hash(settings)
    records, others = [], []
    for record in recorded_plates(out_dir):
        if record.get("run") == ours:
            records.append({k: v for k, v in record.items() if k != "settings"})
        else:
            others.append(record["plate"])
    manifest = {**settings, "shard": shard, "plates": records, "complete_plates": len(records)}
    if others:
        manifest["other_settings_plates"] = others
    path = out_dir / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


@dataclass
class EmbedImagesSummary:
    plates: list[PlateResult]
    seconds: float
    out_dir: Path
    problems: int = 0  # files discovery could not place (see `embedkit plates inspect`)
    platemap: tuple[str, list[PlatemapReport]] | None = None  # file name, one per plate

    def line(self) -> str:
        done = [p for p in self.plates if not p.skipped]
        sites = sum(p.sites for p in done)
        invalid = sum(p.invalid for p in done)
        reasons = Counter()
        for p in done:
            reasons.update(p.reasons)
        why = "; ".join(f"{n}× {r}" for r, n in reasons.most_common(3))
        skipped = len(self.plates) - len(done)
        rate = sites / self.seconds if self.seconds > 0 else float("nan")
        counts = f"{len(done)} plates embedded" + (
            f", {skipped} already complete (skipped)" if skipped else ""
        )
        details = [
            f"{sites} sites, {sites - invalid} embedded, {invalid} skipped"
            + (f" ({why})" if why else ""),
            f"{self.problems} files not understood (see `embedkit plates inspect`)"
            if self.problems
            else "",
        ]
        if self.platemap is not None and self.platemap[1]:
            from embedkit.profiles.platemap import combine_reports

            details.append(combine_reports(self.platemap[1]).note(self.platemap[0]))
        return summary_line(counts, self.seconds, self.out_dir, details, f"{rate:.1f} sites/s")

    def raise_if_nothing_embedded(self) -> None:
        """Every site this run read failed: NothingEmbeddedError (the CLI exits 2)."""
        done = [p for p in self.plates if not p.skipped]
        sites = sum(p.sites for p in done)
        if sites and sum(p.invalid for p in done) == sites:
            raise NothingEmbeddedError(
                f"none of the {sites} sites could be embedded; the reason for each is in the "
                f"Metadata_Error column of the plates in {self.out_dir}"
            )


def embed_images(
    index: PlateIndex,
    embedder: ImageEmbedder,
    out_dir: str | Path,
    options: EmbedImagesOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> EmbedImagesSummary:
    """Embed every plate of a discovered `PlateIndex` (this shard's plates) into `out_dir`;
    `log` is told the channel mapping once the inputs are checked, before the model runs
    (the CLI prints it on stderr)."""
    from tqdm.auto import tqdm

    options = options or EmbedImagesOptions()
    if options.level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {options.level!r}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model = embedder.model
    plan = plan_channels(
        model.channels,
        index.channels(),
        model.channel_aliases,
        options.channel_map,
        options.drop_channels,
    )
    embedder = embedder.for_channels(plan.kept)
    model = embedder.model
    cell_line = model.cell_line_vector(options.cell_line, options.cell_line_table)
    sites = index.sites()
    plates = sorted(sites["plate"].unique(), key=str)
    clashes = [p for p in plates if [safe_name(q) for q in plates].count(safe_name(p)) > 1]
    if clashes:
        raise InputError(
            f"plates {', '.join(map(str, clashes[:4]))} would be written to the same file "
            f"({safe_name(clashes[0])}.parquet); rename them or embed them separately"
        )
    mine = [p for j, p in enumerate(plates) if j % options.shard[1] == options.shard[0]]
    run_info = run_settings(embedder, plan, options, cell_line)
    todo = check_plate_outputs(out_dir, mine, run_info, options)
    remove_stale_temp_files_in(out_dir / "plates")  # a killed run's half-written plates
    if log is not None:
        log(
            f"channels: {plan.describe()} (model←plate, by name or alias unless given; "
            "change with --channels or --channel-map)"
        )
    results = []
    reports: list[PlatemapReport] = []
    bar = tqdm(
        total=int(sites["plate"].isin(todo).sum()),
        unit="site",
        desc="embedding",
        disable=not options.progress,
    )
    for plate in mine:
        if plate not in todo:
            results.append(PlateResult(plate, 0, 0, 0, Counter(), 0.0, skipped=True))
            continue
        tick = time.perf_counter()
        plate_sites = sites[sites["plate"] == plate]
        table, errors = embed_plate(plate_sites, embedder, plan, options, cell_line, bar)
        invalid = sum(bool(e) for e in errors)
        reasons = Counter(_reason(e) for e in errors if e)
        stats = {
            "sites": len(plate_sites),
            "invalid_sites": invalid,
            "seconds": round(time.perf_counter() - tick, 2),
        }
        if options.platemap is not None:
            from embedkit.profiles.platemap import annotate

            table, report = annotate(table, options.platemap)
            stats["platemap"] = report.record()
            reports.append(report)
        inputs = plate_input(plate_sites, plan)
        if options.platemap is not None:  # where it was read from: provenance, not a setting
            inputs["platemap_file"] = options.platemap.provenance["file"]
        write_plate(out_dir, plate, table, run_info, stats, inputs)
        results.append(
            PlateResult(
                plate, len(table), len(plate_sites), invalid, reasons, time.perf_counter() - tick
            )
        )
    bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, run_info, f"{options.shard[0] + 1}/{options.shard[1]}")
    named = None
    if options.platemap is not None:
        named = (Path(options.platemap.provenance["file"]).name, reports)
    return EmbedImagesSummary(
        results, time.perf_counter() - start, out_dir, len(index.problems), named
    )


def embed_image_folders(
    plate_dirs: Sequence[str | Path],
    embedder: ImageEmbedder,
    out_dir: str | Path,
    options: EmbedImagesOptions | None = None,
    layout: str = "auto",
    pattern: str | None = None,
    cell_line_embeddings: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> EmbedImagesSummary:
    """`embedkit embed-images`: discover the plates under `plate_dirs` (and read the
    cell-line table, if any), then embed them into `out_dir`."""
    from embedkit.cell_lines import read_cell_line_table
    from embedkit.images.discovery import discover

    options = options or EmbedImagesOptions()
    if cell_line_embeddings is not None:
        table = read_cell_line_table(cell_line_embeddings)
        options = replace(options, cell_line_table={**options.cell_line_table, **table})
    index = discover([Path(p) for p in plate_dirs], layout=layout, pattern=pattern)
    return embed_images(index, embedder, out_dir, options, log)


@dataclass
class InspectSummary:
    """What `embedkit plates inspect` found, and the site table it wrote (if any)."""

    index: PlateIndex
    seconds: float
    output: Path | None

    def line(self) -> str:
        sites = f"{len(self.index.sites())} sites"
        return summary_line(sites, self.seconds, self.output, ["one row per site (load_data)"])


def inspect_plates(
    folders: Sequence[str | Path],
    layout: str = "auto",
    pattern: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
) -> InspectSummary:
    """`embedkit plates inspect`: discover the plates, and write one row per site in
    load_data.csv form when `output` is given (read it back with layout index-csv)."""
    from embedkit.images.discovery import discover
    from embedkit.io import write_table

    start = time.perf_counter()
    if output is not None:
        output = check_output_file(output, overwrite)
        if output.suffix.lower() not in SITE_TABLE_SUFFIXES:
            raise InputError(
                f"{output}: write the site table as one of {', '.join(SITE_TABLE_SUFFIXES)}"
            )
    index = discover([str(f) for f in folders], layout=layout, pattern=pattern)
    if output is not None:
        write_table(index.to_load_data(), output)
    return InspectSummary(index, time.perf_counter() - start, output)


def _reason(error: str) -> str:
    """Group errors by kind for the summary (paths differ, reasons repeat)."""
    for kind in ("missing channel", "corrupt", "truncated", "bit depth", "size", "smaller"):
        if kind in error.lower():
            return kind
    return error.split(":")[0][:40]
