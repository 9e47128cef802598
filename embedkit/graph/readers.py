"""Readers for the files a perturbation graph is built from: one home for each format.

Every reader returns an edge frame with the columns `source, target, weight` (one row per
line of the file, duplicates and self-loops kept; the graph builder merges them), node
names stripped and, for genes, upper-cased. Delimiters are sniffed from the header line
(tab, comma, else whitespace), so `.txt` files with commas (`gene_gene_StringDB.txt`) and
STRING's space-separated downloads both read; `.gz` is decompressed; `.parquet` is read
as a table.

* `read_string` — STRING: with a `combined_score` (or `score`) column, pairs scoring
  below 200 of 1000 are dropped and the weight is score/1000 (a 0–1 score, as STRING's API
  exports it, is thresholded at 0.2 and kept); a pair list without scores
  (`entity1,entity2`, as HuMAP and Reactome lists too) gets weight 1.
* `read_hetionet` — Hetionet's binary protein interactions (`source_symbol`,
  `target_symbol`), weight 1; `embedkit.graph.walk` smooths them.
* `read_edge_list` — any `source,target[,weight]` list (e.g. the simulated screen's
  `gene_graph.csv`); named columns or the first two (and a numeric third); weights must be
  non-negative and are kept when they lie in [0, 1], else divided by the largest.
* `read_stitch` — STITCH `chemical_chemical.links` tables (`chemical1 chemical2 …
  combined_score`): the same 200/1000 rule as STRING; PubChem ids are normalized by
  `compound_key` (`CIDm00002162`, `CIDs00002162` and `2162` are one compound).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError

EDGE_COLUMNS = ["source", "target", "weight"]
STRING_THRESHOLD = 200  # of 1000, the paper's "combined score" confidence cut
SCORE_SCALE = 1000.0

# Column pairs that name the two ends of an edge, most specific first.
NODE_COLUMNS = [
    ("preferredName_A", "preferredName_B"),  # STRING API export (gene symbols)
    ("node1", "node2"),  # STRING web export
    ("entity1", "entity2"),  # pair lists (STRING, HuMAP, Reactome)
    ("source_symbol", "target_symbol"),  # Hetionet PPI
    ("source", "target"),
    ("gene1", "gene2"),
    ("gene_a", "gene_b"),
    ("chemical1", "chemical2"),  # STITCH
    ("protein1", "protein2"),  # STRING protein.links
]
SCORE_COLUMNS = ("combined_score", "score")


def _first_line(path: Path) -> str:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", errors="replace") as fh:
            return fh.readline()
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err})") from err


def read_delimited(path: str | Path) -> pd.DataFrame:
    """A table whose delimiter is sniffed from its header (tab, comma, else whitespace)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.name.lower().endswith(".parquet"):
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable parquet table ({err})") from err
    header = _first_line(path).lstrip("#")
    sep = "\t" if "\t" in header else "," if "," in header else r"\s+"
    try:
        table = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            engine="c" if len(sep) == 1 else "python",
        )
    except pd.errors.EmptyDataError as err:
        raise InputError(f"{path}: the file is empty") from err
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable table ({err})") from err
    table.columns = [str(c).lstrip("#").strip() for c in table.columns]
    return table


def _node_columns(table: pd.DataFrame, path: Path, allow_positional: bool) -> tuple[str, str]:
    for a, b in NODE_COLUMNS:
        if a in table.columns and b in table.columns:
            return a, b
    if allow_positional and table.shape[1] >= 2:
        return str(table.columns[0]), str(table.columns[1])
    expected = " or ".join(f"{a},{b}" for a, b in NODE_COLUMNS[:5])
    raise InputError(
        f"{path}: no edge columns found; expected {expected} (columns: "
        f"{', '.join(map(str, table.columns[:8]))})"
    )


def _names(values: pd.Series, upper: bool) -> pd.Series:
    names = values.fillna("").astype(str).str.strip()
    return names.str.upper() if upper else names


def _edges(a: pd.Series, b: pd.Series, weight, upper: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "source": _names(a, upper).to_numpy(),
            "target": _names(b, upper).to_numpy(),
            "weight": np.broadcast_to(np.asarray(weight, dtype=np.float64), (len(a),)).copy(),
        }
    )
    empty = (frame["source"] == "") | (frame["target"] == "")
    return frame[~empty].reset_index(drop=True)


def _numeric(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & (table[column].astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}: column {column!r} must be numeric; data row {row + 1} holds "
            f"{table[column].iloc[row]!r}"
        )
    return values


def _scored(table: pd.DataFrame, path: Path, column: str, threshold: float) -> np.ndarray:
    """Scores → weights in [0, 1]: a 0–1000 scale is divided by 1000 and cut at
    `threshold`; a 0–1 scale is cut at threshold/1000. Rows below the cut get NaN."""
    score = _numeric(table, column, path).to_numpy(dtype=np.float64)
    if np.nanmin(score, initial=0.0) < 0:
        raise InputError(f"{path}: column {column!r} has negative scores")
    scale = SCORE_SCALE if np.nanmax(score, initial=0.0) > 1.0 else 1.0
    weight = score / scale
    return np.where(weight >= threshold / SCORE_SCALE, weight, np.nan)


def read_string(path: str | Path, threshold: float = STRING_THRESHOLD) -> pd.DataFrame:
    """STRING links: scored (≥ threshold of 1000, weight score/1000) or a pair list (weight 1)."""
    path = Path(path)
    table = read_delimited(path)
    a, b = _node_columns(table, path, allow_positional=True)
    score = next((c for c in SCORE_COLUMNS if c in table.columns), None)
    if score is None:
        return _edges(table[a], table[b], 1.0, upper=True)
    frame = _edges(table[a], table[b], _scored(table, path, score, threshold), upper=True)
    return frame.dropna(subset=["weight"]).reset_index(drop=True)


def read_hetionet(path: str | Path) -> pd.DataFrame:
    """Hetionet's binary protein–protein interactions (gene symbols), weight 1."""
    path = Path(path)
    table = read_delimited(path)
    for a, b in (("source_symbol", "target_symbol"), ("source", "target")):
        if a in table.columns and b in table.columns:
            return _edges(table[a], table[b], 1.0, upper=True)
    raise InputError(
        f"{path}: not a Hetionet interaction table; expected the columns source_symbol and "
        f"target_symbol (columns: {', '.join(map(str, table.columns[:8]))})"
    )


def read_edge_list(path: str | Path, upper: bool = True) -> pd.DataFrame:
    """`source,target[,weight]` (or the first two columns and a numeric third): weights kept
    in [0, 1], else divided by the largest; no weight column → 1."""
    path = Path(path)
    table = read_delimited(path)
    a, b = _node_columns(table, path, allow_positional=True)
    rest = [c for c in table.columns if c not in (a, b)]
    column = "weight" if "weight" in rest else None
    if column is None and rest and (a, b) == tuple(map(str, table.columns[:2])):
        third = pd.to_numeric(table[rest[0]], errors="coerce")
        column = rest[0] if len(table) and third.notna().all() else None
    if column is None:
        return _edges(table[a], table[b], 1.0, upper=upper)
    weight = _numeric(table, column, path).fillna(0.0).to_numpy(dtype=np.float64)
    if (weight < 0).any():
        raise InputError(f"{path}: column {column!r} has negative weights; edges need ≥ 0")
    top = weight.max(initial=0.0)
    if top > 1.0:
        weight = weight / top
    return _edges(table[a], table[b], weight, upper=upper)


_CID = re.compile(r"^(?:CID[MS]?)?0*(\d+)$", re.IGNORECASE)


def compound_key(value: object) -> str:
    """One spelling per compound: PubChem ids (`CIDm00002162`, `CIDs2162`, `2162`, `2162.0`)
    become `CID2162`; other names are stripped and kept."""
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    match = _CID.match(text)
    return f"CID{int(match.group(1))}" if match else text


def read_stitch(path: str | Path, threshold: float = STRING_THRESHOLD) -> pd.DataFrame:
    """STITCH chemical–chemical links with a score column (≥ threshold of 1000, score/1000)."""
    path = Path(path)
    table = read_delimited(path)
    a, b = _node_columns(table, path, allow_positional=True)
    score = next((c for c in SCORE_COLUMNS if c in table.columns), None)
    if score is None:
        rest = [c for c in table.columns if c not in (a, b)]
        numeric = [c for c in rest if pd.to_numeric(table[c], errors="coerce").notna().all()]
        if not numeric:
            raise InputError(
                f"{path}: no score column; a STITCH table needs combined_score (or score) "
                f"(columns: {', '.join(map(str, table.columns[:8]))})"
            )
        score = numeric[-1]
    frame = _edges(table[a], table[b], _scored(table, path, score, threshold), upper=False)
    frame = frame.dropna(subset=["weight"])
    frame["source"] = frame["source"].map(compound_key)
    frame["target"] = frame["target"].map(compound_key)
    return frame.reset_index(drop=True)
