"""Context graph: a synthetic data folder in the real file formats, with hand-counted answers.

Molecules: A aspirin, B caffeine, C ibuprofen (LINCS), D paracetamol (Repurposing Hub
samples only), E nicotine (JUMP-Target; a Broad6K stereoisomer merges into it), F
naphthalene (Broad6K, two spellings), G ethanol (Biogen, no InChIKey). H is in LINCS
but in no profile/target file, so it must stay out.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from embedkit.data_dir import resolve_data_dir
from train.context_graph import ContextGraph, GraphConfig, build_context_graph
from train.similarity import similarity_edges
from train.sources import read_gct

SMILES = {
    "A": "CC(=O)Oc1ccccc1C(=O)O",
    "B": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "C": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "D": "CC(=O)Nc1ccc(O)cc1",
    "E": "CN1CCC[C@H]1c1cccnc1",
    "F": "c1ccc2ccccc2c1",
    "G": "CCO",
    "H": "OC(=O)c1ccccc1",
}
PERT = {k: f"BRD-K0000000{i}" for i, k in enumerate("ABCDH", start=1)}
GENES = [f"G{i}" for i in range(1, 9)]
# The first graph's rules, whose counts the tests below were written for; the defaults
# (evaluation sets without annotations, every compound, mechanisms, gene signatures,
# Tanimoto-in-scaffold similarity) have their own tests further down.
CONFIG = GraphConfig(
    expression_top_fraction=0.05,
    expression_min_edges=0,
    keep_eval_annotations=True,
    all_compounds=False,
    moa_edges=False,
    gene_features=False,
    molecule_similarity="cosine",
)
DEFAULTS = GraphConfig(expression_top_fraction=0.05, expression_min_edges=0)


def inchikey(smiles: str) -> str:
    return Chem.MolToInchiKey(Chem.MolFromSmiles(smiles))


def _write_gct(path: Path) -> None:
    """Level-3-like plate: DMSO ×2, B at 10 and 1, C at 10; C's G3 is far off the plate."""
    samples = [
        ("DMSO", "-666", "ctl_vehicle"),
        ("DMSO", "-666", "ctl_vehicle"),
        (PERT["B"] + "-001-01-1", "10", "trt_cp"),
        (PERT["B"] + "-001-01-1", "1", "trt_cp"),
        (PERT["C"] + "-001-01-1", "10", "trt_cp"),
    ]
    rng = np.random.default_rng(0)
    values = 8.0 + rng.uniform(-0.05, 0.05, size=(8, 5))
    values[2, 4] += 5.0
    symbols = GENES[:-1] + ["g8"]  # lower case must still match the CMEA column G8
    lines = [
        "#1.3",
        "8\t5\t1\t3",
        "\t".join(["id", "pr_gene_symbol"] + [f"S{i}" for i in range(5)]),
    ]
    for name, col in (("pert_id", 0), ("pert_dose", 1), ("pert_type", 2)):
        lines.append("\t".join([name, "na"] + [s[col] for s in samples]))
    for g in range(8):
        lines.append("\t".join([f"{g}_at", symbols[g]] + [f"{v:.4f}" for v in values[g]]))
    path.write_text("\n".join(lines) + "\n")


def write_synthetic_data(root: Path) -> Path:
    """Every source file the builder reads, tiny, in the real formats."""
    for sub in ("molecules", "profiles", "kg", "benchmarks/broad6k", "benchmarks/biogenadme"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lincs = pd.DataFrame(
        {
            "pert_id": [PERT[k] for k in "ABCH"] + ["TRCN0001"],
            "pert_iname": list("abch") + ["shRNA"],
            "pert_type": ["trt_cp"] * 4 + ["trt_sh"],
            "canonical_smiles": [SMILES[k] for k in "ABCH"] + [None],
            "inchi_key": [f"InChIKey={inchikey(SMILES[k])}" for k in "ABCH"] + [None],
        }
    )
    lincs.to_csv(root / "molecules/lincs_pertinfo.tsv.gz", sep="\t", index=False)

    meta = pd.DataFrame(
        {
            "Metadata_pert_id": [PERT[k] for k in "ABC"],
            "Metadata_SMILES": [SMILES[k] for k in "ABC"],
            "Metadata_InChIKey": [f"InChIKey={inchikey(SMILES[k])}" for k in "ABC"],
            "Metadata_cell_line": "U2OS",
        }
    )
    cp = pd.DataFrame(
        {
            "Cells_A": [1.0, 3.0, 2.0],
            "Cells_B": [np.nan, -1.0, 1.0],
            "Cells_C": [5.0, 5.0, 5.0],
            "Cells_AllNaN": [np.nan] * 3,
        }
    )
    pd.concat([meta, cp], axis=1).to_parquet(root / "profiles/cmea_u2os_morphology.parquet")
    l1000 = pd.DataFrame(np.linspace(-0.9, 0.9, 24).reshape(3, 8), columns=GENES)
    l1000.loc[0, "G1"] = 10.0  # the single top |z| entry of this source
    pd.concat([meta, l1000], axis=1).to_parquet(root / "profiles/cmea_u2os_l1000.parquet")

    wells = (
        [("DMSO", 0.0, "control", None)] * 2
        + [(PERT["A"] + "-001-01-1", 10.0, "trt", inchikey(SMILES["A"])[:14])] * 2
        + [(PERT["A"] + "-001-01-1", 1.0, "trt", inchikey(SMILES["A"])[:14])] * 2
        + [(PERT["D"] + "-001-01-1", 10.0, "trt", inchikey(SMILES["D"])[:14])] * 2
        + [("BRD-K99999999-001-01-1", 10.0, "trt", None)]
    )
    a549 = pd.DataFrame(
        wells,
        columns=[
            "Metadata_broad_sample",
            "Metadata_mmoles_per_liter",
            "Metadata_pert_type",
            "Metadata_InChIKey14",
        ],
    )
    a549["Cells_X"] = [0.0, 0.0, 1.0, 3.0, 2.0, 2.0, 4.0, 6.0, 9.0]
    a549["Cells_Y"] = np.arange(9, dtype=float)
    a549.to_csv(root / "profiles/lincs_a549_SQ0001_normalized_feature_select.csv.gz", index=False)
    _write_gct(root / "profiles/l1000_TEST_A375_24H.gct")

    pd.DataFrame(
        {
            "pert_id": [PERT["A"], PERT["D"], PERT["B"], PERT["C"]],
            "pert_iname": list("adbc"),
            "moa": "x",
            "target": ["PTGS1|PTGS2", "PTGS2", "ADORA1", None],
        }
    ).to_csv(root / "kg/repurposing_simple.tsv", sep="\t", index=False)
    samples = pd.DataFrame(
        {
            "broad_id": [PERT["D"] + "-001-01-1"],
            "pert_iname": ["d"],
            "smiles": [SMILES["D"]],
            "InChIKey": [inchikey(SMILES["D"])],
        }
    )
    with open(root / "kg/repurposing_samples_20200324.txt", "w") as fh:
        fh.write("!Source\tsynthetic\n")
        samples.to_csv(fh, sep="\t", index=False)
    pd.DataFrame(
        {
            "broad_sample": ["BRD-K77777777-001-01-1"],
            "InChIKey": [inchikey(SMILES["E"])],
            "pert_iname": ["nicotine"],
            "target_list": ["CHRNA4"],
            "pert_type": ["trt"],
            "smiles": [SMILES["E"]],
        }
    ).to_csv(root / "kg/jump_target1_compound_metadata.tsv", sep="\t", index=False)
    (root / "kg/gene_gene_StringDB.txt").write_text(
        "entity1,entity2\nPTGS1,PTGS2\nPTGS2,G1\nG1,NOTINGRAPH\n"
    )
    with gzip.open(root / "kg/hetionet_protein_interactions.txt.gz", "wt") as fh:
        fh.write(
            "source_code\tsource_symbol\ttarget_code\ttarget_symbol\n"
            "HGNC:1\tADORA1\tHGNC:2\tCHRNA4\nHGNC:3\tPTGS2\tHGNC:4\tPTGS1\n"
        )
    pd.DataFrame(
        {
            "mol_id": ["m1", "m1", "m2"],
            "smiles": [SMILES["F"], "C1=CC=C2C=CC=CC2=C1", "CN1CCC[C@@H]1c1cccnc1"],
            "inchikey": [inchikey(SMILES["F"])[:14]] * 2 + [inchikey(SMILES["E"])[:14]],
        }
    ).to_csv(root / "benchmarks/broad6k/structure.csv.gz", index=False)
    pd.DataFrame({"smiles": [SMILES["G"], "not_a_smiles", SMILES["A"]], "y": [1, 2, 3]}).to_csv(
        root / "benchmarks/biogenadme/assays.csv.gz", index=False
    )
    _write_orf(root)
    return root


def _write_orf(root: Path) -> None:
    """ORF signatures: PTGS2 (Entrez 5743, in the LINCS gene table) and CHRNA4 (1137, in
    Hetionet's nodes only) over-expressed; 999 has no symbol; 7777's only hit is imputed."""
    pd.DataFrame(
        {
            "entrez_gene_id": [5743, 101, 102, 103, 104],
            "status": ["imputed", "measured", "measured", "measured", "imputed"],
            "symbol": ["PTGS2", "L1", "L2", "L3", "IMP"],
        }
    ).to_csv(root / "profiles/lincs_consensi_genes.tsv", sep="\t", index=False)
    pd.DataFrame(
        {"id": ["Gene::1137", "Gene::7777", "Compound::DB1"], "name": ["CHRNA4", "X7", "c"]}
    ).assign(kind=["Gene", "Gene", "Compound"]).to_csv(
        root / "kg/hetionet_v1.0_nodes.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        {
            "perturbagen": [5743, 5743, 1137, 999, 7777],
            "entrez_gene_id": [101, 103, 102, 101, 104],
            "z_score": [4.0, -6.0, 5.0, 4.5, 7.0],
            "symbol": ["L1", "L3", "L2", "L1", "IMP"],
            "status": ["measured", "measured", "measured", "measured", "imputed"],
        }
    ).to_csv(root / "profiles/lincs_orf_overexpression_signif.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, ContextGraph]:
    root = write_synthetic_data(tmp_path_factory.mktemp("data"))
    return root, build_context_graph(root, CONFIG)


def _node(graph: ContextGraph, key: str) -> int:
    return int(np.nonzero(graph.node_key == key)[0][0])


def _mol(graph: ContextGraph, letter: str) -> int:
    return _node(graph, f"molecule:{inchikey(SMILES[letter])[:14]}")


def test_counts_by_type(synthetic):
    _, graph = synthetic
    s = graph.summary()
    assert s["nodes"] == {
        "molecule": 7,
        "gene": 6,
        "cp_cmea_u2os": 3,
        "cp_lincs_a549": 3,
        "l1000_cmea_u2os": 3,
        "l1000_lincs_a375": 3,
    }
    assert s["edges"] == {
        "mol-profile": 12,
        "mol-gene:target": 5,
        "mol-gene:expression": 2,
        "gene-gene": 3,
        "sim:morgan": 0,
        "sim:cp_cmea_u2os": 0,
        "sim:cp_lincs_a549": 0,
        "sim:l1000": 0,
    }
    assert "H" not in {
        k for k in SMILES if f"molecule:{inchikey(SMILES[k])[:14]}" in set(graph.node_key)
    }
    assert graph.num_molecules == 7 and (graph.node_type[:7] == 0).all()


def test_edges_join_the_right_nodes(synthetic):
    _, graph = synthetic
    pairs = {
        (int(a), int(b)): graph.meta["edge_types"][t]
        for a, b, t in zip(graph.src, graph.dst, graph.edge_type, strict=True)
    }

    def edge(u: int, v: int) -> str | None:
        return pairs.get((min(u, v), max(u, v)))

    names = ("PTGS1", "PTGS2", "ADORA1", "CHRNA4", "G1", "G3")
    gene = {g: _node(graph, f"gene:{g}") for g in names}
    assert edge(_mol(graph, "A"), gene["PTGS1"]) == "mol-gene:target"
    assert edge(_mol(graph, "D"), gene["PTGS2"]) == "mol-gene:target"
    assert edge(_mol(graph, "E"), gene["CHRNA4"]) == "mol-gene:target"
    assert edge(_mol(graph, "A"), gene["G1"]) == "mol-gene:expression"
    assert edge(_mol(graph, "C"), gene["G3"]) == "mol-gene:expression"
    assert edge(gene["PTGS1"], gene["PTGS2"]) == "gene-gene"
    a549 = _node(graph, f"cp_lincs_a549:{PERT['A']}@10")
    assert edge(_mol(graph, "A"), a549) == "mol-profile"
    assert edge(_mol(graph, "B"), _node(graph, f"l1000_lincs_a375:{PERT['B']}@1")) == "mol-profile"
    assert (graph.src < graph.dst).all() and ((graph.weight > 0) & (graph.weight <= 1)).all()


def test_features_scaled_and_aligned(synthetic):
    _, graph = synthetic
    cp = graph.spaces["cp_cmea_u2os"]
    assert cp.spec.columns == ["Cells_A", "Cells_B", "Cells_C"]  # the all-NaN column is dropped
    rows = cp.values[cp.node_rows[[_node(graph, f"cp_cmea_u2os:{PERT[k]}") for k in "ABC"]]]
    np.testing.assert_allclose(rows[:, 0], [0.0, 1.0, 0.5])
    assert np.isnan(rows[0, 1]) and rows[1, 1] == 0.0 and rows[2, 1] == 1.0
    assert (rows[:, 2] == 0.0).all()  # constant column
    np.testing.assert_allclose(cp.spec.min, [1.0, -1.0, 5.0])
    np.testing.assert_allclose(cp.spec.max, [3.0, 1.0, 5.0])

    a549 = graph.spaces["cp_lincs_a549"]  # medians of 2 wells: A@10 → 2, A@1 → 2, D@10 → 5
    x = a549.values[a549.node_rows[_node(graph, f"cp_lincs_a549:{PERT['D']}@10")], 0]
    assert x == pytest.approx(1.0) and a549.spec.min[0] == pytest.approx(2.0)

    l1000 = graph.spaces["l1000"]
    assert l1000.spec.columns == GENES and (l1000.node_rows >= 0).sum() == 6
    assert np.nanmin(l1000.values) == 0.0 and np.nanmax(l1000.values) == 1.0

    morgan = graph.spaces["morgan"]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=4, fpSize=1024)
    expected = gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(SMILES["C"]))
    np.testing.assert_array_equal(morgan.values[morgan.node_rows[_mol(graph, "C")]], expected)
    assert (morgan.node_rows[graph.num_molecules :] == -1).all()
    assert graph.feature_spaces_json()["cp_cmea_u2os"]["max"] == [3.0, 1.0, 5.0]


def test_retrieval_scales_profiles_with_the_spec_training_used(synthetic):
    """One feature-space spec: the scaled profiles the decoders learn are what retrieval's
    scaling gives for the same raw profiles, read back from the model's JSON."""
    from embedkit.molecules.feature_spaces import FeatureSpaceSpec
    from embedkit.retrieval.spaces import match_feature_space, scale_profiles

    root, graph = synthetic
    cp = graph.spaces["cp_cmea_u2os"]
    rows = cp.values[cp.node_rows[[_node(graph, f"cp_cmea_u2os:{PERT[k]}") for k in "ABC"]]]
    table = pd.read_parquet(root / "profiles/cmea_u2os_morphology.parquet")
    raw = table[["Cells_A", "Cells_B", "Cells_C"]].to_numpy(np.float64)
    spaces = json.loads(json.dumps(graph.feature_spaces_json()))  # as config.json holds them
    spec = FeatureSpaceSpec.from_json(spaces["cp_cmea_u2os"])
    assert spec.kind == "profile" and spec.info == {"datasets": ["cp_cmea_u2os"]}
    np.testing.assert_array_equal(spec.scale(raw), rows)
    match = match_feature_space(["cells_c", "cells_a", "cells_b"], spaces)
    np.testing.assert_array_equal(scale_profiles(raw, match), rows)
    beyond = scale_profiles(np.array([[10.0, -5.0, 7.0]]), match)  # outside the training range
    assert beyond.tolist() == [[1.0, 0.0, 1.0]]
    assert FeatureSpaceSpec.from_json(spaces["morgan"]).kind == "fingerprint"


def test_save_load_round_trip(synthetic, tmp_path):
    _, graph = synthetic
    path = graph.save(tmp_path / "g.npz")
    loaded = ContextGraph.load(path)
    for name in ("node_type", "node_key", "smiles", "src", "dst", "weight", "edge_type"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(graph, name))
    for name, space in graph.spaces.items():
        np.testing.assert_array_equal(loaded.spaces[name].values, space.values)
        assert loaded.spaces[name].spec.to_json() == space.spec.to_json()
    summary = json.loads(path.with_suffix(".json").read_text())["summary"]
    assert summary == graph.summary()
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert "meta_json" in z.files


def test_a_failed_save_keeps_the_previous_graph_and_leaves_no_temp_file(
    synthetic, tmp_path, monkeypatch
):
    _, graph = synthetic
    path = graph.save(tmp_path / "g.npz")
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()

    def crash(handle, **arrays):
        handle.write(b"half a graph")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        graph.save(path)
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.npz"]


def test_similarity_edges_threshold_and_sparsity():
    x = np.array([[1, 0, 0], [1, 0.1, 0], [1, 0.3, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], float)
    i, j, s = similarity_edges(x, threshold=0.8, sparsity=0.0)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(0, 1), (0, 2), (1, 2), (4, 5)}
    i, j, s = similarity_edges(x, threshold=0.8, sparsity=1 - 2 / 15)  # budget: 2 of 15 pairs
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(0, 1), (4, 5)}
    assert np.all(s >= 0.99)


def test_read_gct(tmp_path):
    _write_gct(tmp_path / "p.gct")
    data, rows, cols = read_gct(tmp_path / "p.gct")
    assert data.shape == (8, 5) and list(rows["pr_gene_symbol"])[-1] == "g8"
    assert list(cols["pert_type"]) == ["ctl_vehicle"] * 2 + ["trt_cp"] * 3
    lines = (tmp_path / "p.gct").read_text().splitlines()
    (tmp_path / "bad.gct").write_text("\n".join(lines[:-1]) + "\n")  # one gene row short
    with pytest.raises(ValueError, match="GCT header"):
        read_gct(tmp_path / "bad.gct")


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDKIT_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    monkeypatch.delenv("EMBEDKIT_DATA_DIR")
    with pytest.raises(FileNotFoundError, match="EMBEDKIT_DATA_DIR"):
        resolve_data_dir(None)


def full_target_edges(synthetic) -> int:
    return synthetic[1].summary()["edges"]["mol-gene:target"]


def test_build_graph_cli(synthetic, tmp_path):
    from train.infoalign import cli

    root, _ = synthetic
    result = CliRunner().invoke(
        cli,
        [
            "build-graph",
            "--data-dir",
            str(root),
            "--out",
            str(tmp_path / "g.npz"),
            "--exclude-benchmark",
            "broad6k",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "node molecule" in result.output
    summary = json.loads((tmp_path / "g.json").read_text())["summary"]
    # An excluded benchmark's molecules leave the graph whatever their source: naphthalene
    # (Broad6K only) and nicotine (also a JUMP-Target compound, with a target edge); the
    # defaults add H (LINCS only): 7 - 2 + 1.
    assert summary["nodes"]["molecule"] == 6
    assert summary["edges"].get("mol-gene:target", 0) < full_target_edges(synthetic)


def test_held_out_molecules_leave_with_their_profiles(default_graph, tmp_path):
    """--exclude-molecules (zero-shot folds): caffeine goes with its CMEA Cell Painting and
    L1000 profiles and its A375 profiles; nothing else changes."""
    from train.infoalign import cli

    root, full = Path(default_graph.meta["data_dir"]), default_graph
    held = tmp_path / "heldout.csv"
    pd.DataFrame({"Metadata_InChIKey": [f"InChIKey={inchikey(SMILES['B'])}"]}).to_csv(held)
    result = CliRunner().invoke(
        cli,
        [
            "build-graph",
            "--data-dir",
            str(root),
            "--out",
            str(tmp_path / "g.npz"),
            "--exclude-molecules",
            str(held),
        ],
    )
    assert result.exit_code == 0, result.output
    graph = ContextGraph.load(tmp_path / "g.npz")
    gone = [k for k in full.node_key if k not in set(graph.node_key)]
    assert sorted(gone) == sorted(
        [
            f"molecule:{inchikey(SMILES['B'])[:14]}",
            f"cp_cmea_u2os:{PERT['B']}",
            f"l1000_cmea_u2os:{PERT['B']}",
            f"l1000_lincs_a375:{PERT['B']}@10",
            f"l1000_lincs_a375:{PERT['B']}@1",
            "gene:ADORA1",
        ]
    )
    assert graph.meta["config"]["exclude_molecules"] == [inchikey(SMILES["B"])[:14]]


def _real_data_dir() -> Path | None:
    env = os.environ.get("EMBEDKIT_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((p for p in candidates if (p / "molecules/lincs_pertinfo.tsv.gz").exists()), None)


@pytest.mark.slow
def test_real_data_graph_is_sane():
    root = _real_data_dir()
    if root is None:
        pytest.skip("real data not found: set EMBEDKIT_DATA_DIR to the shared data folder")
    graph = build_context_graph(root)
    s = graph.summary()
    assert 15_000 < s["nodes"]["molecule"] < 25_000  # every LINCS and Hub compound
    assert s["nodes"]["cp_cmea_u2os"] == 100 and s["nodes"]["l1000_cmea_u2os"] == 100
    assert 250 < s["nodes"]["cp_lincs_a549"] <= 360 and 250 < s["nodes"]["l1000_lincs_a375"] < 377
    assert 1_000 < s["nodes"]["gene"] < 10_000
    assert s["edges"]["mol-profile"] == sum(
        s["nodes"][t] for t in s["nodes"] if t not in ("molecule", "gene", "moa")
    )
    assert s["nodes"]["moa"] > 500 and s["edges"]["mol-moa"] > 3_000
    assert s["spaces"]["l1000_orf"]["nodes"] > 1_500 and s["spaces"]["l1000_orf"]["dim"] == 978
    record = graph.meta["eval_annotation_exclusion"]
    assert record["applied"] and record["target_edges_removed"] > 1_000
    assert record["assay_files"]["benchmarks/chembl2k/assays.csv.gz"]["in_graph"] > 2_000
    assert graph.meta["molecule_similarity"]["threshold"] >= 0.8
    assert s["edges"]["gene-gene"] > 5_000 and s["edges"]["mol-gene:target"] > 5_000
    assert s["edges"]["sim:morgan"] > 1_000
    assert len(set(graph.node_key.tolist())) == graph.num_nodes
    assert s["spaces"]["l1000"]["dim"] >= 978 and s["spaces"]["morgan"]["dim"] == 1024
    n = graph.num_molecules
    assert s["edges"]["sim:morgan"] <= 0.005 * n * (n - 1) / 2


def test_molecule_keys_fall_back_to_smiles_row_by_row():
    """A blank InChIKey must not let a held-out molecule leak back into training."""
    from train.sources import molecule_keys

    table = pd.DataFrame(
        {
            "Metadata_InChIKey": [f"InChIKey={inchikey(SMILES['A'])}", ""],
            "Metadata_SMILES": [SMILES["A"], SMILES["B"]],
        }
    )
    assert molecule_keys(table) == {inchikey(SMILES[k])[:14] for k in "AB"}
    assert molecule_keys(pd.DataFrame({"smiles": ["[*]CC", "not a smiles"]})) == set()


@pytest.fixture(scope="module")
def default_graph(synthetic) -> ContextGraph:
    return build_context_graph(synthetic[0], DEFAULTS)


def _edge_set(graph: ContextGraph, kind: str) -> set[tuple[str, str]]:
    code = graph.meta["edge_types"].index(kind)
    keys = graph.node_key
    return {
        tuple(sorted((str(keys[a]), str(keys[b]))))
        for a, b, t in zip(graph.src, graph.dst, graph.edge_type, strict=True)
        if t == code
    }


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _mkey(letter: str) -> str:
    return f"molecule:{inchikey(SMILES[letter])[:14]}"


def test_evaluation_molecules_lose_their_target_and_mechanism_edges_by_default(
    synthetic, default_graph
):
    """Aspirin is a Biogen molecule and nicotine a Broad6K one: their Repurposing Hub and
    JUMP-Target annotations would be benchmark labels, so they go; the molecules stay."""
    _, full = synthetic
    targets = _edge_set(default_graph, "mol-gene:target")
    assert targets == {
        _pair(_mkey("D"), "gene:PTGS2"),
        _pair(_mkey("B"), "gene:ADORA1"),
    }
    assert _pair(_mkey("A"), "gene:PTGS1") in _edge_set(full, "mol-gene:target")
    moa = _edge_set(default_graph, "mol-moa")
    assert {m for pair in moa for m in pair if m.startswith("molecule:")} == {
        _mkey("B"),
        _mkey("C"),
        _mkey("D"),
    }
    assert {_mkey("A"), _mkey("E")} <= set(default_graph.node_key)
    record = default_graph.meta["eval_annotation_exclusion"]
    assert record["applied"] and record["target_edges_removed"] == 3
    assert record["moa_edges_removed"] == 1 and record["molecules_that_lost_edges"] == 2
    assert record["assay_files"]["benchmarks/biogenadme/assays.csv.gz"] == {
        "molecules": 2,
        "in_graph": 2,
    }
    assert "benchmarks/broad6k/structure.csv.gz" in default_graph.meta["files"]


def test_training_without_a_graph_builds_the_excluding_one(synthetic, tmp_path):
    """`train.infoalign train` without --graph builds with the defaults: no leak."""
    from train.distributed import setup_runtime
    from train.infoalign import prepare_graph

    graph, path = prepare_graph(
        None, str(synthetic[0]), tmp_path, setup_runtime(1), log=lambda _m: None
    )
    assert path == tmp_path / "context_graph.npz"
    assert graph.meta["eval_annotation_exclusion"]["applied"]
    assert _pair(_mkey("A"), "gene:PTGS1") not in _edge_set(graph, "mol-gene:target")


def test_exclusion_options_and_the_card(synthetic, tmp_path):
    """--exclude-assays adds a file (caffeine loses ADORA1); --keep-eval-annotations keeps
    every edge; the card says which."""
    from train.infoalign import cli
    from train.model_card import _exclusions

    root, _ = synthetic
    extra = tmp_path / "tox.csv"
    pd.DataFrame({"SMILES": [SMILES["B"]], "task": [1]}).to_csv(extra, index=False)
    runner = CliRunner()
    out = tmp_path / "g.npz"
    args = ["build-graph", "--data-dir", str(root), "--out", str(out)]
    result = runner.invoke(cli, [*args, "--exclude-assays", str(extra), "--top-expression", "0.05"])
    assert result.exit_code == 0, result.output
    assert "evaluation sets: 3 molecules of" in result.output
    graph = ContextGraph.load(out)
    assert _edge_set(graph, "mol-gene:target") == {_pair(_mkey("D"), "gene:PTGS2")}
    assert graph.meta["config"]["exclude_assays"] == [str(extra.resolve())]
    card = "\n".join(_exclusions(graph))
    assert "No target or mechanism-of-action edges" in card and str(extra) in card

    result = runner.invoke(cli, [*args, "--keep-eval-annotations"])
    assert result.exit_code == 0, result.output
    graph = ContextGraph.load(out)
    assert _pair(_mkey("A"), "gene:PTGS1") in _edge_set(graph, "mol-gene:target")
    assert "KEEP" in result.output and "kept their target" in "\n".join(_exclusions(graph))


def test_gene_nodes_carry_orf_l1000_signatures(default_graph):
    space = default_graph.spaces["l1000_orf"]
    assert space.spec.columns == ["L1", "L2", "L3"]  # measured landmarks only
    rows = {
        g: space.values[space.node_rows[_node(default_graph, f"gene:{g}")]]
        for g in ("PTGS2", "CHRNA4")
    }
    # min–max per column over the two genes: PTGS2 (4, 0, −6), CHRNA4 (0, 5, 0)
    np.testing.assert_allclose(rows["PTGS2"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(rows["CHRNA4"], [0.0, 1.0, 1.0])
    assert (space.node_rows >= 0).sum() == 2  # 999: no symbol; 7777: imputed hits only
    assert "gene:X7" not in set(default_graph.node_key)
    assert default_graph.summary()["spaces"]["l1000_orf"] == {"dim": 3, "nodes": 2}


def test_every_compound_is_a_node_by_default(synthetic, default_graph):
    """H (benzoic acid) is in LINCS only: absent from the first graph, present now."""
    assert _mkey("H") in set(default_graph.node_key)
    assert _mkey("H") not in set(synthetic[1].node_key)
    assert default_graph.meta["molecule_sources"]["lincs"] == 4


def test_tanimoto_block_edges_follow_the_budget():
    from train.similarity import tanimoto_block_edges

    bits = np.zeros((6, 8), np.uint8)
    bits[0, :4] = bits[1, :4] = 1  # identical: Tanimoto 1
    bits[2, :3] = 1  # 3/4 with rows 0 and 1
    bits[3, :4] = 1  # identical to 0 and 1, but in another block
    bits[4, 4:] = bits[5, 4:6] = 1  # 0.5
    blocks = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5])]
    i, j, w, t = tanimoto_block_edges(bits, blocks, sparsity=0.0, min_threshold=0.5)
    assert t == 0.5 and set(zip(i.tolist(), j.tolist(), strict=True)) == {
        (0, 1),
        (0, 2),
        (1, 2),
        (4, 5),
    }
    np.testing.assert_allclose(sorted(w), [0.5, 0.75, 0.75, 1.0])
    i, j, w, t = tanimoto_block_edges(bits, blocks, sparsity=0.995, min_threshold=0.5)
    assert t == pytest.approx(0.99) and list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1)]
    i, j, w, t = tanimoto_block_edges(bits, blocks, sparsity=0.5, min_threshold=0.5)
    assert t == pytest.approx(0.75) and len(i) == 3  # the median of (1, .75, .75, .5), edges ≥ it


def test_profile_fraction_keeps_a_seeded_share(synthetic):
    root, full = synthetic
    config = GraphConfig.from_dict({**CONFIG.to_dict(), "profile_fraction": 0.5})
    half = build_context_graph(root, config)
    n_full = sum(v for k, v in full.summary()["nodes"].items() if k not in ("molecule", "gene"))
    n_half = sum(v for k, v in half.summary()["nodes"].items() if k not in ("molecule", "gene"))
    assert n_half == 8 and n_full == 12  # each set of 3 profiles keeps round(1.5) = 2
    again = build_context_graph(root, config)
    assert again.node_key.tolist() == half.node_key.tolist()
    assert GraphConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="profile_fraction"):
        GraphConfig(profile_fraction=1.5)
    none = build_context_graph(
        root, GraphConfig.from_dict({**DEFAULTS.to_dict(), "profile_fraction": 0.0})
    )
    assert set(none.spaces) == {"morgan"} and none.summary()["edges"]["mol-profile"] == 0
    assert "gene:PTGS2" in set(none.node_key)  # genes stay, without their signatures
