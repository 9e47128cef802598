"""Profile tables read with pandas' column types: numeric metadata queries work on a CSV as
they do in pandas, while identifiers that only look numeric ("0001", long barcodes, wells)
stay text and survive a round trip."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from embedkit.cli import normalize_cmd
from embedkit.errors import InputError
from embedkit.profiles import normalize
from embedkit.profiles.reading import read_profiles, type_metadata

A549 = "profiles/lincs_a549_SQ00015054_normalized_feature_select.csv.gz"

CSV = """\
Metadata_Plate,Metadata_Well,Metadata_Site,Metadata_Dose,Metadata_Barcode,Metadata_Control,Metadata_Gene,Metadata_Empty,Emb_0000,Emb_0001
0001,A01,1,0,12345678901234567,True,NA,,1.5,NA
0001,A02,2,0.5,12345678901234568,False,TP53,,2.5,3
0002,A01,1,0,12345678901234569,True,None,,3.5,
0002,B02,2,,12345678901234570,False,KRAS,,4.5,6
"""


def write(tmp_path, text=CSV, name="wells.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_metadata_typed_as_pandas_types_it_but_identifiers_stay_text(tmp_path):
    table = read_profiles(write(tmp_path))
    assert table["Metadata_Plate"].tolist() == ["0001", "0001", "0002", "0002"]  # not 1, 2
    assert table["Metadata_Well"].tolist() == ["A01", "A02", "A01", "B02"]
    assert table["Metadata_Barcode"].tolist()[0] == "12345678901234567"  # past 2**53: text
    assert table["Metadata_Site"].dtype == np.int64
    assert table["Metadata_Dose"].dtype == np.float64
    assert table["Metadata_Dose"].isna().tolist() == [False, False, False, True]
    assert table["Metadata_Control"].dtype == bool
    assert table["Metadata_Gene"].tolist() == ["NA", "TP53", "None", "KRAS"]  # names kept
    assert table["Metadata_Empty"].isna().all()
    assert table["Emb_0000"].dtype == np.float64 and table["Emb_0001"].dtype == np.float64
    assert table["Emb_0001"].isna().tolist() == [True, False, True, False]


def test_numeric_metadata_query_on_a_csv_works_as_in_pandas(tmp_path):
    """`Metadata_mmoles_per_liter == 0` selected no rows: CSV metadata was read as text."""
    table = read_profiles(write(tmp_path))
    out = normalize(table, "standardize", controls="Metadata_Dose == 0")
    expected = normalize(pd.read_csv(write(tmp_path)), "standardize", controls="Metadata_Dose == 0")
    np.testing.assert_allclose(out["Emb_0000"], expected["Emb_0000"])
    assert table.eval("Metadata_Site >= 2 and Metadata_Control == False").sum() == 2


def test_cli_normalize_numeric_controls_and_ids_round_trip(tmp_path):
    source = write(tmp_path)
    out = tmp_path / "norm.csv"
    result = CliRunner().invoke(
        normalize_cmd,
        [
            str(source),
            "-o",
            str(out),
            "--method",
            "standardize",
            "--controls",
            "Metadata_Dose == 0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "on 2 control rows" in result.output
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["Metadata_Plate"].tolist() == ["0001", "0001", "0002", "0002"]
    assert written["Metadata_Barcode"].tolist()[3] == "12345678901234570"
    assert written["Metadata_Gene"].tolist() == ["NA", "TP53", "None", "KRAS"]


def test_a_quoted_number_against_a_numeric_column_says_what_the_column_holds(tmp_path):
    table = read_profiles(write(tmp_path))
    with pytest.raises(InputError, match=r"Metadata_Dose holds numbers \(e\.g\. 0\.0\)"):
        normalize(table, "standardize", controls="Metadata_Dose == '0'")


def test_tsv_gz_is_typed_too(tmp_path):
    path = tmp_path / "wells.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(CSV.replace(",", "\t"))
    table = read_profiles(path)
    assert table["Metadata_Site"].dtype == np.int64
    assert table["Metadata_Plate"].tolist()[0] == "0001"


def test_parquet_keeps_the_types_it_was_written_with(tmp_path):
    path = tmp_path / "wells.parquet"
    pd.DataFrame({"Metadata_Site": ["1", "2"], "Emb_0000": [1.0, 2.0]}).to_parquet(path)
    assert read_profiles(path)["Metadata_Site"].tolist() == ["1", "2"]


def test_nul_bytes_and_repeated_columns_still_read_by_read_table(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("Metadata_Name,Metadata_Site,Emb_0000\nCC\0O,1,1.0\nx,2,2.0\n")
    table = read_profiles(path)
    assert table["Metadata_Name"].tolist() == ["CC\0O", "x"]
    assert table["Metadata_Site"].dtype == np.int64
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("Metadata_Site,Emb_0000,Emb_0000\n1,1.0,2.0\n")
    assert read_profiles(repeated).shape == (1, 3)


def test_type_metadata_leaves_mixed_and_leading_zero_columns_alone():
    table = pd.DataFrame(
        {
            "Metadata_Mixed": ["1", "x"],
            "Metadata_Zero": ["0", "007"],
            "Metadata_Signed": ["-1", "+2"],
            "Site": ["1", "2"],  # not metadata: features are coerced elsewhere
        }
    )
    typed = type_metadata(table)
    assert typed["Metadata_Mixed"].tolist() == ["1", "x"]
    assert typed["Metadata_Zero"].tolist() == ["0", "007"]
    assert typed["Metadata_Signed"].tolist() == [-1, 2]
    assert typed["Site"].tolist() == ["1", "2"]


def test_real_a549_plate_reads_with_pandas_types_and_values(real_data):
    """Every column of the real plate has the dtype and values `pd.read_csv` gives it (an
    empty cell of a text column stays empty text, where pandas has NaN)."""
    path = real_data / A549
    ours, theirs = read_profiles(path), pd.read_csv(path)
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    text = theirs.select_dtypes(include="object").columns
    theirs[text] = theirs[text].fillna("")
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert normalize(ours, "mad_robustize", controls="Metadata_mmoles_per_liter == 0").shape == (
        384,
        480,
    )


def test_integer_ids_with_missing_cells_stay_integers_through_csv_parquet_and_h5ad(tmp_path):
    """pandas reads 1234 with a gap as 1234.0; an ID column printed so was a known wart."""
    import anndata

    from embedkit.h5ad import write_h5ad

    text = "Metadata_Well,Metadata_BRD,Metadata_Dose,Emb_0000\nA01,1234,1,0.5\nA02,,2,1.5\n"
    text += "A03,98765,,2.5\n"
    table = read_profiles(write(tmp_path, text))
    assert str(table["Metadata_BRD"].dtype) == "Int64"
    assert table["Metadata_BRD"].tolist()[::2] == [1234, 98765] and table["Metadata_BRD"].isna()[1]
    assert str(table["Metadata_Dose"].dtype) == "Int64"
    assert table.eval("Metadata_BRD == 1234").fillna(False).sum() == 1
    table.to_csv(tmp_path / "out.csv", index=False)
    assert (tmp_path / "out.csv").read_text().splitlines()[1:3] == ["A01,1234,1,0.5", "A02,,2,1.5"]
    table.to_parquet(tmp_path / "out.parquet")
    assert str(read_profiles(tmp_path / "out.parquet")["Metadata_BRD"].dtype) == "Int64"
    write_h5ad(table, tmp_path / "out.h5ad", ["Emb_0000"], {})
    obs = anndata.read_h5ad(tmp_path / "out.h5ad").obs
    assert obs["Metadata_BRD"].tolist()[0] == 1234 and "1234.0" not in obs.to_string()
