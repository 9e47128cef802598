"""Normalize profiles against controls, per batch: the step that makes plates comparable.

Every method is a small function `(x, is_control, groups, n_components) -> array` over a float64
feature matrix; `NORMALIZERS` maps the public names to them. Statistics come from the control
rows (all rows when no controls are given) of each group of `by` (the whole table when `by` is
None). Metadata columns and row order pass through unchanged.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from embedkit.errors import InputError
from embedkit.profiles.features import infer_features, metadata_columns

MAD_SCALE = 1.4826  # MAD → standard deviation for normal data
MAD_EPSILON = 1e-18  # pycytominer's default
PC_PREFIX = "PC_"

Groups = list[tuple[object, np.ndarray]]  # (group name, row positions)
Normalizer = Callable[[np.ndarray, np.ndarray, Groups, "int | None"], np.ndarray]


def standardize(
    x: np.ndarray, is_control: np.ndarray, groups: Groups, n_components: int | None
) -> np.ndarray:
    """(x − mean)/std per group: the default when features are roughly normal."""
    return _per_group(x, is_control, groups, _center_scale)


def mad_robustize(
    x: np.ndarray, is_control: np.ndarray, groups: Groups, n_components: int | None
) -> np.ndarray:
    """(x − median)/(1.4826·MAD + 1e-18), pycytominer's: robust to outlier wells and cells.

    A feature constant among a group's controls (MAD 0) but not among its other rows is
    divided by 1e-18 (values up to ~1e17), as pycytominer does; a `ZeroMadWarning` counts
    those features so the blow-up is never silent."""
    out = _per_group(x, is_control, groups, _median_mad)
    exploded = _zero_mad_features(x, is_control, groups)
    if exploded:
        largest = float(np.nanmax(np.abs(out[:, sorted(exploded)])))
        warnings.warn(
            ZeroMadWarning(
                f"{len(exploded)} features are constant among the control rows (MAD 0) but "
                f"vary in other rows; divided by {MAD_EPSILON:g} as pycytominer does, they "
                f"reach {largest:.2g}"
            ),
            stacklevel=2,
        )
    return out


class ZeroMadWarning(UserWarning):
    """mad_robustize divided features by its epsilon (constant among controls only)."""


def _zero_mad_features(x: np.ndarray, is_control: np.ndarray, groups: Groups) -> set[int]:
    found: set[int] = set()
    for _, rows in groups:
        ref = x[rows[is_control[rows]]]
        median = np.nanmedian(ref, axis=0)
        mad = np.nanmedian(np.abs(ref - median), axis=0)
        varies = (np.abs(x[rows] - median) > 0).any(axis=0)
        found.update(np.flatnonzero((mad == 0) & varies).tolist())
    return found


F64_EPS = float(np.finfo(np.float64).eps)


def pca_centerscale(
    x: np.ndarray,
    is_control: np.ndarray,
    groups: Groups,
    n_components: int | None,
    eps: float = F64_EPS,
) -> np.ndarray:
    """PCA fitted on controls, then one center/scale over the whole table (batches ignored):
    OpenPhenom's minimum correction; `tvn` is the per-batch one. `eps` is the machine epsilon
    of the input's precision (float32 input carries float32 rounding noise)."""
    projected = _pca_transform(x, is_control, n_components, whiten=False, eps=eps)
    return _per_group(projected, is_control, [("all", np.arange(len(x)))], _center_scale)


def tvn(
    x: np.ndarray,
    is_control: np.ndarray,
    groups: Groups,
    n_components: int | None,
    eps: float = F64_EPS,
) -> np.ndarray:
    """Typical variation normalization: whitening PCA on controls pooled over all batches, then
    a StandardScaler fitted on each batch's controls; OpenPhenom's recommended correction."""
    projected = _pca_transform(x, is_control, n_components, whiten=True, eps=eps)
    return _per_group(projected, is_control, groups, _center_scale)


NORMALIZERS: dict[str, Normalizer] = {
    "standardize": standardize,
    "mad_robustize": mad_robustize,
    "pca_centerscale": pca_centerscale,
    "tvn": tvn,
}
PROJECTING = frozenset({"pca_centerscale", "tvn"})  # outputs PC_0000… instead of the features


def normalize(
    table: pd.DataFrame,
    method: str,
    controls: str | None = None,
    by: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    n_components: int | None = None,
) -> pd.DataFrame:
    """Normalize `table`'s features with `method` (see `NORMALIZERS`), statistics from the rows
    the pandas query `controls` selects (e.g. "Metadata_PertType == 'negcon'"), per group of
    `by` (e.g. "Metadata_Plate"). Rows with NaN features keep NaN (PCA methods: the whole row)."""
    if method not in NORMALIZERS:
        raise InputError(
            f"unknown normalization method {method!r}; use one of {', '.join(NORMALIZERS)}"
        )
    if n_components is not None and method not in PROJECTING:
        raise InputError(f"n_components applies to {' and '.join(sorted(PROJECTING))} only")
    if n_components is not None and n_components < 1:
        raise InputError(f"n_components must be at least 1, got {n_components}")
    if len(table) == 0:
        raise InputError("the table has no rows to normalize")
    feats = infer_features(table, features)
    is_control = control_mask(table, controls)
    groups = group_rows(table, by)
    _check_controls(groups, is_control, by, controls)

    x = table[feats].to_numpy(dtype=np.float64)
    dtype = np.float32 if all(table[f].dtype == np.float32 for f in feats) else np.float64
    # float32 input carries float32 rounding noise: PCA's rank tolerance must use its epsilon
    extra = {"eps": float(np.finfo(dtype).eps)} if method in PROJECTING else {}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN out, by design
        result = NORMALIZERS[method](x, is_control, groups, n_components, **extra)
    result = result.astype(dtype, copy=False)

    # features the user left out of `features` are not carried raw beside normalized ones
    # (as pycytominer, the output holds metadata, other text columns and the chosen features)
    table = table.drop(columns=unselected_features(table, feats, features))
    if method in PROJECTING:
        names = [f"{PC_PREFIX}{i:04d}" for i in range(result.shape[1])]
        projected = pd.DataFrame(result, columns=names, index=table.index)
        return pd.concat([table.drop(columns=feats), projected], axis=1)
    out = table.copy()
    out[feats] = pd.DataFrame(result, columns=feats, index=table.index)
    return out


def unselected_features(
    table: pd.DataFrame, feats: list[str], features: Sequence[str] | None
) -> list[str]:
    """Numeric feature columns an explicit `features` list did not select."""
    if features is None:
        return []
    try:
        every = infer_features(table)
    except InputError:
        return []
    chosen = set(feats)
    return [c for c in every if c not in chosen]


def control_mask(table: pd.DataFrame, controls: str | None) -> np.ndarray:
    """Boolean row mask from a pandas query string; None selects every row."""
    if controls is None:
        return np.ones(len(table), dtype=bool)
    try:
        mask = table.eval(controls)
    except Exception as err:  # pandas raises many kinds: NameError, SyntaxError, TypeError…
        raise InputError(
            f"controls query {controls!r} failed ({type(err).__name__}: {err}); Metadata "
            f"columns: {', '.join(metadata_columns(table)) or '(none)'}"
        ) from err
    if not isinstance(mask, pd.Series) or mask.dtype != bool or len(mask) != len(table):
        raise InputError(
            f"controls query {controls!r} must give True/False per row, "
            "e.g. \"Metadata_PertType == 'negcon'\""
        )
    mask = mask.to_numpy()
    if not mask.any():
        raise InputError(f"controls query {controls!r} selects no rows{_kinds(table, controls)}")
    return mask


def _kinds(table: pd.DataFrame, query: str) -> str:
    """What the columns a query names hold, so that `== '0'` against numbers is spotted."""
    kinds = []
    for column in table.columns:
        name = str(column)
        present = table[column].dropna()
        if present.empty or not re.search(rf"(?<![\w`]){re.escape(name)}(?![\w`])", query):
            continue
        value = present.iloc[0]
        value = value.item() if isinstance(value, np.generic) else value  # 0, not np.int64(0)
        kind = "numbers" if is_numeric_dtype(present) else "text"
        kinds.append(f"{name} holds {kind} (e.g. {value!r})")
    return f"; {', '.join(kinds)}" if kinds else ""


def group_rows(table: pd.DataFrame, by: str | Sequence[str] | None) -> Groups:
    """Row positions per group of `by`, in first-appearance order (one group when None)."""
    if by is None:
        return [(None, np.arange(len(table)))]
    columns = [by] if isinstance(by, str) else list(by)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"group column(s) not in the table: {', '.join(missing)}; available Metadata "
            f"columns: {', '.join(metadata_columns(table)) or '(none)'}"
        )
    codes = table.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    rows = np.split(order, bounds)
    keys = table[columns].to_numpy()
    names = [keys[r[0]][0] if len(columns) == 1 else tuple(keys[r[0]]) for r in rows]
    return list(zip(names, rows, strict=True))


def group_label(by: str | Sequence[str], name) -> str:
    """`Metadata_Plate = 2` or `Metadata_Plate = P1, Metadata_Well = B03` for a message (no
    Python reprs: a group key read from a table is a numpy scalar)."""
    columns = [by] if isinstance(by, str) else list(by)
    values = name if isinstance(name, tuple) else (name,)
    return ", ".join(f"{c} = {v}" for c, v in zip(columns, values, strict=True))


def _check_controls(
    groups: Groups, is_control: np.ndarray, by: str | Sequence[str] | None, controls: str | None
) -> None:
    what = "control rows" if controls is not None else "rows"
    for name, rows in groups:
        n = int(is_control[rows].sum())
        if n < 2:
            where = "the table" if by is None else f"the group {group_label(by, name)}"
            raise InputError(
                f"{where} has {n} {what}; statistics need at least 2 (controls: {controls!r})"
            )


def _per_group(
    x: np.ndarray,
    is_control: np.ndarray,
    groups: Groups,
    fit_apply: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    out = np.empty_like(x)
    for _, rows in groups:
        out[rows] = fit_apply(x[rows], x[rows[is_control[rows]]])
    return out


def _center_scale(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(x − mean)/std (ddof 0, as StandardScaler) with `ref`'s statistics, NaN ignored.

    A feature constant in `ref` is centered on that exact value with scale 1, so constant
    columns give exactly 0 (a computed mean of equal floats can miss them by one ulp).
    """
    center = np.nanmean(ref, axis=0)
    scale = np.nanstd(ref, axis=0)
    low = np.nanmin(ref, axis=0)
    constant = low == np.nanmax(ref, axis=0)
    center = np.where(constant, low, center)
    scale = np.where(constant | (scale == 0), 1.0, scale)
    return (x - center) / scale


def _median_mad(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    median = np.nanmedian(ref, axis=0)
    mad = np.nanmedian(np.abs(ref - median), axis=0)
    return (x - median) / (MAD_SCALE * mad + MAD_EPSILON)


def _pca_transform(
    x: np.ndarray,
    is_control: np.ndarray,
    n_components: int | None,
    whiten: bool,
    eps: float = F64_EPS,
) -> np.ndarray:
    """Fit PCA (SVD) on the complete control rows pooled over every group; project all rows.

    Without `n_components`, keep every component the controls span (their numerical rank), so
    whitening never divides by a zero variance. Signs are fixed (largest loading positive).
    """
    ref = x[is_control]
    ref = ref[~np.isnan(ref).any(axis=1)]
    if len(ref) < 2:
        raise InputError(
            f"PCA needs at least 2 control rows without missing features, found {len(ref)}"
        )
    mean = ref.mean(axis=0)
    _, sing, vt = np.linalg.svd(ref - mean, full_matrices=False)
    rank = int((sing > sing.max() * max(ref.shape) * eps).sum())
    if rank == 0:
        raise InputError("the control rows are all identical: PCA has nothing to fit")
    k = rank if n_components is None else n_components
    if k > rank:
        raise InputError(
            f"{k} PCA components asked for (--n-components) but the {len(ref)} control rows "
            f"span only {rank} dimensions; use at most {rank}"
        )
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    projected = (x - mean) @ components.T
    if whiten:
        projected /= sing[:k] / np.sqrt(len(ref) - 1)
    return projected
