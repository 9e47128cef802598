"""Tables as AnnData (.h5ad) that scanpy takes as they are.

The layout, the same for every command that writes .h5ad:

* `X` holds the feature columns (float32) of the **valid rows only**: a row whose
  `Metadata_Valid` is False, or with any NaN/inf feature, would break `sc.pp.neighbors`
  and `sc.tl.umap`, so it is left out of `X`;
* `uns["embedkit_invalid"]` lists those rows: `row` (0-based position in the full table,
  i.e. the input row of `embed-smiles`), `obs_name`, `reason` (`Metadata_Error` when it
  says one, else "non-finite features") and the row's metadata columns;
* `var_names` are the feature names (`Emb_0000…`, `PC_0000…`, `Cells_AreaShape_Area`);
* `obs` holds the `Metadata_` (and other non-feature) columns; `obs_names` name the row
  so that outputs of several plates concatenate (`anndata.concat`) without clashes:
  `Plate/Well[/Site][/Crop]` when the table has `Metadata_Plate` and `Metadata_Well` (a
  `/` inside a part becomes `_`: `U2OS-01_Plate1/B02/1`),
  else `Metadata_ID`, else the first metadata column whose values are all distinct, else
  `row<N>`; a name that repeats gets `#<N>` (its 1-based row) appended;
* `uns["embedkit"]` is the run info (`embedkit.provenance.stamp`): strings, numbers and
  mappings as they are, lists and None as JSON text (`embedkit.io.read_run_info` decodes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError

INVALID_KEY = "embedkit_invalid"
RUN_INFO_KEY = "embedkit"
NAME_KEYS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Crop")
ID_COLUMN = "Metadata_ID"
NON_FINITE = "non-finite features"


def _text(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip()


def _part(values: pd.Series) -> pd.Series:
    """One part of a Plate/Well/Site name: a `/` inside it becomes `_` (as in the plate's
    file name, `U2OS-01/Plate1` → `U2OS-01_Plate1`), so `/` only separates the parts."""
    return _text(values).str.replace("/", "_", regex=False)


def obs_names(meta: pd.DataFrame) -> pd.Index:
    """Row names that mean something outside this file (see the module docstring)."""
    n = len(meta)
    columns = [str(c) for c in meta.columns]
    if "Metadata_Plate" in columns and "Metadata_Well" in columns:
        keys = [k for k in NAME_KEYS if k in columns]
        names = _part(meta[keys[0]])
        for key in keys[1:]:
            names = names + "/" + _part(meta[key])
    elif ID_COLUMN in columns:
        names = _text(meta[ID_COLUMN])
    else:
        names = None
        for column in columns:
            if not column.startswith("Metadata_") or column in ("Metadata_Valid", "Metadata_Error"):
                continue
            values = _text(meta[column])
            if values.is_unique and values.str.len().gt(0).all():
                names = values
                break
        if names is None:
            names = pd.Series([f"row{i + 1}" for i in range(n)], index=meta.index)
    names = names.to_numpy(dtype=object)
    repeated = pd.Series(names).duplicated(keep=False).to_numpy() | (names == "")
    rows = np.arange(1, n + 1)
    names = np.where(repeated, [f"{a}#{r}" for a, r in zip(names, rows, strict=True)], names)
    return pd.Index(names.astype(str), dtype=object)


def invalid_rows(meta: pd.DataFrame, matrix: np.ndarray) -> np.ndarray:
    """True for rows kept out of X: Metadata_Valid False, or any non-finite feature."""
    bad = ~np.isfinite(matrix).all(axis=1) if matrix.size else np.zeros(len(meta), bool)
    if "Metadata_Valid" in meta.columns:
        bad |= ~meta["Metadata_Valid"].astype(bool).to_numpy()
    return bad


def _obs_frame(meta: pd.DataFrame) -> pd.DataFrame:
    obs = meta.reset_index(drop=True).copy()
    for column in obs.columns:
        if obs[column].dtype == object:
            obs[column] = obs[column].astype(str)
    obs.columns = [str(c) for c in obs.columns]
    return obs


def _encode(value):
    """A run-info value anndata can write: scalars and mappings as they are, the rest
    (lists, None) as JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and value:
        return {str(k): _encode(v) for k, v in value.items()}
    return json.dumps(value, sort_keys=True)


def _decode(value):
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and (value[:1] in "[{" or value == "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _anndata():
    try:
        import anndata
    except ImportError as err:
        raise InputError(".h5ad files need anndata: pip install 'embedkit[anndata]'") from err
    return anndata


def table_to_anndata(table: pd.DataFrame, features: list[str], run_info: dict):
    """The AnnData written for `table` (layout in the module docstring)."""
    anndata = _anndata()
    meta = _obs_frame(table.drop(columns=features))
    matrix = table[features].to_numpy(dtype=np.float32)
    names = obs_names(meta)
    bad = invalid_rows(meta, matrix)
    obs = meta[~bad].copy()
    obs.index = pd.Index(names[~bad], dtype=object)
    adata = anndata.AnnData(
        X=np.ascontiguousarray(matrix[~bad]),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([str(f) for f in features], dtype=object)),
    )
    reasons = (
        meta["Metadata_Error"].astype(str).to_numpy()
        if "Metadata_Error" in meta.columns
        else np.full(len(meta), "", dtype=object)
    )
    listed = meta[bad].reset_index(drop=True)
    own = ("row", "obs_name", "reason")
    listed = listed.rename(columns={c: f"{c}_input" for c in own if c in listed.columns})
    listed.insert(0, "reason", [r.strip() or NON_FINITE for r in reasons[bad]])
    listed.insert(0, "obs_name", names[bad].astype(str))
    listed.insert(0, "row", np.flatnonzero(bad).astype(np.int64))
    listed.index = listed.index.astype(str)
    adata.uns[INVALID_KEY] = listed
    adata.uns[RUN_INFO_KEY] = {str(k): _encode(v) for k, v in run_info.items()}
    return adata


def write_h5ad(table: pd.DataFrame, tmp: Path, features: list[str], run_info: dict) -> None:
    table_to_anndata(table, features, run_info).write_h5ad(tmp)


def read_h5ad_run_info(path: str | Path) -> dict:
    """`uns["embedkit"]` of an .h5ad as the run info dict (opened backed: `X` is not read)."""
    anndata = _anndata()
    adata = anndata.read_h5ad(path, backed="r")
    try:
        stored = dict(adata.uns.get(RUN_INFO_KEY, {}))
    finally:
        adata.file.close()
    return {k: _decode(v) for k, v in stored.items()}
