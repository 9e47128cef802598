"""Cell-line embeddings: from a cell line's RNA-seq to the vector a model conditions on.

The seed paper (biological knowledge for de novo cell lines, appendix B.2) embeds each cell
line from its basal RNA-seq with scanpy: keep the genes expressed in at least 5 cell lines,
normalize every line to 10,000 counts, log1p, keep the 1,000 highly variable genes, then a
single-cell model (scVI in the paper's main results). Here the embedding is PCA by default
(no extra dependency beyond scanpy) or scVI with the `scvi` extra.

A table of cell-line embeddings has one row per line: a `cell_line` text column (or the
names as the index), then one numeric column per dimension — the layout of the paper's scVI
embeddings (`scvi_cell_line_embeddings_256.parquet`: `cell_line, scvi_0 … scvi_255`).
`read_cell_line_table` reads one into `{name: vector}`; `cell_line_vector` looks a line up
and names the close matches when it is missing.

This module imports no torch; scanpy, anndata and scvi-tools are imported where they are
needed, with an error naming the extra that installs them.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError

NAME_COLUMN = "cell_line"
METHODS = ("pca", "scvi")
MIN_CELL_LINES = 5  # a gene is kept when expressed in at least this many cell lines
TARGET_SUM = 1e4
N_TOP_GENES = 1000
DEFAULT_DIM = 10  # scvi-tools' default n_latent; PCA needs more cell lines than dimensions
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
CELL_LINES_EXTRA = "pip install 'embedkit[cell-lines]'"
SCVI_EXTRA = "pip install 'embedkit[scvi]'"


# --- tables of cell-line embeddings --------------------------------------------------------


def read_cell_line_table(path: str | Path) -> dict[str, list[float]]:
    """A table of cell-line embeddings: one row per line, a name column, numeric columns.

    Accepts the layout of the seed paper's scVI cell-line embeddings (a `cell_line` text
    column, then one column per dimension; or the names as the index), as Parquet or CSV.
    """
    from embedkit.io import coerce_numeric_text, read_table

    path = Path(path)
    table = coerce_numeric_text(read_table(path))
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    names = table[text[0]].astype(str) if text else table.index.astype(str)
    numbers = table.drop(columns=text[:1])
    if numbers.shape[1] == 0 or len(numbers) == 0:
        raise InputError(
            f"{path}: no cell-line embeddings (expected a {NAME_COLUMN} column and numeric "
            "columns, one row per cell line)"
        )
    extra_text = [c for c in numbers.columns if not pd.api.types.is_numeric_dtype(numbers[c])]
    if extra_text:
        raise InputError(
            f"{path}: column {extra_text[0]!r} is not numeric; a cell-line table holds one "
            f"name column ({names.name or 'the index'}) and numbers"
        )
    values = numbers.to_numpy(dtype=np.float32)
    repeated = sorted(set(names[names.duplicated()]))
    if repeated:
        raise InputError(f"{path}: cell lines repeat ({', '.join(repeated[:5])}); one row each")
    bad = names[~np.isfinite(values).all(axis=1)].tolist()
    if bad:
        raise InputError(f"{path}: cell lines {', '.join(bad[:5])} have missing or infinite values")
    return {n: v.tolist() for n, v in zip(names, values, strict=True)}


def table_digest(table: Mapping[str, Sequence[float]]) -> str:
    """sha256 of a cell-line table's names and float32 values, in name order: the same for
    the same numbers whichever program wrote the file."""
    digest = hashlib.sha256()
    for name in sorted(table):
        digest.update(str(name).encode() + b"\0")
        digest.update(np.asarray(table[name], dtype="<f4").tobytes())
    return digest.hexdigest()


def _key(name: str) -> str:
    """HepG2, HEPG2 and Hep-G2 are one line: case and punctuation do not count."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def match_cell_line(names: Sequence[str], name: str) -> str | None:
    """The entry of `names` meaning `name`: exact, else ignoring case, else ignoring case and
    punctuation (when that is unambiguous); None if there is none."""
    if name in names:
        return name
    for fold in (str.lower, _key):
        found = [n for n in names if fold(n) == fold(name)]
        if len(found) == 1:
            return found[0]
    return None


def close_cell_lines(names: Sequence[str], name: str, n: int = 5) -> list[str]:
    """Up to `n` names that look like `name` (difflib, ignoring case and punctuation)."""
    by_key: dict[str, str] = {}
    for candidate in names:
        by_key.setdefault(_key(candidate), candidate)
    close = difflib.get_close_matches(_key(name), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in close]


def cell_line_vector(
    table: Mapping[str, Sequence[float]], name: str, source: str = "the table", hint: str = ""
) -> np.ndarray:
    """The embedding of cell line `name` in `table` (float32); an unknown line is one
    InputError naming the close names in the table."""
    match = match_cell_line(list(table), name)
    if match is None:
        close = close_cell_lines(list(table), name)
        known = (
            f"close names: {', '.join(close)}"
            if close
            else f"it has {len(table)} lines ({', '.join(sorted(table)[:8])}"
            + (", …)" if len(table) > 8 else ")")
        )
        raise InputError(
            f"no embedding for cell line {name!r} in {source}; {known}"
            + (f"; {hint}" if hint else "")
        )
    return np.asarray(table[match], dtype=np.float32)


def describe_table(path: str | Path, name: str | None = None, nearest: int = 5) -> str:
    """`embedkit cell-lines show`: what a table holds, or one line's vector and neighbours."""
    from embedkit.io import read_run_info

    path = Path(path)
    table = read_cell_line_table(path)
    names = list(table)
    matrix = np.asarray([table[n] for n in names], dtype=np.float32)
    info = read_run_info(path) if path.suffix.lower() in TABLE_SUFFIXES else {}
    if name is None:
        lines = [f"{path}: {len(names)} cell lines × {matrix.shape[1]} dimensions"]
        if info.get("method"):
            made = f"made by embedkit cell-lines embed --method {info['method']}"
            if info.get("n_genes"):
                made += f" from {info['n_genes']} highly variable genes"
            lines.append(made)
        lines.append("cell lines: " + ", ".join(names))
        return "\n".join(lines)
    vector = cell_line_vector(table, name, source=str(path))
    match = match_cell_line(names, name)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    cosine = matrix @ vector / np.where(norms == 0, 1.0, norms)
    order = [i for i in np.argsort(-cosine, kind="stable") if names[i] != match][:nearest]
    shown = ", ".join(f"{v:.4g}" for v in vector[:8]) + (", …" if len(vector) > 8 else "")
    return "\n".join(
        [
            f"{match}: {len(vector)} values, norm {np.linalg.norm(vector):.4g}",
            f"values: {shown}",
            "nearest (cosine): " + ", ".join(f"{names[i]} {cosine[i]:.3f}" for i in order),
        ]
    )


# --- expression → embedding --------------------------------------------------------------


def _scanpy():
    try:
        import scanpy
    except ImportError as err:
        raise InputError(
            f"embedding cell lines from expression needs scanpy: {CELL_LINES_EXTRA}"
        ) from err
    return scanpy


def read_expression(path: str | Path):
    """An AnnData (.h5ad) of cell-line RNA-seq: cell lines as obs, genes as var, counts in X."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() != ".h5ad":
        raise InputError(
            f"{path}: expected an AnnData .h5ad file (cell lines as obs, genes as var_names, "
            "counts in X)"
        )
    try:
        import anndata
    except ImportError as err:
        raise InputError(f"reading .h5ad needs anndata: {CELL_LINES_EXTRA}") from err
    try:
        return anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not a readable .h5ad file ({err})") from err


def _default_names(index: pd.Index) -> bool:
    """AnnData's placeholder names: '0', '1', … (what it makes when none are given)."""
    return list(map(str, index)) == [str(i) for i in range(len(index))]


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)


def check_expression(
    adata, name_column: str | None = None, gene_column: str | None = None, source: str = ""
):
    """A checked copy: gene names in var_names, cell-line names in obs_names, counts that are
    finite and not negative. Each problem is one InputError sentence."""
    where = f"{source}: " if source else ""
    adata = adata.copy()
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(
            f"{where}the AnnData is empty ({adata.n_obs} cell lines × {adata.n_vars} genes)"
        )
    if gene_column is not None:
        if gene_column not in adata.var.columns:
            raise InputError(
                f"{where}no var column {gene_column!r}; var has "
                f"{', '.join(map(str, adata.var.columns)) or 'no columns'}"
            )
        adata.var_names = adata.var[gene_column].astype(str).to_numpy()
    if _default_names(adata.var_names):
        columns = ", ".join(map(str, adata.var.columns))
        raise InputError(
            f"{where}the AnnData has no gene names (var_names are 0, 1, 2, …); set var_names "
            "to gene symbols or Ensembl ids"
            + (f", or pass --gene-column with one of: {columns}" if columns else "")
        )
    if name_column is not None:
        if name_column not in adata.obs.columns:
            raise InputError(
                f"{where}no obs column {name_column!r}; obs has "
                f"{', '.join(map(str, adata.obs.columns)) or 'no columns'}"
            )
        adata.obs_names = adata.obs[name_column].astype(str).to_numpy()
    if _default_names(adata.obs_names):
        raise InputError(
            f"{where}the AnnData has no cell-line names (obs_names are 0, 1, 2, …); set "
            "obs_names to the cell lines, or pass --name-column naming the obs column"
        )
    repeated = sorted(set(adata.obs_names[adata.obs_names.duplicated()]))
    if repeated:
        raise InputError(
            f"{where}cell lines repeat ({', '.join(repeated[:5])}); give one row of counts per "
            "cell line (sum or average the replicates first)"
        )
    adata.var_names_make_unique()
    values = adata.X.data if hasattr(adata.X, "data") and hasattr(adata.X, "indptr") else adata.X
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{where}X holds {values.dtype} values, expected counts")
    if not np.isfinite(values).all():
        raise InputError(f"{where}X holds missing or infinite values; expected counts")
    if (values < 0).any():
        lines, genes = np.nonzero(_dense(adata.X) < 0)
        raise InputError(
            f"{where}X holds {len(lines)} negative values (first: {adata.obs_names[lines[0]]}, "
            f"{adata.var_names[genes[0]]}); expected raw counts, not log-ratios or z-scores"
        )
    return adata


def preprocess(
    adata,
    min_cell_lines: int = MIN_CELL_LINES,
    target_sum: float = TARGET_SUM,
    n_top_genes: int = N_TOP_GENES,
):
    """The paper's scanpy pipeline on a checked AnnData: genes expressed in at least
    `min_cell_lines` lines, total-count normalization to `target_sum`, log1p, the
    `n_top_genes` highly variable genes (scanpy's default, Seurat flavour). Returns the
    HVG subset: X log-normalized, layers['counts'] the counts."""
    sc = _scanpy()
    if adata.n_obs < min_cell_lines:
        raise InputError(
            f"{adata.n_obs} cell lines are too few: genes are kept when expressed in at "
            f"least {min_cell_lines} lines, so at least {min_cell_lines} are needed"
        )
    adata = adata.copy()
    adata.X = _dense(adata.X).astype(np.float64)
    sc.pp.filter_genes(adata, min_cells=min_cell_lines)
    if adata.n_vars < 2:
        raise InputError(
            f"only {adata.n_vars} genes are expressed in at least {min_cell_lines} cell lines; "
            "nothing to embed"
        )
    expressed = adata.n_vars
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    n_top = min(n_top_genes, adata.n_vars)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top)
    hvg = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    hvg.uns["genes_expressed"] = expressed
    return hvg


def _pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Principal components of the log-normalized HVG matrix (centred, exact SVD, signs
    fixed by sklearn's svd_flip, so the same input gives the same numbers)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=dim, svd_solver="full").fit_transform(x)


def _import_scvi():
    with warnings.catch_warnings():  # lightning's own deprecations are not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import scvi
        except ImportError as err:
            raise InputError(f"--method scvi needs scvi-tools: {SCVI_EXTRA}") from err
    return scvi


def _scvi(adata, dim: int, seed: int, epochs: int | None) -> np.ndarray:
    """scVI's latent mean (n_latent = dim) trained on the HVG counts of every line."""
    scvi = _import_scvi()
    quiet = ("lightning", "lightning.pytorch", "lightning.fabric", "scvi")
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:  # "Seed set to 0", "GPU available: False" … on every run
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # torch / lightning internals, not the user's
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return _train_scvi(scvi, adata, dim, seed, epochs)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _train_scvi(scvi, adata, dim: int, seed: int, epochs: int | None) -> np.ndarray:
    import anndata

    scvi.settings.seed = seed
    counts = anndata.AnnData(X=adata.layers["counts"].copy(), obs=adata.obs[[]].copy())
    counts.var_names = adata.var_names.copy()
    scvi.model.SCVI.setup_anndata(counts)
    model = scvi.model.SCVI(counts, n_latent=dim)
    model.train(
        max_epochs=epochs,
        accelerator="cpu",
        train_size=1.0,  # every line is a sample to embed; none is held out
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    return model.get_latent_representation()


@dataclass
class CellLineEmbedding:
    """Cell-line embeddings and how they were made."""

    table: pd.DataFrame  # cell_line, <method>_0 … <method>_{dim-1}
    genes: list[str]  # the highly variable genes the embedding saw
    info: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, list[float]]:
        values = self.table.drop(columns=[NAME_COLUMN]).to_numpy(dtype=np.float32)
        return {n: v.tolist() for n, v in zip(self.table[NAME_COLUMN], values, strict=True)}


def embed_expression(
    adata,
    method: str = "pca",
    dim: int = DEFAULT_DIM,
    *,
    seed: int = 0,
    epochs: int | None = None,
    min_cell_lines: int = MIN_CELL_LINES,
    target_sum: float = TARGET_SUM,
    n_top_genes: int = N_TOP_GENES,
    name_column: str | None = None,
    gene_column: str | None = None,
    source: str = "",
) -> CellLineEmbedding:
    """Embed every cell line of `adata` (cell lines as obs, genes as var_names, counts in X):
    the paper's scanpy preprocessing, then PCA or scVI to `dim` dimensions."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if dim < 1:
        raise InputError(f"--dim must be at least 1, got {dim}")
    adata = check_expression(adata, name_column, gene_column, source)
    if method == "pca" and dim > adata.n_obs - 1:
        raise InputError(
            f"PCA of {adata.n_obs} cell lines gives at most {adata.n_obs - 1} dimensions, "
            f"--dim {dim} asks for more: lower --dim, add cell lines, or use --method scvi"
        )
    if method == "scvi":
        _import_scvi()  # checked before the preprocessing, not after
    genes_in = adata.n_vars
    hvg = preprocess(adata, min_cell_lines, target_sum, n_top_genes)
    if method == "pca":
        if dim > hvg.n_vars:
            raise InputError(
                f"PCA of {hvg.n_vars} genes gives at most {hvg.n_vars} dimensions; lower --dim"
            )
        values = _pca(np.asarray(hvg.X, dtype=np.float64), dim)
    else:
        values = _scvi(hvg, dim, seed, epochs)
    values = np.asarray(values, dtype=np.float32)
    table = pd.DataFrame(values, columns=[f"{method}_{i}" for i in range(dim)])
    table.insert(0, NAME_COLUMN, list(map(str, hvg.obs_names)))
    genes = list(map(str, hvg.var_names))
    info = {
        "method": method,
        "dim": dim,
        "cell_lines": int(hvg.n_obs),
        "genes_in": int(genes_in),
        "genes_expressed": int(hvg.uns["genes_expressed"]),
        "n_genes": len(genes),
        "min_cell_lines": min_cell_lines,
        "target_sum": target_sum,
        "n_top_genes": n_top_genes,
        "hvg_flavor": "seurat (scanpy default)",
        "seed": seed if method == "scvi" else None,
        "epochs": epochs if method == "scvi" else None,
        "highly_variable_genes": genes,
    }
    return CellLineEmbedding(table, genes, {k: v for k, v in info.items() if v is not None})


# --- the file-level job --------------------------------------------------------------------


@dataclass
class EmbedCellLinesSummary:
    embedding: CellLineEmbedding
    seconds: float
    output: Path

    def line(self) -> str:
        from embedkit.outputs import summary_line

        info = self.embedding.info
        return summary_line(
            f"{info['cell_lines']} cell lines → {info['dim']} dimensions",
            self.seconds,
            self.output,
            [
                f"{info['method']} on {info['n_genes']} highly variable genes of the "
                f"{info['genes_expressed']} expressed in ≥ {info['min_cell_lines']} lines "
                f"({info['genes_in']} in the input)"
            ],
        )


def embed_expression_file(
    expression: str | Path,
    output: str | Path,
    method: str = "pca",
    dim: int = DEFAULT_DIM,
    *,
    overwrite: bool = False,
    **options,
) -> EmbedCellLinesSummary:
    """`embedkit cell-lines embed`: an .h5ad of cell-line counts → a cell-line table
    (`cell_line` + numeric columns, the scVI parquet layout) that `--cell-line-embeddings`
    options read. The pipeline's settings and HVG list travel in the file's run info."""
    from embedkit import __version__
    from embedkit.io import write_table
    from embedkit.outputs import check_output_file
    from embedkit.provenance import input_fields

    start = time.perf_counter()
    output = check_output_file(output, overwrite)
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(
            f"{output}: write the table as {', '.join(TABLE_SUFFIXES)} (what "
            "--cell-line-embeddings reads)"
        )
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    adata = read_expression(expression)
    embedding = embed_expression(adata, method, dim, source=str(expression), **options)
    run_info = {"embedkit_version": __version__, **input_fields(expression), **embedding.info}
    write_table(embedding.table, output, run_info)
    return EmbedCellLinesSummary(embedding, time.perf_counter() - start, output)
