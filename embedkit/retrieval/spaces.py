"""Match a profile table's feature columns to one of the model's decoder feature spaces.

A model trained by `train.infoalign` records, per decoder, its feature space
(`embedkit.molecules.feature_spaces.FeatureSpaceSpec`: column names and the min/max that
scale them to [0, 1]). Users' tables rarely carry exactly our feature selection, so
matching is by column name (case-insensitive) and any subset of a space is accepted: only
the shared columns are scored, scaled by the same spec training used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.molecules.feature_spaces import PROFILE, FeatureSpaceSpec

METADATA_PREFIX = "Metadata_"


@dataclass(frozen=True)
class SpaceMatch:
    """The shared columns of a table and a decoder space, in the space's order."""

    name: str
    columns: list[str]  # the table's names for the shared columns
    decoder_index: np.ndarray  # their positions in the decoder's output
    min: np.ndarray
    max: np.ndarray
    space_size: int
    ignored: list[str]  # the table's feature columns the space does not have

    @property
    def spec(self) -> FeatureSpaceSpec:
        """The shared columns' part of the decoder's space (under the table's names)."""
        return FeatureSpaceSpec(self.columns, self.min, self.max)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "columns": self.columns,
            "decoder_index": self.decoder_index.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "space_size": self.space_size,
            "ignored": self.ignored,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SpaceMatch:
        return cls(
            data["name"],
            list(data["columns"]),
            np.asarray(data["decoder_index"], dtype=np.int64),
            np.asarray(data["min"], dtype=np.float64),
            np.asarray(data["max"], dtype=np.float64),
            int(data["space_size"]),
            list(data.get("ignored", [])),
        )


def profile_feature_columns(table: pd.DataFrame) -> list[str]:
    """Numeric columns outside the pycytominer `Metadata_` namespace."""
    return [
        str(c)
        for c in table.columns
        if not str(c).startswith(METADATA_PREFIX) and pd.api.types.is_numeric_dtype(table[c])
    ]


def match_columns(available: Iterable, wanted: Sequence[str]) -> dict[str, str]:
    """The one rule for finding feature columns in a table (`index build` and `index add`):
    names match without regard to case. Maps each name of `wanted` present in `available`
    to the name as `available` spells it; two columns differing only in case are refused."""
    wanted_lower = {w.lower() for w in wanted}
    by_lower: dict[str, str] = {}
    for column in map(str, available):
        key = column.lower()
        if key in wanted_lower and by_lower.get(key, column) != column:
            raise InputError(
                f"columns {by_lower[key]!r} and {column!r} differ only in case; feature "
                "columns are matched without case, so rename or drop one"
            )
        by_lower.setdefault(key, column)
    return {w: by_lower[w.lower()] for w in wanted if w.lower() in by_lower}


def profile_spaces(feature_spaces: dict) -> dict[str, FeatureSpaceSpec]:
    """The model's decoder spaces that describe measured profiles (not fingerprints)."""
    return {
        n: FeatureSpaceSpec.from_json(s)
        for n, s in feature_spaces.items()
        if s.get("kind") == PROFILE
    }


def describe_spaces(feature_spaces: dict) -> str:
    spaces = profile_spaces(feature_spaces)
    if not spaces:
        return "none (this model has no profile decoders)"
    return "; ".join(
        f"{n} ({len(s.columns)} columns, e.g. {', '.join(s.columns[:3])})"
        for n, s in spaces.items()
    )


def match_feature_space(
    columns: list[str], feature_spaces: dict, name: str | None = None
) -> SpaceMatch:
    """Pick the decoder space sharing most columns (or `name`); error if none is shared."""
    spaces = profile_spaces(feature_spaces)
    if name is not None and name not in spaces:
        raise InputError(
            f"the model has no profile feature space {name!r}; it supports: "
            f"{describe_spaces(feature_spaces)}"
        )
    if not columns:
        raise InputError("the profile table has no numeric feature columns (non-Metadata_)")
    candidates = [name] if name is not None else sorted(spaces)
    found = {sp: match_columns(columns, spaces[sp].columns) for sp in candidates}
    counts = {sp: len(found[sp]) for sp in candidates}
    top = max(counts.values(), default=0)
    winners = [sp for sp, n in counts.items() if n == top and n > 0]
    if len(winners) > 1:
        raise InputError(
            f"the table's columns fit feature spaces {', '.join(map(repr, winners))} equally; "
            "choose one with --feature-space"
        )
    best = (top, winners[0]) if winners else None
    if best is None:
        raise InputError(
            f"none of the table's {len(columns)} feature columns (e.g. "
            f"{', '.join(columns[:3])}) belongs to a feature space of the model; it supports: "
            f"{describe_spaces(feature_spaces)}"
        )
    space, names = spaces[best[1]], found[best[1]]
    index = [i for i, c in enumerate(space.columns) if c in names]
    shared = space.subset(index)
    shared_lower = {c.lower() for c in shared.columns}
    return SpaceMatch(
        name=best[1],
        columns=[names[c] for c in shared.columns],
        decoder_index=np.asarray(index, dtype=np.int64),
        min=shared.min,
        max=shared.max,
        space_size=len(space.columns),
        ignored=[c for c in columns if c.lower() not in shared_lower],
    )


def scale_profiles(values: np.ndarray, space: SpaceMatch) -> np.ndarray:
    """Min-max scale with the training range and clip to [0, 1], as the decoders saw them."""
    return space.spec.scale(values)


def nan_rows(values: np.ndarray) -> np.ndarray:
    """Row numbers (0-based) with any missing or infinite feature."""
    return np.flatnonzero(~np.isfinite(values).all(axis=1))
