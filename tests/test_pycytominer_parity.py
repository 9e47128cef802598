"""embedkit's `aggregate` and `normalize` agree with pycytominer on the real A549 plate, and
embedkit's `Emb_` tables go into pycytominer once the features are named (pycytominer does
not infer `Emb_` as a compartment). Needs the dev extra (pycytominer) and ../shared/data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from embedkit.datasets.synthetic import synthetic_profiles
from embedkit.profiles import aggregate, infer_features, normalize
from embedkit.profiles.reading import read_profiles

pycytominer = pytest.importorskip(
    "pycytominer", reason="pycytominer is not installed (pip install -e '.[dev]')"
)
from pycytominer.cyto_utils import infer_cp_features  # noqa: E402

A549 = "profiles/lincs_a549_SQ00015054_normalized_feature_select.csv.gz"
DMSO = "Metadata_broad_sample == 'DMSO'"
STRATA = ["Metadata_broad_sample", "Metadata_mmoles_per_liter"]  # one consensus per dose
TOLERANCE = 1e-12  # measured: 0 for aggregate, <= 3e-14 for normalize


@pytest.fixture(scope="module")
def a549():
    from conftest import shared_data_dir

    data = shared_data_dir()
    if data is None or not (data / A549).is_file():
        pytest.skip(
            f"real data not present: {A549} (set EMBEDKIT_DATA_DIR or place ../shared/data)"
        )
    return read_profiles(data / A549)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycytominer's own deprecation/future warnings
        yield


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_aggregate_matches_pycytominer_on_the_a549_plate(a549, operation):
    feats = infer_features(a549)
    assert feats == infer_cp_features(a549)  # the same 454 CellProfiler features
    ours = aggregate(a549, STRATA, method=operation)
    theirs = pycytominer.aggregate(a549, strata=STRATA, features=feats, operation=operation)
    assert len(ours) == len(theirs) == 339
    joined = ours.merge(theirs, on=STRATA, suffixes=("", "_pycytominer"), validate="1:1")
    assert len(joined) == 339
    np.testing.assert_allclose(
        joined[feats].to_numpy(),
        joined[[f"{f}_pycytominer" for f in feats]].to_numpy(),
        rtol=0,
        atol=TOLERANCE,
    )


@pytest.mark.parametrize("method", ["standardize", "mad_robustize"])
@pytest.mark.parametrize("controls", [DMSO, None])
def test_normalize_matches_pycytominer_on_the_a549_plate(a549, method, controls):
    feats = infer_features(a549)
    meta = [c for c in a549.columns if c.startswith("Metadata_")]
    ours = normalize(a549, method, controls=controls)
    theirs = pycytominer.normalize(
        a549,
        features=feats,
        meta_features=meta,
        samples=controls or "all",
        method=method,
    )
    assert list(ours.columns) == list(theirs.columns)
    np.testing.assert_allclose(
        ours[feats].to_numpy(), theirs[feats].to_numpy(), rtol=0, atol=TOLERANCE
    )


def test_emb_is_not_a_compartment_pycytominer_infers_but_named_features_work():
    """`features="infer"` knows only CellProfiler compartments: it refuses an Emb_ table;
    `infer_cp_features(df, compartments=["Emb"])` names our features and the results agree."""
    table = synthetic_profiles(batches=1, features=8)
    with pytest.raises(ValueError, match="No features or metadata found"):
        pycytominer.aggregate(table, strata=["Metadata_Plate", "Metadata_Perturbation"])
    feats = infer_cp_features(table, compartments=["Emb"])
    assert feats == infer_features(table)
    strata = ["Metadata_Plate", "Metadata_Perturbation"]
    theirs = pycytominer.aggregate(table, strata=strata, features=feats)
    ours = aggregate(table, strata)
    joined = ours.merge(theirs, on=strata, suffixes=("", "_pycytominer"), validate="1:1")
    np.testing.assert_allclose(
        joined[feats].to_numpy(),
        joined[[f"{f}_pycytominer" for f in feats]].to_numpy(),
        rtol=1e-6,  # float32 embeddings
    )
