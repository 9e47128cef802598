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
