"""Plate maps: what was in each well, joined onto a table of sites, crops or wells.

A pycytominer `annotate`-style join, used by `embed-images --platemap` and `aggregate
--platemap`. A plate map is a CSV/TSV/Parquet table, one row per well (or per site: see
below). As in pycytominer, columns without the `Metadata_` prefix get it, and pycytominer's
names are understood: `well_position` is the well column, `plate_map_name` the plate column.

* Keys: the well (`Metadata_Well`, required) and the plate (`Metadata_Plate`, optional: a
  plate map without a plate column describes every plate). Wells are compared in one
  spelling (`b2`, `B2` and `B02` are the same well).
* Unlike pycytominer's inner join, every row of the table is kept: a well the plate map does
  not list keeps empty metadata and is counted (`PlatemapReport.unmatched`), so a typo in a
  plate map is seen, not silently dropped.
* A plate map listing a well several times (e.g. one row per site, like a synthetic
  plate's metadata.csv) is collapsed to one row per well, as `aggregate` collapses
  metadata: columns constant within every well are kept, the others left out and named.
* Columns the table already has (besides the keys) keep the table's values, and are named
  where the plate map disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.profiles.features import METADATA_PREFIX

PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
# After prefixing: the names each key may have in a plate map (compared case-insensitively).
WELL_NAMES = (WELL, "Metadata_well_position", "Metadata_Well_Position")
PLATE_NAMES = (PLATE, "Metadata_plate_map_name", "Metadata_Plate_Map_Name")
SHOW = 3  # examples named in a note


@dataclass
class PlateMap:
    """A plate map read and checked: one row per (plate, well), keys under our names."""

    table: pd.DataFrame  # PLATE (when per_plate), WELL, then the annotation columns
    per_plate: bool
    provenance: dict  # file (as given, never an absolute path), sha256, rows, columns
    left_out: list[str] = field(default_factory=list)  # columns varying within a well

    @property
    def columns(self) -> list[str]:
        """The annotation columns it adds (not the keys)."""
        return [c for c in self.table.columns if c not in (PLATE, WELL)]


@dataclass
class PlatemapReport:
    """What one join did, for the summary line and the run info."""

    wells: int  # distinct (plate, well) pairs in the table
    unmatched: list[tuple[str, str]]  # (plate, well) pairs the plate map does not list
    added: list[str]
    kept_from_table: list[str]  # plate-map columns the table already has, with other values
    left_out: list[str]
    plates_without_match: list[str] = field(default_factory=list)  # plate-map plates unseen

    def note(self, name: str) -> str:
        """'plate map metadata.csv: 7 of 8 wells annotated, 1 not in it (P1 B05); …'."""
        annotated = self.wells - len(self.unmatched)
        parts = [f"plate map {name}: {annotated} of {self.wells} wells annotated"]
        if self.unmatched:
            shown = ", ".join(f"{p} {w}".strip() for p, w in self.unmatched[:SHOW])
            more = ", …" if len(self.unmatched) > SHOW else ""
            parts[0] += f", {len(self.unmatched)} not in it ({shown}{more})"
        if self.plates_without_match and len(self.unmatched) == self.wells:
            parts.append(
                f"none of its plates ({_preview(self.plates_without_match)}) is a plate of "
                "the table"
            )
        if self.left_out:
            parts.append(f"left out, varying within a well: {_preview(self.left_out)}")
        if self.kept_from_table:
            parts.append(f"kept from the table: {_preview(self.kept_from_table)}")
        return "; ".join(parts)

    def record(self) -> dict:
        """For the output's run info."""
        return {
            "wells": self.wells,
            "unmatched_wells": len(self.unmatched),
            "columns_added": self.added,
            **({"columns_left_out": self.left_out} if self.left_out else {}),
            **({"columns_kept_from_table": self.kept_from_table} if self.kept_from_table else {}),
        }


def combine_reports(reports: list[PlatemapReport]) -> PlatemapReport:
    """One report for several joins with one plate map (embed-images: one per plate)."""
    unseen = set(reports[0].plates_without_match)
    for report in reports[1:]:
        unseen &= set(report.plates_without_match)
    first = reports[0]
    return PlatemapReport(
        wells=sum(r.wells for r in reports),
        unmatched=[pair for r in reports for pair in r.unmatched],
        added=first.added,
        kept_from_table=first.kept_from_table,
        left_out=first.left_out,
        plates_without_match=[p for p in first.plates_without_match if p in unseen],
    )


def _preview(names: list[str], limit: int = SHOW) -> str:
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def well_key(values: pd.Series) -> pd.Series:
    """One spelling per well ('b2', 'B2', 'B02' → 'B02'); other text is kept as given."""
    from embedkit.images.discovery import normalize_well

    return values.astype(str).map(normalize_well)


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in reversed(columns)}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def read_platemap(path: str | Path) -> PlateMap:
    """Read a plate map (.csv/.tsv/.parquet), prefix its columns, find its keys and collapse
    it to one row per well; every problem is one InputError naming the file."""
    from embedkit.io import read_table
    from embedkit.profiles.reading import type_metadata
    from embedkit.provenance import portable_path
    from embedkit.zoo import sha256_of

    path = Path(path)
    raw = read_table(path)
    raw.columns = [
        str(c) if str(c).startswith(METADATA_PREFIX) else f"{METADATA_PREFIX}{c}"
        for c in raw.columns
    ]
    if raw.columns.duplicated().any():
        dup = raw.columns[raw.columns.duplicated()][0]
        raise InputError(f"{path}: column {dup} appears twice once prefixed with Metadata_")
    columns = list(raw.columns)
    well = _find(columns, WELL_NAMES)
    if well is None:
        raise InputError(
            f"{path}: plate map has no well column: expected {WELL} (or Well, well_position); "
            f"columns: {_preview(columns, 12)}"
        )
    plate = _find(columns, PLATE_NAMES)
    raw = raw.rename(columns={well: WELL, **({plate: PLATE} if plate else {})})
    keys = [PLATE, WELL] if plate else [WELL]
    if len(raw) == 0:
        raise InputError(f"{path}: plate map has no rows")
    others = [c for c in raw.columns if c not in keys]
    if not path.name.lower().endswith(".parquet"):  # text: typed as pandas reads a CSV
        raw = pd.concat([raw[keys], type_metadata(raw[others])], axis=1)
    raw[WELL] = well_key(raw[WELL])
    if plate:
        raw[PLATE] = raw[PLATE].astype(str).str.strip()
    blank = raw[WELL].str.strip().isin(["", "nan", "None"])
    if blank.any():
        raise InputError(f"{path}: plate map row {int(np.argmax(blank)) + 2} has no well")
    grouped = raw.groupby(keys, sort=False)
    varying = grouped[others].nunique(dropna=False).max() if others else pd.Series(dtype=int)
    left_out = [c for c in others if varying.get(c, 0) > 1]
    kept = [c for c in others if c not in left_out]
    table = raw.drop_duplicates(keys)[keys + kept].reset_index(drop=True)
    provenance = {
        "file": portable_path(path),
        "sha256": sha256_of(path),
        "rows": len(raw),
        "wells": len(table),
        "join": keys,
    }
    return PlateMap(table, bool(plate), provenance, left_out)


def annotate(table: pd.DataFrame, platemap: PlateMap) -> tuple[pd.DataFrame, PlatemapReport]:
    """`table` with the plate map's columns after its own `Metadata_` columns, row order and
    count unchanged; wells the plate map does not list get empty values and are reported."""
    keys = [PLATE, WELL] if platemap.per_plate else [WELL]
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise InputError(
            f"the table has no {missing[0]} column to join the plate map on"
            + (" (use a plate map without a plate column)" if missing[0] == PLATE else "")
        )
    clashes = [c for c in platemap.columns if c in table.columns]
    added = [c for c in platemap.columns if c not in table.columns]
    left = pd.DataFrame({k: table[k].astype(str).str.strip() for k in keys})
    left[WELL] = well_key(left[WELL])
    right = platemap.table[keys + platemap.columns]
    joined = left.merge(right, on=keys, how="left", indicator=True, validate="many_to_one")
    matched = (joined["_merge"] == "both").to_numpy()
    kept_from_table = [  # named only where the plate map says something else
        c
        for c in clashes
        if (table[c].astype(str).to_numpy() != joined[c].astype(str).to_numpy())[matched].any()
    ]
    plates = table[PLATE].astype(str) if PLATE in table.columns else pd.Series([""] * len(table))
    pairs = pd.DataFrame({"plate": plates.to_numpy(), "well": table[WELL].astype(str).to_numpy()})
    pairs["matched"] = matched
    wells = pairs.drop_duplicates(["plate", "well"])
    unmatched = [(p, w) for p, w, m in wells.itertuples(index=False) if not m]
    seen = set(left[PLATE]) if platemap.per_plate else set()
    unseen = (
        [p for p in platemap.table[PLATE].unique() if p not in seen] if platemap.per_plate else []
    )
    position = _insert_position(table)
    out = pd.concat(
        [
            table.iloc[:, :position],
            joined[added].set_axis(table.index),
            table.iloc[:, position:],
        ],
        axis=1,
    )
    report = PlatemapReport(
        wells=len(wells),
        unmatched=unmatched,
        added=added,
        kept_from_table=kept_from_table,
        left_out=list(platemap.left_out),
        plates_without_match=[str(p) for p in unseen],
    )
    return out, report


def _insert_position(table: pd.DataFrame) -> int:
    """After the last `Metadata_` column (metadata first, then features, as we write)."""
    flags = [str(c).startswith(METADATA_PREFIX) for c in table.columns]
    return max((i + 1 for i, f in enumerate(flags) if f), default=0)
