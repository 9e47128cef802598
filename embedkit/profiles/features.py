"""Which columns of a profile table are features.

Default: every numeric column that does not start with `Metadata_` (booleans excluded), minus
CellProfiler's row bookkeeping (`ImageNumber`, `ObjectNumber`, `TableNumber`), which are
numbers but not measurements. Or an explicit list, where `*`/`?` patterns select by name
(`Cells_*`), which is how pycytominer users think of compartments.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from embedkit.errors import InputError

METADATA_PREFIX = "Metadata_"
BOOKKEEPING = frozenset({"ImageNumber", "ObjectNumber", "TableNumber"})


def infer_features(table: pd.DataFrame, features: Sequence[str] | None = None) -> list[str]:
    """Feature column names, in table order; an InputError when there are none or one is bad."""
    if features is None:
        found = [
            str(c)
            for c in table.columns
            if not str(c).startswith(METADATA_PREFIX)
            and str(c) not in BOOKKEEPING
            and is_numeric_dtype(table[c])
            and not is_bool_dtype(table[c])
        ]
        if not found:
            raise InputError(
                "no feature columns: expected numeric columns not starting with 'Metadata_' "
                f"(columns: {_preview(table.columns)}); text cells in a CSV column keep it "
                "from being numeric, or name the features explicitly"
            )
        return found
    return _explicit(table, features)


def _explicit(table: pd.DataFrame, features: Sequence[str]) -> list[str]:
    if isinstance(features, str):
        features = [features]
    columns = [str(c) for c in table.columns]
    chosen: list[str] = []
    missing: list[str] = []
    for name in features:
        if any(ch in name for ch in "*?["):
            hits = [c for c in columns if fnmatchcase(c, name)]
        else:
            hits = [name] if name in columns else []
        if not hits:
            missing.append(name)
        chosen.extend(h for h in hits if h not in chosen)
    if missing:
        raise InputError(
            f"feature column(s) not found: {', '.join(missing)} (columns: {_preview(columns)})"
        )
    text = [c for c in chosen if not is_numeric_dtype(table[c]) or is_bool_dtype(table[c])]
    if text:
        raise InputError(f"feature column(s) are not numeric: {_preview(text)}")
    return chosen


def _preview(columns, limit: int = 12) -> str:
    names = [str(c) for c in columns]
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(none)"


def metadata_columns(table: pd.DataFrame) -> list[str]:
    """The `Metadata_` columns, for error messages that list what is available."""
    return [str(c) for c in table.columns if str(c).startswith(METADATA_PREFIX)]
