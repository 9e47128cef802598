"""Plate discovery: every supported folder layout normalized into ONE table.

Microscopes and public datasets name their files in many ways; the rest of embedkit should
not care. `discover` turns a folder (or a load_data.csv index) into a `PlateIndex` whose
`files` table has one row per image file: `plate, well, site, channel, path`. Channel keys
stay raw (`w3`, `ch1`, `Hoechst`, …): mapping them onto a model's channels is the job of
`embedkit.images.channels`, not of discovery.

Layouts
  rxrx           `Plate1/B02_s1_w3.png`                  (RxRx1 / RxRx19a)
  phenix         `r03c03f03p01-ch1sk1fk1fl1.tiff`        (Opera Phenix, JUMP)
  channel-names  `field/Hoechst.tif`, `field/Mito.tif`   (one folder = one site)
  index-csv      `load_data.csv` (Metadata_Plate/Well/Site + FileName_X / PathName_X)
  pattern        a regex with named groups `channel` (+ optional `well`, `site`, `plate`)

Files that cannot be placed are never dropped silently: they go to `PlateIndex.problems`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from embedkit.errors import InputError

LAYOUTS = ("auto", "rxrx", "phenix", "channel-names", "index-csv", "pattern")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
INDEX_SUFFIXES = (".csv", ".tsv", ".parquet")
COLUMNS = ["plate", "well", "site", "channel", "path"]
SHOW = 5  # how many examples the summary lists

RXRX_NAME = re.compile(
    r"^(?P<well>[A-Za-z]{1,2}\d{1,2})_s(?P<site>\d+)_(?P<channel>w\d+)\.(?:png|tiff?)$",
    re.IGNORECASE,
)
PHENIX_NAME = re.compile(
    r"^r(?P<row>\d{2})c(?P<col>\d{2})f(?P<field>\d+)p(?P<plane>\d+)"
    r"-(?P<channel>ch\d+)sk\d+fk\d+fl\d+\.tiff?$",
    re.IGNORECASE,
)
INDEX_KEYS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")

Record = tuple[str, str, int, str, str]  # plate, well, site, channel, path
Problem = tuple[str, str]  # path, reason


class LayoutError(InputError):
    """A folder or index cannot be read as any (or the requested) plate layout."""


@dataclass
class PlateIndex:
    """One row per image file (`files`), the layout used, and what could not be placed."""

    files: pd.DataFrame
    layout: str
    problems: list[Problem] = field(default_factory=list)

    def channels(self) -> list[str]:
        """Channel keys in natural order (w2 before w10)."""
        return sorted(self.files["channel"].unique(), key=natural_key)

    def sites(self) -> pd.DataFrame:
        """One row per (plate, well, site): a path (or None) per channel, plus `missing`."""
        channels = self.channels()
        rows = []
        for (plate, well, site), group in self.files.groupby(["plate", "well", "site"], sort=False):
            found = dict(zip(group["channel"], group["path"], strict=True))
            row = {"plate": plate, "well": well, "site": int(site)}
            row.update({c: found.get(c) for c in channels})
            row["missing"] = [c for c in channels if c not in found]
            rows.append(row)
        return pd.DataFrame(rows, columns=["plate", "well", "site", *channels, "missing"])

    def to_load_data(self) -> pd.DataFrame:
        """The site table in CellProfiler load_data.csv form, so it can be read back with
        `--layout index-csv` (and used by CellProfiler / pycytominer tooling)."""
        sites = self.sites()
        table = pd.DataFrame(
            {
                "Metadata_Plate": sites["plate"],
                "Metadata_Well": sites["well"],
                "Metadata_Site": sites["site"],
            }
        )
        for channel in self.channels():
            paths = sites[channel]
            table[f"FileName_{channel}"] = [Path(p).name if p else "" for p in paths]
            table[f"PathName_{channel}"] = [str(Path(p).parent) if p else "" for p in paths]
        table["Metadata_Missing"] = [";".join(m) for m in sites["missing"]]
        return table

    def summary(self) -> str:
        """A few lines a person can check before embedding a plate."""
        files = self.files
        plates = _natural_unique(files["plate"])
        n_wells = len(files.loc[files["well"] != "", ["plate", "well"]].drop_duplicates())
        sites = self.sites()
        lines = [
            f"layout: {self.layout}",
            f"{_count(len(plates), 'plate')}, {_count(n_wells, 'well')}, "
            f"{_count(len(sites), 'site')}, {_count(len(files), 'image file')}",
            f"plates: {_first(plates)}",
            f"channels: {self._channel_counts()}",
        ]
        lines += _channel_hints(self.channels(), self.layout)
        lines += _missing_lines(sites)
        lines += _problem_lines(self.problems)
        return "\n".join(lines)

    def _channel_counts(self) -> str:
        counts = self.files["channel"].value_counts()
        parts = [f"{c} ({counts[c]})" for c in self.channels()]
        return ", ".join(parts) if parts else "none"


def discover(
    paths: Sequence[str | Path], layout: str = "auto", pattern: str | None = None
) -> PlateIndex:
    """Index the image files under `paths` (folders, or a load_data-style CSV)."""
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if pattern is not None and layout == "auto":
        layout = "pattern"
    if pattern is not None and layout != "pattern":
        raise LayoutError(f"--pattern applies only to --layout pattern, not {layout!r}")
    if layout == "pattern" and not pattern:
        raise LayoutError("--layout pattern needs --pattern REGEX with a (?P<channel>…) group")
    roots = _check_paths(paths)
    if layout == "index-csv" or (layout == "auto" and _all_tables(roots)):
        return _discover_index(roots)
    images = {root: _image_files(root) for root in roots}
    if layout == "auto":
        layout = _choose_layout(images)
    records: list[Record] = []
    problems: list[Problem] = []
    for root, files in images.items():
        found, bad = _parse(layout, root, files, pattern)
        if len(roots) > 1:  # HUVEC-01/Plate1 and HUVEC-02/Plate1 must stay two plates
            found = [(_qualify(plate, root), *rest) for plate, *rest in found]
        records += found
        problems += bad
    return _build_index(records, problems, layout)


def _qualify(plate: str, root: Path) -> str:
    """Prefix a plate with its input folder's name (unless it already is that name)."""
    return (
        plate
        if plate == root.name or plate.startswith(f"{root.name}/")
        else (f"{root.name}/{plate}")
    )


# -- paths and files --------------------------------------------------------------------


def _check_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Absolute, existing, de-duplicated paths (in the order given)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise LayoutError("no folder given")
    roots: list[Path] = []
    for path in paths:
        root = Path(path).expanduser().resolve()
        if not root.exists():
            raise LayoutError(f"{path}: no such file or folder")
        if root not in roots:
            roots.append(root)
    return roots


def _all_tables(roots: list[Path]) -> bool:
    return all(root.is_file() and _is_index_file(root) for root in roots)


def _is_index_file(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return bool(suffixes) and suffixes[-1] in INDEX_SUFFIXES


def _image_files(root: Path) -> list[Path]:
    """Image files under `root`, recursively, sorted; hidden files and folders skipped."""
    if not root.is_dir():
        raise LayoutError(f"{root}: expected a folder of images (or use --layout index-csv)")
    found = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in names:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(folder) / name)
    if not found:
        raise LayoutError(f"no image files ({' '.join(IMAGE_SUFFIXES)}) under {root}")
    return sorted(found)


def _choose_layout(images: dict[Path, list[Path]]) -> str:
    """The named layout matching most files; per-channel names if none and files sit in
    the given folder itself; otherwise an error saying what to pass."""
    files = [f for group in images.values() for f in group]
    votes = {
        "rxrx": sum(bool(RXRX_NAME.match(f.name)) for f in files),
        "phenix": sum(bool(PHENIX_NAME.match(f.name)) for f in files),
    }
    best = max(votes, key=lambda k: votes[k])
    if votes[best] > 0:
        return best
    if any(f.parent == root for root, group in images.items() for f in group):
        return "channel-names"
    where = ", ".join(str(r) for r in images)
    raise LayoutError(
        f"none of the {len(files)} image files under {where} matches the rxrx or phenix "
        f"naming (e.g. {files[0].name!r}); pass --layout channel-names|index-csv "
        "or --pattern REGEX"
    )


def _plate_name(folder: Path, root: Path) -> str:
    """The holding folder relative to the root; the root's own name when files sit in it."""
    rel = folder.relative_to(root)
    return root.name if rel == Path(".") else rel.as_posix()


# -- layouts ----------------------------------------------------------------------------


def _parse(
    layout: str, root: Path, files: list[Path], pattern: str | None
) -> tuple[list[Record], list[Problem]]:
    if layout == "rxrx":
        return _parse_rxrx(root, files)
    if layout == "phenix":
        return _parse_phenix(root, files)
    if layout == "channel-names":
        return _parse_channel_names(root, files), []
    return _parse_pattern(root, files, _compile_pattern(pattern or ""))


def _parse_rxrx(root: Path, files: list[Path]) -> tuple[list[Record], list[Problem]]:
    records, problems = [], []
    for path in files:
        match = RXRX_NAME.match(path.name)
        if match is None:
            problems.append((str(path), "name does not match the rxrx layout (B02_s1_w3.png)"))
            continue
        plate = _plate_name(path.parent, root)
        well = normalize_well(match["well"])
        records.append((plate, well, int(match["site"]), match["channel"], str(path)))
    return records, problems


def _parse_phenix(root: Path, files: list[Path]) -> tuple[list[Record], list[Problem]]:
    """Phenix names; of several z-planes only the lowest (p01) is kept, the rest reported."""
    planes: list[tuple[Record, int]] = []
    problems: list[Problem] = []
    for path in files:
        match = PHENIX_NAME.match(path.name)
        row = int(match["row"]) if match else 0
        if match is None or not 1 <= row <= 52:
            problems.append(
                (str(path), "name does not match the phenix layout (r01c01f01p01-ch1sk1fk1fl1)")
            )
            continue
        well = f"{_row_letters(row)}{int(match['col']):02d}"
        record = (_phenix_plate(path.parent, root), well, int(match["field"]), match["channel"])
        planes.append(((*record, str(path)), int(match["plane"])))
    lowest: dict[tuple[str, str, int], int] = {}
    for record, plane in planes:
        key = record[:3]
        lowest[key] = min(plane, lowest.get(key, plane))
    records = []
    for record, plane in planes:
        if plane == lowest[record[:3]]:
            records.append(record)
        else:
            problems.append((record[4], f"extra z-plane ignored (kept p{lowest[record[:3]]:02d})"))
    return records, problems


def _phenix_plate(folder: Path, root: Path) -> str:
    """Harmony exports put files in `<measurement>/Images/`: name the plate after the
    measurement folder, not after `Images`."""
    if folder.name.lower() == "images":
        if folder == root:
            return root.parent.name or root.name
        folder = folder.parent
    return _plate_name(folder, root)


def _row_letters(row: int) -> str:
    """1 → A … 26 → Z, 27 → AA … (1536-well plates have 32 rows)."""
    return chr(64 + row) if row <= 26 else "A" + chr(64 + row - 26)


def _parse_channel_names(root: Path, files: list[Path]) -> list[Record]:
    return [(_plate_name(p.parent, root), "", 1, p.stem, str(p)) for p in files]


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise LayoutError(
            f"--pattern {pattern!r} is not a valid regular expression: {err}"
        ) from err
    if "channel" not in regex.groupindex:
        raise LayoutError(
            f"--pattern {pattern!r} has no (?P<channel>…) group; e.g. "
            r"'(?P<well>[A-P]\d\d)f(?P<site>\d\d)d(?P<channel>\d)'"
        )
    return regex


def _parse_pattern(
    root: Path, files: list[Path], regex: re.Pattern[str]
) -> tuple[list[Record], list[Problem]]:
    """re.search against the path relative to the root, with posix separators."""
    records, problems = [], []
    for path in files:
        match = regex.search(path.relative_to(root).as_posix())
        if match is None:
            problems.append((str(path), f"does not match --pattern {regex.pattern!r}"))
            continue
        groups = match.groupdict()
        site = groups.get("site") or "1"
        if not site.isdigit():
            problems.append((str(path), f"site {site!r} is not a whole number"))
            continue
        plate = groups.get("plate") or root.name
        well = normalize_well(groups.get("well") or "")
        records.append((plate, well, int(site), groups["channel"], str(path)))
    return records, problems


def _discover_index(paths: list[Path]) -> PlateIndex:
    records: list[Record] = []
    problems: list[Problem] = []
    for path in paths:
        found, bad = _parse_index(path)
        records += found
        problems += bad
    return _build_index(records, problems, "index-csv")


def _parse_index(path: Path) -> tuple[list[Record], list[Problem]]:
    """A load_data.csv: relative PathName_X resolve against the CSV's folder; listed files
    that do not exist are reported and left out (so `sites()` shows them missing)."""
    from embedkit.io import read_table

    if not (path.is_file() and _is_index_file(path)):
        raise LayoutError(f"{path}: --layout index-csv needs a .csv/.tsv/.parquet file")
    table = read_table(path)
    channels = _index_channels(path, table)
    records, problems = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):
        site = str(row["Metadata_Site"]).strip()
        if not site.isdigit():
            problems.append((f"{path}:{row_number}", f"Metadata_Site {site!r} is not a number"))
            continue
        plate, well = str(row["Metadata_Plate"]), normalize_well(str(row["Metadata_Well"]))
        for channel in channels:
            name = str(row[f"FileName_{channel}"] or "").strip()
            if not name:
                continue
            file = _resolve(path.parent, str(row[f"PathName_{channel}"] or ""), name)
            if file.is_file():
                records.append((plate, well, int(site), channel, str(file)))
            else:
                problems.append((str(file), f"listed in {path.name} row {row_number}, not found"))
    return records, problems


def _index_channels(path: Path, table: pd.DataFrame) -> list[str]:
    """Channels named by FileName_X columns; every key and PathName_X column must exist."""
    channels = [c[len("FileName_") :] for c in table.columns if c.startswith("FileName_")]
    needed = [*INDEX_KEYS, *(f"PathName_{c}" for c in channels)]
    missing = [c for c in needed if c not in table.columns]
    if not channels:
        missing.append("FileName_<channel>")
    if missing:
        raise LayoutError(
            f"{path}: index table lacks column(s) {', '.join(missing)}; expected "
            "Metadata_Plate, Metadata_Well, Metadata_Site and FileName_X + PathName_X pairs"
        )
    return channels


def _resolve(base: Path, folder: str, name: str) -> Path:
    path = Path(folder.strip()).expanduser() / name
    return path if path.is_absolute() else (base / path).resolve()


# -- the table --------------------------------------------------------------------------


def _build_index(records: list[Record], problems: list[Problem], layout: str) -> PlateIndex:
    """Sort naturally, keep the first file per (plate, well, site, channel), report the rest."""
    kept: dict[tuple[str, str, int, str], str] = {}
    for *key, path in sorted(records, key=lambda r: natural_key(r[4])):
        first = kept.setdefault((key[0], key[1], key[2], key[3]), path)
        if first != path:
            problems.append((path, f"duplicate of {first} (same plate/well/site/channel)"))
    rows = sorted(
        ((*key, path) for key, path in kept.items()),
        key=lambda r: (natural_key(r[0]), natural_key(r[1]), r[2], natural_key(r[3])),
    )
    files = pd.DataFrame(rows, columns=COLUMNS).astype({"site": "int64"})
    return PlateIndex(files=files, layout=layout, problems=sorted(problems))


def natural_key(text: str) -> list:
    """Sort key treating digit runs as numbers: w2 < w10, Plate2 < Plate10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", text)]


def normalize_well(well: str) -> str:
    """'b2' → 'B02' (JUMP / pycytominer style); anything else is kept as given."""
    match = re.fullmatch(r"([A-Za-z]{1,2})0*(\d{1,2})", well.strip())
    return f"{match[1].upper()}{int(match[2]):02d}" if match else well.strip()


# -- summary helpers --------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _natural_unique(values: Iterable[str]) -> list[str]:
    return sorted(set(values), key=natural_key)


def _first(items: list[str]) -> str:
    more = f", … and {len(items) - SHOW} more" if len(items) > SHOW else ""
    return (", ".join(items[:SHOW]) or "none") + more


def _channel_hints(channels: list[str], layout: str) -> list[str]:
    """Point out what a person would want to know: gaps in numbered channels (a partial
    acquisition), or per-channel 'names' that look like they encode well/site."""
    numbered = [re.fullmatch(r"([A-Za-z]+)(\d+)", c) for c in channels]
    if channels and all(numbered) and len({m[1] for m in numbered if m}) == 1:
        prefix = numbered[0][1] if numbered[0] else ""
        present = {int(m[2]) for m in numbered if m}
        gaps = [f"{prefix}{i}" for i in range(1, max(present)) if i not in present]
        if gaps:
            return [f"note: no files at all for {', '.join(gaps)} (channel numbers have gaps)"]
    prefix = os.path.commonprefix(channels) if len(channels) > 1 else ""
    if layout == "channel-names" and len(prefix) >= 8:
        return [
            f"note: all channel names start with {prefix!r}; if the names encode well/site, "
            "pass --pattern with (?P<well>…)(?P<site>…)(?P<channel>…) groups"
        ]
    return []


def _missing_lines(sites: pd.DataFrame) -> list[str]:
    incomplete = sites[sites["missing"].map(len) > 0]
    if incomplete.empty:
        return ["sites missing channels: none"]
    lines = [f"sites missing channels: {len(incomplete)} of {len(sites)}"]
    for row in incomplete.head(SHOW).to_dict("records"):
        path = next(p for k, p in row.items() if k not in _SITE_KEYS and isinstance(p, str))
        label = " ".join(x for x in (row["plate"], row["well"], f"site {row['site']}") if x)
        lines.append(f"  {label}: missing {', '.join(row['missing'])}  ({Path(path).parent})")
    if len(incomplete) > SHOW:
        lines.append(f"  … and {len(incomplete) - SHOW} more")
    return lines


_SITE_KEYS = ("plate", "well", "site", "missing")


def _problem_lines(problems: list[Problem]) -> list[str]:
    if not problems:
        return ["problems: none"]
    lines = [f"problems: {len(problems)} file(s) not placed"]
    lines += [f"  {path}: {reason}" for path, reason in problems[:SHOW]]
    if len(problems) > SHOW:
        lines.append(f"  … and {len(problems) - SHOW} more")
    return lines
