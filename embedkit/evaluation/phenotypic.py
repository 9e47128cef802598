"""Phenotypic activity and consistency with copairs' mean average precision (mAP).

copairs' own recipes (its `phenotypic_analysis.py` example), so numbers agree with copairs
called directly:

* **activity** — is each group (compound, gene, dose…) told apart from the controls? Every
  control row gets its own reference index (`assign_reference_index`); a profile's positives
  share its group and reference index (its replicates), its negatives are the controls.
  `average_precision` per profile, controls dropped, then `mean_average_precision` per group
  with a permutation p-value, Benjamini–Hochberg corrected.
* **consistency** — do active groups sharing a label (e.g. mechanism of action) look alike?
  The active groups' replicates are collapsed to median consensus profiles; positives share
  the label, negatives have another one; labels holding `|` are several labels (copairs'
  multilabel AP). mAP per label.

Output columns are copairs' own: `mean_average_precision`, `mean_normalized_average_precision`,
`p_value`, `corrected_p_value`, `below_p`, `below_corrected_p`. copairs is imported on use
(the `copairs` extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.profiles.features import infer_features, metadata_columns
from embedkit.profiles.normalize import control_mask

MAP_COLUMNS = (
    "mean_average_precision",
    "mean_normalized_average_precision",
    "p_value",
    "corrected_p_value",
    "below_p",
    "below_corrected_p",
)
DISTANCES = ("cosine", "abs_cosine", "correlation", "euclidean", "manhattan", "chebyshev")
DEFAULT_NULL_SIZE = 1_000_000  # copairs' recipes
LABEL_SEPARATOR = "|"


@dataclass(frozen=True)
class MapSettings:
    """copairs' knobs: the null distribution's size and seed, the significance threshold,
    the similarity, and where copairs caches null distributions (None: ~/.copairs)."""

    null_size: int = DEFAULT_NULL_SIZE
    threshold: float = 0.05
    seed: int = 0
    distance: str = "cosine"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.null_size < 1:
            raise InputError(f"null size must be at least 1, got {self.null_size}")
        if not 0 < self.threshold < 1:
            raise InputError(f"the p-value threshold must be in (0, 1), got {self.threshold}")
        if self.distance not in DISTANCES:
            raise InputError(
                f"unknown distance {self.distance!r}; use one of {', '.join(DISTANCES)}"
            )

    def record(self) -> dict:
        return {
            "null_size": self.null_size,
            "threshold": self.threshold,
            "seed": self.seed,
            "distance": self.distance,
        }


@dataclass
class MapResult:
    """One mAP table (a row per group or label) and what the user must know about it."""

    table: pd.DataFrame  # the key column, then MAP_COLUMNS
    key: str
    rows: int  # profiles scored
    notes: list[str] = field(default_factory=list)

    @property
    def active(self) -> int:
        return int(self.table["below_corrected_p"].sum()) if len(self.table) else 0

    @property
    def mean_map(self) -> float:
        return float(self.table["mean_average_precision"].mean()) if len(self.table) else np.nan


def counted(n: int, noun: str) -> str:
    """'1 group', '2 groups'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _copairs():
    try:
        from copairs import map as copairs_map
        from copairs.matching import UnpairedException, assign_reference_index
    except ImportError as err:
        raise InputError("evaluate map needs copairs: pip install 'embedkit[copairs]'") from err
    return copairs_map, assign_reference_index, UnpairedException


def _check_column(table: pd.DataFrame, column: str, what: str) -> None:
    if column not in table.columns:
        raise InputError(
            f"{what} column {column!r} is not in the table; Metadata columns: "
            f"{', '.join(metadata_columns(table)) or '(none)'}"
        )


def _unused_name(table: pd.DataFrame, name: str) -> str:
    while name in table.columns:
        name += "_"
    return name


def _missing(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _map_table(ap: pd.DataFrame, key: str, settings: MapSettings) -> pd.DataFrame:
    copairs_map, _, _ = _copairs()
    scores = copairs_map.mean_average_precision(
        ap,
        [key],
        null_size=settings.null_size,
        threshold=settings.threshold,
        seed=settings.seed,
        progress_bar=False,
        cache_dir=settings.cache_dir,
    )
    return scores[[key, *MAP_COLUMNS]].reset_index(drop=True)


def phenotypic_activity(
    table: pd.DataFrame,
    group_by: str,
    controls: str,
    features: list[str] | None = None,
    settings: MapSettings | None = None,
) -> MapResult:
    """mAP of each `group_by` group against the control rows the pandas query `controls`
    selects (copairs' activity recipe). Groups with one profile have no replicate to find
    and are not scored; rows with a missing group or missing features are left out."""
    settings = settings or MapSettings()
    copairs_map, assign_reference_index, unpaired = _copairs()
    _check_column(table, group_by, "group")
    table = table.reset_index(drop=True)
    feats = [f for f in infer_features(table, features) if f != group_by]
    is_control = control_mask(table, controls)
    notes = []
    keep = ~_missing(table[group_by]).to_numpy()
    if (~keep).any():
        notes.append(f"{counted(int((~keep).sum()), 'row')} without a {group_by} left out")
    incomplete = table[feats].isna().any(axis=1).to_numpy() & keep
    if incomplete.any():
        notes.append(f"{counted(int(incomplete.sum()), 'row')} with missing features left out")
        keep &= ~incomplete
    table, is_control = table[keep].reset_index(drop=True), is_control[keep]
    if not is_control.any():
        raise InputError(f"controls query {controls!r} selects no usable rows")
    if is_control.all():
        raise InputError(f"controls query {controls!r} selects every row: nothing to score")

    reference = _unused_name(table, "Metadata_Reference_Index")
    meta = assign_reference_index(
        table[[group_by]], table.index[is_control], reference_col=reference, default_value=-1
    )
    try:
        ap = copairs_map.average_precision(
            meta,
            table[feats].to_numpy(),
            pos_sameby=[group_by, reference],
            pos_diffby=[],
            neg_sameby=[],
            neg_diffby=[group_by, reference],
            distance=settings.distance,
            progress_bar=False,
        )
    except unpaired as err:
        raise InputError(
            f"no {group_by} group has two rows outside the controls: mAP needs replicates"
        ) from err
    ap = ap[~is_control]
    result = _map_table(ap, group_by, settings)
    groups = table.loc[~is_control, group_by].nunique()
    if groups > len(result):
        notes.append(f"{counted(groups - len(result), 'group')} with a single profile not scored")
    return MapResult(result, group_by, int((~is_control).sum()), notes)


def phenotypic_consistency(
    table: pd.DataFrame,
    group_by: str,
    consistency_by: str,
    activity: MapResult,
    controls: str,
    features: list[str] | None = None,
    settings: MapSettings | None = None,
    label_separator: str | None = LABEL_SEPARATOR,
) -> MapResult:
    """mAP of each `consistency_by` label over the median consensus profiles of the groups
    `activity` found active (copairs' consistency recipe). A label holding
    `label_separator` names several labels. Empty when no two active groups share a label."""
    settings = settings or MapSettings()
    copairs_map, _, unpaired = _copairs()
    _check_column(table, consistency_by, "consistency")
    if consistency_by == group_by:
        raise InputError("--consistency-by must be another column than --group-by")
    table = table.reset_index(drop=True)
    feats = [f for f in infer_features(table, features) if f not in (group_by, consistency_by)]
    active = activity.table.loc[activity.table["below_corrected_p"], group_by]
    rows = table[
        ~control_mask(table, controls)
        & table[group_by].isin(active).to_numpy()
        & ~_missing(table[consistency_by]).to_numpy()
        & table[feats].notna().all(axis=1).to_numpy()
    ]
    consensus = rows.groupby([group_by, consistency_by], as_index=False, sort=True)[feats].median()
    labels = consensus[consistency_by]
    multilabel = (
        label_separator is not None
        and labels.dtype == object
        and labels.astype(str).str.contains(label_separator, regex=False).any()
    )
    if multilabel:
        consensus[consistency_by] = labels.astype(str).str.split(label_separator, regex=False)
    empty = pd.DataFrame(columns=[consistency_by, *MAP_COLUMNS])
    note = f"no two active groups share a {consistency_by}: consistency has nothing to score"
    try:
        meta = consensus[[group_by, consistency_by]]
        args = dict(pos_sameby=[consistency_by], pos_diffby=[], neg_sameby=[])
        args.update(neg_diffby=[consistency_by], distance=settings.distance, progress_bar=False)
        if len(consensus) < 2:
            raise unpaired("fewer than two consensus profiles")
        if multilabel:
            ap = copairs_map.multilabel.average_precision(
                meta, consensus[feats].to_numpy(), multilabel_col=consistency_by, **args
            )
        else:
            ap = copairs_map.average_precision(meta, consensus[feats].to_numpy(), **args)
    except unpaired:
        return MapResult(empty, consistency_by, len(consensus), [note])
    if not (ap["n_pos_pairs"] > 0).any():
        return MapResult(empty, consistency_by, len(consensus), [note])
    result = _map_table(ap, consistency_by, settings)
    return MapResult(result, consistency_by, len(consensus))
