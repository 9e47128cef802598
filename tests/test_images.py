"""Image embedding: channel plans, crops and normalization, the ViT with cell-line tokens,
and `embed-images` end to end (real fields, corrupt files, resume, shards)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image

from embedkit.api import load
from embedkit.cli import main
from embedkit.images.channels import MissingChannelError, parse_channel_map, plan_channels
from embedkit.images.model import CELL_PAINTING, ImageModel
from embedkit.images.preprocess import crop_positions, crop_site, instance_normalize
from embedkit.images.vit import ImageEncoder, ViTConfig


def tiny_config(**kw) -> ViTConfig:
    return ViTConfig(
        **{"img_size": 32, "in_chans": 5, "depth": 2, "embed_dim": 48, "num_heads": 3, **kw}
    )


@pytest.fixture(scope="module")
def tiny_image_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_vit")
    return ImageModel(tiny_config()).save_pretrained(folder)


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_rxrx_plate(
    root: Path,
    plate: str,
    wells: list[str],
    sites: int = 2,
    size: int = 64,
    channels: int = 5,
    seed: int = 0,
) -> None:
    rng = np.random.default_rng(seed)
    folder = root / plate
    folder.mkdir(parents=True)
    for well in wells:
        for s in range(1, sites + 1):
            for c in range(1, channels + 1):
                image = rng.integers(0, 255, (size, size), dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{well}_s{s}_w{c}.png")


# --- channels -------------------------------------------------------------------------------


def test_channels_match_by_name_alias_and_explicit_map():
    plan = plan_channels(
        CELL_PAINTING,
        ["Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"],
        ImageModel(tiny_config()).channel_aliases,
    )
    assert plan.sources == ["Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"]
    plan = plan_channels(
        CELL_PAINTING,
        [f"ch{i}" for i in range(1, 7)],
        {},
        parse_channel_map("DNA=ch5,ER=ch4,RNA=ch3,AGP=ch2,Mito=ch1"),
    )
    assert plan.sources == ["ch5", "ch4", "ch3", "ch2", "ch1"] and plan.dropped == []


def test_a_missing_channel_is_named_and_can_be_dropped():
    available = ["ch2", "ch3", "ch5"]  # the real JUMP site with 3 of its 5 channels
    mapping = parse_channel_map("DNA=ch5,RNA=ch3,AGP=ch2")
    with pytest.raises(MissingChannelError, match="needs channel\\(s\\) ER, Mito"):
        plan_channels(CELL_PAINTING, available, {}, mapping)
    plan = plan_channels(CELL_PAINTING, available, {}, mapping, drop=("ER", "Mito"))
    assert plan.kept == [0, 2, 3] and plan.dropped == ["ER", "Mito"]
    with pytest.raises(MissingChannelError, match="no channel 'ch9'"):
        plan_channels(CELL_PAINTING, available, {}, {"DNA": "ch9"})


# --- crops and normalization ----------------------------------------------------------------


def test_tiles_cover_the_field_without_overlap_and_constant_channels_give_zeros():
    assert crop_positions(1080, 1080, 256) == [
        (y, x) for y in (0, 256, 512, 768) for x in (0, 256, 512, 768)
    ]
    site = np.random.default_rng(0).random((3, 70, 100)).astype(np.float32)
    site[1] = 0.25  # a constant channel
    crops, positions = crop_site(site, 32)
    assert crops.shape == (6, 3, 32, 32) and positions[-1] == (32, 64)
    torch.testing.assert_close(crops[4], torch.from_numpy(site[:, 32:64, 32:64]))
    normed = instance_normalize(crops)
    assert torch.isfinite(normed).all() and (normed[:, 1] == 0).all()
    assert normed[:, 0].mean(dim=(-2, -1)).abs().max() < 1e-5
    assert (normed[:, 0].std(dim=(-2, -1), unbiased=False) - 1).abs().max() < 1e-4
    center, pos = crop_site(site, 32, "center")
    assert pos == [(19, 34)] and center.shape == (1, 3, 32, 32)


# --- encoder --------------------------------------------------------------------------------


def test_embedding_is_the_mean_of_patch_tokens_and_cell_line_tokens_matter():
    torch.manual_seed(0)
    enc = ImageEncoder(tiny_config(cell_line_tokens=2, cell_line_dim=8)).eval()
    x, line = torch.randn(2, 5, 32, 32), torch.randn(2, 8)
    with torch.no_grad():
        tokens = enc.forward_tokens(enc.embed_tokens(x, line))
        assert tokens.shape == (2, 1 + 2 + 4, 48)
        torch.testing.assert_close(enc(x, line), tokens[:, 3:].mean(1))
        other = enc(x, torch.randn(2, 8))
    assert not torch.allclose(enc(x, line), other)  # a different cell line changes the output
    with pytest.raises(ValueError, match="cell-line"):
        enc(x)


def test_dropping_a_channel_keeps_the_weights_of_the_others():
    torch.manual_seed(0)
    enc = ImageEncoder(tiny_config()).eval()
    x = torch.randn(1, 5, 32, 32)
    x[:, 2] = 0.0  # the channel about to be dropped contributes nothing
    with torch.no_grad():
        before = enc(x)
        enc.keep_channels([0, 1, 3, 4])
        after = enc(x[:, [0, 1, 3, 4]])
    torch.testing.assert_close(before, after)
    assert enc.vit.patch_embed.proj.weight.shape[1] == 4


def test_save_load_round_trip_is_exact(tmp_path):
    """The model in memory, saved and loaded again, embeds identically (not two loads)."""
    torch.manual_seed(1)
    model = ImageModel(
        tiny_config(cell_line_tokens=2, cell_line_dim=4), cell_lines={"U2OS": [0.1, 0.2, 0.3, 0.4]}
    ).eval()
    x = instance_normalize(torch.rand(3, 5, 32, 32))
    line = model.cell_line_vector("U2OS")
    with torch.no_grad():
        expected = model.encoder(x, line.expand(3, -1)).numpy()
    model.save_pretrained(tmp_path / "m")
    embedder = load(f"local-dir:{tmp_path / 'm'}")
    np.testing.assert_array_equal(embedder.embed_crops(x, line), expected)
    assert embedder.model.config() == model.config()
    assert embedder.model.channels == CELL_PAINTING and embedder.embedding_dim == 48


# --- embed-images end to end ----------------------------------------------------------------


def test_embed_images_one_row_per_site_and_bad_sites_are_reported(tmp_path, tiny_image_model):
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02", "B03"], sites=2)
    (root / "Plate1" / "B03_s2_w4.png").write_bytes(b"not a png at all")  # corrupt file
    (root / "Plate1" / "B02_s2_w5.png").unlink()  # a site missing a channel
    out = tmp_path / "emb"
    result = run_cli(
        "embed-images",
        root,
        "-o",
        out,
        "-m",
        f"local-dir:{tiny_image_model}",
        "-n",
        0,
        "--channels",
        "w1,w2,w4,w3,w5",
    )
    assert result.exit_code == 0, result.output
    assert "4 sites, 2 embedded, 2 skipped" in result.output
    table = pd.read_parquet(out / "plates" / "Plate1.parquet")
    assert table[["Metadata_Well", "Metadata_Site"]].values.tolist() == [
        ["B02", 1],
        ["B02", 2],
        ["B03", 1],
        ["B03", 2],
    ]
    assert table.Metadata_Valid.tolist() == [True, False, True, False]
    assert "w5" in table.Metadata_Error[1]
    assert "B03_s2_w4.png" in table.Metadata_Error[3]
    emb = table.filter(like="Emb_").to_numpy()
    assert np.isnan(emb[[1, 3]]).all() and np.isfinite(emb[[0, 2]]).all()
    assert table.Metadata_Crops.tolist() == [4, 0, 4, 0]  # 64 px site = 2 x 2 tiles of 32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete_plates"] == 1 and manifest["plates"][0]["invalid_sites"] == 2


def test_levels_crop_site_well_agree(tmp_path, tiny_image_model):
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02"], sites=2)
    outs = {}
    for level in ("crop", "site", "well"):
        out = tmp_path / level
        assert (
            run_cli(
                "embed-images",
                root,
                "-o",
                out,
                "-m",
                f"local-dir:{tiny_image_model}",
                "-n",
                0,
                "--level",
                level,
            ).exit_code
            == 0
        )
        outs[level] = pd.read_parquet(out / "plates" / "Plate1.parquet")
    crops, sites, wells = (outs[k].filter(like="Emb_").to_numpy() for k in ("crop", "site", "well"))
    assert len(crops) == 8 and len(sites) == 2 and len(wells) == 1
    np.testing.assert_allclose(sites[0], crops[:4].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wells[0], sites.mean(0), rtol=1e-5, atol=1e-6)


def test_shards_split_plates_and_resume_skips_verified_plates(tmp_path, tiny_image_model):
    root = tmp_path / "exp"
    for i, plate in enumerate(["Plate1", "Plate2", "Plate3"]):
        write_rxrx_plate(root, plate, ["B02"], sites=1, seed=i)
    out = tmp_path / "emb"
    model = f"local-dir:{tiny_image_model}"
    r1 = run_cli("embed-images", root, "-o", out, "-m", model, "-n", 0, "--shard", "1/2")
    r2 = run_cli("embed-images", root, "-o", out, "-m", model, "-n", 0, "--shard", "2/2")
    assert "2 plates embedded" in r1.output and "1 plates embedded" in r2.output
    assert sorted(p.name for p in (out / "plates").glob("*.parquet")) == [
        "Plate1.parquet",
        "Plate2.parquet",
        "Plate3.parquet",
    ]
    before = (out / "plates" / "Plate2.parquet").stat().st_mtime_ns
    (out / "plates" / "Plate3.parquet").write_bytes(b"half a file")  # a crashed write
    r3 = run_cli("embed-images", root, "-o", out, "-m", model, "-n", 0, "--resume")
    assert "1 plates embedded, 2 already complete (skipped)" in r3.output
    assert (out / "plates" / "Plate2.parquet").stat().st_mtime_ns == before
    assert len(pd.read_parquet(out / "plates" / "Plate3.parquet")) == 1
    assert json.loads((out / "manifest.json").read_text())["complete_plates"] == 3


def test_worker_processes_give_the_same_embeddings(tmp_path, tiny_image_model):
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02", "B03", "B04"], sites=2)
    tables = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert (
            run_cli(
                "embed-images",
                root,
                "-o",
                out,
                "-m",
                f"local-dir:{tiny_image_model}",
                "-n",
                workers,
                "-b",
                2,
            ).exit_code
            == 0
        )
        tables.append(pd.read_parquet(out / "plates" / "Plate1.parquet"))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_mixed_bit_depths_and_sizes_skip_the_site_not_the_plate(tmp_path, tiny_image_model):
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02", "B03"], sites=1)
    tifffile.imwrite(
        root / "Plate1" / "B02_s1_w1.tif", np.zeros((64, 64), np.uint16) + 1000, compression="lzw"
    )
    (root / "Plate1" / "B02_s1_w1.png").unlink()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "Plate1" / "B03_s1_w2.png")
    result = run_cli(
        "embed-images", root, "-o", tmp_path / "o", "-m", f"local-dir:{tiny_image_model}", "-n", 0
    )
    assert "2 sites, 0 embedded, 2 skipped" in result.output
    assert result.exit_code == 2  # every site failed: the plate is written, the run fails
    table = pd.read_parquet(tmp_path / "o" / "plates" / "Plate1.parquet")
    assert "uint16" in table.Metadata_Error[0] and "uint8" in table.Metadata_Error[0]
    assert "48" in table.Metadata_Error[1]


def test_cell_line_model_requires_and_uses_the_cell_line(tmp_path):
    torch.manual_seed(0)
    lines = {"U2OS": list(np.linspace(-1, 1, 8)), "HUVEC": list(np.linspace(1, -1, 8))}
    folder = ImageModel(
        tiny_config(cell_line_tokens=1, cell_line_dim=8), cell_lines=lines
    ).save_pretrained(tmp_path / "m")
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02"], sites=1)
    model = f"local-dir:{folder}"
    result = run_cli("embed-images", root, "-o", tmp_path / "a", "-m", model, "-n", 0)
    assert result.exit_code == 2 and "--cell-line" in result.output
    pd.DataFrame({"cell_line": ["RPE"], **{f"v{i}": [0.1 * i] for i in range(8)}}).to_csv(
        tmp_path / "lines.csv", index=False
    )
    tables = []
    for args in (
        ["--cell-line", "U2OS"],
        ["--cell-line", "RPE", "--cell-line-embeddings", tmp_path / "lines.csv"],
    ):
        out = tmp_path / args[1]
        assert run_cli("embed-images", root, "-o", out, "-m", model, "-n", 0, *args).exit_code == 0
        tables.append(pd.read_parquet(out / "plates" / "Plate1.parquet").filter(like="Emb_"))
    assert not np.allclose(tables[0].to_numpy(), tables[1].to_numpy())


def test_real_fields_phenix_bray_and_the_incomplete_jump_site(
    real_data, tmp_path, tiny_image_model
):
    images = real_data / "images"
    model = f"local-dir:{tiny_image_model}"
    out = tmp_path / "phenix"
    result = run_cli(
        "embed-images",
        images / "phenix_BR00143976",
        "-o",
        out,
        "-m",
        model,
        "-n",
        0,
        "--channels",
        "ch5,ch4,ch3,ch2,ch1",
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "plates" / "phenix_BR00143976.parquet")
    assert table.Metadata_Well.tolist() == ["C03"] and table.Metadata_Crops[0] == 33**2
    result = run_cli(
        "embed-images", images / "bray_u2os_field", "-o", tmp_path / "bray", "-m", model, "-n", 0
    )  # stain-named files match the model's aliases
    assert result.exit_code == 0, result.output
    jump = images / "jump_BR00117006_partial"
    result = run_cli(
        "embed-images",
        jump,
        "-o",
        tmp_path / "jump",
        "-m",
        model,
        "-n",
        0,
        "--channel-map",
        "DNA=ch5,RNA=ch3,AGP=ch2",
    )
    assert result.exit_code == 2
    assert "needs channel(s) ER, Mito" in result.output
    result = run_cli(
        "embed-images",
        jump,
        "-o",
        tmp_path / "jump",
        "-m",
        model,
        "-n",
        0,
        "--channel-map",
        "DNA=ch5,RNA=ch3,AGP=ch2",
        "--drop-channel",
        "ER",
        "--drop-channel",
        "Mito",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "jump" / "manifest.json").read_text())
    assert "dropped: ER, Mito" in manifest["channels"]


def test_one_embedder_serves_plates_with_different_channel_plans(tmp_path, tiny_image_model):
    """Dropping a channel for one plate must not change the loaded model for the next."""
    from embedkit.images.discovery import discover
    from embedkit.images.jobs import EmbedImagesOptions, embed_images

    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02"], sites=1)
    embedder = load(f"local-dir:{tiny_image_model}")
    index = discover([root])
    full = EmbedImagesOptions(channel_map={"AGP": "w3", "RNA": "w4"})
    embed_images(index, embedder, tmp_path / "a", full)
    embed_images(
        index,
        embedder,
        tmp_path / "b",
        EmbedImagesOptions(channel_map=full.channel_map, drop_channels=("ER",)),
    )
    embed_images(index, embedder, tmp_path / "c", full)
    a, c = (pd.read_parquet(tmp_path / x / "plates" / "Plate1.parquet") for x in ("a", "c"))
    pd.testing.assert_frame_equal(a, c)
    assert embedder.model.encoder.vit.patch_embed.proj.weight.shape[1] == 5


def test_plates_of_several_folders_stay_apart_and_resume_checks_settings(
    tmp_path, tiny_image_model
):
    for experiment in ("HUVEC-01", "HUVEC-02"):
        write_rxrx_plate(tmp_path / experiment, "Plate1", ["B02"], sites=1)
    out, model = tmp_path / "emb", f"local-dir:{tiny_image_model}"
    args = [
        "embed-images",
        tmp_path / "HUVEC-01",
        tmp_path / "HUVEC-02",
        "-o",
        out,
        "-m",
        model,
        "-n",
        0,
    ]
    assert "2 plates embedded" in run_cli(*args).output
    assert sorted(p.name for p in (out / "plates").glob("*.parquet")) == [
        "HUVEC-01_Plate1.parquet",
        "HUVEC-02_Plate1.parquet",
    ]
    assert "2 already complete" in run_cli(*args, "--resume").output
    # other settings: the old plates do not count as done, and are not replaced silently
    refused = run_cli(*args, "--resume", "--level", "crop")
    assert refused.exit_code == 2 and "other settings" in refused.output
    assert "level 'site', not 'crop'" in refused.output
    replaced = run_cli(*args, "--resume", "--level", "crop", "--overwrite")
    assert "2 plates embedded" in replaced.output


def plate_settings(out: Path, plate: str) -> dict:
    from embedkit.io import read_run_info

    return read_run_info(out / "plates" / f"{plate}.parquet")


def assert_manifest_describes_its_plates(out: Path) -> dict:
    """The settings at the top of manifest.json are those of every plate it lists."""
    manifest = json.loads((out / "manifest.json").read_text())
    for record in manifest["plates"]:
        settings = plate_settings(out, Path(record["file"]).stem)
        for key in ("crop_mode", "level", "n_crops", "cell_line_embedding_sha256"):
            assert settings.get(key) == manifest.get(key), (record["plate"], key)
    return manifest


def test_resume_keeps_only_plates_of_the_same_crops_and_says_which_setting_differs(
    tmp_path, tiny_image_model
):
    """--n-crops was left out of the resume hash: plates of 2 random crops were kept for a
    run asking for 3."""
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02"], sites=1)
    out, model = tmp_path / "emb", f"local-dir:{tiny_image_model}"
    args = ["embed-images", root, "-o", out, "-m", model, "-n", 0, "--crop-mode", "random"]
    assert run_cli(*args, "--n-crops", 2).exit_code == 0
    assert pd.read_parquet(out / "plates" / "Plate1.parquet").Metadata_Crops.tolist() == [2]
    resumed = run_cli(*args, "--n-crops", 3, "--resume")
    assert resumed.exit_code == 2 and "n_crops 2, not 3" in resumed.output
    assert pd.read_parquet(out / "plates" / "Plate1.parquet").Metadata_Crops.tolist() == [2]
    assert "1 plates embedded" in run_cli(*args, "--n-crops", 3, "--resume", "--overwrite").output
    assert pd.read_parquet(out / "plates" / "Plate1.parquet").Metadata_Crops.tolist() == [3]
    assert "1 already complete" in run_cli(*args, "--n-crops", 3, "--resume").output
    # --n-crops does not change tiles: changing it there is no new setting
    tiles = ["embed-images", root, "-o", tmp_path / "tiles", "-m", model, "-n", 0]
    assert run_cli(*tiles, "--n-crops", 2).exit_code == 0
    assert "1 already complete" in run_cli(*tiles, "--n-crops", 3, "--resume").output


def test_resume_keeps_only_plates_of_the_same_cell_line_embedding(tmp_path):
    """The cell-line table was left out of the resume hash: a plate embedded with one
    embedding of RPE was kept for a run given another."""
    torch.manual_seed(0)
    folder = ImageModel(tiny_config(cell_line_tokens=1, cell_line_dim=8)).save_pretrained(
        tmp_path / "m"
    )
    root = tmp_path / "exp"
    write_rxrx_plate(root, "Plate1", ["B02"], sites=1)
    for name, sign in (("a.csv", 1), ("b.csv", -1)):
        pd.DataFrame(
            {"cell_line": ["RPE"], **{f"v{i}": [sign * 0.1 * (i + 1)] for i in range(8)}}
        ).to_csv(tmp_path / name, index=False)
    out = tmp_path / "emb"
    args = ["embed-images", root, "-o", out, "-m", f"local-dir:{folder}", "-n", 0]
    args += ["--cell-line", "RPE", "--cell-line-embeddings"]
    assert run_cli(*args, tmp_path / "a.csv").exit_code == 0
    first = pd.read_parquet(out / "plates" / "Plate1.parquet").filter(like="Emb_").to_numpy()
    assert "1 already complete" in run_cli(*args, tmp_path / "a.csv", "--resume").output
    resumed = run_cli(*args, tmp_path / "b.csv", "--resume")
    assert resumed.exit_code == 2 and "cell_line_embedding_sha256" in resumed.output
    replaced = run_cli(*args, tmp_path / "b.csv", "--resume", "--overwrite")
    assert "1 plates embedded" in replaced.output
    second = pd.read_parquet(out / "plates" / "Plate1.parquet").filter(like="Emb_").to_numpy()
    assert not np.allclose(first, second)
    assert_manifest_describes_its_plates(out)


def test_resume_with_another_crop_mode_never_mixes_settings_in_the_manifest(
    tmp_path, tiny_image_model
):
    """`--resume --crop-mode center` over plates embedded with tiles rewrote the manifest as
    if every plate were center."""
    for i, plate in enumerate(["Plate1", "Plate2"]):
        write_rxrx_plate(tmp_path / "exp", plate, ["B02"], sites=1, seed=i)
    out, model = tmp_path / "emb", f"local-dir:{tiny_image_model}"
    args = ["embed-images", tmp_path / "exp", "-o", out, "-m", model, "-n", 0]
    assert run_cli(*args).exit_code == 0
    assert assert_manifest_describes_its_plates(out)["crop_mode"] == "tiles"
    # shard 1/2 would re-embed Plate1 only, leaving Plate2 tiles beside it
    mixed = run_cli(*args, "--shard", "1/2", "--resume", "--crop-mode", "center")
    manifest = assert_manifest_describes_its_plates(out)
    assert manifest["crop_mode"] == "tiles" and manifest["complete_plates"] == 2
    assert mixed.exit_code == 2 and "crop_mode 'tiles', not 'center'" in mixed.output
    # --overwrite: this run's plates are replaced, those of other settings removed
    replaced = run_cli(*args, "--shard", "1/2", "--crop-mode", "center", "--overwrite")
    assert "1 plates embedded" in replaced.output, replaced.output
    manifest = assert_manifest_describes_its_plates(out)
    assert manifest["crop_mode"] == "center" and manifest["complete_plates"] == 1
    assert sorted(p.name for p in (out / "plates").iterdir()) == ["Plate1.json", "Plate1.parquet"]
    finished = run_cli(*args, "--shard", "2/2", "--crop-mode", "center", "--resume")
    assert "1 plates embedded" in finished.output, finished.output
    manifest = assert_manifest_describes_its_plates(out)
    assert manifest["crop_mode"] == "center" and manifest["complete_plates"] == 2


def test_an_existing_plate_is_refused_without_resume_or_overwrite(tmp_path, tiny_image_model):
    write_rxrx_plate(tmp_path / "exp", "Plate1", ["B02"], sites=1)
    out, model = tmp_path / "emb", f"local-dir:{tiny_image_model}"
    args = ["embed-images", tmp_path / "exp", "-o", out, "-m", model, "-n", 0]
    assert run_cli(*args).exit_code == 0
    before = (out / "plates" / "Plate1.parquet").stat().st_mtime_ns
    again = run_cli(*args)
    assert again.exit_code == 2 and "already holds plate(s) Plate1" in again.output
    assert "--resume" in again.output and "--overwrite" in again.output
    assert (out / "plates" / "Plate1.parquet").stat().st_mtime_ns == before
    assert "1 plates embedded" in run_cli(*args, "--overwrite").output
    (tmp_path / "a_file").write_text("x")
    as_file = run_cli("embed-images", tmp_path / "exp", "-o", tmp_path / "a_file", "-m", model)
    assert as_file.exit_code == 2 and "a_file is a file" in as_file.output
