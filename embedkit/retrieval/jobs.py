"""The file-level jobs behind `embedkit index …`, `retrieve` and `evaluate retrieval`.

Each reads its inputs, calls the array-level API (`index`, `search`, `metrics`) and writes
its output atomically; the CLI only parses flags and prints the returned summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import IndexMismatchError, InputError
from embedkit.io import (
    FEATURE_PREFIX,
    atomic_path,
    coerce_numeric_text,
    folder_lock,
    read_run_info,
    read_table,
    write_table,
)
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.jobs import ON_ERROR_CHOICES, read_smiles_table
from embedkit.outputs import check_output_dir, check_output_file, summary_line
from embedkit.plots import plot_format
from embedkit.provenance import input_fields, stamp
from embedkit.retrieval.activity import ACTIVE_THRESHOLD, ACTIVITY_COLUMN
from embedkit.retrieval.hubness import Hubness, hubness_from_scores, hubness_from_top
from embedkit.retrieval.index import ProfileIndex, build_index, describe_model
from embedkit.retrieval.info import describe_index  # noqa: F401  (the `index info` job)
from embedkit.retrieval.metrics import (
    RetrievalMetrics,
    plot_rank_histogram,
    retrieval_metrics,
    truth_ranks,
)
from embedkit.retrieval.reference import DEFAULT_REFERENCE, DEFAULT_REFERENCE_NAME, ReferenceSet
from embedkit.retrieval.scoring import DEFAULT_METRIC
from embedkit.retrieval.search import (
    ID,
    OLD_ID,
    VALID,
    DecodedMolecules,
    decode_embeddings,
    decode_molecules,
    decode_reference,
    score_matrix,
    search_decoded,
)


def read_profiles(path: str | Path) -> pd.DataFrame:
    table = read_table(Path(path))
    if len(table) == 0:
        raise InputError(f"{path}: the profile table has a header but no rows")
    return coerce_numeric_text(table)


def dropped_note(dropped: list[int]) -> str:
    if not dropped:
        return ""
    rows = ", ".join(str(r + 1) for r in dropped[:5]) + (" …" if len(dropped) > 5 else "")
    return f", {len(dropped)} rows with missing features left out (data rows {rows})"


def read_reference(
    embedder: MoleculeEmbedder,
    path: str | Path | None = None,
    smiles_column: str | None = None,
) -> ReferenceSet:
    """Decode the reference molecules (default: the set shipped with embedkit); invalid
    SMILES are left out and counted, a set with no valid molecule is refused."""
    source = DEFAULT_REFERENCE_NAME if path is None else str(path)
    table, chosen = read_smiles_table(
        DEFAULT_REFERENCE if path is None else path, smiles_column, None
    )
    reference = decode_reference(embedder, table[chosen.name].astype(str).tolist(), source)
    if not reference.smiles:
        raise InputError(
            f"{source}: none of the {reference.rows} reference SMILES is valid; give a "
            "reference set with valid molecules"
        )
    return reference


def reference_note(reference: ReferenceSet) -> str:
    invalid = f", {len(reference.invalid)} invalid SMILES left out" * bool(reference.invalid)
    return f"reference {len(reference.smiles)} of {reference.rows} molecules{invalid}"


def build_index_file(
    profiles_path: str | Path,
    out_dir: str | Path,
    embedder: MoleculeEmbedder,
    feature_space: str | None = None,
    metric: str = DEFAULT_METRIC,
    index_type: str = "auto",
    on_nan: str = "raise",
    overwrite: bool = False,
    reference: str | Path | None = None,
    controls: str | None = None,
    reference_smiles_column: str | None = None,
) -> str:
    """`embedkit index build`: returns the summary line. An existing `out_dir` is refused
    unless `overwrite` (and a folder that is not an index even then). The reference
    molecules (`reference`, default: the set shipped with embedkit) are decoded and stored
    with the index."""
    start = time.perf_counter()
    out_dir = check_output_dir(out_dir, overwrite)
    table = read_profiles(profiles_path)
    feature_spaces = embedder.model.extra.get("feature_spaces", {})
    references = read_reference(embedder, reference, reference_smiles_column)
    index, prepared = build_index(
        table,
        feature_spaces,
        embedder.run_info,
        str(profiles_path),
        feature_space,
        metric,
        index_type,
        on_nan,
        references,
        controls,
    )
    with folder_lock(out_dir):  # another build into the same folder waits, then is refused
        check_output_dir(out_dir, overwrite)
        index.save(out_dir)
    space = index.space
    ignored = f"; {len(space.ignored)} table columns not in the space ignored" * bool(space.ignored)
    return summary_line(
        f"indexed {index.count} of {len(table)} profiles{dropped_note(prepared.dropped)} in "
        f"feature space {space.name} ({len(space.columns)} of its {space.space_size} columns"
        f"{ignored})",
        time.perf_counter() - start,
        out_dir,
        [f"{index.manifest['index_type']} index, {metric} scoring", reference_note(references)],
    )


def add_to_index_file(
    profiles_path: str | Path,
    index_dir: str | Path,
    on_nan: str,
    allow_duplicates: bool = False,
) -> str:
    """`embedkit index add`: append rows, rewrite the folder atomically (the index is
    extended in place, not replaced: no --overwrite needed).

    The index folder's lock is held from reading the index to swapping the new one in, so
    concurrent adds wait for each other and none loses the other's rows. Profiles already
    in the index (same metadata and vector) are skipped unless `allow_duplicates`.
    """
    start = time.perf_counter()
    table = read_profiles(profiles_path)
    with folder_lock(index_dir):
        index = ProfileIndex.load(index_dir)
        before = index.count
        prepared = index.add(table, str(profiles_path), on_nan, allow_duplicates)
        if index.count > before:
            index.save(index_dir)
    return summary_line(
        f"added {index.count - before} of {len(table)} profiles{dropped_note(prepared.dropped)}"
        f"{duplicates_note(prepared.duplicates)}",
        time.perf_counter() - start,
        index_dir,
        [f"the index now holds {index.count}"],
    )


def duplicates_note(duplicates: list[int]) -> str:
    if not duplicates:
        return ""
    rows = ", ".join(str(r + 1) for r in duplicates[:5]) + (" …" if len(duplicates) > 5 else "")
    return (
        f", {len(duplicates)} already in the index skipped (data rows {rows}; "
        "--allow-duplicates adds them)"
    )


@dataclass
class RetrieveSummary:
    molecules: int
    invalid: int
    hits: int
    seconds: float
    output: Path
    column: str = ""  # where the SMILES came from (SmilesColumn.describe())
    hubness: Hubness | None = None  # of the forward search's rank-1 hits

    def line(self) -> str:
        counts = f"{self.molecules} molecules in, {self.invalid} invalid"
        line = summary_line(counts, self.seconds, self.output, [f"{self.hits} hits", self.column])
        if self.hubness is not None and self.hubness.dominated():
            line += "\n" + self.hubness.warning()
        return line


def is_embeddings_table(path: str | Path) -> bool:
    """A Parquet file with Emb_ columns (`embed-smiles` output): its embeddings are used as
    they are. Only the schema is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.name.lower().endswith(".parquet") or not path.is_file():
        return False
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return False  # read_table reports what is wrong with it
    return any(str(c).startswith(FEATURE_PREFIX) for c in names)


def read_query_embeddings(
    path: str | Path,
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    id_column: str | None,
) -> tuple[DecodedMolecules, list[str], list[str] | None, str]:
    """Decode `embed-smiles` output: the model that wrote it must be the index's (its run
    info says which); rows marked invalid, or with non-finite values, stay invalid."""
    table = read_table(Path(path))
    info = read_run_info(path)
    if not info.get("weights_sha256"):
        raise InputError(
            f"{path}: embeddings without the run info that names their model's weights "
            "(written by `embedkit embed-smiles`?), so they cannot be checked against the "
            "index's model; give the SMILES instead"
        )
    if info["weights_sha256"] != index.model.get("weights_sha256"):
        # by weights: outputs record a local model's folder relative to where it ran
        raise IndexMismatchError(
            f"{path}: the embeddings' model is {describe_model(info)} but the index was "
            f"built with model {describe_model(index.model)}; embed the molecules with the "
            "index's model, or give their SMILES"
        )
    features = [c for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
    if len(features) != embedder.embedding_dim:
        raise InputError(
            f"{path}: {len(features)} Emb_ columns, but the index's model embeds into "
            f"{embedder.embedding_dim}"
        )
    values = table[features].to_numpy(dtype=np.float32)
    valid = np.isfinite(values).all(axis=1)
    if "Metadata_Valid" in table:
        valid &= table["Metadata_Valid"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    given = table["Metadata_Error"].tolist() if "Metadata_Error" in table else [""] * len(table)
    errors = [
        "" if ok else (str(e) if isinstance(e, str) and e else "no embedding (invalid row)")
        for ok, e in zip(valid, given, strict=True)
    ]
    smiles = [""] * len(table)
    if "Metadata_SMILES" in table:
        smiles = table["Metadata_SMILES"].astype(str).tolist()
    id_column = id_column or ("Metadata_ID" if "Metadata_ID" in table else None)
    if id_column is not None and id_column not in table:
        raise InputError(f"{path}: no id column {id_column!r}")
    ids = table[id_column].astype(str).tolist() if id_column else None
    decoded = decode_embeddings(np.nan_to_num(values), valid, errors, index, embedder)
    return decoded, smiles, ids, f"embeddings from {Path(path).name}"


def retrieve_file(
    queries_path: str | Path,
    index_dir: str | Path,
    output_path: str | Path,
    embedder: MoleculeEmbedder,
    k: int = 10,
    reverse: bool = False,
    smiles_column: str | None = None,
    id_column: str | None = None,
    on_error: str = "nan",
    batch_size: int = 256,
    progress: bool = False,
    overwrite: bool = False,
    metric: str | None = None,
    num_workers: int | None = None,
) -> RetrieveSummary:
    """`embedkit retrieve`: one output row per (query, rank), written atomically; an
    existing output is refused unless `overwrite`. QUERIES is a SMILES table, or
    `embed-smiles` output whose embeddings are decoded as they are (not re-embedded).
    `metric`, when given, must be the index's own scoring."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    start = time.perf_counter()
    output_path = check_output_file(output_path, overwrite)
    index = ProfileIndex.load(index_dir)
    index.check_metric(metric)
    index.check_model(embedder.run_info)
    if is_embeddings_table(queries_path):
        decoded, smiles, ids, described = read_query_embeddings(
            queries_path, index, embedder, id_column
        )
        column = "Metadata_SMILES"
    else:
        table, chosen = read_smiles_table(queries_path, smiles_column, id_column)
        column, described = chosen.name, chosen.describe()
        smiles = table[column].tolist()
        ids = table[id_column].astype(str).tolist() if id_column else None
        decoded = decode_molecules(smiles, index, embedder, batch_size, progress, num_workers)
    result = search_decoded(decoded, smiles, index, k, reverse, ids)
    if on_error == "raise" and result.invalid:
        row = result.invalid[0]
        raise InputError(
            f"{queries_path}: row {row + 1} ({column}={str(smiles[row])[:60]!r}): "
            f"{result.errors[row]}; {len(result.invalid)} invalid rows in all; nothing was "
            "written"
        )
    hits = result.hits
    if on_error == "drop" and VALID in hits:
        hits = hits[hits[VALID]].reset_index(drop=True)
    run_info = {
        "embedkit_version": __version__,
        **embedder.run_info,
        **input_fields(queries_path),  # portable path + sha256 (embedkit.provenance)
        "index": str(index_dir),
        "feature_space": index.space.name,
        "metric": index.metric,
        "direction": "profile→molecules" if reverse else "molecule→profiles",
        "k": k,
        "smiles_column": column,
        "queries": described,
        "molecule_id_columns": [ID, OLD_ID] if ids is not None else [],
    }
    write_table(hits, output_path, run_info)
    hubness = None
    if not reverse and decoded.valid.any():
        ranked = result.hits.dropna(subset=["Rank"])
        top = ranked[ranked["Rank"] == 1]["Profile_Row"].to_numpy(dtype=np.int64)[:, None]
        hubness = hubness_from_top(top, index.count)
    return RetrieveSummary(
        len(smiles),
        len(result.invalid),
        int(hits["Rank"].notna().sum()),
        time.perf_counter() - start,
        Path(output_path),
        described,
        hubness,
    )


@dataclass
class Evaluation:
    metrics: RetrievalMetrics
    ranks: np.ndarray
    skipped: int  # queries without a valid structure or without a true profile
    seconds: float = 0.0
    outputs: tuple[Path, ...] = ()
    hubness: Hubness | None = None  # of the valid queries' rankings
    active: RetrievalMetrics | None = None  # the queries whose true profile is active
    active_ranks: np.ndarray | None = None
    active_threshold: float = ACTIVE_THRESHOLD
    active_note: str = ""  # why there is no active subset, when there is none

    def table_lines(self) -> list[str]:
        """The metrics beside chance, for all queries and for the active ones."""
        lines = self.metrics.lines()
        if self.active is not None:
            lines[0] += (
                f"; {self.active.queries} active (Profile_Activity > {self.active_threshold:g})"
            )
            lines[1] += f" {'active':>8} {'chance':>8}"
            for i, (value, chance) in enumerate(self.active.values()):
                lines[2 + i] += f" {value:>8.1f} {chance:>8.1f}"
        elif self.active_note:
            lines[0] += f"; {self.active_note}"
        if self.hubness is not None:
            lines.append(f"hubness: {self.hubness.line()}")
        return lines

    def to_dict(self) -> dict:
        out = {**self.metrics.to_dict(), "skipped_queries": self.skipped}
        out["ranks"] = self.ranks.tolist()
        out["hubness"] = self.hubness.to_dict() if self.hubness is not None else None
        out["active"] = (
            {
                **self.active.to_dict(),
                "definition": f"{ACTIVITY_COLUMN} > {self.active_threshold:g} (RMS robust "
                "z-distance of the true profile from the control/median profile)",
                "threshold": self.active_threshold,
                "ranks": self.active_ranks.tolist(),
            }
            if self.active is not None
            else {"note": self.active_note}
        )
        return out

    def line(self) -> str:
        queries = len(self.ranks) + self.skipped
        counts = f"{queries} queries, {len(self.ranks)} scored, {self.skipped} skipped" + (
            " (invalid SMILES or no true profile)" if self.skipped else ""
        )
        return summary_line(counts, self.seconds, self.outputs or None)


def evaluate_ranks(
    smiles: list[str],
    keys: list,
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    key_column: str,
    active_threshold: float = ACTIVE_THRESHOLD,
    metric: str | None = None,
) -> Evaluation:
    """Rank of each molecule's own profile(s) among all indexed profiles (exact scores),
    for all queries and for those whose true profile is active; hubness of the rankings."""
    if key_column not in index.metadata.columns:
        raise InputError(
            f"the index has no metadata column {key_column!r}; it has: "
            f"{', '.join(index.metadata.columns)}"
        )
    index.check_model(embedder.run_info)
    index.check_metric(metric)
    decoded = decode_molecules(smiles, index, embedder)
    return evaluate_scores(
        score_matrix(decoded, index), decoded.valid, keys, index, key_column, active_threshold
    )


def evaluate_scores(
    scores: np.ndarray,
    valid: np.ndarray,
    keys: list,
    index: ProfileIndex,
    key_column: str,
    active_threshold: float = ACTIVE_THRESHOLD,
) -> Evaluation:
    """`evaluate_ranks` from a (valid queries × indexed profiles) score matrix."""
    candidate_keys = index.metadata[key_column].astype(str).to_numpy()
    query_keys = np.asarray([str(k) for k in keys], dtype=object)[valid]
    truth = query_keys[:, None] == candidate_keys[None, :]
    usable = truth.any(axis=1)
    if not usable.any():
        raise InputError(
            f"no query's key matches a profile's {key_column!r}; check --key / --query-key"
        )
    ranks = truth_ranks(scores[usable], truth[usable])
    candidates = index.count - truth[usable].sum(axis=1) + 1
    evaluation = Evaluation(
        retrieval_metrics(ranks, candidates),
        ranks,
        len(keys) - int(usable.sum()),
        hubness=hubness_from_scores(scores) if len(scores) else None,
        active_threshold=active_threshold,
    )
    if ACTIVITY_COLUMN not in index.metadata:
        evaluation.active_note = "no Profile_Activity in this index (built before embedkit 0.2)"
        return evaluation
    active_profiles = index.metadata[ACTIVITY_COLUMN].to_numpy(np.float64) > active_threshold
    active = (truth[usable] & active_profiles[None, :]).any(axis=1)
    if active.any():
        evaluation.active = retrieval_metrics(ranks[active], candidates[active])
        evaluation.active_ranks = ranks[active]
    else:
        evaluation.active_note = f"no query's true profile is active (> {active_threshold:g})"
    return evaluation


def evaluate_retrieval_file(
    queries_path: str | Path,
    index_dir: str | Path,
    embedder: MoleculeEmbedder,
    key: str,
    query_key: str | None = None,
    smiles_column: str | None = None,
    output_json: str | Path | None = None,
    plot: str | Path | None = None,
    overwrite: bool = False,
    active_threshold: float = ACTIVE_THRESHOLD,
    metric: str | None = None,
) -> Evaluation:
    """`embedkit evaluate retrieval`: metrics (+ JSON, + rank histogram); existing
    outputs are refused unless `overwrite`."""
    start = time.perf_counter()
    outputs = tuple(check_output_file(p, overwrite) for p in (output_json, plot) if p is not None)
    if plot is not None:
        plot_format(plot)  # .png .pdf .svg, refused before the index is read
    index = ProfileIndex.load(index_dir)
    table, chosen = read_smiles_table(queries_path, smiles_column, None)
    column = chosen.name
    query_key = query_key or (key if key in table.columns else key.removeprefix("Metadata_"))
    if query_key not in table.columns:
        raise InputError(
            f"{queries_path}: no key column {query_key!r} to match the index's {key!r}; "
            "name it with --query-key"
        )
    evaluation = evaluate_ranks(
        table[column].tolist(),
        table[query_key].tolist(),
        index,
        embedder,
        key,
        active_threshold,
        metric,
    )
    if output_json is not None:
        with atomic_path(Path(output_json)) as tmp:
            tmp.write_text(
                json.dumps(
                    stamp(
                        {
                            **evaluation.to_dict(),
                            "model": index.model,
                            "index": str(index_dir),
                            "metric": index.metric,
                        }
                    ),
                    indent=2,
                )
                + "\n"
            )
    if plot is not None:
        plot_rank_histogram(
            {index.model.get("model_id", "model"): evaluation.ranks}, index.count, plot
        )
    evaluation.seconds, evaluation.outputs = time.perf_counter() - start, outputs
    return evaluation


def load_index_model(
    index_dir: Path,
    model: str | None,
    device: str,
    command: str = "retrieve",
    precision: str = "fp32",
):
    """The model (with decoders) an index was built with. Only the manifest is read here;
    the job loads and verifies the index once and refuses a different model."""
    from embedkit.api import load
    from embedkit.retrieval.index import model_spec, read_manifest

    spec = model or model_spec(read_manifest(index_dir)["model"])
    return load(
        spec,
        device=device,
        precision=precision,
        with_heads=True,
        task="molecules",
        command=command,
    )
