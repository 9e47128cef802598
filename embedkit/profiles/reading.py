"""Read a profile table with the column types pandas would give it, identifiers kept whole.

`embedkit.io.read_table` reads text tables as strings (right for SMILES and names), so a
`--controls "Metadata_mmoles_per_liter == 0"` query found no rows in a CSV, and typing a
454-feature CSV cell by cell took 1.6 s where `pd.read_csv` takes 0.1 s (this: 0.24 s,
2-core shared CPU, the real A549 plate). Here pandas' own
parser types the feature columns, and a `Metadata_` column becomes numbers (or True/False)
when every value reads as one *and* nothing would be lost: a column holding "0001"-style
values (plate barcodes, padded IDs) or integers longer than a float holds exactly stays
text, as do well names ("A01"). Integers with missing cells become pandas' nullable
`Int64` (pandas itself would make them floats, printing an ID as "1234.0"). Parquet keeps
the types it was written with.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.io import MISSING_TEXT, coerce_numeric_text, read_table
from embedkit.profiles.features import METADATA_PREFIX

# pandas' default missing-value markers (its read_csv documentation), for feature columns
# only: a metadata value "NA" or "None" may be a name, so metadata keeps its text.
_PANDAS_NA = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
_LEADING_ZERO = re.compile(r"^[+-]?0\d")  # "0001", "-05": an identifier, not a number
_LONG_INTEGER = re.compile(r"^[+-]?\d{16,}$")  # past float64's exact integers (2**53)
_BOOLEAN_TEXT = {"true": True, "false": False}


def read_profiles(path: str | Path) -> pd.DataFrame:
    """A profile table by suffix: features numeric, `Metadata_` columns typed when safe."""
    path = Path(path)
    table = _read_text_typed(path) if _is_plain_text_table(path) else None
    if table is None:
        table = read_table(path)
    table = coerce_numeric_text(table)  # feature cells pandas left as text ("NONE", " 1.5 ")
    return type_metadata(table) if _is_text_suffix(path) else table


def type_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """Text `Metadata_` columns → int, float or bool where pandas would type them and no
    value changes meaning; identifiers that merely look numeric stay text."""
    out = table.copy()
    for column in out.columns:
        if str(column).startswith(METADATA_PREFIX) and out[column].dtype == object:
            typed = _typed_column(out[column])
            if typed is not None:
                out[column] = typed
    return out


def _typed_column(values: pd.Series) -> pd.Series | None:
    if not all(isinstance(v, str) for v in values):
        return None
    text = values.str.strip()
    missing = text.str.lower().isin(MISSING_TEXT)
    present = text[~missing]
    if present.empty:
        return pd.Series(np.nan, index=values.index, dtype=np.float64)  # as pandas reads it
    lowered = present.str.lower()
    if lowered.isin(_BOOLEAN_TEXT).all():
        return lowered.map(_BOOLEAN_TEXT).astype(bool) if not missing.any() else None
    if present.str.match(_LEADING_ZERO).any() or present.str.match(_LONG_INTEGER).any():
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return None
    if missing.any():
        typed = pd.to_numeric(text.where(~missing), errors="coerce")
        if pd.api.types.is_integer_dtype(numbers):  # IDs with gaps stay 1234, not 1234.0
            return typed.astype("Int64")
        return typed.astype(np.float64)
    return numbers  # int64 when every value is an integer, as pandas reads it


def _table_suffix(path: Path) -> str:
    names = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return names[-1] if names else ""


def _is_text_suffix(path: Path) -> bool:
    return _table_suffix(path) in (".csv", ".tsv", ".txt")


def _is_plain_text_table(path: Path) -> bool:
    return path.is_file() and _is_text_suffix(path)


def _read_text_typed(path: Path) -> pd.DataFrame | None:
    """pandas' parser with its own typing for features and text for metadata; None when the
    file needs `read_table`'s care (NUL bytes, repeated column names) or its messages."""
    from embedkit.io import _read_text  # the one decoder of text tables (gzip, BOM)

    try:
        text = _read_text(path)
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    if not text.strip() or "\0" in text:
        return None
    sep = "," if _table_suffix(path) == ".csv" else "\t"
    names = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    if not names or len(set(names)) != len(names):
        return None  # pandas renames repeated columns: read_table reads them its way
    metadata = [n for n in names if n.startswith(METADATA_PREFIX)]
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=dict.fromkeys(metadata, str),
            keep_default_na=False,
            na_values={n: _PANDAS_NA for n in names if n not in metadata},
        )
    except (pd.errors.ParserError, ValueError):
        return None
