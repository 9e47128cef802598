"""Labelled training sites and their augmentations: the one home of what pretraining
(`train vit`) and few-shot fine-tuning (`embedkit finetune`) both read.

* **Sites.** `collect_sites` discovers the plates (any layout `embedkit plates inspect`
  reads, each folder with an optional channel map), joins them to a metadata table on
  (plate, well, site) — or on (plate, well) when the table has no site column, a row then
  labelling every imaged site of its well — and reports what it leaves out: listed sites
  without images, sites with a channel missing, imaged sites the metadata does not list,
  sites without a label. Nothing is read into memory: `SiteDataset` reads one site per item.
* **Augmentations** (the seed paper's, reimplemented from its description): random
  resized crop (area `crop_scale_min`–`crop_scale_max` of the field, aspect 3/4–4/3,
  antialiased resampling to the crop size), horizontal and vertical flips, rotations by
  multiples of 90°, Gaussian blur (per-view probability), then per-crop per-channel
  instance normalization (what the encoder sees at inference), then the per-channel
  intensity jitter: gain × U(0.8, 1.2), background + U(0.01, 0.1) · U(0.5, 1.5), contrast
  × U(0.8, 1.3). The jitter comes after the normalization on purpose: instance
  normalization divides out any per-channel gain and offset, so jitter applied before it
  (as in the reference code, whose model normalizes internally) would change nothing.
* **Seeding.** Item `(epoch, rank, position, index)` of `SiteDataset` augments with a
  generator seeded from (seed, epoch, rank, position), so the data of a resumed run is the
  data of the uninterrupted one, whatever the number of DataLoader workers.

The augmentation settings are read by name from any object that has them: an
`Augmentation`, or a pretraining recipe (`train.vit_common.VitRecipe`).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from embedkit.errors import InputError
from embedkit.images.preprocess import instance_normalize

SHOW = 5  # examples named in a report line


# -- what to train on ---------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """The run's inputs besides the recipe (all of them are resume settings)."""

    data: tuple[str, ...]  # DIR or DIR:MODEL=PLATE,...
    metadata: str | None = None
    label_column: str | None = None
    cell_line_column: str = "Metadata_CellLine"
    cell_line_embeddings: str | None = None
    graph: str | None = None

    def settings(self) -> dict:
        out: dict[str, Any] = {"data": list(self.data), "metadata": self.metadata}
        out["metadata_sha256"] = file_sha256(self.metadata)
        out["label_column"] = self.label_column
        if self.cell_line_embeddings:
            out["cell_line_column"] = self.cell_line_column
            out["cell_line_embeddings"] = self.cell_line_embeddings
            out["cell_line_embeddings_sha256"] = file_sha256(self.cell_line_embeddings)
        if self.graph:
            out["graph"] = self.graph
            out["graph_sha256"] = file_sha256(self.graph)
        return out


def file_sha256(path: str | None) -> str | None:
    """The sha256 of a settings file, or None when there is none."""
    if not path or not Path(path).is_file():
        return None
    from embedkit.zoo import sha256_of

    return sha256_of(Path(path))


@dataclass
class TrainingSites:
    """The sites a run trains on (paths only), their labels and cell lines, and a report."""

    paths: list[list[str]]  # per site: the channel files, in the model's channel order
    keys: list[tuple[str, str, int]]  # per site: plate, well, site
    labels: np.ndarray  # int64 index into label_vocab; -1 without labels
    label_vocab: list[str]
    lines: np.ndarray  # int64 index into line_vocab; -1 without cell lines
    line_vocab: list[str]
    report: dict = field(default_factory=dict)
    columns: dict[str, list] = field(default_factory=dict)  # collect_sites(keep=...) values

    def __len__(self) -> int:
        return len(self.paths)


def normalize_well(well: Any) -> str:
    """B2, b02, B02 → B02 (other names upper-cased as they are)."""
    text = str(well).strip()
    match = re.fullmatch(r"([A-Za-z]+)0*(\d+)", text)
    return f"{match[1].upper()}{int(match[2]):02d}" if match else text.upper()


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in str(path).replace("\\", "/").split("/") if p)


@dataclass
class _Imaged:
    spec: int
    plate: str
    well: str
    site: int
    paths: list[str] | None  # None when a channel is missing
    folder: tuple[str, ...]


def _discover_sites(specs: tuple[str, ...], channels: list[str], aliases: dict) -> tuple:
    from embedkit.images.channels import parse_channel_map, plan_channels
    from embedkit.images.discovery import discover

    imaged: list[_Imaged] = []
    problems = 0
    for i, spec in enumerate(specs):
        folder, _, mapping = spec.partition(":")
        index = discover([folder])
        problems += len(index.problems)
        plan = plan_channels(channels, index.channels(), aliases, parse_channel_map(mapping))
        for _, row in index.sites().iterrows():
            paths = [row.get(c) for c in plan.sources]
            complete = all(isinstance(p, str) for p in paths)
            first = next((p for p in row.iloc[3:-1] if isinstance(p, str)), "")
            imaged.append(
                _Imaged(
                    i,
                    str(row["plate"]),
                    normalize_well(row["well"]),
                    int(row["site"]),
                    [str(p) for p in paths] if complete else None,
                    _parts(str(Path(first).parent)) if first else (),
                )
            )
    return imaged, problems


KEY_COLUMNS = [
    ("Metadata_Plate", "Metadata_Well", "Metadata_Site"),
    ("plate", "well", "site"),
]


def _metadata_keys(table, path: str) -> tuple[list[str], str, str | None]:
    """Per row: the plate (experiment/PlateN for RxRx metadata), well and site columns; the
    site column is None for a table keyed by plate and well only (one row per well)."""
    for with_site in (True, False):
        for plate, well, site in KEY_COLUMNS:
            if {plate, well} | ({site} if with_site else set()) <= set(table.columns):
                plates = table[plate].astype(str).str.strip()
                if plate == "plate" and "experiment" in table.columns:  # RxRx1: EXP/PlateN
                    plates = table["experiment"].astype(str) + "/Plate" + plates
                return plates.tolist(), well, site if with_site else None
    have = set(map(str, table.columns))
    nearest = max(KEY_COLUMNS, key=lambda names: sum(c in have for c in names))
    missing = [c for c in nearest if c not in have]
    raise InputError(
        f"{path} has no column {', '.join(missing)} (sites are joined on plate, well and "
        f"site: {'/'.join(KEY_COLUMNS[0])} or RxRx's {'/'.join(KEY_COLUMNS[1])}; without a "
        "site column a row labels every site of its well); "
        f"its columns: {', '.join(map(str, table.columns))}"
    )


def _plate_matches(name: str, imaged_plates: dict) -> list:
    """The imaged plates a metadata plate name denotes: the same name, or a path ending in
    it (metadata HUVEC-01/Plate1 ↔ images under .../HUVEC-01/Plate1/)."""
    exact = [k for k in imaged_plates if k[1] == name]
    if exact:
        return exact
    want = _parts(name)
    if not want:
        return []
    return [
        k
        for k, folders in imaged_plates.items()
        if _parts(k[1])[-len(want) :] == want or any(f[-len(want) :] == want for f in folders)
    ]


def collect_sites(
    spec: DataSpec,
    channels: list[str],
    aliases: dict,
    need_labels: bool,
    need_lines: bool,
    log=print,
    keep: tuple[str, ...] = (),
) -> TrainingSites:
    """Discover the plates, join the metadata, and report every site left out.

    `keep` names metadata columns carried to `TrainingSites.columns` (one value per used
    site; a column the table lacks is None throughout)."""
    imaged, problems = _discover_sites(spec.data, channels, aliases)
    report: dict[str, Any] = {"imaged_sites": len(imaged), "unplaced_files": problems}
    if spec.metadata is None:
        if need_labels or need_lines:
            what = "--label-column" if need_labels else "--cell-line-embeddings"
            raise InputError(f"{what} needs --metadata FILE (a table with one row per site)")
        kept = [s for s in imaged if s.paths is not None]
        incomplete = [s for s in imaged if s.paths is None]
        report |= {"used": len(kept), "missing_a_channel": len(incomplete)}
        _report(log, report, incomplete_examples=[_name(s) for s in incomplete[:SHOW]])
        sites = TrainingSites(
            [s.paths for s in kept],
            [(s.plate, s.well, s.site) for s in kept],
            np.full(len(kept), -1, dtype=np.int64),
            [],
            np.full(len(kept), -1, dtype=np.int64),
            [],
            report,
        )
        return _non_empty(sites, spec)

    from embedkit.io import read_table

    table = read_table(Path(spec.metadata))
    plates, well_col, site_col = _metadata_keys(table, spec.metadata)
    for option, column in (
        ("--label-column", spec.label_column if spec.label_column else None),
        ("--cell-line-column", spec.cell_line_column if need_lines else None),
    ):
        if column is not None and column not in table.columns:
            close = difflib.get_close_matches(column, list(map(str, table.columns)), n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise InputError(
                f"{spec.metadata} has no column {column!r} ({option}){hint}; its columns: "
                f"{', '.join(map(str, table.columns))}"
            )
    imaged_plates: dict[tuple[int, str], set] = {}
    by_key: dict[tuple, _Imaged] = {}
    by_well: dict[tuple, list[_Imaged]] = {}
    for s in imaged:
        imaged_plates.setdefault((s.spec, s.plate), set()).add(s.folder)
        by_key[(s.spec, s.plate, s.well, s.site)] = s
        by_well.setdefault((s.spec, s.plate, s.well), []).append(s)
    resolved: dict[str, list] = {}
    for name in dict.fromkeys(plates):
        found = _plate_matches(name, imaged_plates)
        if len(found) > 1:
            listed = ", ".join(f"{spec.data[i]}:{p}" for i, p in found[:SHOW])
            raise InputError(
                f"metadata plate {name!r} matches {len(found)} imaged plates ({listed}); "
                "give one --data folder per plate set or fully qualified plate names"
            )
        resolved[name] = found
    labels_text = _column(table, spec.label_column)
    lines_text = _column(table, spec.cell_line_column if need_lines else None)
    kept_text = {c: table[c].tolist() if c in table.columns else None for c in keep}
    used: list[tuple[_Imaged, str | None, str | None, int]] = []
    seen: set[tuple] = set()
    no_images, no_channel, no_label, no_line = [], [], [], []
    wells = table[well_col].map(normalize_well).tolist()
    sites_ = table[site_col].tolist() if site_col is not None else None
    for row, plate in enumerate(plates):
        match = resolved[plate]
        if sites_ is None:  # a row per well: every imaged site of the well
            where = f"{plate} {wells[row]}"
            found = by_well.get((*match[0], wells[row]), []) if match else []
        else:
            try:
                site_number = int(float(sites_[row]))
            except (TypeError, ValueError):
                raise InputError(
                    f"{spec.metadata} row {row + 2}: site {sites_[row]!r} is not a number"
                ) from None
            where = f"{plate} {wells[row]} s{site_number}"
            s = by_key.get((*match[0], wells[row], site_number)) if match else None
            found = [] if s is None else [s]
        if not found:
            no_images.append(where)
            continue
        for s in found:
            key = (s.spec, s.plate, s.well, s.site)
            if key in seen:
                raise InputError(f"{spec.metadata} lists site {_name(s)} twice (row {row + 2})")
            seen.add(key)
            if s.paths is None:
                no_channel.append(_name(s))
                continue
            label = labels_text[row] if labels_text is not None else None
            if need_labels and label is None:
                no_label.append(_name(s))
                continue
            line = lines_text[row] if lines_text is not None else None
            if need_lines and line is None:
                no_line.append(_name(s))
                continue
            used.append((s, label, line, row))
    report |= {
        "listed_sites": len(plates),
        "used": len(used),
        "missing_images": len(no_images),
        "missing_a_channel": len(no_channel),
        "unlisted_imaged_sites": len(imaged) - len(seen),
    }
    if need_labels:
        report["no_label"] = len(no_label)
    if need_lines:
        report["no_cell_line"] = len(no_line)
    _report(
        log,
        report,
        missing_examples=no_images[:SHOW],
        incomplete_examples=no_channel[:SHOW],
        label_examples=no_label[:SHOW],
        line_examples=no_line[:SHOW],
        metadata=spec.metadata,
    )
    label_vocab = sorted({lab for _, lab, _, _ in used if lab is not None})
    line_vocab = sorted({ln for _, _, ln, _ in used if ln is not None})
    label_index = {v: i for i, v in enumerate(label_vocab)}
    line_index = {v: i for i, v in enumerate(line_vocab)}
    sites = TrainingSites(
        [s.paths for s, _, _, _ in used],
        [(s.plate, s.well, s.site) for s, _, _, _ in used],
        np.array([label_index.get(lab, -1) for _, lab, _, _ in used], dtype=np.int64),
        label_vocab,
        np.array([line_index.get(ln, -1) for _, _, ln, _ in used], dtype=np.int64),
        line_vocab,
        report,
        {
            c: [None if values is None else values[row] for *_, row in used]
            for c, values in kept_text.items()
        },
    )
    return _non_empty(sites, spec)


def _column(table, column: str | None) -> list[str | None] | None:
    if column is None:
        return None
    values = []
    for value in table[column].tolist():
        text = "" if value is None else str(value).strip()
        values.append(None if text.lower() in ("", "nan", "none", "na", "<na>") else text)
    return values


def _name(s: _Imaged) -> str:
    return f"{s.plate} {s.well} s{s.site}"


def _non_empty(sites: TrainingSites, spec: DataSpec) -> TrainingSites:
    if not len(sites):
        raise InputError(
            f"no site to train on in {', '.join(spec.data)}"
            + (f" joined with {spec.metadata}" if spec.metadata else "")
            + " (see the lines above)"
        )
    return sites


def _report(log, report: dict, metadata: str | None = None, **examples) -> None:
    """One line of what is used, one per reason a site was left out."""
    if metadata:
        log(
            f"data: {report['imaged_sites']} imaged sites, {report['listed_sites']} listed "
            f"in {Path(metadata).name}, {report['used']} used"
        )
    else:
        log(f"data: {report['imaged_sites']} imaged sites, {report['used']} used (no metadata)")
    reasons = [
        ("missing_images", "missing_examples", "listed sites have no images; skipped"),
        ("missing_a_channel", "incomplete_examples", "sites miss a channel file; skipped"),
        ("no_label", "label_examples", "sites have no label; skipped"),
        ("no_cell_line", "line_examples", "sites have no cell line; skipped"),
    ]
    for key, example_key, text in reasons:
        if report.get(key):
            shown = examples.get(example_key) or []
            more = f" (e.g. {', '.join(shown)})" if shown else ""
            log(f"  warning: {report[key]} {text}{more}")
    if report.get("unlisted_imaged_sites"):
        log(f"  {report['unlisted_imaged_sites']} imaged sites are not in the metadata; not used")
    if report.get("unplaced_files"):
        log(f"  warning: {report['unplaced_files']} files match no site (embedkit plates inspect)")


# -- augmentations ------------------------------------------------------------------------


@dataclass
class Augmentation:
    """What `augment` and `SiteDataset` read (a pretraining recipe has the same names)."""

    crop_size: int
    crop_scale_min: float = 0.2
    crop_scale_max: float = 1.0
    flips: bool = True
    rotations: bool = True
    blur_prob: list[float] = field(default_factory=lambda: [0.0])  # per view
    gain_prob: float = 0.5
    background_prob: float = 0.3
    contrast_prob: float = 0.5
    seed: int = 0


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The augmentation seed of one sample: a hash of its place in the run."""
    state = np.random.SeedSequence([seed, epoch, rank, position]).generate_state(2, np.uint32)
    return (int(state[0]) << 30 ^ int(state[1])) % (2**62)


def _uniform(gen: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_resized_crop(
    site: torch.Tensor, size: int, scale: tuple[float, float], gen: torch.Generator
) -> torch.Tensor:
    """A window of `scale` of the field's area, aspect ratio 3/4–4/3, resampled to
    size × size (bilinear, antialiased); after 10 misses, the largest centred square."""
    _, height, width = site.shape
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * float(_uniform(gen, *scale))
        ratio = math.exp(float(_uniform(gen, *log_ratio)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            y = int(torch.randint(height - h + 1, (1,), generator=gen))
            x = int(torch.randint(width - w + 1, (1,), generator=gen))
            break
    else:
        h = w = min(height, width)
        y, x = (height - h) // 2, (width - w) // 2
    window = site[None, :, y : y + h, x : x + w]
    if (h, w) == (size, size):
        return window[0].clone()
    return F.interpolate(window, size=(size, size), mode="bilinear", antialias=True)[0]


def gaussian_blur(crop: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel, kernel ≈ a tenth of the crop (23 px at 224)."""
    size = crop.shape[-1]
    radius = max(1, int(round(size * 23 / 224)) // 2)
    xs = torch.arange(-radius, radius + 1, dtype=crop.dtype)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = crop.shape[0]
    x = F.pad(crop[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[0]


def augment(site: torch.Tensor, r: Any, gen: torch.Generator, blur: float) -> torch.Tensor:
    """One view of a (C, H, W) site in [0, 1]: the model's input, (C, S, S) float32.

    `r` holds the `Augmentation` settings (an `Augmentation` or a pretraining recipe)."""
    crop = random_resized_crop(site, r.crop_size, (r.crop_scale_min, r.crop_scale_max), gen)
    if r.flips:
        if torch.rand(1, generator=gen) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=gen) < 0.5:
            crop = crop.flip(-2)
    if r.rotations:
        quarter = int(torch.randint(4, (1,), generator=gen))
        if quarter:
            crop = torch.rot90(crop, quarter, dims=(-2, -1))
    if blur and torch.rand(1, generator=gen) < blur:
        crop = gaussian_blur(crop, float(_uniform(gen, 0.1, 2.0)))
    crop = instance_normalize(crop)
    c = crop.shape[0]
    if r.gain_prob and torch.rand(1, generator=gen) < r.gain_prob:
        crop = crop * _uniform(gen, 0.8, 1.2, c).view(c, 1, 1)
    if r.background_prob and torch.rand(1, generator=gen) < r.background_prob:
        level = _uniform(gen, 0.01, 0.1) * _uniform(gen, 0.5, 1.5, c)
        crop = crop + level.view(c, 1, 1)
    if r.contrast_prob and torch.rand(1, generator=gen) < r.contrast_prob:
        chosen = torch.rand(c, generator=gen) < 0.5
        factor = torch.where(chosen, _uniform(gen, 0.8, 1.3, c), torch.ones(c))
        mean = crop.mean(dim=(-2, -1), keepdim=True)
        crop = (crop - mean) * factor.view(c, 1, 1) + mean
    return crop.contiguous()


class SiteDataset(Dataset):
    """Item (epoch, rank, position, index) → (views (V, C, S, S), label, cell line):
    reads one site from disk and augments it with a generator seeded by the key.
    `recipe` holds the `Augmentation` settings and `seed`; view v is blurred with
    probability `blur_prob[v]` (0 beyond the list)."""

    def __init__(self, sites: TrainingSites, recipe: Any, views: int):
        self.paths, self.labels, self.lines = sites.paths, sites.labels, sites.lines
        self.recipe, self.views = recipe, views
        blur = list(recipe.blur_prob) + [0.0] * views
        self.blur = blur[:views]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        from embedkit.images.reading import read_site

        epoch, rank, position, index = key
        seed = sample_seed(self.recipe.seed, epoch, rank, position)
        gen = torch.Generator().manual_seed(seed)
        site = torch.from_numpy(read_site(self.paths[index]))
        views = torch.stack([augment(site, self.recipe, gen, p) for p in self.blur])
        return views, int(self.labels[index]), int(self.lines[index])
