"""Zero-shot retrieval: scores are the decoder's likelihood, FAISS top-k is exact, the
index round-trips, and bad input (columns, NaNs, corruption, wrong model, -k) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import _calibrate_batch_norm, nci_smiles

from embedkit.api import load
from embedkit.cli import main
from embedkit.errors import IndexMismatchError, InputError
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.retrieval import ProfileIndex, build_index, retrieve
from embedkit.retrieval.jobs import evaluate_ranks
from embedkit.retrieval.metrics import retrieval_metrics, truth_ranks
from embedkit.retrieval.scoring import sigmoid

COLUMNS = [f"Cells_Feature_{i:02d}" for i in range(12)]
LOW, HIGH = -3.0, 5.0


def make_model(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    spaces = {
        "morgan": {"columns": [f"m{i}" for i in range(32)], "kind": "fingerprint"},
        "cp_test": {
            "columns": COLUMNS,
            "min": [LOW] * len(COLUMNS),
            "max": [HIGH] * len(COLUMNS),
            "kind": "profile",
        },
        "l1000": {"columns": ["TP53", "MYC"], "min": [-1, -1], "max": [1, 1], "kind": "profile"},
    }
    model = InfoAlignModel(
        GINConfig(num_layer=2, emb_dim=16),
        decoder_spaces={"morgan": 32, "cp_test": len(COLUMNS), "l1000": 2},
        extra={"feature_spaces": spaces},
    )
    _calibrate_batch_norm(model)
    return model.save_pretrained(folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("retrieval_model"), seed=1)


@pytest.fixture(scope="module")
def embedder(model_dir):
    return load(f"local-dir:{model_dir}", with_heads=True)


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    return nci_smiles(40)


def profiles(n: int, seed: int = 0, keys: list[str] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.uniform(LOW - 1, HIGH + 1, (n, len(COLUMNS))), columns=COLUMNS)
    table.insert(0, "Metadata_Key", keys if keys is not None else [f"p{i}" for i in range(n)])
    table.insert(1, "Metadata_Plate", "P1")
    return table


def explicit_loglik(embedder, smiles: list[str], table: pd.DataFrame, cols: list[str]):
    """Mean Bernoulli log-likelihood per feature, written out with torch's own BCE."""
    emb, valid = embedder.embed_smiles(smiles)
    assert valid.all()
    index = [COLUMNS.index(c) for c in cols]
    with torch.no_grad():
        logits = embedder.model.decoders["cp_test"](torch.from_numpy(emb))[:, index]
    x = torch.from_numpy(((table[cols].to_numpy() - LOW) / (HIGH - LOW)).clip(0, 1)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, None, :].expand(-1, len(x), -1),
        x[None].expand(len(smiles), -1, -1),
        reduction="none",
    )
    return (-bce.sum(-1) / len(cols)).numpy()


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_likelihood_scores_are_the_decoders_bernoulli_likelihood(embedder, molecules):
    table = profiles(30)
    index, _ = build_index(table, embedder.model.extra["feature_spaces"], embedder.run_info, "t")
    k = 30
    hits = retrieve(molecules, index, embedder, k=k).hits
    expected = explicit_loglik(embedder, molecules, table, COLUMNS)
    got = np.full_like(expected, np.nan)
    got[hits.Molecule_Row, hits.Profile_Row] = hits.Score
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # FAISS flat search is exact: each molecule's hits are the explicit scores, sorted
    for row, group in hits.groupby("Molecule_Row"):
        best = np.sort(expected[row])[::-1]
        np.testing.assert_allclose(group.sort_values("Rank").Score, best, atol=1e-4)


def test_reverse_ranks_molecules_by_the_same_likelihood(embedder, molecules):
    table = profiles(8)
    index, _ = build_index(table, embedder.model.extra["feature_spaces"], embedder.run_info, "t")
    hits = retrieve(molecules, index, embedder, k=5, reverse=True).hits
    expected = explicit_loglik(embedder, molecules, table, COLUMNS)
    assert len(hits) == 8 * 5
    for p, group in hits.groupby("Profile_Row"):
        best = np.sort(expected[:, p])[::-1][:5]
        np.testing.assert_allclose(group.sort_values("Rank").Score, best, atol=1e-4)
        np.testing.assert_allclose(expected[group.Molecule_Row, p], group.Score, atol=1e-4)


def test_a_subset_of_columns_is_scored_on_the_shared_columns_only(embedder, molecules):
    shared = COLUMNS[3:9]
    table = profiles(20)[["Metadata_Key", *reversed(shared)]].assign(Unrelated_Feature=1.0)
    index, _ = build_index(table, embedder.model.extra["feature_spaces"], embedder.run_info, "t")
    assert index.space.name == "cp_test"
    assert sorted(index.space.columns) == sorted(shared)
    assert index.space.ignored == ["Unrelated_Feature"]
    hits = retrieve(molecules[:5], index, embedder, k=20).hits
    expected = explicit_loglik(embedder, molecules[:5], table, index.space.columns)
    got = np.zeros_like(expected)
    got[hits.Molecule_Row, hits.Profile_Row] = hits.Score
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_columns_matching_no_decoder_name_the_supported_spaces(embedder):
    table = pd.DataFrame({"Metadata_Key": ["a"], "Nuclei_Unknown": [1.0]})
    with pytest.raises(InputError, match="cp_test.*l1000|l1000.*cp_test"):
        build_index(table, embedder.model.extra["feature_spaces"], embedder.run_info, "t")


def test_cli_build_info_retrieve_and_invalid_smiles(tmp_path, model_dir, molecules):
    table = profiles(25)
    table.to_parquet(tmp_path / "profiles.parquet")
    queries = pd.DataFrame(
        {"id": ["m0", "bad", "m2"], "smiles": [molecules[0], "C1CC", molecules[2]]}
    )
    queries.to_csv(tmp_path / "q.csv", index=False)
    index_dir = tmp_path / "idx"
    result = run_cli(
        "index",
        "build",
        tmp_path / "profiles.parquet",
        "-o",
        index_dir,
        "-m",
        f"local-dir:{model_dir}",
    )
    assert result.exit_code == 0, result.output
    assert (
        "indexed 25 of 25 profiles in feature space cp_test (12 of its 12 columns)" in result.output
    )
    info = run_cli("index", "info", index_dir)
    assert "profiles:      25" in info.output and "cp_test" in info.output

    out = tmp_path / "hits.parquet"
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", index_dir, "-k", 4, "-o", out, "--id-column", "id"
    )
    assert result.exit_code == 0, result.output
    assert "3 molecules in, 1 invalid; 8 hits" in result.output
    hits = pd.read_parquet(out)
    assert hits.Molecule_ID.tolist() == ["m0"] * 4 + ["bad"] + ["m2"] * 4
    bad = hits[hits.Molecule_ID == "bad"].iloc[0]
    assert not bad.Molecule_Valid and "SMILES" in bad.Molecule_Error and pd.isna(bad.Rank)
    assert set(hits.columns) >= {"Rank", "Score", "Metadata_Key", "Metadata_Plate", "Profile_Row"}
    assert (hits.dropna(subset=["Rank"]).groupby("Molecule_ID").Score.diff().dropna() <= 0).all()

    dropped = tmp_path / "dropped.csv"
    assert (
        run_cli(
            "retrieve", tmp_path / "q.csv", "-i", index_dir, "-o", dropped, "--on-error", "drop"
        ).exit_code
        == 0
    )
    assert pd.read_csv(dropped).Molecule_Valid.all()

    refused = tmp_path / "refused.csv"
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", index_dir, "-o", refused, "--on-error", "raise"
    )
    assert result.exit_code == 2 and "row 2" in result.output and not refused.exists()


def test_k_larger_than_the_index_is_refused(tmp_path, model_dir, embedder, molecules):
    index, _ = build_index(
        profiles(5), embedder.model.extra["feature_spaces"], embedder.run_info, "t"
    )
    index.save(tmp_path / "idx")
    pd.DataFrame({"smiles": molecules[:2]}).to_csv(tmp_path / "q.csv", index=False)
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", tmp_path / "idx", "-k", 6, "-o", tmp_path / "h.csv"
    )
    assert result.exit_code == 2
    assert "-k 6 is larger than the 5 profiles in the index" in result.output
    assert not (tmp_path / "h.csv").exists()


def test_missing_features_are_reported_by_row_never_indexed_silently(tmp_path, model_dir):
    table = profiles(10)
    table.loc[[2, 7], COLUMNS[4]] = np.nan
    table.loc[5, COLUMNS[0]] = np.inf
    table.to_csv(tmp_path / "p.csv", index=False)
    result = run_cli(
        "index", "build", tmp_path / "p.csv", "-o", tmp_path / "idx", "-m", f"local-dir:{model_dir}"
    )
    assert result.exit_code == 2
    assert "3 of 10 rows" in result.output and "data rows 3, 6, 8" in result.output
    assert not (tmp_path / "idx").exists()
    result = run_cli(
        "index",
        "build",
        tmp_path / "p.csv",
        "-o",
        tmp_path / "idx",
        "-m",
        f"local-dir:{model_dir}",
        "--on-error",
        "drop",
    )
    assert result.exit_code == 0, result.output
    assert "indexed 7 of 10 profiles, 3 rows with missing features left out" in result.output
    kept = ProfileIndex.load(tmp_path / "idx").metadata.Metadata_Key.tolist()
    assert kept == [f"p{i}" for i in (0, 1, 3, 4, 6, 8, 9)]


def test_empty_profile_table_is_refused(tmp_path, model_dir):
    profiles(0).to_csv(tmp_path / "p.csv", index=False)
    result = run_cli(
        "index", "build", tmp_path / "p.csv", "-o", tmp_path / "idx", "-m", f"local-dir:{model_dir}"
    )
    assert result.exit_code == 2 and "no rows" in result.output


def test_a_corrupted_index_file_is_detected(tmp_path, embedder):
    index, _ = build_index(
        profiles(10), embedder.model.extra["feature_spaces"], embedder.run_info, "t"
    )
    folder = index.save(tmp_path / "idx")
    data = bytearray((folder / "index.faiss").read_bytes())
    data[-5] ^= 0xFF
    (folder / "index.faiss").write_bytes(bytes(data))
    result = run_cli("index", "info", folder)
    assert result.exit_code == 2
    assert "index.faiss is corrupted" in result.output


def test_an_index_refuses_a_model_other_than_its_own(tmp_path, model_dir, embedder, molecules):
    other_dir = make_model(tmp_path / "other", seed=2)
    index, _ = build_index(
        profiles(10), embedder.model.extra["feature_spaces"], embedder.run_info, "t"
    )
    index.save(tmp_path / "idx")
    pd.DataFrame({"smiles": molecules[:2]}).to_csv(tmp_path / "q.csv", index=False)
    result = run_cli(
        "retrieve",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "-o",
        tmp_path / "h.csv",
        "-m",
        f"local-dir:{other_dir}",
    )
    assert result.exit_code == 2
    assert f"built with model local-dir:{model_dir}" in result.output
    assert f"the model given is local-dir:{other_dir}" in result.output
    with pytest.raises(IndexMismatchError):
        retrieve(molecules[:2], index, load(f"local-dir:{other_dir}", with_heads=True))


def test_add_appends_without_rebuilding_and_equals_a_full_build(tmp_path, embedder, molecules):
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    first, second = profiles(12, seed=1), profiles(9, seed=2, keys=[f"q{i}" for i in range(9)])
    second.to_parquet(tmp_path / "more.parquet")
    build_index(first, spaces, info, "first")[0].save(tmp_path / "idx")
    result = run_cli("index", "add", tmp_path / "more.parquet", "-i", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert "the index now holds 21" in result.output
    grown = ProfileIndex.load(tmp_path / "idx")
    full, _ = build_index(pd.concat([first, second], ignore_index=True), spaces, info, "all")
    a = retrieve(molecules[:6], grown, embedder, k=21).hits
    b = retrieve(molecules[:6], full, embedder, k=21).hits
    pd.testing.assert_frame_equal(a, b)
    assert grown.metadata.Profile_Row.tolist() == list(range(21))


def test_add_matches_column_names_without_case_as_build_does(tmp_path, embedder, molecules):
    """`index build` matched feature columns without case, `index add` with it: a table
    that build accepted was refused by add."""
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    first, second = profiles(12, seed=1), profiles(9, seed=2, keys=[f"q{i}" for i in range(9)])
    shouting = second.rename(columns={c: c.upper() for c in COLUMNS})
    assert build_index(shouting, spaces, info, "built")[0].count == 9  # build accepts it
    shouting.to_parquet(tmp_path / "more.parquet")
    build_index(first, spaces, info, "first")[0].save(tmp_path / "idx")
    result = run_cli("index", "add", tmp_path / "more.parquet", "-i", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert "the index now holds 21" in result.output
    grown = ProfileIndex.load(tmp_path / "idx")
    full, _ = build_index(pd.concat([first, second], ignore_index=True), spaces, info, "all")
    a = retrieve(molecules[:6], grown, embedder, k=21).hits
    b = retrieve(molecules[:6], full, embedder, k=21).hits
    pd.testing.assert_frame_equal(a, b)
    both = first.assign(**{COLUMNS[0].lower(): first[COLUMNS[0]]})  # one name, two spellings
    for call in (
        lambda: build_index(both, spaces, info, "both"),
        lambda: grown.add(both, "both"),
    ):
        with pytest.raises(InputError, match="differ only in case"):
            call()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_save_load_and_agree_with_exact_on_small_sets(
    tmp_path, embedder, molecules, kind
):
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    table = profiles(400, seed=3)
    approx, _ = build_index(table, spaces, info, "t", index_type=kind)
    approx.save(tmp_path / kind)
    approx = ProfileIndex.load(tmp_path / kind)
    assert approx.manifest["index_type"] == kind
    exact, _ = build_index(table, spaces, info, "t", index_type="flat")
    a = retrieve(molecules, approx, embedder, k=10).hits
    b = retrieve(molecules, exact, embedder, k=10).hits
    overlap = np.mean(
        [
            len(set(a[a.Molecule_Row == i].Profile_Row) & set(b[b.Molecule_Row == i].Profile_Row))
            / 10
            for i in range(len(molecules))
        ]
    )
    assert overlap >= 0.9


def test_evaluation_finds_profiles_the_decoder_generated(tmp_path, embedder, molecules):
    """Profiles that *are* each molecule's decoded features must rank first (cosine);
    with the keys shuffled the same scores must fall to chance-like ranks."""
    emb, _ = embedder.embed_smiles(molecules)
    with torch.no_grad():
        decoded = sigmoid(embedder.model.decoders["cp_test"](torch.from_numpy(emb)).numpy())
    table = pd.DataFrame(LOW + decoded * (HIGH - LOW), columns=COLUMNS)
    table.insert(0, "Metadata_Key", [f"m{i}" for i in range(len(molecules))])
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(table, spaces, info, "t", metric="cosine")
    keys = [f"m{i}" for i in range(len(molecules))]
    ev = evaluate_ranks(molecules, keys, index, embedder, "Metadata_Key")
    assert ev.metrics.hit_1 == 100.0 and ev.metrics.mean_rank == 1.0
    shuffled = list(np.random.default_rng(0).permutation(keys))
    ev = evaluate_ranks(molecules, shuffled, index, embedder, "Metadata_Key")
    assert ev.metrics.hit_1 < 20.0 and ev.metrics.mean_rank > 5

    index.save(tmp_path / "idx")
    pd.DataFrame({"smiles": molecules, "Metadata_Key": keys}).to_csv(
        tmp_path / "q.csv", index=False
    )
    result = run_cli(
        "evaluate",
        "retrieval",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "--key",
        "Metadata_Key",
        "-o",
        tmp_path / "ev.json",
        "--plot",
        tmp_path / "ranks.png",
    )
    assert result.exit_code == 0, result.output
    assert "HIT@1 %       100.0      2.5" in result.output
    report = json.loads((tmp_path / "ev.json").read_text())
    assert report["ranks"] == [1] * len(molecules)
    assert (tmp_path / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ranks_are_pessimistic_on_ties_and_chance_matches_uniform_ranks():
    scores = np.zeros((3, 10))
    assert truth_ranks(scores, np.array([0, 4, 9])).tolist() == [10, 10, 10]
    scores = np.arange(10.0)[None].repeat(2, 0)
    assert truth_ranks(scores, np.array([9, 0])).tolist() == [1, 10]
    n = 50
    uniform = retrieval_metrics(np.arange(1, n + 1), n)  # every rank once = the expectation
    assert uniform.hit_10 == pytest.approx(uniform.chance_hit_10) == pytest.approx(20.0)
    assert uniform.ndcg_10 == pytest.approx(uniform.chance_ndcg_10)
    assert uniform.mean_rank == pytest.approx(uniform.chance_mean_rank)


def test_real_cmea_profiles_index_with_the_shipped_model(real_data, tmp_path):
    """The shipped model's CMEA decoder space matches the real table column for column."""
    table = pd.read_parquet(real_data / "profiles" / "cmea_u2os_morphology.parquet")
    shipped = load("infoalign-gin-lincs-small", with_heads=True)
    index, _ = build_index(table, shipped.model.extra["feature_spaces"], shipped.run_info, "cmea")
    assert index.space.name == "cp_cmea_u2os" and len(index.space.columns) == 812
    assert index.count == 100 and not index.space.ignored
    ev = evaluate_ranks(
        table.Metadata_SMILES.tolist(),
        table.Metadata_InChIKey.tolist(),
        index,
        shipped,
        "Metadata_InChIKey",
    )
    assert ev.metrics.queries == 100 and 1 <= ev.metrics.mean_rank <= 100


def test_outputs_and_index_folders_are_readable_by_others(tmp_path, embedder):
    """mkstemp/mkdtemp make owner-only files; outputs follow the umask instead."""
    import os
    import stat

    from embedkit.io import write_table

    old = os.umask(0o022)
    try:
        write_table(profiles(3), tmp_path / "t.parquet")
        build_index(profiles(5), embedder.model.extra["feature_spaces"], embedder.run_info, "t")[
            0
        ].save(tmp_path / "idx")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "idx").stat().st_mode) == 0o755


def test_the_space_sharing_most_columns_wins_even_after_a_tie():
    from embedkit.retrieval.spaces import match_feature_space

    spaces = {
        name: {"columns": cols, "min": [0] * len(cols), "max": [1] * len(cols), "kind": "profile"}
        for name, cols in (("a", ["x", "y"]), ("b", ["x", "y"]), ("c", ["x", "y", "z"]))
    }
    assert match_feature_space(["x", "y", "z"], spaces).name == "c"
    with pytest.raises(InputError, match="equally"):
        match_feature_space(["x", "y"], spaces)
