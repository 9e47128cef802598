"""How far a profile is from "no effect", from the profile itself.

Inactive compounds have no morphology to retrieve and swamp retrieval metrics (MolPhenix,
Fradkin et al. 2024), so metrics are also reported for the active ones. A profile's
activity is its root-mean-square robust z-distance from the control profile:

    activity = sqrt(mean_j ((x_j − median_j) / (1.4826 · MAD_j))²)

with the median and MAD per feature over the control profiles (`--controls`), or over all
the indexed profiles when there are none. Noise around the centre scores about 1; a profile
is called active above `ACTIVE_THRESHOLD` (2: twice the typical spread on average). The
centre and spread are fixed when the index is built and recorded in its manifest, so
`index add` scores new profiles on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVITY_COLUMN = "Profile_Activity"
ACTIVE_THRESHOLD = 2.0
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class ActivityScale:
    center: np.ndarray
    spread: np.ndarray
    reference: str  # "controls (N profiles)" or "all N profiles"

    @classmethod
    def fit(cls, values: np.ndarray, controls: np.ndarray | None = None) -> ActivityScale:
        values = np.asarray(values, np.float64)
        if controls is not None and np.any(controls):
            basis, what = values[np.asarray(controls, bool)], "controls"
        else:
            basis, what = values, "all"
        center = np.median(basis, axis=0)
        mad = MAD_TO_SD * np.median(np.abs(basis - center), axis=0)
        if len(basis) > 1:  # a feature constant across the basis: fall back to its std
            fallback = values.std(axis=0)
            mad = np.where(mad > 1e-12, mad, np.where(fallback > 1e-12, fallback, 1.0))
        else:
            mad = np.ones_like(center)
        label = (
            f"controls ({len(basis)} profiles)"
            if what == "controls"
            else f"all {len(basis)} profiles"
        )
        return cls(center, mad, label)

    def score(self, values: np.ndarray) -> np.ndarray:
        z = (np.asarray(values, np.float64) - self.center) / self.spread
        return np.sqrt(np.mean(z**2, axis=1))

    def to_manifest(self) -> dict:
        return {
            "center": self.center.tolist(),
            "spread": self.spread.tolist(),
            "reference": self.reference,
            "threshold": ACTIVE_THRESHOLD,
        }

    @classmethod
    def from_manifest(cls, data: dict) -> ActivityScale:
        return cls(
            np.asarray(data["center"], np.float64),
            np.asarray(data["spread"], np.float64),
            str(data.get("reference", "")),
        )
