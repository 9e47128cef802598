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
from conftest import calibrate_batch_norm, nci_smiles

from embedkit.api import load
from embedkit.cli import main
from embedkit.errors import IndexMismatchError, InputError
from embedkit.molecules.gin import GINConfig
from embedkit.molecules.model import InfoAlignModel
from embedkit.retrieval import ProfileIndex, build_index, retrieve
from embedkit.retrieval.activity import ACTIVITY_COLUMN as ACT
from embedkit.retrieval.activity import ActivityScale
from embedkit.retrieval.jobs import evaluate_ranks
from embedkit.retrieval.metrics import retrieval_metrics, truth_ranks
from embedkit.retrieval.scoring import CSLS_K, DEFAULT_METRIC, METRICS, sigmoid
from embedkit.retrieval.search import decode_reference

COLUMNS = [f"Cells_Feature_{i:02d}" for i in range(12)]
LIK = "likelihood"  # the paper's scoring, which the first tests check exactly
LIK_SPACE = None
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
    calibrate_batch_norm(model)
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
    index, _ = build_index(
        table, embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
    )
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
    index, _ = build_index(
        table, embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
    )
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
    index, _ = build_index(
        table, embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
    )
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
        build_index(
            table, embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
        )


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
        profiles(5), embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
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
        profiles(10), embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
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
        profiles(10), embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
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
    build_index(first, spaces, info, "first", metric=LIK)[0].save(tmp_path / "idx")
    result = run_cli("index", "add", tmp_path / "more.parquet", "-i", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert "the index now holds 21" in result.output
    grown = ProfileIndex.load(tmp_path / "idx")
    full, _ = build_index(
        pd.concat([first, second], ignore_index=True), spaces, info, "all", metric=LIK
    )
    a = retrieve(molecules[:6], grown, embedder, k=21).hits
    b = retrieve(molecules[:6], full, embedder, k=21).hits
    # activity is scored on the scale fixed at build (the first table's median and MAD)
    pd.testing.assert_frame_equal(a.drop(columns=ACT), b.drop(columns=ACT))
    assert grown.metadata.Profile_Row.tolist() == list(range(21))
    scale = ActivityScale.fit(first[COLUMNS].to_numpy())
    np.testing.assert_allclose(
        grown.metadata[ACT], scale.score(pd.concat([first, second])[COLUMNS].to_numpy())
    )


def test_add_matches_column_names_without_case_as_build_does(tmp_path, embedder, molecules):
    """`index build` matched feature columns without case, `index add` with it: a table
    that build accepted was refused by add."""
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    first, second = profiles(12, seed=1), profiles(9, seed=2, keys=[f"q{i}" for i in range(9)])
    shouting = second.rename(columns={c: c.upper() for c in COLUMNS})
    assert (
        build_index(shouting, spaces, info, "built", metric=LIK)[0].count == 9
    )  # build accepts it
    shouting.to_parquet(tmp_path / "more.parquet")
    build_index(first, spaces, info, "first", metric=LIK)[0].save(tmp_path / "idx")
    result = run_cli("index", "add", tmp_path / "more.parquet", "-i", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert "the index now holds 21" in result.output
    grown = ProfileIndex.load(tmp_path / "idx")
    full, _ = build_index(
        pd.concat([first, second], ignore_index=True), spaces, info, "all", metric=LIK
    )
    a = retrieve(molecules[:6], grown, embedder, k=21).hits
    b = retrieve(molecules[:6], full, embedder, k=21).hits
    pd.testing.assert_frame_equal(a.drop(columns=ACT), b.drop(columns=ACT))
    both = first.assign(**{COLUMNS[0].lower(): first[COLUMNS[0]]})  # one name, two spellings
    for call in (
        lambda: build_index(both, spaces, info, "both", metric=LIK),
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
    approx, _ = build_index(table, spaces, info, "t", LIK_SPACE, LIK, index_type=kind)
    approx.save(tmp_path / kind)
    approx = ProfileIndex.load(tmp_path / kind)
    assert approx.manifest["index_type"] == kind
    exact, _ = build_index(table, spaces, info, "t", LIK_SPACE, LIK, index_type="flat")
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
    assert report["software"]["embedkit"] and str(tmp_path) not in json.dumps(report)
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
    """The shipped model's CMEA decoder space matches the real table column for column, and
    the default scoring runs end to end on it (no number of the model is assumed)."""
    table = pd.read_parquet(real_data / "profiles" / "cmea_u2os_morphology.parquet")
    shipped = load("infoalign-gin-lincs-small", with_heads=True)
    reference = decode_reference(shipped, reference_smiles()[:200], "ref")
    index, _ = build_index(
        table, shipped.model.extra["feature_spaces"], shipped.run_info, "cmea", reference=reference
    )
    assert index.space.name == "cp_cmea_u2os" and len(index.space.columns) == 812
    assert index.count == 100 and not index.space.ignored and index.metric == DEFAULT_METRIC
    ev = evaluate_ranks(
        table.Metadata_SMILES.tolist(),
        table.Metadata_InChIKey.tolist(),
        index,
        shipped,
        "Metadata_InChIKey",
    )
    assert ev.metrics.queries == 100 and 1 <= ev.metrics.mean_rank <= 100
    assert 1 <= ev.hubness.distinct_top1 <= 100 and ev.active is not None


def test_outputs_and_index_folders_are_readable_by_others(tmp_path, embedder):
    """mkstemp/mkdtemp make owner-only files; outputs follow the umask instead."""
    import os
    import stat

    from embedkit.io import write_table

    old = os.umask(0o022)
    try:
        write_table(profiles(3), tmp_path / "t.parquet")
        build_index(
            profiles(5), embedder.model.extra["feature_spaces"], embedder.run_info, "t", metric=LIK
        )[0].save(tmp_path / "idx")
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


# ---- hubness-aware scoring, diagnostics, activity (issue 13) and retrieve's inputs ---------


def reference_smiles() -> list[str]:
    from embedkit.retrieval.reference import DEFAULT_REFERENCE

    return pd.read_csv(DEFAULT_REFERENCE)["smiles"].tolist()


@pytest.fixture(scope="module")
def reference(embedder, molecules):
    return decode_reference(embedder, nci_smiles(140)[60:], "nci")


def decoded_probs(embedder, smiles: list[str]) -> np.ndarray:
    emb, valid = embedder.embed_smiles(smiles)
    assert valid.all()
    with torch.no_grad():
        logits = embedder.model.decoders["cp_test"](torch.from_numpy(emb)).double().numpy()
    return 1 / (1 + np.exp(-logits))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def explicit_scores(embedder, smiles, table, reference_smiles_, metric, beta=10.0):
    """The calibrated scorings written out from their definitions (docs/retrieval.md §2)."""
    x = ((table[COLUMNS].to_numpy() - LOW) / (HIGH - LOW)).clip(0, 1)
    p, r = decoded_probs(embedder, smiles), decoded_probs(embedder, reference_smiles_)
    if metric == "centered":
        P, Q, R = unit(x - x.mean(0)), unit(p - r.mean(0)), unit(r - r.mean(0))
    else:
        P = unit((x - x.mean(0)) / x.std(0))
        Q, R = unit((p - r.mean(0)) / r.std(0)), unit((r - r.mean(0)) / r.std(0))
    cos = Q @ P.T
    if metric in ("centered", "zscore"):
        return cos
    ref_cos = R @ P.T  # (reference, profiles)
    if metric == "csls":
        k = min(CSLS_K, len(R))
        r_m = np.sort(ref_cos, axis=0)[-k:].mean(axis=0)
        r_p = np.sort(cos, axis=1)[:, -min(CSLS_K, len(P)) :].mean(axis=1)
        return 2 * cos - r_p[:, None] - r_m[None, :]
    lse = np.log(np.exp(beta * ref_cos).sum(axis=0))
    return beta * cos - lse[None, :]


@pytest.mark.parametrize("metric", ["centered", "zscore", "csls", "inverted-softmax"])
def test_calibrated_scores_equal_their_definition(embedder, molecules, reference, metric):
    table = profiles(30, seed=4)
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(table, spaces, info, "t", metric=metric, reference=reference)
    expected = explicit_scores(embedder, molecules, table, reference.smiles, metric)
    hits = retrieve(molecules, index, embedder, k=30).hits
    got = np.full_like(expected, np.nan)
    got[hits.Molecule_Row, hits.Profile_Row] = hits.Score
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for row, group in hits.groupby("Molecule_Row"):  # FAISS order = the explicit order
        np.testing.assert_allclose(group.Score, np.sort(expected[row])[::-1], atol=1e-4)
    reverse = retrieve(molecules, index, embedder, k=5, reverse=True).hits
    for p, group in reverse.groupby("Profile_Row"):
        np.testing.assert_allclose(group.Score, np.sort(expected[:, p])[::-1][:5], atol=1e-4)
    # evaluation scores every pair the same way
    keys = [f"p{i}" for i in range(30)]
    ev = evaluate_ranks(molecules[:30], keys, index, embedder, "Metadata_Key")
    np.testing.assert_array_equal(ev.ranks, truth_ranks(expected[:30], np.arange(30)))


def test_the_cli_metric_choices_are_the_scorings(embedder):
    from embedkit.cli.index import DEFAULT_METRIC as CLI_DEFAULT
    from embedkit.cli.index import METRIC_CHOICES

    assert METRIC_CHOICES == METRICS and CLI_DEFAULT == DEFAULT_METRIC
    assert "likelihood" in METRICS  # the paper's scoring stays available


def test_an_index_queried_with_another_scoring_is_refused(tmp_path, embedder, molecules, reference):
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(profiles(8), spaces, info, "t", metric="csls", reference=reference)
    index.save(tmp_path / "idx")
    pd.DataFrame({"smiles": molecules[:3], "Key": ["p0", "p1", "p2"]}).to_csv(
        tmp_path / "q.csv", index=False
    )
    out = tmp_path / "h.csv"
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", tmp_path / "idx", "-o", out, "--metric", "likelihood"
    )
    assert result.exit_code == 2 and not out.exists()
    assert "built for csls scoring but likelihood scoring was asked for" in result.output
    result = run_cli(
        "evaluate",
        "retrieval",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "--key",
        "Metadata_Key",
        "--metric",
        "zscore",
    )
    assert result.exit_code == 2 and "built for csls scoring but zscore" in result.output
    with pytest.raises(IndexMismatchError, match="csls.*likelihood"):
        retrieve(molecules[:2], index, embedder, metric="likelihood")
    ok = run_cli(
        "retrieve",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "-o",
        out,
        "--metric",
        "csls",
        "-k",
        3,
    )
    assert ok.exit_code == 0, ok.output


def test_reference_with_invalid_smiles_is_kept_out_and_counted(tmp_path, model_dir, molecules):
    reference = ["C1CC", *nci_smiles(40)[20:30], "not a molecule", ""]
    pd.DataFrame({"smiles": reference}).to_csv(tmp_path / "ref.csv", index=False)
    profiles(12).to_parquet(tmp_path / "p.parquet")
    result = run_cli(
        "index",
        "build",
        tmp_path / "p.parquet",
        "-o",
        tmp_path / "idx",
        "-m",
        f"local-dir:{model_dir}",
        "--reference",
        tmp_path / "ref.csv",
    )
    assert result.exit_code == 0, result.output
    assert f"{DEFAULT_METRIC} scoring" in result.output
    assert "reference 10 of 13 molecules, 3 invalid SMILES left out" in result.output
    index = ProfileIndex.load(tmp_path / "idx")
    assert index.manifest["reference"]["invalid_rows"] == [0, 11, 12]
    assert index.reference[0] == nci_smiles(40)[20:30] and index.reference[1].shape == (10, 12)
    info = run_cli("index", "info", tmp_path / "idx")
    assert "10 of 13 molecules (3 invalid SMILES left out)" in info.output
    pd.DataFrame({"smiles": ["C1CC", "xyz"]}).to_csv(tmp_path / "bad.csv", index=False)
    result = run_cli(
        "index",
        "build",
        tmp_path / "p.parquet",
        "-o",
        tmp_path / "idx2",
        "-m",
        f"local-dir:{model_dir}",
        "--reference",
        tmp_path / "bad.csv",
    )
    assert result.exit_code == 2 and "none of the 2 reference SMILES is valid" in result.output
    assert not (tmp_path / "idx2").exists()


def test_hubness_numbers():
    from embedkit.retrieval.hubness import hubness_from_scores, hubness_from_top, skewness

    top = np.array([[0, 1], [0, 2], [0, 1], [3, 0]])
    h = hubness_from_top(top, candidates=5)
    assert (h.queries, h.distinct_top1, h.top1_row, h.k) == (4, 2, 0, 2)
    assert h.top1_share == 0.75
    occurrence = np.array([4, 2, 1, 1, 0])  # candidate 4 is nobody's neighbour
    assert h.k_occurrence_skewness == pytest.approx(skewness(occurrence))
    from scipy.stats import skew

    assert skewness(occurrence) == pytest.approx(skew(occurrence))
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]])
    h = hubness_from_scores(scores, k=1)
    assert h.distinct_top1 == 2 and h.top1_share == 0.5


def test_retrieve_warns_when_one_profile_takes_the_rank_one_hits(tmp_path, embedder, molecules):
    """A profile equal to the average decoding is the cosine top hit of (nearly) every
    molecule: the summary says so. Each molecule's own decoding spreads them: no warning."""
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    probs = decoded_probs(embedder, molecules)
    hub = pd.DataFrame(LOW + probs.mean(0, keepdims=True) * (HIGH - LOW), columns=COLUMNS)
    table = pd.concat([profiles(20, seed=5)[COLUMNS], hub], ignore_index=True)
    table.insert(0, "Metadata_Key", [f"p{i}" for i in range(len(table))])
    build_index(table, spaces, info, "t", metric="cosine")[0].save(tmp_path / "hub")
    pd.DataFrame({"smiles": molecules}).to_csv(tmp_path / "q.csv", index=False)
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", tmp_path / "hub", "-o", tmp_path / "h.csv"
    )
    assert result.exit_code == 0, result.output
    assert "warning: profile 20 is the top hit for" in result.output and "hubness" in result.output
    own = pd.DataFrame(LOW + probs * (HIGH - LOW), columns=COLUMNS)
    own.insert(0, "Metadata_Key", [f"m{i}" for i in range(len(own))])
    build_index(own, spaces, info, "t", metric="cosine")[0].save(tmp_path / "own")
    result = run_cli(
        "retrieve", tmp_path / "q.csv", "-i", tmp_path / "own", "-o", tmp_path / "h2.csv"
    )
    assert result.exit_code == 0 and "warning" not in result.output


def test_evaluate_reports_hubness_and_the_active_compounds_apart(tmp_path, embedder, molecules):
    """Profiles of the first 8 molecules are their own decodings pushed far from the
    others (active); the rest are noise around the median (inactive)."""
    probs = decoded_probs(embedder, molecules)
    rng = np.random.default_rng(0)
    scaled = 0.5 + 0.01 * rng.standard_normal(probs.shape)
    scaled[:8] = 0.5 + 4 * (probs[:8] - probs.mean(0))
    table = pd.DataFrame(LOW + scaled * (HIGH - LOW), columns=COLUMNS)
    keys = [f"m{i}" for i in range(len(molecules))]
    table.insert(0, "Metadata_Key", keys)
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(table, spaces, info, "t", metric="cosine")
    activity = index.metadata[ACT].to_numpy()
    assert (activity[:8] > 2).all() and (activity[8:] < 2).all()
    index.save(tmp_path / "idx")
    pd.DataFrame({"smiles": molecules, "Key": keys}).to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "ev.json"
    result = run_cli(
        "evaluate",
        "retrieval",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "--key",
        "Metadata_Key",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "8 active (Profile_Activity > 2)" in result.output
    assert "hubness:" in result.output and "distinct rank-1 hits" in result.output
    report = json.loads(out.read_text())
    assert report["active"]["queries"] == 8 and report["active"]["threshold"] == 2.0
    ranks = np.asarray(report["ranks"])
    assert report["active"]["ranks"] == ranks[:8].tolist()
    assert report["active"]["mean_rank"] == pytest.approx(ranks[:8].mean())
    assert set(report["hubness"]) >= {"distinct_top1", "top1_share", "k_occurrence_skewness"}
    result = run_cli(
        "evaluate",
        "retrieval",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "--key",
        "Metadata_Key",
        "--active-threshold",
        "1e9",
    )
    assert "no query's true profile is active (> 1e+09)" in result.output


def test_controls_set_the_activity_centre(embedder):
    table = profiles(12, seed=6)
    table["Metadata_Type"] = ["ctrl"] * 4 + ["trt"] * 8
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(
        table, spaces, info, "t", "cp_test", "likelihood", controls="Metadata_Type == 'ctrl'"
    )
    scale = ActivityScale.fit(table[COLUMNS].to_numpy(), np.arange(12) < 4)
    np.testing.assert_allclose(index.metadata[ACT], scale.score(table[COLUMNS].to_numpy()))
    assert index.manifest["activity"]["reference"] == "controls (4 profiles)"
    with pytest.raises(InputError, match="matches none"):
        build_index(
            table, spaces, info, "t", "cp_test", "likelihood", controls="Metadata_Type == 'none'"
        )


def test_index_info_reports_hubness_without_torch_or_rdkit(tmp_path, embedder, reference):
    import subprocess
    import sys

    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    build_index(profiles(15), spaces, info, "t", reference=reference)[0].save(tmp_path / "idx")
    code = (
        "import sys; from embedkit.retrieval.info import describe_index; "
        f"print(describe_index({str(tmp_path / 'idx')!r})); "
        "print('loaded:', [m for m in ('torch', 'rdkit') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "loaded: []" in out.stdout
    assert f"scoring:       {DEFAULT_METRIC}" in out.stdout
    assert "hubness:       reference molecules as queries:" in out.stdout
    assert f"over {len(reference.smiles)} queries (15 candidates)" in out.stdout
    assert "activity:      RMS robust z from the median of all 15 profiles" in out.stdout


def test_add_to_a_calibrated_index_uses_the_build_calibration(embedder, molecules, reference):
    from embedkit.retrieval.scoring import Calibration, candidate_vectors

    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    first, second = profiles(12, seed=1), profiles(6, seed=2, keys=[f"q{i}" for i in range(6)])
    index, _ = build_index(first, spaces, info, "t", metric="csls", reference=reference)
    index.add(second, "more")
    scale = lambda t: ((t[COLUMNS].to_numpy() - LOW) / (HIGH - LOW)).clip(0, 1)  # noqa: E731
    calibration = Calibration.fit(scale(first), reference.logits["cp_test"])
    expected = candidate_vectors(scale(second).astype(np.float32), "csls", calibration)
    np.testing.assert_allclose(index.stored_vectors()[12:], expected, atol=1e-6)


def test_retrieve_takes_embed_smiles_output_as_query_embeddings(
    tmp_path, model_dir, embedder, molecules, reference
):
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    build_index(profiles(10), spaces, info, "t", reference=reference)[0].save(tmp_path / "idx")
    queries = pd.DataFrame(
        {
            "compound": [f"c{i}" for i in range(6)],
            "smiles": [*molecules[:3], "C1CC", *molecules[3:5]],
        }
    )
    queries.to_csv(tmp_path / "q.csv", index=False)
    emb = tmp_path / "emb.parquet"
    result = run_cli(
        "embed-smiles",
        tmp_path / "q.csv",
        "-o",
        emb,
        "-m",
        f"local-dir:{model_dir}",
        "--id-column",
        "compound",
    )
    assert result.exit_code == 0, result.output
    from_smiles, from_emb = tmp_path / "a.parquet", tmp_path / "b.parquet"
    result = run_cli(
        "retrieve",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "-o",
        from_smiles,
        "-k",
        3,
        "--id-column",
        "compound",
        "-n",
        0,
        "--precision",
        "fp32",
    )
    assert result.exit_code == 0, result.output
    result = run_cli("retrieve", emb, "-i", tmp_path / "idx", "-o", from_emb, "-k", 3)
    assert result.exit_code == 0, result.output
    assert "6 molecules in, 1 invalid; 15 hits; embeddings from emb.parquet" in result.output
    a, b = pd.read_parquet(from_smiles), pd.read_parquet(from_emb)
    pd.testing.assert_frame_equal(
        a.drop(columns=["Molecule_Error"]), b.drop(columns=["Molecule_Error"])
    )
    # one id name with embed-smiles, the old one kept
    assert a.Metadata_ID.tolist() == a.Molecule_ID.tolist()
    assert a.Metadata_ID.tolist()[:4] == ["c0"] * 3 + ["c1"]
    # embeddings of another model are refused, naming both
    other = make_model(tmp_path / "other", seed=3)
    emb2 = tmp_path / "emb2.parquet"
    assert (
        run_cli(
            "embed-smiles", tmp_path / "q.csv", "-o", emb2, "-m", f"local-dir:{other}"
        ).exit_code
        == 0
    )
    result = run_cli("retrieve", emb2, "-i", tmp_path / "idx", "-o", tmp_path / "c.parquet")
    assert result.exit_code == 2
    assert "the embeddings' model is local-dir:" in result.output
    # bf16 embedding runs (decoders score in fp32)
    result = run_cli(
        "retrieve",
        tmp_path / "q.csv",
        "-i",
        tmp_path / "idx",
        "-o",
        tmp_path / "d.parquet",
        "--precision",
        "bf16",
    )
    assert result.exit_code == 0, result.output


def test_a_format_1_index_still_loads_and_searches(tmp_path, embedder, molecules):
    spaces, info = embedder.model.extra["feature_spaces"], embedder.run_info
    index, _ = build_index(profiles(10), spaces, info, "t", metric="likelihood")
    folder = index.save(tmp_path / "idx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "embedkit-profile-index/1"
    for key in ("reference", "activity"):
        manifest.pop(key)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = ProfileIndex.load(folder)
    assert old.reference is None
    hits = retrieve(molecules[:3], old, embedder, k=4).hits
    assert len(hits) == 12
    assert "no reference molecules stored" in run_cli("index", "info", folder).output


def test_an_index_reloads_its_hub_model_at_the_commit_it_was_built_with():
    """`hf-hub:org/repo@main` resolved to a commit when the index was built; reloading it
    must ask for that commit (from the cache, no network), not whatever `main` is now."""
    from embedkit.retrieval.index import model_spec

    commit = "0123456789abcdef0123456789abcdef01234567"
    assert model_spec({"model_id": "hf-hub:org/m@main", "revision": commit}) == (
        f"hf-hub:org/m@{commit}"
    )
    assert model_spec({"model_id": "hf-hub:org/m", "revision": commit}) == f"hf-hub:org/m@{commit}"
    assert model_spec({"model_id": "local-dir:m", "revision": "local"}) == "local-dir:m"
    assert model_spec({"model_id": "zoo-name", "revision": "v1"}) == "zoo-name@v1"
