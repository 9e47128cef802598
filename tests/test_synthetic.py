"""The SIMULATED plate generator: layout, determinism, graph-following phenotypes, effects."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from embedkit.cli.datasets import datasets_group
from embedkit.datasets.synthetic import (
    CONTROL_GENE,
    METADATA_COLUMNS,
    PHENOTYPE_FEATURES,
    GeneGraph,
    SynthConfig,
    SyntheticScreen,
    TechnicalEffects,
    cell_line_descriptor,
    cell_line_profile,
    default_gene_graph,
    gene_phenotypes,
    generate_sites,
    render_site,
    well_names,
    write_synthetic_dataset,
)

SMALL = SynthConfig(
    cell_lines=("U2OS", "HUVEC"), batches=2, plates=1, wells=8, sites=2, size=64, n_genes=12
)
NAME = re.compile(r"^(?P<well>[B-O]\d{2})_s(?P<site>\d+)_w(?P<channel>[1-6])\.png$")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth") / "plate"
    return out, write_synthetic_dataset(out, SMALL)


def test_layout_files_and_metadata(written):
    out, meta = written
    assert list(meta.columns) == list(METADATA_COLUMNS)
    n_sites = 2 * 2 * 1 * 8 * 2  # lines x batches x plates x wells x sites
    assert len(meta) == n_sites
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == n_sites * 6
    seen = set()
    for path in pngs:
        experiment, plate = path.parts[-3], path.parts[-2]
        assert re.fullmatch(r"(U2OS|HUVEC)-0[12]", experiment)
        assert plate == "Plate1"
        match = NAME.match(path.name)
        assert match, path.name
        seen.add((f"{experiment}/{plate}", match["well"], int(match["site"])))
    keys = set(zip(meta.Metadata_Plate, meta.Metadata_Well, meta.Metadata_Site, strict=True))
    assert seen == keys
    assert set(meta.Metadata_Well) == set(well_names(8))
    assert set(meta.Metadata_Experiment) == {"U2OS-01", "U2OS-02", "HUVEC-01", "HUVEC-02"}
    assert (meta.Metadata_Plate == meta.Metadata_Experiment + "/Plate1").all()
    assert (meta.Metadata_Experiment.str.split("-").str[0] == meta.Metadata_CellLine).all()
    assert set(meta.Metadata_Batch) == {1, 2}
    # 1/4 of the wells of each plate are negative controls, named EMPTY, module -1
    controls = meta[meta.Metadata_PertType == "negcon"]
    assert (controls.Metadata_Gene == CONTROL_GENE).all()
    assert (controls.Metadata_Module == -1).all()
    per_plate = controls.groupby("Metadata_Plate").Metadata_Well.nunique()
    assert (per_plate == 2).all()
    treated = meta[meta.Metadata_PertType == "trt"]
    assert set(meta.Metadata_PertType) == {"negcon", "trt"}
    graph = SyntheticScreen(SMALL).graph
    module_of = dict(zip(graph.genes, graph.modules, strict=True))
    assert (treated.Metadata_Module == treated.Metadata_Gene.map(module_of)).all()
    # genes rotate across plates: 2 plates x 6 treated wells cover all 12 genes per line
    for _, group in treated.groupby("Metadata_CellLine"):
        assert set(group.Metadata_Gene) == set(graph.genes)
    # the files beside the images
    assert (out / "README.txt").read_text().startswith("SIMULATED DATA")
    assert "seed" in (out / "README.txt").read_text().lower()
    edges = pd.read_csv(out / "gene_graph.csv")
    assert list(edges.columns) == ["source", "target"]
    assert len(edges) == len(graph.edges)
    saved = pd.read_csv(out / "metadata.csv")
    pd.testing.assert_frame_equal(saved, meta)
    config = SynthConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config == SMALL


def test_pngs_are_8bit_of_the_right_size_and_not_constant(written):
    out, meta = written
    row = meta.iloc[0]
    for c in range(1, 7):
        path = out / row.Metadata_Plate / f"{row.Metadata_Well}_s{row.Metadata_Site}_w{c}.png"
        with Image.open(path) as image:
            assert image.mode == "L"
            assert image.size == (64, 64)
            pixels = np.asarray(image)
        assert pixels.dtype == np.uint8
        assert pixels.std() > 0, f"channel {c} is constant"


def test_same_seed_same_bytes_other_seed_other_bytes(written, tmp_path):
    out, _ = written
    config = dataclasses.replace(SMALL, cell_lines=("U2OS",), batches=1)
    write_synthetic_dataset(tmp_path / "a", config)
    write_synthetic_dataset(tmp_path / "b", config)
    write_synthetic_dataset(tmp_path / "c", dataclasses.replace(config, seed=1))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/metadata.csv").read_bytes() == (tmp_path / "b/metadata.csv").read_bytes()
    differ = sum(
        (tmp_path / "a" / r).read_bytes() != (tmp_path / "c" / r).read_bytes() for r in files
    )
    assert differ == len(files)
    # a site does not depend on what else is drawn: the 2-line run holds the same U2OS-01 bytes
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (out / rel).read_bytes()


def test_in_memory_stream_matches_render_site():
    config = dataclasses.replace(SMALL, cell_lines=("HUVEC",), batches=1, wells=2, sites=1)
    items = list(generate_sites(config))
    assert len(items) == 2
    meta, image = items[0]
    assert image.shape == (6, 64, 64) and image.dtype == np.uint8
    again = render_site(
        config, meta["Metadata_CellLine"], meta["Metadata_Gene"], well=meta["Metadata_Well"]
    )
    np.testing.assert_array_equal(image, again)


def test_blank_channels_are_constant_and_channels_can_be_fewer():
    config = dataclasses.replace(SMALL, blank_channels=(2, 5))
    image = render_site(config, "U2OS")
    assert (image[1] == 0).all() and (image[4] == 0).all()
    assert all(image[c].std() > 0 for c in (0, 2, 3, 5))
    five = render_site(dataclasses.replace(SMALL, channels=5), "U2OS")
    assert five.shape == (5, 64, 64)
    np.testing.assert_array_equal(five, render_site(SMALL, "U2OS")[:5])


def test_linked_genes_have_more_similar_phenotypes():
    graph = default_gene_graph(n_genes=40, n_modules=5, seed=3)
    pheno = gene_phenotypes(graph, seed=3)
    assert pheno.shape == (40, len(PHENOTYPE_FEATURES))
    corr = np.corrcoef(pheno)
    upper = np.triu_indices(40, 1)
    linked = graph.adjacency()[upper] > 0
    assert corr[upper][linked].mean() > corr[upper][~linked].mean() + 0.3
    modules = np.asarray(graph.modules)
    same = (modules[:, None] == modules[None])[upper]
    assert corr[upper][same].mean() > corr[upper][~same].mean() + 0.3
    # no smoothing: linked and unlinked genes are alike
    flat = np.corrcoef(gene_phenotypes(graph, seed=3, smoothing=0.0))
    assert abs(flat[upper][linked].mean() - flat[upper][~linked].mean()) < 0.15


def test_gene_graph_from_user_edges():
    graph = GeneGraph.from_edges(["A", "B", "C", "D"], [("A", "B"), ("C", "D")])
    assert graph.modules == (0, 0, 1, 1)
    with pytest.raises(ValueError, match="reserved"):
        GeneGraph.from_edges(["A", CONTROL_GENE], [])
    config = dataclasses.replace(SMALL, gene_graph=graph, wells=4, cell_lines=("RPE",))
    meta = SyntheticScreen(config).layout()
    assert set(meta.Metadata_Gene) <= {"A", "B", "C", "D", CONTROL_GENE}


def test_cell_lines_differ_and_de_novo_lines_are_stable():
    u2os, huvec = cell_line_profile("U2OS"), cell_line_profile("HUVEC")
    assert huvec.elongation > u2os.elongation
    assert cell_line_profile("MyLine") == cell_line_profile("MyLine")
    np.testing.assert_array_equal(cell_line_descriptor("MyLine"), cell_line_descriptor("myline"))
    screen = SyntheticScreen(SMALL)
    assert not np.allclose(screen.response("U2OS"), screen.response("HUVEC"))


def _dna_foreground_mean(image: np.ndarray) -> float:
    dna = image[0].astype(float)
    return float(dna[dna > 40].mean())


def test_strong_knockdown_changes_image_statistics():
    config = dataclasses.replace(SMALL, size=128, batch_effect=0.0, well_drift=0.0)
    screen = SyntheticScreen(config)
    feature = PHENOTYPE_FEATURES.index("dna_intensity")
    effects = np.array([screen.effect("U2OS", g)[feature] for g in screen.graph.genes])
    strongest = int(np.argmax(np.abs(effects)))
    gene = screen.graph.genes[strongest]
    wells = well_names(12)
    control = [_dna_foreground_mean(screen.render_site("U2OS", well=w)) for w in wells]
    treated = [_dna_foreground_mean(screen.render_site("U2OS", gene, well=w)) for w in wells]
    diff = np.mean(treated) - np.mean(control)
    se = np.sqrt(np.var(control, ddof=1) / len(control) + np.var(treated, ddof=1) / len(treated))
    assert abs(diff) > 3 * se
    assert np.sign(diff) == np.sign(effects[strongest])


def test_batch_effect_is_the_reported_gain_contrast_and_offset():
    """Pixel by pixel: strength 1 = clip(255 * (gain * x0 / 255) ** gamma + offset), where x0
    is the same site at strength 0 (noise, illumination and drift off to isolate it)."""
    base = dataclasses.replace(
        SMALL,
        cell_lines=("U2OS",),
        control_fraction=1.0,
        size=96,
        noise=0.0,
        illumination=0.0,
        well_drift=0.0,
    )
    images = {}
    for strength in (0.0, 1.0):
        config = dataclasses.replace(base, batch_effect=strength)
        for meta, image in generate_sites(config):
            key = (meta["Metadata_Batch"], meta["Metadata_Well"], meta["Metadata_Site"])
            images[strength, key] = image.astype(np.float64)
    effects = TechnicalEffects(dataclasses.replace(base, batch_effect=1.0))
    moved = []
    for (strength, key), x0 in images.items():
        if strength != 0.0:
            continue
        gain, offset = effects.batch_effect("U2OS", key[0])
        gamma = effects.batch_contrast("U2OS", key[0])
        expected = 255 * (gain[:, None, None] * x0 / 255) ** gamma[:, None, None]
        expected = np.clip(expected + offset[:, None, None], 0, 255)
        x1 = images[1.0, key]
        inside = (x0 > 5) & (expected < 250)
        assert np.median(np.abs(x1 - expected)[inside]) <= 1.0
        assert np.percentile(np.abs(x1 - expected)[inside], 99) <= 4.0
        moved.append(np.abs(x1 - x0)[inside].mean())
    assert np.mean(moved) > 2.0  # the effect is not negligible
    zero = TechnicalEffects(SynthConfig(batch_effect=0.0))
    gain, offset = zero.batch_effect("X", 1)
    assert np.allclose(gain, 1) and np.allclose(offset, 0)
    assert np.allclose(zero.batch_contrast("X", 1), 1)


def test_config_validation():
    with pytest.raises(ValueError, match="wells"):
        SynthConfig(wells=400)
    with pytest.raises(ValueError, match="blank channel"):
        SynthConfig(blank_channels=(7,))
    with pytest.raises(ValueError, match="cell line"):
        SynthConfig(cell_lines=("U2OS/1",))


def test_cli_synth_plate(tmp_path):
    out = tmp_path / "synth"
    args = [
        "synth-plate", str(out), "--cell-lines", "RPE", "--batches", "1", "--wells", "3",
        "--sites", "1", "--size", "32", "--seed", "5", "--batch-effect", "0",
    ]  # fmt: skip
    result = CliRunner().invoke(datasets_group, args)
    assert result.exit_code == 0, result.output
    assert "3 SIMULATED sites (18 PNG files)" in result.output
    assert len(list(out.rglob("*.png"))) == 18
    assert len(pd.read_csv(out / "metadata.csv")) == 3
    again = CliRunner().invoke(datasets_group, args)
    assert again.exit_code == 2 and "not empty" in again.output
    bad = CliRunner().invoke(datasets_group, ["synth-plate", str(tmp_path / "x"), "--wells", "0"])
    assert bad.exit_code == 2 and "wells" in bad.output


def test_output_is_pinned_to_the_reference_generator():
    """Values drawn by the generator before it was split into modules (commit 438a60f).

    The layout and graph are pinned exactly; floats and pixels with a tolerance that
    survives last-bit differences between machines but not a reordered random stream.
    """
    config = SynthConfig(
        cell_lines=("U2OS", "MyLine"), batches=2, wells=8, sites=2, size=64, n_genes=12, seed=11
    )
    screen = SyntheticScreen(config)
    layout = screen.layout().to_csv(index=False).encode()
    assert hashlib.sha256(layout).hexdigest() == (
        "0b79b6d714de8825f252bf74d4a8da357d84f7ab38aa0a5051e08102c2e7db8f"
    )
    pairs = ["1-2", "1-3", "1-5", "2-3", "4-5", "4-6", "5-6", "7-8", "8-9", "10-11", "10-12"]
    pairs.append("11-12")
    expected_edges = [tuple(f"SIMG{int(g):02d}" for g in p.split("-")) for p in pairs]
    assert list(screen.graph.edges) == expected_edges
    np.testing.assert_allclose(
        screen.phenotypes[:2, :4],
        [[-0.248987, 0.179085, 0.011048, 0.170429], [-0.710947, -0.787817, 0.800983, 1.36266]],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        screen.response("MyLine")[:4], [1.520541, 1.102494, 0.970543, 1.18973], atol=1e-5
    )
    sites = {
        ("U2OS", CONTROL_GENE, 1, 1, "B02", 1): [12.688, 30.979, 31.687, 16.563, 35.333, 7.663],
        ("MyLine", "SIMG03", 2, 1, "O23", 2): [6.621, 17.336, 14.065, 11.623, 17.86, 11.802],
    }
    for key, means in sites.items():
        image = render_site(config, *key)
        np.testing.assert_allclose(image.reshape(6, -1).mean(1), means, atol=0.02)


# -- grounded in real priors: a gene graph file, cell-line embeddings -------------------


def write_graph_npz(path: Path, genes, matrix, sources: dict | None = None) -> Path:
    """A perturbation graph file in the `embedkit graph build` format: scipy's sparse npz
    (symmetric CSR adjacency) plus the keys `perturbations` and `sources` (JSON text)."""
    import io

    import scipy.sparse

    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(matrix))
    buffer.seek(0)
    with np.load(buffer) as npz:
        arrays = dict(npz)
    arrays["perturbations"] = np.array(list(genes), dtype=str)
    arrays["sources"] = np.array(json.dumps(sources or {"test": "tiny"}))
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path


def clustered_graph(n_clusters: int, size: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Genes GA001.. in dense clusters (weights 0.3-1) with a few links across."""
    rng = np.random.default_rng(seed)
    n = n_clusters * size
    cluster = np.arange(n) // size
    same = cluster[:, None] == cluster[None]
    p = np.where(same, 0.5, 0.01)
    upper = np.triu(rng.random((n, n)) < p, 1)
    weights = np.where(upper, rng.uniform(0.3, 1.0, (n, n)), 0.0)
    return [f"GA{i:03d}" for i in range(n)], weights + weights.T


def write_embedding_table(path: Path, names, dims: int = 16, seed: int = 0) -> Path:
    """A cell-line table in the scVI layout (a `cell_line` column, then numbers)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        rng.standard_normal((len(names), dims)), columns=[f"scvi_{i}" for i in range(dims)]
    )
    table.insert(0, "cell_line", list(names))
    table.to_csv(path, index=False)
    return path


TABLE_LINES = ["U2OS", "HUVEC", "RPE", "HEPG2", "HRCE", "VERO", "A549", "MCF7", "ARPE-19"]


def test_graph_file_gives_the_genes_weights_and_correlated_phenotypes(tmp_path):
    from embedkit.datasets.synthetic.grounding import load_gene_graph

    genes, adj = clustered_graph(4, 12)
    sources = {"format": "embedkit-perturbation-graph/1", "inputs": {"string:STRING.txt": {}}}
    path = write_graph_npz(tmp_path / "graph.npz", genes, adj, sources)
    graph = load_gene_graph(path)
    assert graph.genes == tuple(genes)
    np.testing.assert_allclose(graph.adjacency(), adj, atol=1e-6)
    assert graph.source.startswith("graph.npz sha256:")
    assert graph.source.endswith("(48 of 48 nodes; sources: string:STRING.txt)")
    assert len(set(graph.modules)) <= 4 + 2  # connected components
    pheno = gene_phenotypes(graph, seed=1)
    corr, upper = np.corrcoef(pheno), np.triu_indices(len(genes), 1)
    linked = adj[upper] > 0
    assert corr[upper][linked].mean() > corr[upper][~linked].mean() + 0.3
    # the screen uses it; the files say so; config.json holds the graph in full
    config = dataclasses.replace(SMALL, gene_graph=graph, cell_lines=("RPE",), batches=1)
    out = tmp_path / "screen"
    meta = write_synthetic_dataset(out, config)
    assert set(meta.Metadata_Gene) - {CONTROL_GENE} <= set(genes)
    edges = pd.read_csv(out / "gene_graph.csv")
    assert list(edges.columns) == ["source", "target", "weight"] and len(edges) == len(graph.edges)
    perts = pd.read_csv(out / "perturbations.csv")
    assert list(perts.columns) == ["perturbation", "gene"] and list(perts.gene) == genes
    readme = (out / "README.txt").read_text()
    assert readme.startswith("SIMULATED DATA") and "REAL inputs" in readme and "graph.npz" in readme
    again = SynthConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert again == config


def test_gene_subset_is_deterministic_connected_and_induced(tmp_path):
    from embedkit.datasets.synthetic.grounding import load_gene_graph

    genes, adj = clustered_graph(20, 15, seed=2)
    path = write_graph_npz(tmp_path / "graph.npz", genes, adj)
    graph = load_gene_graph(path, n_genes=40, seed=0)
    assert len(graph.genes) == 40
    assert graph == load_gene_graph(path, n_genes=40, seed=0)
    assert graph.genes != load_gene_graph(path, n_genes=40, seed=1).genes
    index = [genes.index(g) for g in graph.genes]
    assert index == sorted(index)  # matrix order
    np.testing.assert_allclose(graph.adjacency(), adj[np.ix_(index, index)], atol=1e-6)
    # grown clusters keep edges: twice what a uniform sample of 40 genes keeps on average
    density = (adj > 0).sum() / (300 * 299)
    assert len(graph.edges) > 2 * density * 40 * 39 / 2
    assert "40 of 300 nodes, chosen with seed 0" in graph.source
    full = load_gene_graph(path)
    assert len(full.genes) == 300


def test_bad_graph_files_are_one_sentence_naming_the_path(tmp_path):
    import scipy.sparse

    from embedkit.datasets.synthetic.grounding import load_gene_graph
    from embedkit.errors import InputError

    genes, adj = clustered_graph(2, 4)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a graph")
    no_keys = tmp_path / "nokeys.npz"
    scipy.sparse.save_npz(no_keys, scipy.sparse.csr_matrix(adj))
    asym = adj.copy()
    asym[0, 1] = 0.9 if asym[0, 1] != 0.9 else 0.2
    cases = {  # read by embedkit.graph.PerturbationGraph.load, the format's one reader
        tmp_path / "missing.npz": "no such graph file",
        junk: "not a readable perturbation graph",
        no_keys: "no perturbations, sources",
        write_graph_npz(tmp_path / "short.npz", genes[:-1], adj): "7 perturbations",
        write_graph_npz(tmp_path / "asym.npz", genes, asym): "symmetric",
        write_graph_npz(tmp_path / "empty.npz", [CONTROL_GENE, *genes[1:]], adj): "reserved",
    }
    for path, words in cases.items():
        with pytest.raises(InputError, match=re.escape(words)) as err:
            load_gene_graph(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="between 1 and the graph's 8 nodes"):
        load_gene_graph(write_graph_npz(tmp_path / "ok.npz", genes, adj), n_genes=9)
    result = CliRunner().invoke(
        datasets_group, ["synth-plate", str(tmp_path / "o"), "--graph", str(junk)]
    )
    assert result.exit_code == 2 and str(junk) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_descriptors_from_an_embedding_table(tmp_path):
    from embedkit.datasets.synthetic.grounding import (
        descriptors_from_embeddings,
        load_cell_line_descriptors,
    )
    from embedkit.errors import InputError

    path = write_embedding_table(tmp_path / "lines.csv", TABLE_LINES)
    lines = ("HepG2", "U2OS", "ARPE_19")
    found = load_cell_line_descriptors(path, lines)
    assert [d.name for d in found] == list(lines)
    assert [d.row for d in found] == ["HEPG2", "U2OS", "ARPE-19"]  # case, punctuation
    assert all(d.source.startswith("lines.csv sha256:") and "PCA-8" in d.source for d in found)
    assert found == load_cell_line_descriptors(path, lines)
    # morphology: a ridge map to the RxRx lines' typical morphology (6 anchors in the table)
    assert "ridge map" in found[0].source
    u2os, hepg2 = found[1].profile, found[0].profile
    assert abs(u2os.radius - cell_line_profile("U2OS").radius) < 1.0
    assert hepg2.clustering > u2os.clustering
    # two lines with the same embedding get the same descriptor, morphology and response
    table = {n: np.random.default_rng(i).standard_normal(16) for i, n in enumerate(TABLE_LINES)}
    table["TWIN"] = table["MCF7"]
    twin, mcf7 = descriptors_from_embeddings(table, ["TWIN", "MCF7"])
    assert twin.descriptor == mcf7.descriptor
    assert dataclasses.replace(twin.profile, name="MCF7") == mcf7.profile
    # fewer than 3 RxRx lines in the table: a fixed map around an average cell
    other = descriptors_from_embeddings({f"L{i}": v for i, v in enumerate(table.values())}, ["L1"])
    assert "average cell" in other[0].source and 5 < other[0].profile.radius < 30
    # a line that is not in the table: the error lists close names
    with pytest.raises(InputError, match=r"'U2OS2' is not in .*lines\.csv.*close names: U2OS"):
        load_cell_line_descriptors(path, ["U2OS2"])


def test_grounded_screen_from_the_cli_is_deterministic_and_says_what_is_real(tmp_path):
    genes, adj = clustered_graph(6, 10)
    graph = write_graph_npz(tmp_path / "graph.npz", genes, adj)
    table = write_embedding_table(tmp_path / "lines.csv", TABLE_LINES)
    args = [
        "--cell-lines", "HUVEC,HepG2,U2OS", "--batches", "1", "--wells", "6", "--sites", "1",
        "--size", "32", "--graph", str(graph), "--genes", "24", "--cell-line-embeddings",
        str(table),
    ]  # fmt: skip
    runs = {}
    for name in ("a", "b"):
        result = CliRunner().invoke(datasets_group, ["synth-plate", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        runs[name] = tmp_path / name
    assert "real gene graph graph.npz" in result.output
    assert "real cell-line embeddings lines.csv" in result.output
    files = sorted(p.relative_to(runs["a"]) for p in runs["a"].rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) == 3 * 6 * 6
    for rel in files:
        assert (runs["a"] / rel).read_bytes() == (runs["b"] / rel).read_bytes(), rel
    lines = pd.read_csv(runs["a"] / "cell_lines.csv")
    assert list(lines.cell_line) == ["HUVEC", "HepG2", "U2OS"]
    assert list(lines.table_row) == ["HUVEC", "HEPG2", "U2OS"]
    assert lines.descriptor_source.str.startswith("lines.csv sha256:").all()
    config = SynthConfig.from_dict(json.loads((runs["a"] / "config.json").read_text()))
    assert config.line_specificity == 1.0  # the CLI's default with embeddings
    assert [d.row for d in config.cell_line_descriptors] == ["HUVEC", "HEPG2", "U2OS"]
    assert len(config.gene_graph.genes) == 24
    # config.json alone (no graph or table file) regenerates the same bytes
    write_synthetic_dataset(tmp_path / "c", config)
    for rel in files:
        if rel.name != "README.txt":
            assert (runs["a"] / rel).read_bytes() == (tmp_path / "c" / rel).read_bytes(), rel
    readme = (runs["a"] / "README.txt").read_text()
    assert readme.startswith("SIMULATED DATA") and "lines.csv" in readme
    assert "--graph graph.npz --genes 24" in readme
    missing = CliRunner().invoke(
        datasets_group,
        [
            "synth-plate",
            str(tmp_path / "m"),
            "--cell-lines",
            "HUVEC,U2OS_X",
            "--cell-line-embeddings",
            str(table),
        ],
    )
    assert missing.exit_code == 2 and "'U2OS_X'" in missing.output and "U2OS" in missing.output


def test_line_specificity_gates_genes_per_line_and_zero_changes_nothing():
    plain = SyntheticScreen(SMALL)
    gated = SyntheticScreen(dataclasses.replace(SMALL, line_specificity=1.0))
    np.testing.assert_array_equal(plain.expression("U2OS"), 1.0)
    gate = gated.expression("U2OS")
    assert gate.shape == (12,) and (gate > 0).all() and (gate < 1).all()
    assert not np.allclose(gate, gated.expression("HUVEC"))
    gene = plain.graph.genes[3]
    np.testing.assert_allclose(
        gated.effect("U2OS", gene), plain.effect("U2OS", gene) * gate[3], rtol=1e-12
    )
    np.testing.assert_allclose(
        gated.effects_matrix("U2OS")[3], gated.effect("U2OS", gene), rtol=1e-12
    )
    with pytest.raises(ValueError, match="line_specificity"):
        SynthConfig(line_specificity=2.0)


def test_descriptors_must_match_the_cell_lines(tmp_path):
    from embedkit.datasets.synthetic.grounding import load_cell_line_descriptors

    path = write_embedding_table(tmp_path / "lines.csv", TABLE_LINES)
    found = load_cell_line_descriptors(path, ["U2OS"])
    with pytest.raises(ValueError, match="cell_line_descriptors are for U2OS"):
        SynthConfig(cell_lines=("U2OS", "HUVEC"), cell_line_descriptors=found)
    screen = SyntheticScreen(SynthConfig(cell_lines=("U2OS",), cell_line_descriptors=found))
    assert screen.profile("U2OS") == found[0].profile
    np.testing.assert_array_equal(screen.descriptor("U2OS"), found[0].descriptor)


def test_genes_option_without_a_graph_sets_the_simulated_gene_count(tmp_path):
    args = ["synth-plate", str(tmp_path / "s"), "--cell-lines", "RPE", "--batches", "1"]
    args += ["--wells", "4", "--sites", "1", "--size", "32", "--genes", "3"]
    result = CliRunner().invoke(datasets_group, args)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "s" / "perturbations.csv")) == 3
    assert "--genes 3" in (tmp_path / "s" / "README.txt").read_text()


# -- with the real files (skipped when ../shared/data is absent) ------------------------

SCREEN_LINES = ("HUVEC", "RPE", "HEPG2", "U2OS")


def real_gene_graph(kg: Path, n: int = 200) -> tuple[list[str], np.ndarray]:
    """A ~200-gene graph straight from the real STRING and Hetionet pair lists (pandas only;
    the real builder is `embedkit graph build`): STRING pairs weigh 1, Hetionet-only 0.5.
    Genes: STRING's genes ranked 500-699 by degree (well linked, no ribosome hubs)."""
    string = pd.read_csv(kg / "gene_gene_StringDB.txt")
    string.columns = ["a", "b"]
    het = pd.read_csv(
        kg / "hetionet_protein_interactions.txt.gz",
        sep="\t",
        usecols=["source_symbol", "target_symbol"],
    )
    het.columns = ["a", "b"]
    degree = pd.concat([string.a, string.b]).value_counts(sort=False)
    degree = degree.sort_values(ascending=False, kind="stable")
    genes = sorted(degree.index[500 : 500 + n])
    index = {g: i for i, g in enumerate(genes)}
    adj = np.zeros((n, n))
    for pairs, weight in ((het, 0.5), (string, 1.0)):
        pairs = pairs[pairs.a.isin(index) & pairs.b.isin(index) & (pairs.a != pairs.b)]
        i, j = pairs.a.map(index).to_numpy(), pairs.b.map(index).to_numpy()
        adj[i, j] = adj[j, i] = weight
    return genes, adj


def test_real_graph_and_scvi_embeddings_shape_the_simulation(real_data, tmp_path):
    from scipy.stats import spearmanr

    from embedkit.cell_lines import read_cell_line_table
    from embedkit.datasets.synthetic.grounding import (
        descriptors_from_embeddings,
        load_cell_line_descriptors,
        load_gene_graph,
    )
    from embedkit.errors import InputError

    genes, adj = real_gene_graph(real_data / "kg")
    path = write_graph_npz(tmp_path / "graph.npz", genes, adj, {"string": "x", "hetionet": "y"})
    table_path = real_data / "cell_lines" / "scvi_cell_line_embeddings_256.parquet"
    graph = load_gene_graph(path)
    lines = load_cell_line_descriptors(table_path, SCREEN_LINES)
    config = SynthConfig(
        cell_lines=SCREEN_LINES, batches=1, wells=8, sites=1, size=32,
        gene_graph=graph, cell_line_descriptors=lines, line_specificity=1.0,
    )  # fmt: skip
    screen = SyntheticScreen(config)
    assert len(graph.edges) > 400
    # (ii) linked genes have correlated phenotypes; in every line, after its response
    upper = np.triu_indices(len(genes), 1)
    linked = adj[upper] > 0
    for matrix in [screen.phenotypes] + [screen.effects_matrix(c) for c in SCREEN_LINES]:
        corr = np.corrcoef(matrix)[upper]
        assert corr[linked].mean() > corr[~linked].mean() + 0.3
    # descriptor provenance
    assert [d.row for d in lines] == list(SCREEN_LINES)
    assert all(d.source.startswith("scvi_cell_line_embeddings_256.parquet sha256:") for d in lines)
    assert "PCA-8 of 55 lines x 256 dims" in lines[0].source
    # (i) lines respond alike when their embeddings are alike: all 55 lines of the table
    table = read_cell_line_table(table_path)
    names = list(table)
    every = descriptors_from_embeddings(table, names)
    weights = screen._response_w
    log_response = np.array([0.35 * weights @ np.asarray(d.descriptor) for d in every])
    emb = np.array([table[n] for n in names])
    emb -= emb.mean(0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = np.triu_indices(len(names), 1)
    rho = spearmanr((emb @ emb.T)[pairs], np.corrcoef(log_response)[pairs])[0]
    assert rho > 0.7
    # the held-out line differs from the pretraining lines, and not by a constant
    u2os = screen.effects_matrix("U2OS").ravel()
    for other in ("HUVEC", "RPE", "HEPG2"):
        assert np.corrcoef(u2os, screen.effects_matrix(other).ravel())[0, 1] < 0.97
    # determinism: the same config draws the same pixels, another seed other pixels
    site = ("U2OS", genes[0], 1, 1, "C05", 1)
    np.testing.assert_array_equal(
        screen.render_site(*site), SyntheticScreen(config).render_site(*site)
    )
    other = SyntheticScreen(dataclasses.replace(config, seed=1)).render_site(*site)
    assert not np.array_equal(screen.render_site(*site), other)
    assert lines == load_cell_line_descriptors(table_path, SCREEN_LINES)
    # bad input: a line absent from the table names close ones
    with pytest.raises(InputError, match=r"'U2OS2' is not in .*close names: U2OS"):
        load_cell_line_descriptors(table_path, ["HUVEC", "U2OS2"])


def test_large_graphs_are_smoothed_sparsely_with_the_same_result():
    from embedkit.datasets.synthetic.biology import smooth_over_graph

    rng = np.random.default_rng(0)
    n = 2100
    pairs = rng.integers(0, n, (6000, 2))
    genes = [f"G{i}" for i in range(n)]
    edges = [(genes[a], genes[b]) for a, b in pairs]
    weights = rng.uniform(0.1, 1.0, len(edges))
    graph = GeneGraph(tuple(genes), tuple(edges), (0,) * n, tuple(weights))
    z = rng.standard_normal((n, 3))
    adj = graph.adjacency()
    dense = np.linalg.solve(np.eye(n) + 0.5 * (np.diag(adj.sum(1)) - adj), z)
    np.testing.assert_allclose(smooth_over_graph(graph, z, 0.5), dense, atol=1e-7)


def test_overwrite_replaces_the_whole_screen_and_leaves_no_stale_plates(tmp_path):
    out = tmp_path / "synth"
    args = ["synth-plate", str(out), "--cell-lines", "RPE", "--wells", "2", "--sites", "1"]
    assert CliRunner().invoke(datasets_group, [*args, "--batches", "2"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["RPE-01", "RPE-02"]
    refused = CliRunner().invoke(datasets_group, [*args, "--batches", "1"])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    again = CliRunner().invoke(datasets_group, [*args, "--batches", "1", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["RPE-01"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
