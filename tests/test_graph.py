"""The perturbation relational graph (`embedkit.graph`, `embedkit graph build|info`) and the
graph losses: readers on tiny files and on the real ../shared/data/kg files, the graph
file format, the command line, bad input, the losses by hand, and DDP equivalence."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from embedkit.cli import main
from embedkit.errors import InputError
from embedkit.graph import build as b
from embedkit.graph.evidence import intra_perturbation_distance, neighbor_distance_ratio
from embedkit.graph.graph import PerturbationGraph
from embedkit.graph.losses import (
    GraphRegularizer,
    laplacian_loss,
    node_contrastive_loss,
    perturbation_means,
)
from embedkit.graph.mapping import perturbation_table, read_perturbation_table
from embedkit.graph.readers import (
    compound_key,
    read_edge_list,
    read_hetionet,
    read_stitch,
    read_string,
)
from embedkit.graph.similarity import cosine_edges, perturbation_profiles
from embedkit.graph.walk import random_walk_weights

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def edge_set(frame: pd.DataFrame) -> dict[frozenset, float]:
    return {frozenset((s, t)): w for s, t, w in frame[["source", "target", "weight"]].values}


# --- readers on tiny files ----------------------------------------------------------------


def test_string_with_combined_score_is_thresholded_at_200_and_weighted_score_over_1000(tmp_path):
    path = tmp_path / "9606.protein.links.txt"
    path.write_text(
        "protein1 protein2 combined_score\ntp53 mdm2 999\nTP53 EP300 200\nTP53 ACTB 199\n"
    )
    edges = read_string(path)
    assert edge_set(edges) == {
        frozenset(("TP53", "MDM2")): 0.999,
        frozenset(("TP53", "EP300")): 0.2,
    }


def test_string_api_export_on_a_0_to_1_scale_is_cut_at_0_2(tmp_path):
    path = tmp_path / "string_interactions.tsv"
    path.write_text(
        "stringId_A\tstringId_B\tpreferredName_A\tpreferredName_B\tscore\n"
        "9606.1\t9606.2\tTP53\tMDM2\t0.9\n9606.1\t9606.3\tTP53\tACTB\t0.15\n"
    )
    assert edge_set(read_string(path)) == {frozenset(("TP53", "MDM2")): 0.9}


def test_pair_lists_without_scores_get_weight_1(tmp_path):
    path = tmp_path / "gene_gene_HuMAP.txt"  # commas in a .txt, as the real files
    path.write_text("entity1,entity2\nGORASP1,GOLGA2\n polr2b ,POLR2A\n,EMPTY\n")
    edges = read_string(path)
    assert edge_set(edges) == {
        frozenset(("GORASP1", "GOLGA2")): 1.0,
        frozenset(("POLR2B", "POLR2A")): 1.0,
    }


def test_hetionet_reads_gzipped_tsv_and_names_missing_columns(tmp_path):
    path = tmp_path / "hetionet_protein_interactions.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("source_code\tsource_symbol\ttarget_code\ttarget_symbol\nH:1\tA1BG\tH:2\tANXA7\n")
    assert edge_set(read_hetionet(path)) == {frozenset(("A1BG", "ANXA7")): 1.0}
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\ty\nA\tB\n")
    with pytest.raises(InputError, match="source_symbol and target_symbol"):
        read_hetionet(bad)


def test_edge_lists_named_positional_scaled_and_negative(tmp_path):
    named = tmp_path / "gene_graph.csv"
    named.write_text("source,target\nG1,G2\nG2,G3\n")
    assert set(read_edge_list(named)["weight"]) == {1.0}
    positional = tmp_path / "links.tsv"
    positional.write_text("a\tb\tw\nG1\tG2\t4\nG2\tG3\t2\n")
    assert edge_set(read_edge_list(positional)) == {
        frozenset(("G1", "G2")): 1.0,
        frozenset(("G2", "G3")): 0.5,
    }
    kept = tmp_path / "kept.csv"
    kept.write_text("source,target,weight\nG1,G2,0.3\n")
    assert read_edge_list(kept)["weight"].tolist() == [0.3]
    negative = tmp_path / "neg.csv"
    negative.write_text("source,target,weight\nG1,G2,-1\n")
    with pytest.raises(InputError, match="negative weights"):
        read_edge_list(negative)
    text = tmp_path / "text.csv"
    text.write_text("source,target,weight\nG1,G2,high\n")
    with pytest.raises(InputError, match="'weight' must be numeric; data row 1 holds 'high'"):
        read_edge_list(text)


def test_stitch_ids_are_normalized_and_thresholded(tmp_path):
    path = tmp_path / "chemical_chemical.links.v5.0.tsv"
    path.write_text(
        "chemical1\tchemical2\tcombined_score\nCIDm00002162\tCIDs00000001\t800\n"
        "CIDm00002162\tCIDm00000003\t150\n"
    )
    assert edge_set(read_stitch(path)) == {frozenset(("CID2162", "CID1")): 0.8}
    assert [compound_key(v) for v in ("CIDm00002162", "cids2162", "2162", "2162.0", "aspirin")] == [
        "CID2162",
        "CID2162",
        "CID2162",
        "CID2162",
        "aspirin",
    ]
    noscore = tmp_path / "noscore.tsv"
    noscore.write_text("chemical1\tchemical2\tnote\nCID1\tCID2\tx\n")
    with pytest.raises(InputError, match="no score column"):
        read_stitch(noscore)


def test_perturbation_table_pairs_pipes_empty_genes_and_compounds(tmp_path):
    path = tmp_path / "perts.csv"
    path.write_text(
        "perturbation,gene,compound\ns1,tp53,\ns2,TP53,\ndrug,MDM2|EP300,CIDm00002162\n"
        "drug,ACTB,\nctrl,,\n"
    )
    table = read_perturbation_table(path)
    assert table.perturbations == ["s1", "s2", "drug", "ctrl"]
    assert sorted(table.genes.itertuples(index=False)) == sorted(
        [("s1", "TP53"), ("s2", "TP53"), ("drug", "MDM2"), ("drug", "EP300"), ("drug", "ACTB")]
    )
    assert table.compounds == {"drug": "CID2162"}
    assert table.shared_gene_pairs()[0].tolist() == [0]


def test_a_perturbation_table_missing_a_column_names_it(tmp_path):
    path = tmp_path / "perts.csv"
    path.write_text("perturbation,target\ns1,TP53\n")
    with pytest.raises(InputError, match=r"perts\.csv: missing column 'gene'"):
        read_perturbation_table(path)


def test_random_walk_on_a_path_by_hand():
    """A–B–C, 2 steps: W = (P + P²)/2, symmetrized, / max → AB = BC = 1, AC = 0.25/0.375."""
    edges = pd.DataFrame({"source": ["A", "B"], "target": ["B", "C"], "weight": [1.0, 1.0]})
    w = edge_set(random_walk_weights(edges, {"A", "B", "C", "NOT_IN_NETWORK"}, steps=2))
    assert w.keys() == {frozenset("AB"), frozenset("BC"), frozenset("AC")}
    assert w[frozenset("AB")] == pytest.approx(1.0)
    assert w[frozenset("BC")] == pytest.approx(1.0)
    assert w[frozenset("AC")] == pytest.approx(0.25 / 0.375)
    one_step = edge_set(random_walk_weights(edges, {"A", "C"}, steps=1))
    assert one_step == {}  # A and C are two hops apart: no 1-step path


def test_image_similarity_of_mean_profiles():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 16))
    base[1] = base[0] + 0.05 * rng.normal(size=16)  # p1 looks like p0
    rows = []
    for p, profile in enumerate(base):
        for _ in range(3):
            rows.append([f"p{p}", "Plate1", *(profile + 0.01 * rng.normal(size=16))])
    frame = pd.DataFrame(
        rows, columns=["label", "Metadata_Plate", *[f"Emb_{i:04d}" for i in range(16)]]
    )
    labels, values = perturbation_profiles(frame, "label")
    assert labels == ["p0", "p1", "p2", "p3"] and values.shape == (4, 16)
    edges = edge_set(cosine_edges(labels, values, threshold=0.8))
    assert frozenset(("p0", "p1")) in edges and all(0.8 <= w <= 1 for w in edges.values())
    with pytest.raises(InputError, match="label column 'sirna'"):
        perturbation_profiles(frame, "sirna")


# --- building: normalize, lift, combine ----------------------------------------------------


@pytest.fixture
def tiny_sources(tmp_path):
    (tmp_path / "perts.csv").write_text(
        "perturbation,gene\nsiA,A\nsiB,B\nsiC,C\nsiD,D\nsiA2,A\ndrug,B|E\nnothing,ZZZ\n"
    )
    (tmp_path / "string.txt").write_text(
        "protein1 protein2 combined_score\nA B 900\nB C 400\nC D 100\n"
    )
    (tmp_path / "pairs.csv").write_text("source,target\nA,C\nE,D\n")
    return tmp_path


def test_sources_are_combined_by_the_mean_of_the_sources_that_know_both(tiny_sources):
    table = read_perturbation_table(tiny_sources / "perts.csv")
    sources = [
        b.string_source(tiny_sources / "string.txt", table),
        b.edge_list_source(tiny_sources / "pairs.csv", table),
    ]
    graph, report = b.build_graph(table, sources, "mean")
    w = graph.adjacency.toarray()
    i = {p: k for k, p in enumerate(graph.perturbations)}
    # STRING knows A,B,C (D only below threshold: its 100 line is dropped); the pair list A,C,D,E
    assert w[i["siA"], i["siB"]] == pytest.approx(0.9)  # only STRING knows B: 0.9/1
    assert w[i["siA"], i["siC"]] == pytest.approx((0.0 + 1.0) / 2)  # both know A and C
    assert w[i["siB"], i["siC"]] == pytest.approx((0.4 + 0.0) / 1)  # pairs lacks B
    assert w[i["siA"], i["siA2"]] == 1.0  # same gene
    # drug → B|E: STRING's strongest pair is A–B (0.9); the pair list knows E and A, no edge
    assert w[i["drug"], i["siA"]] == pytest.approx((0.9 + 0.0) / 2)
    assert w[i["drug"], i["siB"]] == 1.0  # shares B
    assert w[i["drug"], i["siD"]] == pytest.approx(1.0)  # E–D in the pair list only
    assert report.uncovered == ["nothing"] and report.shared_gene_pairs == 2
    assert graph.info()["isolated"] == 1
    graph_max, _ = b.build_graph(table, sources, "max")
    assert graph_max.adjacency[i["siA"], i["siC"]] == pytest.approx(1.0)


def test_graph_invariants_and_validation():
    g = PerturbationGraph.from_edges(
        ["a", "b", "c"], [0, 1, 0, 2], [1, 0, 0, 1], [0.5, 0.7, 1, 0.2]
    )
    a = g.adjacency.toarray()
    assert np.allclose(a, a.T) and a[0, 1] == pytest.approx(0.7) and not a.diagonal().any()
    assert g.n_edges == 2
    with pytest.raises(InputError, match="symmetric"):
        PerturbationGraph(["a", "b"], sp.csr_matrix(np.array([[0, 1.0], [0, 0]])))
    with pytest.raises(InputError, match="non-negative"):
        PerturbationGraph(["a", "b"], sp.csr_matrix(np.array([[0, -1.0], [-1.0, 0]])))
    with pytest.raises(InputError, match="zero diagonal"):
        PerturbationGraph(["a"], sp.csr_matrix(np.array([[1.0]])))
    with pytest.raises(InputError, match="appears twice"):
        PerturbationGraph(["a", "a"], sp.csr_matrix((2, 2)))


def test_info_coverage_index_of_and_neighbors():
    g = PerturbationGraph.from_edges(["a", "b", "c", "d"], [0, 0], [1, 2], [0.5, 0.9])
    info = g.info()
    assert (info["perturbations"], info["edges"], info["isolated"]) == (4, 2, 1)
    assert (info["degree_min"], info["degree_median"], info["degree_max"]) == (0, 1.0, 2)
    assert info["degree_mean"] == pytest.approx(1.0) and info["isolated_examples"] == ["d"]
    assert g.index_of(["c", "x", "a"]).tolist() == [2, -1, 0]
    cov = g.coverage(["a", "b", "d", "x", "y", "a"])
    assert cov == {
        "labels": 5,
        "covered": 3,
        "connected": 2,
        "missing": 2,
        "missing_examples": ["x", "y"],
        "fraction": 0.6,
    }
    assert g.neighbors("a") == [("c", pytest.approx(0.9)), ("b", 0.5)]
    with pytest.raises(InputError, match="'aa' is not in the graph; close names: a"):
        g.neighbors("aa")


def test_save_load_round_trip_and_scipy_reads_the_adjacency(tmp_path):
    g = PerturbationGraph.from_edges(
        ["s1", "s2", "β-drug"], [0, 1], [1, 2], [0.25, 1.0], {"k": [1]}
    )
    path = g.save(tmp_path / "graph.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["graph.npz"]  # no temporary left
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(
            ["data", "indices", "indptr", "shape", "format", "perturbations", "sources"]
        )
        assert npz["perturbations"].dtype.kind == "U"
        assert json.loads(str(npz["sources"]))["k"] == [1]
    adjacency = sp.load_npz(path)
    assert adjacency.format == "csr" and (adjacency != g.adjacency).nnz == 0
    back = PerturbationGraph.load(path)
    assert back.perturbations == g.perturbations and back.sources == {"k": [1]}
    assert (back.adjacency != g.adjacency).nnz == 0


def test_loading_a_corrupt_or_foreign_file_is_one_sentence_naming_it(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"junk\.npz: not a readable perturbation graph"):
        PerturbationGraph.load(junk)
    foreign = tmp_path / "foreign.npz"
    sp.save_npz(foreign, sp.csr_matrix(np.eye(2)))  # a plain scipy matrix: no vocabulary
    with pytest.raises(InputError, match=r"foreign\.npz: not an embedkit perturbation graph"):
        PerturbationGraph.load(foreign)
    truncated = tmp_path / "truncated.npz"
    good = PerturbationGraph.from_edges(["a", "b"], [0], [1], [1.0]).save(tmp_path / "good.npz")
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"truncated\.npz"):
        PerturbationGraph.load(truncated)
    asymmetric = tmp_path / "asym.npz"
    with np.load(good) as npz:
        arrays = dict(npz)
    arrays["data"], arrays["indices"] = arrays["data"][:1], arrays["indices"][:1]  # a→b only
    arrays["indptr"] = np.array([0, 1, 1], dtype=arrays["indptr"].dtype)
    np.savez(asymmetric, **arrays)
    with pytest.raises(InputError, match=r"asym\.npz: invalid perturbation graph \(adjacency must"):
        PerturbationGraph.load(asymmetric)
    with pytest.raises(InputError, match=r"missing\.npz: no such graph file"):
        PerturbationGraph.load(tmp_path / "missing.npz")


# --- the command line --------------------------------------------------------------------

SUMMARY = re.compile(
    r"^(\d+) perturbations, (\d+) edges, (\d+) isolated, (\d+) with no gene in any source; "
    r"mean of (\d+) sources \(.*\); \d+ pairs? shares? a gene; [\d.]+ s → .*graph\.npz$"
)


def test_cli_build_and_info_end_to_end(tiny_sources):
    out = tiny_sources / "graph.npz"
    result = run(
        "graph",
        "build",
        "--perturbations",
        tiny_sources / "perts.csv",
        "--string",
        tiny_sources / "string.txt",
        "--edges",
        tiny_sources / "pairs.csv",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    match = SUMMARY.match(result.stdout.strip())
    assert match and match.groups()[:5] == ("7", "11", "1", "1", "2"), result.stdout
    assert result.stderr.startswith("warning: 1 of 7 perturbations have no gene or id in any")
    assert "nothing" in result.stderr
    assert sp.load_npz(out).shape == (7, 7)

    again = run(
        "graph",
        "build",
        "--perturbations",
        tiny_sources / "perts.csv",
        "--string",
        tiny_sources / "string.txt",
        "-o",
        out,
    )
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.stderr

    (tiny_sources / "labels.csv").write_text("sirna\nsiA\nsiB\nsiX\nnothing\n")
    info = run(
        "graph", "info", out, "--labels", tiny_sources / "labels.csv", "--label-column", "sirna"
    )
    assert info.exit_code == 0, info.output
    lines = info.stdout.splitlines()
    assert "perturbations: 7" in lines
    assert any(line.startswith("edges:         11 (density") for line in lines)
    assert "degree:        min 0, median 4, mean 3.14, max 5" in lines
    assert "isolated:      1 (nothing)" in lines
    assert lines[-1].startswith("coverage:      3 of 4 labels of ")
    assert lines[-1].endswith("(75.0%) are in the graph, 2 with an edge; 1 missing: siX")


def test_cli_image_features_source(tmp_path):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 8))
    rows = [[f"p{i}", *(feats[i] + 0.01 * rng.normal(size=8))] for i in range(3) for _ in range(2)]
    rows += [["p0b", *(feats[0] + 0.01 * rng.normal(size=8))]]
    wells = pd.DataFrame(rows, columns=["Metadata_pert", *[f"Emb_{i:04d}" for i in range(8)]])
    wells.to_parquet(tmp_path / "wells.parquet")
    (tmp_path / "perts.csv").write_text("perturbation,gene\np0,G0\np1,G1\np2,G2\np0b,G9\n")
    result = run(
        "graph",
        "build",
        "--perturbations",
        tmp_path / "perts.csv",
        "--image-features",
        tmp_path / "wells.parquet",
        "--label-column",
        "Metadata_pert",
        "--image-threshold",
        "0.9",
        "-o",
        tmp_path / "graph.npz",
    )
    assert result.exit_code == 0, result.output
    g = PerturbationGraph.load(tmp_path / "graph.npz")
    assert g.neighbors("p0")[0][0] == "p0b"
    assert g.sources["inputs"]["image:wells.parquet"]["features"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--string", "{d}/string.txt"], "perts_bad.csv: missing column 'gene'"),
        ([], "no graph source given"),
        (["--string", "{d}/string.txt", "--label-column", "x"], "--image-features and --label-"),
    ],
)
def test_cli_build_bad_input_is_one_line(tiny_sources, args, message):
    (tiny_sources / "perts_bad.csv").write_text("perturbation,target\ns1,A\n")
    perts = "perts_bad.csv" if "missing column" in message else "perts.csv"
    args = [a.format(d=tiny_sources) for a in args]
    result = run(
        "graph",
        "build",
        "--perturbations",
        tiny_sources / perts,
        *args,
        "-o",
        tiny_sources / "g.npz",
    )
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_info_on_a_wrong_file_and_a_missing_label_column(tmp_path):
    (tmp_path / "wrong.npz").write_bytes(b"PK\x03\x04 broken")
    result = run("graph", "info", tmp_path / "wrong.npz")
    assert result.exit_code == 2 and "wrong.npz: not a readable perturbation graph" in result.stderr
    g = PerturbationGraph.from_edges(["a", "b"], [0], [1], [1.0]).save(tmp_path / "g.npz")
    (tmp_path / "labels.csv").write_text("sirna\na\n")
    result = run("graph", "info", g, "--labels", tmp_path / "labels.csv", "--label-column", "x")
    assert result.exit_code == 2 and "labels.csv: no column 'x'" in result.stderr


def test_importing_the_graph_package_and_its_cli_imports_no_torch():
    code = (
        "import sys, embedkit.graph, embedkit.graph.jobs, embedkit.cli.graph; "
        "print([m for m in ('torch', 'timm', 'faiss') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- real files (../shared/data/kg) ------------------------------------------------------


@pytest.fixture
def real_kg(real_data) -> Path:
    """../shared/data/kg; the tests using it skip with a reason when it is absent."""
    if not (real_data / "kg" / "gene_gene_StringDB.txt").exists():
        pytest.skip(f"{real_data / 'kg'} has no gene_gene_StringDB.txt")
    return real_data / "kg"


@pytest.fixture
def real_genes(real_kg) -> list[str]:
    """200 genes present in both STRING and Hetionet, half of them from STRING pairs."""
    string = read_string(real_kg / "gene_gene_StringDB.txt")
    het = read_hetionet(real_kg / "hetionet_protein_interactions.txt.gz")
    in_het = set(het["source"]) | set(het["target"])
    pairs = string[string["source"].isin(in_het) & string["target"].isin(in_het)]
    chosen = list(dict.fromkeys(pairs.head(60)[["source", "target"]].to_numpy().ravel()))
    rng = np.random.default_rng(0)
    common = sorted((set(string["source"]) | set(string["target"])) & in_het - set(chosen))
    return chosen + list(rng.choice(common, 200 - len(chosen), replace=False))


def test_real_readers_read_every_kg_file(real_kg):
    for name in ("StringDB", "HuMAP", "Reactome"):
        edges = read_string(real_kg / f"gene_gene_{name}.txt")
        assert len(edges) > 20_000 and set(edges["weight"]) == {1.0}
        assert edges["source"].str.fullmatch(r"[A-Z0-9\-\.@_/]+").mean() > 0.99
    het = read_hetionet(real_kg / "hetionet_protein_interactions.txt.gz")
    assert len(het) == 98_187 and {"A1BG", "ANXA7"} <= set(het["source"]) | set(het["target"])


def test_real_string_and_hetionet_graph_for_200_genes(real_kg, real_genes):
    table = perturbation_table(pd.DataFrame({"perturbation": real_genes, "gene": real_genes}))
    string_path = real_kg / "gene_gene_StringDB.txt"
    sources = [
        b.string_source(string_path, table),
        b.hetionet_source(real_kg / "hetionet_protein_interactions.txt.gz", table),
    ]
    graph, report = b.build_graph(table, sources)
    a = graph.adjacency
    assert a.shape == (200, 200) and abs(a - a.T).max() == 0
    assert a.data.min() > 0 and a.data.max() <= 1 and not a.diagonal().any()
    assert report.uncovered == []
    string = read_string(string_path)
    known = string[string["source"].isin(real_genes) & string["target"].isin(real_genes)]
    known = known[known["source"] != known["target"]]
    idx = graph.index_of(known["source"]), graph.index_of(known["target"])
    assert len(known) >= 30 and (np.asarray(a[idx]).ravel() > 0).all()  # every STRING pair
    walk = report.per_source["hetionet:hetionet_protein_interactions.txt.gz"]
    assert walk["edges"] > 0 and graph.n_edges > len(known) // 2


def test_real_compound_targets_make_a_graph_where_shared_targets_join(real_kg, tmp_path):
    targets = pd.read_csv(real_kg / "jump_target1_compound_metadata.tsv", sep="\t")
    targets = targets.dropna(subset=["target_list"]).head(40)
    perts = pd.DataFrame({"perturbation": targets["pert_iname"], "gene": targets["target_list"]})
    perts.to_csv(tmp_path / "perts.csv", index=False)
    result = run(
        "graph",
        "build",
        "--perturbations",
        tmp_path / "perts.csv",
        "--string",
        real_kg / "gene_gene_StringDB.txt",
        "-o",
        tmp_path / "g.npz",
    )
    assert result.exit_code == 0, result.output
    g = PerturbationGraph.load(tmp_path / "g.npz")
    table = read_perturbation_table(tmp_path / "perts.csv")
    i, j = table.shared_gene_pairs()
    assert len(i) > 0 and np.allclose(np.asarray(g.adjacency[i, j]).ravel(), 1.0)
    assert (table.genes.groupby("perturbation").size() > 1).any()  # several targets each


def test_real_cli_build_and_info(real_kg, real_genes, tmp_path):
    pd.DataFrame({"perturbation": [f"si_{g}" for g in real_genes], "gene": real_genes}).to_csv(
        tmp_path / "perts.csv", index=False
    )
    out = tmp_path / "graph.npz"
    result = run(
        "graph",
        "build",
        "--perturbations",
        tmp_path / "perts.csv",
        "--string",
        real_kg / "gene_gene_StringDB.txt",
        "--hetionet",
        real_kg / "hetionet_protein_interactions.txt.gz",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert SUMMARY.match(result.stdout.strip()).group(1) == "200"
    info = run("graph", "info", out)
    assert info.exit_code == 0 and "perturbations: 200" in info.stdout
    assert "hetionet:hetionet_protein_interactions.txt.gz:" in info.stdout


# --- losses ------------------------------------------------------------------------------


def three_node_graph() -> torch.Tensor:
    return torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)


def test_laplacian_loss_by_hand_on_three_nodes():
    w = three_node_graph().numpy()
    means = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]], dtype=torch.float64)
    z = means.numpy() / np.linalg.norm(means.numpy(), axis=1, keepdims=True)
    d = w.sum(axis=1)  # 1.5, 1, 0.5
    lap = np.eye(3) - w / np.sqrt(np.outer(d, d))
    trace = np.trace(z.T @ lap @ z)
    consensus = np.ones(3) @ lap @ np.ones(3)
    expected = (trace - consensus) / 3
    # written out: ½ Σ w_ij/√(d_i d_j) ‖z_i − z_j‖² / 3, pairs (0,1) and (0,2)
    by_pairs = (1.0 / np.sqrt(1.5 * 1.0) * 0.8 + 0.5 / np.sqrt(1.5 * 0.5) * 2.0) / 3
    assert expected == pytest.approx(by_pairs)
    assert laplacian_loss(means, three_node_graph()).item() == pytest.approx(expected)
    equal = torch.tensor([[3.0, 4.0]] * 3, dtype=torch.float64)
    assert laplacian_loss(equal, three_node_graph()).item() == pytest.approx(0.0, abs=1e-12)
    assert laplacian_loss(means * 7.0, three_node_graph()).item() == pytest.approx(expected)


def test_contrastive_loss_falls_when_neighbours_move_together():
    w = torch.zeros(4, 4, dtype=torch.float64)
    w[0, 1] = w[1, 0] = 1.0
    w[2, 3] = w[3, 2] = 0.5
    apart = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]], dtype=torch.float64)
    closer = apart.clone()
    closer[1] = torch.tensor([0.9, 0.3, 0.0])
    together = apart.clone()
    together[1] = apart[0]
    losses = [node_contrastive_loss(m, w, 0.1).item() for m in (apart, closer, together)]
    assert losses[0] > losses[1] > losses[2]
    # by hand for the 'together' case, anchor 0: positives {1}, negatives {2, 3}, τ = 0.1
    logits = np.array([1.0, 0.0, -1.0]) / 0.1
    anchor0 = -(logits[0] - np.log(np.exp(logits).sum()))
    assert anchor0 < losses[2] * 4  # the mean of 4 anchors includes anchor 0's term
    no_edges = torch.zeros(4, 4, dtype=torch.float64)
    assert node_contrastive_loss(apart, no_edges).item() == 0.0


def test_regularizer_maps_labels_weights_and_sends_gradients():
    graph = PerturbationGraph.from_edges(["A", "B", "C"], [0, 0], [1, 2], [1.0, 0.5])
    vocab = ["C", "A", "B", "UNKNOWN"]
    reg = GraphRegularizer(graph, vocab, kind="laplacian", weight=1e-2)
    assert reg.coverage["covered"] == 3 and reg.coverage["missing_examples"] == ["UNKNOWN"]
    torch.manual_seed(0)
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 1, 2, 0, 3, 0, 2, 3])
    loss = reg(x, labels)
    # the same by hand: means of A (rows 0,1), B (2,6), C (3,5) in graph order
    means = torch.stack([x[[0, 1]].mean(0), x[[2, 6]].mean(0), x[[3, 5]].mean(0)])
    expected = 1e-2 * laplacian_loss(means, torch.from_numpy(graph.subgraph([0, 1, 2])).double())
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert x.grad[[0, 1, 2, 3, 5, 6]].abs().sum() > 0
    assert x.grad[[4, 7]].abs().sum() == 0  # UNKNOWN is not in the graph

    contrastive = GraphRegularizer(graph, vocab, kind="contrastive", weight=1.0)
    y = torch.randn(8, 5, requires_grad=True)
    contrastive(y, labels).backward()
    assert y.grad.abs().sum() > 0

    z = torch.randn(3, 5, requires_grad=True)
    single = reg(z, torch.tensor([1, 1, 3]))  # one covered perturbation: 0, still a graph
    assert single.item() == 0.0
    single.backward()
    assert z.grad is not None and z.grad.abs().sum() == 0
    with pytest.raises(InputError, match="use one of laplacian, contrastive"):
        GraphRegularizer(graph, vocab, kind="dirichlet")


def test_regularizer_computes_in_fp32_under_bf16_autocast():
    graph = PerturbationGraph.from_edges(["A", "B", "C"], [0, 1], [1, 2], [1.0, 0.5])
    reg = GraphRegularizer(graph, ["A", "B", "C"], kind="contrastive", weight=1.0)
    torch.manual_seed(0)
    features = torch.randn(6, 8).bfloat16()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = reg(features, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reg(features.float(), labels).item(), rel=1e-6)


def test_perturbation_means():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert perturbation_means(x, torch.tensor([1, 0, 1]), 2).tolist() == [[3, 4], [3, 4]]


def test_proposition_3_1_measures():
    means = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    adjacency = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 0])), shape=(3, 3))
    assert neighbor_distance_ratio(means, adjacency) == pytest.approx(1.0 / 9.5)
    assert np.isnan(neighbor_distance_ratio(means, sp.csr_matrix((3, 3))))
    features = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    labels = np.array(["a", "a", "b", "c"])
    assert intra_perturbation_distance(features, labels) == pytest.approx(1.0)
    spread = np.linalg.norm(features - features.mean(0), axis=1).mean()
    assert intra_perturbation_distance(features, labels, relative=True) == pytest.approx(1 / spread)
    assert intra_perturbation_distance(torch.tensor(features), torch.tensor([0, 0, 1, 2])) == 1.0


# --- DDP: 2 gloo processes equal one process on the concatenated batch -----------------------

DDP_SCRIPT = r"""
import os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
from embedkit.graph.graph import PerturbationGraph
from embedkit.graph.losses import GraphRegularizer

KINDS = ("laplacian", "contrastive")
CUT = [0, 5, 13]  # uneven local batches: 5 and 8 rows


def setup():
    edges = ([0, 1, 2, 0], [1, 2, 3, 3], [1, 0.5, 0.8, 0.3])
    graph = PerturbationGraph.from_edges(list("ABCDE"), *edges)
    vocab = ["A", "B", "C", "D", "E", "Z"]  # Z is not in the graph
    torch.manual_seed(0)
    x = torch.randn(13, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 5, 2])
    torch.manual_seed(1)
    net = torch.nn.Linear(4, 3).double()
    regs = {k: GraphRegularizer(graph, vocab, kind=k, weight=1.0) for k in KINDS}
    return net, regs, x, labels


def step(model, net, reg, x, labels):
    net.zero_grad()
    xs = x.clone().requires_grad_(True)
    loss = reg(model(xs), labels)
    loss.backward()
    return {"loss": loss.detach(), "weight": net.weight.grad.clone(), "bias": net.bias.grad.clone(),
            "x": xs.grad.clone()}


def worker(rank, world, out, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    net, regs, x, labels = setup()
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    lo, hi = CUT[rank], CUT[rank + 1]
    result = {k: step(ddp, net, regs[k], x[lo:hi], labels[lo:hi]) for k in KINDS}
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()  # a rank tearing gloo down while its peer still talks aborts (SIGABRT)
    dist.destroy_process_group()


if __name__ == "__main__":
    out, port = sys.argv[1], int(sys.argv[2])
    net, regs, x, labels = setup()
    single = {k: step(net, net, regs[k], x, labels) for k in KINDS}
    torch.save(single, os.path.join(out, "single.pt"))
    mp.spawn(worker, args=(2, out, port), nprocs=2)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    script = tmp_path / "ddp_graph.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(free_port())],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for kind in ("laplacian", "contrastive"):
        ref = single[kind]
        assert ref["loss"].item() > 0
        for r, rank in enumerate(ranks):
            got = rank[kind]
            assert got["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-12)
            # DDP averages parameter gradients: the global loss's exact gradient
            assert torch.allclose(got["weight"], ref["weight"], rtol=1e-10, atol=1e-14)
            assert torch.allclose(got["bias"], ref["bias"], rtol=1e-10, atol=1e-14)
            # each rank's input rows: world × their share (the gather's backward sums ranks)
            lo, hi = (0, 5) if r == 0 else (5, 13)
            assert torch.allclose(got["x"], 2 * ref["x"][lo:hi], rtol=1e-10, atol=1e-14)
