"""Cell-line embeddings from expression (embedkit.cell_lines, `embedkit cell-lines`).

The expression is simulated in the test: negative-binomial counts for 12 cell lines x 3,000
genes, with three groups of four lines sharing a transcriptional program, so that lines of
a group should end up closer to each other than to the other lines.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embedkit.cli import main
from embedkit.errors import InputError

anndata = pytest.importorskip("anndata", reason="the cell-lines extra (anndata) is not installed")
pytest.importorskip("scanpy", reason="the cell-lines extra (scanpy) is not installed")

from embedkit import cell_lines  # noqa: E402
from embedkit.cell_lines import (  # noqa: E402
    cell_line_vector,
    check_expression,
    describe_table,
    embed_expression,
    preprocess,
    read_cell_line_table,
    table_digest,
)

GROUPS = np.repeat(np.arange(3), 4)  # lines 0-3, 4-7, 8-11 share a program
NAMES = [f"LINE-{'ABC'[g]}{i % 4 + 1}" for i, g in enumerate(GROUPS)]
RARE = 100  # the first RARE genes are expressed in 3 lines only: the >= 5 filter drops them


def simulate_counts(seed: int = 0, n_genes: int = 3000) -> anndata.AnnData:
    """Real-looking RNA-seq counts: log-normal gene means, a program per group (10 % of the
    genes up or down several-fold), per-line sequencing depth, negative-binomial noise."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(mean=0.0, sigma=1.5, size=n_genes)
    fold = rng.lognormal(0.0, 1.0, size=(3, n_genes))
    programs = np.where(rng.random((3, n_genes)) < 0.1, fold, 1.0)
    depth = rng.uniform(0.5, 2.0, size=len(GROUPS))
    mu = 5.0 * base * programs[GROUPS] * depth[:, None]
    dispersion = 5.0
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu)).astype(np.float32)
    counts[3:, :RARE] = 0
    counts[:3, :RARE] += 1
    return anndata.AnnData(
        X=counts,
        obs=pd.DataFrame({"line": NAMES, "tissue": "simulated"}, index=NAMES),
        var=pd.DataFrame({"symbol": [f"GENE{i:04d}" for i in range(n_genes)]}).set_index(
            "symbol", drop=False
        ),
    )


@pytest.fixture(scope="module")
def adata() -> anndata.AnnData:
    return simulate_counts()


@pytest.fixture(scope="module")
def h5ad(adata, tmp_path_factory):
    path = tmp_path_factory.mktemp("expr") / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- the paper's scanpy pipeline -----------------------------------------------------------


def test_the_pipeline_keeps_expressed_genes_normalizes_logs_and_selects_1000_hvgs(adata):
    hvg = preprocess(check_expression(adata))
    assert hvg.n_obs == 12 and hvg.n_vars == 1000
    counts_in = np.asarray(adata.X)
    kept = (counts_in > 0).sum(axis=0) >= 5
    assert hvg.uns["genes_expressed"] == kept.sum() < 3000 - RARE
    assert not set(hvg.var_names) & {f"GENE{i:04d}" for i in range(RARE)}  # in 3 lines only
    # X is log1p(counts / total * 1e4), the total over every expressed gene of the line
    totals = counts_in[:, kept].sum(axis=1, keepdims=True)
    counts = np.asarray(hvg.layers["counts"])
    np.testing.assert_allclose(np.asarray(hvg.X), np.log1p(counts / totals * 1e4), rtol=1e-5)
    # the selected genes are the most dispersed ones: scanpy's own ranking, top 1000
    import scanpy as sc

    ref = check_expression(adata)
    sc.pp.filter_genes(ref, min_cells=5)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    table = sc.pp.highly_variable_genes(ref, n_top_genes=1000, inplace=False)
    assert set(hvg.var_names) == set(ref.var_names[table["highly_variable"].to_numpy()])


def test_pca_embeddings_are_deterministic_and_shaped_like_the_scvi_tables(adata):
    first = embed_expression(adata, "pca", 6)
    again = embed_expression(simulate_counts(), "pca", 6)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert list(first.table.columns) == ["cell_line", *[f"pca_{i}" for i in range(6)]]
    assert first.table["cell_line"].tolist() == NAMES
    assert (first.table.dtypes.iloc[1:] == np.float32).all()
    assert first.info["n_genes"] == 1000 and len(first.genes) == 1000
    assert first.as_dict()["LINE-A1"] == pytest.approx(first.table.iloc[0, 1:].tolist())


def test_lines_that_share_a_program_are_closer(adata):
    x = embed_expression(adata, "pca", 10).table.drop(columns="cell_line").to_numpy()
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    same = GROUPS[:, None] == GROUPS[None]
    off_diagonal = ~np.eye(len(GROUPS), dtype=bool)
    assert dist[same & off_diagonal].mean() < 0.8 * dist[~same].mean()
    nearest = np.where(off_diagonal, dist, np.inf).argmin(axis=1)
    assert (GROUPS[nearest] == GROUPS).all()


def test_gene_and_cell_line_names_can_come_from_columns(adata):
    plain = adata.copy()
    plain.obs_names = [str(i) for i in range(plain.n_obs)]
    plain.var_names = [str(i) for i in range(plain.n_vars)]
    table = embed_expression(plain, "pca", 3, name_column="line", gene_column="symbol").table
    assert table["cell_line"].tolist() == NAMES


# --- bad input: one sentence each -------------------------------------------------------------


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_an_anndata_without_gene_names_is_one_sentence(adata):
    plain = adata.copy()
    plain.var_names = [str(i) for i in range(plain.n_vars)]
    with pytest.raises(InputError) as err:
        embed_expression(plain)
    message = _one_sentence(err)
    assert "no gene names" in message and "--gene-column with one of: symbol" in message


def test_negative_counts_are_one_sentence_naming_the_first(adata):
    bad = adata.copy()
    bad.X = np.asarray(bad.X).copy()
    bad.X[2, 7] = -1.5
    with pytest.raises(InputError) as err:
        embed_expression(bad)
    message = _one_sentence(err)
    assert "1 negative values (first: LINE-A3, GENE0007)" in message and "raw counts" in message


def test_missing_values_are_refused(adata):
    bad = adata.copy()
    bad.X = np.asarray(bad.X).copy()
    bad.X[0, 0] = np.nan
    with pytest.raises(InputError, match="missing or infinite"):
        embed_expression(bad)


def test_too_few_cell_lines_for_the_dimension_is_one_sentence(adata):
    with pytest.raises(InputError) as err:
        embed_expression(adata, "pca", 12)
    assert _one_sentence(err) == (
        "PCA of 12 cell lines gives at most 11 dimensions, --dim 12 asks for more: lower "
        "--dim, add cell lines, or use --method scvi"
    )
    with pytest.raises(InputError) as err:
        embed_expression(adata[:4].copy(), "pca", 2)
    assert "4 cell lines are too few" in _one_sentence(err)


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_cell_lines_without_names_or_named_twice_are_refused(adata):
    unnamed = adata.copy()
    unnamed.obs_names = [str(i) for i in range(unnamed.n_obs)]
    with pytest.raises(InputError, match="no cell-line names .* --name-column"):
        embed_expression(unnamed)
    twice = adata.copy()
    twice.obs_names = ["U2OS", *NAMES[1:-1], "U2OS"]
    with pytest.raises(InputError, match=r"cell lines repeat \(U2OS\)"):
        embed_expression(twice)


def test_scanpy_or_scvi_missing_names_the_extra(adata, monkeypatch):
    monkeypatch.setitem(sys.modules, "scvi", None)
    with pytest.raises(InputError, match=r"pip install 'embedkit\[scvi\]'"):
        embed_expression(adata, "scvi", 4)
    monkeypatch.setitem(sys.modules, "scanpy", None)
    with pytest.raises(InputError, match=r"pip install 'embedkit\[cell-lines\]'"):
        embed_expression(adata, "pca", 4)


@pytest.mark.slow
def test_scvi_embeds_every_line_reproducibly(adata):
    pytest.importorskip("scvi", reason="the scvi extra (scvi-tools) is not installed")
    first = embed_expression(adata, "scvi", 4, epochs=20, seed=3)
    again = embed_expression(adata, "scvi", 4, epochs=20, seed=3)
    assert list(first.table.columns) == ["cell_line", "scvi_0", "scvi_1", "scvi_2", "scvi_3"]
    np.testing.assert_allclose(
        first.table.iloc[:, 1:].to_numpy(), again.table.iloc[:, 1:].to_numpy(), atol=1e-5
    )
    assert first.info["method"] == "scvi" and first.info["seed"] == 3


# --- tables and lookups -------------------------------------------------------------------------


def test_an_unknown_cell_line_lists_close_names():
    table = {"U2OS": [1.0], "HEPG2": [2.0], "HUVEC": [3.0], "RPE": [4.0]}
    assert cell_line_vector(table, "hepg2")[0] == 2.0
    assert cell_line_vector(table, "Hep-G2")[0] == 2.0  # case and punctuation do not count
    with pytest.raises(InputError) as err:
        cell_line_vector(table, "U2-0S", source="t.parquet")
    assert str(err.value) == "no embedding for cell line 'U2-0S' in t.parquet; close names: U2OS"
    with pytest.raises(InputError, match=r"it has 4 lines \(HEPG2, HUVEC, RPE, U2OS\)$"):
        cell_line_vector(table, "A549")


def test_the_image_model_uses_the_same_lookup():
    pytest.importorskip("torch")
    from embedkit.images.model import ImageModel
    from embedkit.images.vit import ViTConfig

    config = ViTConfig(
        img_size=32, in_chans=5, depth=1, embed_dim=48, num_heads=3, cell_line_tokens=1
    )
    config.cell_line_dim = 2
    model = ImageModel(config, cell_lines={"U2OS": [0.1, 0.2], "HUVEC": [0.3, 0.4]})
    assert model.cell_line_vector("u2os").tolist() == pytest.approx([0.1, 0.2])
    with pytest.raises(InputError) as err:
        model.cell_line_vector("U20S")
    assert str(err.value).startswith(
        "no embedding for cell line 'U20S' in the model's cell lines; close names: U2OS; "
        "give its embedding with --cell-line-embeddings FILE"
    )


def test_read_cell_line_table_reads_the_scvi_layout_and_refuses_bad_tables(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"cell_line": ["A", "B"], "scvi_0": [1.0, 2.0], "scvi_1": [3, 4]}).to_csv(
        path, index=False
    )
    table = read_cell_line_table(path)
    assert table == {"A": [1.0, 3.0], "B": [2.0, 4.0]}
    assert table_digest(table) == table_digest({"B": [2, 4], "A": np.array([1, 3], "f4")})
    path.write_text("cell_line,x\nA,1\nA,2\n")
    with pytest.raises(InputError, match=r"cell lines repeat \(A\)"):
        read_cell_line_table(path)
    path.write_text("cell_line,x\nA,1\nB,\n")
    with pytest.raises(InputError, match="cell lines B have missing"):
        read_cell_line_table(path)
    path.write_text("cell_line,tissue,x\nA,bone,1\n")
    with pytest.raises(InputError, match="column 'tissue' is not numeric"):
        read_cell_line_table(path)


def test_the_real_scvi_table_reads_and_its_neighbours_make_sense(real_data):
    path = real_data / "cell_lines" / "scvi_cell_line_embeddings_256.parquet"
    table = read_cell_line_table(path)
    assert len(table) == 55 and len(table["U2OS"]) == 256
    shown = describe_table(path, "hepg2")
    assert shown.startswith("HEPG2: 256 values")
    assert "nearest (cosine): C3A" in shown  # C3A is a HepG2 derivative


# --- the command line -----------------------------------------------------------------------


def test_cli_embed_writes_a_table_that_cell_line_options_read(h5ad, tmp_path):
    out = tmp_path / "lines.parquet"
    result = run("cell-lines", "embed", h5ad, "-o", out, "--dim", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("12 cell lines → 5 dimensions; pca on 1000 highly variable")
    assert result.stdout.rstrip().endswith(f"→ {out}")
    table = read_cell_line_table(out)
    assert list(table) == NAMES and len(table["LINE-B2"]) == 5
    from embedkit.io import read_run_info

    info = read_run_info(out)
    assert info["method"] == "pca" and len(info["highly_variable_genes"]) == 1000
    again = run("cell-lines", "embed", h5ad, "-o", out)
    assert again.exit_code == 2 and "pass --overwrite" in again.stderr
    shown = run("cell-lines", "show", out)
    assert shown.exit_code == 0
    assert "12 cell lines × 5 dimensions" in shown.stdout and "--method pca" in shown.stdout
    one = run("cell-lines", "show", out, "line-b2")
    assert one.stdout.startswith("LINE-B2: 5 values") and "nearest (cosine): LINE-B" in one.stdout
    unknown = run("cell-lines", "show", out, "LINE-D1")
    assert unknown.exit_code == 2 and len(unknown.stderr.splitlines()) == 1
    assert "close names: LINE-C1, LINE-B1, LINE-A1" in unknown.stderr


def test_cli_bad_input_is_one_line_exit_2(adata, tmp_path):
    plain = adata.copy()
    plain.var_names = [str(i) for i in range(plain.n_vars)]
    plain.var = plain.var.drop(columns="symbol")
    path = tmp_path / "plain.h5ad"
    plain.write_h5ad(path)
    result = run("cell-lines", "embed", path, "-o", tmp_path / "o.parquet")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}: the AnnData has no gene names (var_names are 0, 1, 2, …); set "
        "var_names to gene symbols or Ensembl ids\n"
    )
    bad_out = run("cell-lines", "embed", path, "-o", tmp_path / "o.npz")
    assert bad_out.exit_code == 2 and ".parquet, .csv, .tsv" in bad_out.stderr
    table = tmp_path / "t.csv"
    table.write_text("a,b\n")
    not_h5ad = run("cell-lines", "embed", table, "-o", tmp_path / "o.parquet")
    assert not_h5ad.exit_code == 2 and "expected an AnnData .h5ad" in not_h5ad.stderr


def test_the_parser_lists_equal_the_library_lists():
    from embedkit.cli import cell_lines as cli

    assert cli.METHODS == cell_lines.METHODS and cli.DEFAULT_DIM == cell_lines.DEFAULT_DIM
