"""The feature spaces an InfoAlign model's decoders predict, and their min–max scaling.

A space is a list of column names and, per column, the range [min, max] that training
mapped onto [0, 1] (the decoders learn the scaled values with BCE). Training fits the range
on its profiles (`FeatureSpaceSpec.fit`) and stores it in the model's
`config.json → extra.feature_spaces` (`to_json`); retrieval reads it back (`from_json`)
and scales users' profiles exactly as the decoders saw them (`scale`). Fingerprint spaces
(Morgan bits) are already in {0, 1}: their range is [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PROFILE = "profile"
FINGERPRINT = "fingerprint"


@dataclass(frozen=True, eq=False)
class FeatureSpaceSpec:
    """Column names and the per-column [min, max] that scales them to [0, 1]."""

    columns: list[str]
    min: np.ndarray
    max: np.ndarray
    kind: str = PROFILE  # PROFILE (measured profiles) or FINGERPRINT
    info: dict = field(default_factory=dict)  # more plain-JSON facts (datasets, radius, …)

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.min, np.float64), np.asarray(self.max, np.float64)
        if not len(self.columns) == lo.shape[0] == hi.shape[0]:
            raise ValueError(
                f"a feature space needs one min and one max per column: {len(self.columns)} "
                f"columns, {lo.shape[0]} min, {hi.shape[0]} max"
            )
        object.__setattr__(self, "columns", [str(c) for c in self.columns])
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    @classmethod
    def fit(
        cls, values: np.ndarray, columns: Sequence[str], kind: str = PROFILE, **info
    ) -> FeatureSpaceSpec:
        """The NaN-aware per-column range of `values` (rows × columns)."""
        values = np.asarray(values, np.float64)
        return cls(list(columns), np.nanmin(values, axis=0), np.nanmax(values, axis=0), kind, info)

    @classmethod
    def fingerprint(cls, columns: Sequence[str], **info) -> FeatureSpaceSpec:
        """A space of bits: already in [0, 1]."""
        n = len(columns)
        return cls(list(columns), np.zeros(n), np.ones(n), FINGERPRINT, info)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """(x − min) / (max − min), clipped to [0, 1], as float32; a column that was constant
        in training (max = min) maps to 0 at its value; NaN stays NaN."""
        span = np.where(self.max > self.min, self.max - self.min, 1.0)
        scaled = (np.asarray(values, np.float64) - self.min) / span
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)

    def subset(self, index: Sequence[int] | np.ndarray) -> FeatureSpaceSpec:
        """The space restricted to the columns at `index`, in that order."""
        index = np.asarray(index, np.int64)
        columns = [self.columns[i] for i in index]
        return FeatureSpaceSpec(columns, self.min[index], self.max[index], self.kind, self.info)

    def to_json(self) -> dict:
        """Plain JSON: columns, min, max, kind and the extra facts."""
        return {
            "columns": list(self.columns),
            "min": [float(v) for v in self.min],
            "max": [float(v) for v in self.max],
            "kind": self.kind,
            **self.info,
        }

    @classmethod
    def from_json(cls, data: dict) -> FeatureSpaceSpec:
        """The mirror of `to_json`; a space without min/max (fingerprints) spans [0, 1]."""
        data = dict(data)
        columns = list(data.pop("columns"))
        n = len(columns)
        lo = data.pop("min", None)
        hi = data.pop("max", None)
        kind = data.pop("kind", PROFILE)
        return cls(
            columns,
            np.zeros(n) if lo is None else np.asarray(lo, np.float64),
            np.ones(n) if hi is None else np.asarray(hi, np.float64),
            kind,
            data,
        )
