"""Profile-table operations for any profile table: our embeddings or CellProfiler features.

Rows are objects (crops, cells, sites, wells); `Metadata_` columns describe them and every
other numeric column is a feature (see `infer_features`). The operations follow pycytominer's
conventions so their outputs drop into the same downstream tools.
"""

from __future__ import annotations

from embedkit.profiles.aggregate import aggregate
from embedkit.profiles.features import infer_features
from embedkit.profiles.normalize import NORMALIZERS, normalize

__all__ = ["NORMALIZERS", "aggregate", "batch_effect_report", "infer_features", "normalize"]


def __getattr__(name: str):
    # diagnostics needs scikit-learn, which the core install does not: import it on demand.
    if name == "batch_effect_report":
        from embedkit.profiles.diagnostics import batch_effect_report

        return batch_effect_report
    raise AttributeError(name)
