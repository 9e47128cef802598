"""Plate discovery (every layout into one table), image reading, and `embedkit plates inspect`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from embedkit.cli.plates import plates_group
from embedkit.errors import InputError
from embedkit.images.discovery import LAYOUTS, PlateIndex, discover, natural_key
from embedkit.images.reading import ImageReadError, SiteError, read_image, read_site

CP_PATTERN = r"(?P<well>[A-P]\d\d)f(?P<site>\d\d)d(?P<channel>\d)"


# -- helpers ----------------------------------------------------------------------------


def png(path: Path, value: int = 7, shape=(8, 10), dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=dtype)).save(path)
    return path


def tif(path: Path, value: int = 7, shape=(8, 10), dtype=np.uint16, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full(shape, value, dtype=dtype), **kwargs)
    return path


def rows(index: PlateIndex, root: Path) -> list[tuple]:
    """The files table with paths relative to `root`, for exact comparisons."""
    return [
        (r.plate, r.well, r.site, r.channel, Path(r.path).relative_to(root).as_posix())
        for r in index.files.itertuples()
    ]


@pytest.fixture
def rxrx(tmp_path: Path) -> Path:
    root = tmp_path / "rxrx"
    for site in (1, 2):
        for channel in (1, 2, 10):
            png(root / "U2OS-01" / "Plate1" / f"B02_s{site}_w{channel}.png")
    png(root / "U2OS-01" / "Plate10" / "C10_s1_w1.png")
    png(root / "U2OS-01" / "Plate2" / "A01_s1_w2.png")
    (root / "U2OS-01" / "Plate1" / "notes.txt").write_text("not an image")
    return root


# -- rxrx -------------------------------------------------------------------------------


def test_rxrx_auto_gives_one_natural_sorted_table(rxrx: Path):
    index = discover([rxrx])
    assert index.layout == "rxrx"
    assert list(index.files.columns) == ["plate", "well", "site", "channel", "path"]
    assert index.files["site"].dtype == np.int64
    assert rows(index, rxrx) == [
        ("U2OS-01/Plate1", "B02", 1, "w1", "U2OS-01/Plate1/B02_s1_w1.png"),
        ("U2OS-01/Plate1", "B02", 1, "w2", "U2OS-01/Plate1/B02_s1_w2.png"),
        ("U2OS-01/Plate1", "B02", 1, "w10", "U2OS-01/Plate1/B02_s1_w10.png"),
        ("U2OS-01/Plate1", "B02", 2, "w1", "U2OS-01/Plate1/B02_s2_w1.png"),
        ("U2OS-01/Plate1", "B02", 2, "w2", "U2OS-01/Plate1/B02_s2_w2.png"),
        ("U2OS-01/Plate1", "B02", 2, "w10", "U2OS-01/Plate1/B02_s2_w10.png"),
        ("U2OS-01/Plate2", "A01", 1, "w2", "U2OS-01/Plate2/A01_s1_w2.png"),
        ("U2OS-01/Plate10", "C10", 1, "w1", "U2OS-01/Plate10/C10_s1_w1.png"),
    ]
    assert all(Path(p).is_absolute() for p in index.files["path"])
    assert index.channels() == ["w1", "w2", "w10"]
    assert index.problems == []  # notes.txt is simply ignored


def test_rxrx_root_at_plate_folder_names_the_plate(rxrx: Path):
    index = discover([rxrx / "U2OS-01" / "Plate1"], layout="rxrx")
    assert set(index.files["plate"]) == {"Plate1"}
    assert len(index.files) == 6


def test_rxrx_sites_table_lists_missing_channels(rxrx: Path):
    sites = discover([rxrx]).sites()
    assert list(sites.columns) == ["plate", "well", "site", "w1", "w2", "w10", "missing"]
    assert sites[["plate", "well", "site"]].values.tolist() == [
        ["U2OS-01/Plate1", "B02", 1],
        ["U2OS-01/Plate1", "B02", 2],
        ["U2OS-01/Plate2", "A01", 1],
        ["U2OS-01/Plate10", "C10", 1],
    ]
    assert sites["missing"].tolist() == [[], [], ["w1", "w10"], ["w2", "w10"]]
    plate2 = sites.iloc[2]
    assert plate2["w1"] is None and plate2["w2"].endswith("A01_s1_w2.png")


def test_summary_reports_counts_missing_sites_and_problems(rxrx: Path):
    png(rxrx / "U2OS-01" / "Plate1" / "thumbnail.png")
    text = discover([rxrx]).summary()
    assert "layout: rxrx" in text
    assert "3 plates, 3 wells, 4 sites, 8 image files" in text
    assert "channels: w1 (3), w2 (3), w10 (2)" in text
    assert "sites missing channels: 2 of 4" in text
    assert f"U2OS-01/Plate2 A01 site 1: missing w1, w10  ({rxrx / 'U2OS-01' / 'Plate2'})" in text
    assert "problems: 1 file(s) not placed" in text
    assert "thumbnail.png: name does not match the rxrx layout" in text


def test_summary_lists_at_most_five_problems(tmp_path: Path):
    for i in range(7):
        png(tmp_path / "p" / "Plate1" / f"junk{i}.png")
    png(tmp_path / "p" / "Plate1" / "A01_s1_w1.png")
    text = discover([tmp_path / "p"]).summary()
    assert "problems: 7 file(s) not placed" in text
    assert text.count("does not match") == 5
    assert "… and 2 more" in text


# -- phenix -----------------------------------------------------------------------------


def phenix_name(row=3, col=3, field=3, plane=1, channel=1) -> str:
    return f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk1fk1fl1.tiff"


def test_phenix_wells_fields_and_lzw(tmp_path: Path):
    root = tmp_path / "BR00143976"
    for channel in (1, 2, 3):
        tif(root / phenix_name(channel=channel), compression="lzw")
    tif(root / phenix_name(row=16, col=24, field=12, channel=1))
    index = discover([root])
    assert index.layout == "phenix"
    assert rows(index, root) == [
        ("BR00143976", "C03", 3, "ch1", phenix_name(channel=1)),
        ("BR00143976", "C03", 3, "ch2", phenix_name(channel=2)),
        ("BR00143976", "C03", 3, "ch3", phenix_name(channel=3)),
        ("BR00143976", "P24", 12, "ch1", phenix_name(row=16, col=24, field=12)),
    ]
    assert index.sites()["missing"].tolist() == [[], ["ch2", "ch3"]]


def test_phenix_keeps_first_z_plane_and_reports_the_others(tmp_path: Path):
    root = tmp_path / "plate"
    for plane in (1, 2):
        for channel in (1, 2):
            tif(root / phenix_name(plane=plane, channel=channel))
    index = discover([root], layout="phenix")
    assert [Path(p).name for p in index.files["path"]] == [
        phenix_name(plane=1, channel=1),
        phenix_name(plane=1, channel=2),
    ]
    assert [(Path(p).name, r) for p, r in index.problems] == [
        (phenix_name(plane=2, channel=1), "extra z-plane ignored (kept p01)"),
        (phenix_name(plane=2, channel=2), "extra z-plane ignored (kept p01)"),
    ]


def test_phenix_harmony_images_folder_is_named_after_the_measurement(tmp_path: Path):
    for plate in ("BR001__2020-11-08-Measurement1", "BR002__2020-11-09-Measurement1"):
        tif(tmp_path / "batch" / plate / "Images" / phenix_name())
    index = discover([tmp_path / "batch"])
    assert index.files["plate"].tolist() == [
        "BR001__2020-11-08-Measurement1",
        "BR002__2020-11-09-Measurement1",
    ]
    direct = discover([tmp_path / "batch" / "BR001__2020-11-08-Measurement1" / "Images"])
    assert direct.files["plate"].tolist() == ["BR001__2020-11-08-Measurement1"]


def test_auto_picks_the_layout_matching_most_files(tmp_path: Path):
    root = tmp_path / "mixed"
    for channel in (1, 2, 3):
        tif(root / phenix_name(channel=channel))
    png(root / "B02_s1_w1.png")
    index = discover([root])
    assert index.layout == "phenix"
    assert len(index.files) == 3
    assert [Path(p).name for p, _ in index.problems] == ["B02_s1_w1.png"]


# -- channel-names ----------------------------------------------------------------------


def test_channel_names_one_folder_is_one_site(tmp_path: Path):
    root = tmp_path / "field"
    for stain in ("Hoechst", "Mito", "ERSyto"):
        tif(root / f"{stain}.tif")
    png(root / "Ph_golgi.png")
    index = discover([root])
    assert index.layout == "channel-names"
    assert rows(index, root) == [
        ("field", "", 1, "ERSyto", "ERSyto.tif"),
        ("field", "", 1, "Hoechst", "Hoechst.tif"),
        ("field", "", 1, "Mito", "Mito.tif"),
        ("field", "", 1, "Ph_golgi", "Ph_golgi.png"),
    ]
    assert "1 plate, 0 wells, 1 site, 4 image files" in index.summary()


def test_channel_names_subfolders_are_their_own_sites_and_duplicates_are_reported(
    tmp_path: Path,
):
    root = tmp_path / "fields"
    tif(root / "DNA.tif")
    for sub in ("a", "b"):
        tif(root / sub / "DNA.tif")
        tif(root / sub / "RNA.tif")
    png(root / "b" / "DNA.png")  # same stem as b/DNA.tif
    index = discover([root], layout="channel-names")
    assert rows(index, root) == [
        ("a", "", 1, "DNA", "a/DNA.tif"),
        ("a", "", 1, "RNA", "a/RNA.tif"),
        ("b", "", 1, "DNA", "b/DNA.png"),
        ("b", "", 1, "RNA", "b/RNA.tif"),
        ("fields", "", 1, "DNA", "DNA.tif"),
    ]
    assert index.problems == [
        (
            str(root / "b" / "DNA.tif"),
            f"duplicate of {root / 'b' / 'DNA.png'} (same plate/well/site/channel)",
        )
    ]
    assert index.sites()["missing"].tolist() == [[], [], ["RNA"]]


# -- index-csv --------------------------------------------------------------------------


def test_index_csv_resolves_relative_and_absolute_paths(tmp_path: Path):
    png(tmp_path / "imgs" / "a_dna.png")
    png(tmp_path / "imgs" / "a_rna.png")
    png(tmp_path / "elsewhere" / "b_dna.png")
    csv = tmp_path / "meta" / "load_data.csv"
    csv.parent.mkdir()
    pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1", "P1"],
            "Metadata_Well": ["A1", "B02", "C03"],
            "Metadata_Site": ["1", "2", "1"],
            "FileName_OrigDNA": ["a_dna.png", "b_dna.png", "gone.png"],
            "PathName_OrigDNA": ["../imgs", str(tmp_path / "elsewhere"), "../imgs"],
            "FileName_OrigRNA": ["a_rna.png", "", ""],
            "PathName_OrigRNA": ["../imgs", "", ""],
        }
    ).to_csv(csv, index=False)
    index = discover([csv])
    assert index.layout == "index-csv"
    assert rows(index, tmp_path) == [
        ("P1", "A01", 1, "OrigDNA", "imgs/a_dna.png"),
        ("P1", "A01", 1, "OrigRNA", "imgs/a_rna.png"),
        ("P1", "B02", 2, "OrigDNA", "elsewhere/b_dna.png"),
    ]
    assert index.problems == [
        (str(tmp_path / "imgs" / "gone.png"), "listed in load_data.csv row 4, not found")
    ]
    assert index.sites()["missing"].tolist() == [[], ["OrigRNA"]]


def test_index_csv_missing_columns_is_an_input_error(tmp_path: Path):
    csv = tmp_path / "load_data.csv"
    pd.DataFrame(
        {"Metadata_Plate": ["P"], "Metadata_Well": ["A01"], "FileName_DNA": ["x.png"]}
    ).to_csv(csv, index=False)
    with pytest.raises(InputError, match=r"load_data\.csv.*Metadata_Site, PathName_DNA"):
        discover([csv], layout="index-csv")


def test_index_csv_layout_needs_a_table_file(tmp_path: Path):
    png(tmp_path / "x" / "a.png")
    with pytest.raises(InputError, match="needs a .csv"):
        discover([tmp_path / "x"], layout="index-csv")


# -- pattern ----------------------------------------------------------------------------


def test_pattern_with_all_groups_on_relative_posix_paths(tmp_path: Path):
    root = tmp_path / "exp"
    for plate in ("plateA", "plateB"):
        for ch in ("DAPI", "GFP"):
            png(root / plate / f"well-b3_field2_{ch}.png")
    png(root / "plateA" / "overview.png")
    pattern = r"(?P<plate>plate\w)/well-(?P<well>\w\d+)_field(?P<site>\d+)_(?P<channel>\w+)\.png"
    index = discover([root], pattern=pattern)
    assert index.layout == "pattern"
    assert rows(index, root) == [
        ("plateA", "B03", 2, "DAPI", "plateA/well-b3_field2_DAPI.png"),
        ("plateA", "B03", 2, "GFP", "plateA/well-b3_field2_GFP.png"),
        ("plateB", "B03", 2, "DAPI", "plateB/well-b3_field2_DAPI.png"),
        ("plateB", "B03", 2, "GFP", "plateB/well-b3_field2_GFP.png"),
    ]
    assert [(Path(p).name, r.split(" ")[0]) for p, r in index.problems] == [
        ("overview.png", "does")
    ]


def test_pattern_defaults_plate_well_site(tmp_path: Path):
    root = tmp_path / "run7"
    png(root / "img_c1.png")
    png(root / "img_c2.png")
    index = discover([root], layout="pattern", pattern=r"_(?P<channel>c\d)")
    assert rows(index, root) == [
        ("run7", "", 1, "c1", "img_c1.png"),
        ("run7", "", 1, "c2", "img_c2.png"),
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<well>[A-P]\d\d)", "no \\(\\?P<channel>"),
        (r"(?P<channel>[", "not a valid regular expression"),
    ],
)
def test_bad_patterns_are_input_errors(tmp_path: Path, pattern: str, message: str):
    png(tmp_path / "f" / "a.png")
    with pytest.raises(InputError, match=message):
        discover([tmp_path / "f"], pattern=pattern)


def test_pattern_with_another_layout_or_layout_without_pattern(tmp_path: Path):
    png(tmp_path / "f" / "a.png")
    with pytest.raises(InputError, match="applies only to --layout pattern"):
        discover([tmp_path / "f"], layout="rxrx", pattern="(?P<channel>a)")
    with pytest.raises(InputError, match="needs --pattern"):
        discover([tmp_path / "f"], layout="pattern")


# -- discovery errors -------------------------------------------------------------------


def test_no_such_path(tmp_path: Path):
    with pytest.raises(InputError, match=r"nope: no such file or folder"):
        discover([tmp_path / "nope"])


def test_empty_folder_and_folder_without_images(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no image files \(\.png \.tif \.tiff\) under .*empty"):
        discover([tmp_path / "empty"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    (tmp_path / "docs" / ".hidden.png").write_bytes(b"")
    with pytest.raises(InputError, match="no image files"):
        discover([tmp_path / "docs"])


def test_unknown_layout_says_what_to_pass(tmp_path: Path):
    png(tmp_path / "exp" / "sub" / "foo.tif")
    with pytest.raises(InputError) as err:
        discover([tmp_path / "exp"])
    message = str(err.value)
    assert "none of the 1 image files under" in message
    assert str(tmp_path / "exp") in message
    assert "(e.g. 'foo.tif')" in message
    assert "--layout channel-names|index-csv or --pattern REGEX" in message


def test_unknown_layout_name(tmp_path: Path):
    with pytest.raises(InputError, match="unknown layout 'cellomics'"):
        discover([tmp_path], layout="cellomics")
    assert LAYOUTS == ("auto", "rxrx", "phenix", "channel-names", "index-csv", "pattern")


def test_natural_key_orders_numbers_by_value():
    assert sorted(["w10", "w2", "W1", "Plate10", "Plate9"], key=natural_key) == [
        "Plate9",
        "Plate10",
        "W1",
        "w2",
        "w10",
    ]


# -- reading ----------------------------------------------------------------------------


def test_read_image_native_dtypes(tmp_path: Path):
    assert read_image(png(tmp_path / "a.png", 200)).dtype == np.uint8
    sixteen = read_image(png(tmp_path / "b.png", 40000, dtype=np.uint16))
    assert sixteen.dtype == np.uint16 and sixteen.max() == 40000
    lzw = read_image(tif(tmp_path / "c.tiff", 65535, shape=(16, 12), compression="lzw"))
    assert lzw.dtype == np.uint16 and lzw.shape == (16, 12) and lzw.max() == 65535
    floats = read_image(tif(tmp_path / "d.tif", 0, dtype=np.float32))
    assert floats.dtype == np.float32 and floats.ndim == 2


def test_read_site_scales_by_bit_depth(tmp_path: Path):
    a = tif(tmp_path / "a.tif", 65535, compression="lzw")
    b = tif(tmp_path / "b.tif", 0)
    c = tif(tmp_path / "c.tif", 13107)
    site = read_site([a, b, c])
    assert site.shape == (3, 8, 10) and site.dtype == np.float32
    np.testing.assert_allclose(site[:, 0, 0], [1.0, 0.0, 0.2], rtol=1e-6)
    eight = read_site([png(tmp_path / "x.png", 255), png(tmp_path / "y.png", 51)])
    np.testing.assert_allclose(eight[:, 0, 0], [1.0, 0.2], rtol=1e-6)


def test_corrupt_png_and_truncated_tiff_are_read_errors(tmp_path: Path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(ImageReadError, match=r"garbage\.png: cannot read image"):
        read_image(garbage)
    whole = tif(
        tmp_path / "whole.tiff",
        shape=(64, 64),
        value=1,
        compression="lzw",
    )
    data = whole.read_bytes()
    cut = tmp_path / "cut.tiff"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.tiff: cannot read image") as err:
        read_image(cut)
    assert "\n" not in str(err.value)
    short = tmp_path / "short.png"
    short.write_bytes(png(tmp_path / "full.png", shape=(64, 64)).read_bytes()[:60])
    with pytest.raises(ImageReadError, match="short.png"):
        read_image(short)


def test_truncated_random_lzw_tiff(tmp_path: Path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.tiff"
    tifffile.imwrite(path, rng.integers(0, 65535, (64, 64), dtype=np.uint16), compression="lzw")
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(ImageReadError, match="noise.tiff"):
        read_image(path)


def test_rgb_and_multipage_are_refused(tmp_path: Path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(rgb)
    with pytest.raises(ImageReadError, match=r"rgb\.png: RGB image; expected one grayscale"):
        read_image(rgb)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 4, 5), dtype=np.uint16), photometric="minisblack")
    with pytest.raises(
        ImageReadError, match=r"stack\.tif: TIFF holds 3 pages; expected a single 2-D plane"
    ):
        read_image(stack)
    rgb_tiff = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb_tiff, np.zeros((4, 5, 3), dtype=np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"rgb\.tif: .*RGB"):
        read_image(rgb_tiff)


def test_missing_and_unsupported_files(tmp_path: Path):
    with pytest.raises(ImageReadError, match="no such image file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(ImageReadError, match="unsupported image format '.bmp'"):
        read_image(tmp_path / "a.bmp")
    signed = tif(tmp_path / "signed.tif", 1, dtype=np.int16)
    with pytest.raises(ImageReadError, match="unsupported pixel type int16"):
        read_image(signed)


def test_mixed_bit_depth_names_each_file_and_dtype(tmp_path: Path):
    a = png(tmp_path / "dna.png", dtype=np.uint8)
    b = tif(tmp_path / "rna.tif", dtype=np.uint16)
    with pytest.raises(SiteError) as err:
        read_site([a, b])
    message = str(err.value)
    assert "mixed bit depths" in message
    assert f"{a}: uint8" in message and f"{b}: uint16" in message


def test_different_sizes_name_each_file_and_shape(tmp_path: Path):
    a = tif(tmp_path / "a.tif", shape=(8, 10))
    b = tif(tmp_path / "b.tif", shape=(8, 12))
    with pytest.raises(SiteError) as err:
        read_site([a, b])
    assert f"{a}: 8x10" in str(err.value) and f"{b}: 8x12" in str(err.value)


def test_read_site_refuses_a_missing_channel(tmp_path: Path):
    with pytest.raises(SiteError, match="missing"):
        read_site([tif(tmp_path / "a.tif"), None])
    with pytest.raises(SiteError, match="no channel files"):
        read_site([])


# -- real fields (../shared/data) -------------------------------------------------------


def test_real_phenix_field(real_data: Path):
    index = discover([real_data / "images" / "phenix_BR00143976"])
    assert index.layout == "phenix" and index.problems == []
    assert index.channels() == ["ch1", "ch2", "ch3", "ch4", "ch5", "ch6"]
    sites = index.sites()
    assert sites[["plate", "well", "site"]].values.tolist() == [["phenix_BR00143976", "C03", 3]]
    assert sites["missing"].tolist() == [[]]
    site = read_site(sites.loc[0, index.channels()].tolist())
    assert site.shape == (6, 1080, 1080) and site.dtype == np.float32
    assert 0.0 <= site.min() and site.max() <= 1.0 and site.std() > 0


def test_real_jump_partial_site_has_three_channels(real_data: Path):
    index = discover([real_data / "images" / "jump_BR00117006_partial"])
    assert index.layout == "phenix"
    assert index.channels() == ["ch2", "ch3", "ch5"]
    assert index.sites()[["well", "site"]].values.tolist() == [["A01", 1]]
    assert "no files at all for ch1, ch4" in index.summary()


def test_real_bray_field_is_channel_names(real_data: Path):
    index = discover([real_data / "images" / "bray_u2os_field"])
    assert index.layout == "channel-names"
    assert index.channels() == ["ERSyto", "ERSytoBleed", "Hoechst", "Mito", "Ph_golgi"]
    assert len(index.sites()) == 1
    assert read_site(index.files["path"].tolist()).shape == (5, 520, 696)


def test_real_cellprofiler_example_needs_a_pattern(real_data: Path):
    folder = real_data / "images" / "cellprofiler_examplehuman"
    guessed = discover([folder])
    assert guessed.layout == "channel-names"  # works, but the summary suggests --pattern
    assert "pass --pattern" in guessed.summary()
    index = discover([folder], pattern=CP_PATTERN)
    assert index.layout == "pattern"
    assert index.channels() == ["0", "1", "2"]
    assert index.sites()[["plate", "well", "site"]].values.tolist() == [
        ["cellprofiler_examplehuman", "D03", 0]
    ]
    site = read_site(index.files["path"].tolist())
    assert site.shape == (3, 512, 512) and site.dtype == np.float32


# -- CLI --------------------------------------------------------------------------------


def test_cli_inspect_prints_summary_and_writes_load_data(rxrx: Path, tmp_path: Path):
    out = tmp_path / "sites.csv"
    result = CliRunner().invoke(plates_group, ["inspect", str(rxrx), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "layout: rxrx" in result.output
    assert "4 sites; one row per site (load_data); " in result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table.columns[:5]) == [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "FileName_w1",
        "PathName_w1",
    ]
    assert table["Metadata_Missing"].tolist() == ["", "", "w1;w10", "w2;w10"]
    again = discover([out])  # the written table reads back as index-csv
    assert again.layout == "index-csv"
    pd.testing.assert_frame_equal(again.files, discover([rxrx]).files)


def test_cli_pattern_and_layout_options(tmp_path: Path):
    root = tmp_path / "cp"
    for d in range(3):
        png(root / f"AS_09125_050116030001_D03f00d{d}.tif")
    result = CliRunner().invoke(plates_group, ["inspect", str(root), "--pattern", CP_PATTERN])
    assert result.exit_code == 0, result.output
    assert "layout: pattern" in result.output and "1 plate, 1 well, 1 site" in result.output
    result = CliRunner().invoke(plates_group, ["inspect", str(root), "--layout", "channel-names"])
    assert "layout: channel-names" in result.output


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(plates_group, ["inspect", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("error: no image files")
    result = CliRunner().invoke(
        plates_group, ["inspect", str(tmp_path / "empty"), "-o", str(tmp_path / "x.h5ad")]
    )
    assert result.exit_code == 2 and "x.h5ad" in result.output


def test_cli_help_has_examples():
    result = CliRunner().invoke(plates_group, ["inspect", "--help"])
    assert result.exit_code == 0
    assert "embedkit plates inspect" in result.output
    for option in ("--layout", "--pattern", "--output"):
        assert option in result.output
    assert "(?P<well>[A-P]\\d\\d)" in result.output
