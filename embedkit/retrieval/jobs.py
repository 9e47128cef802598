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
from embedkit.errors import InputError
from embedkit.io import atomic_path, coerce_numeric_text, folder_lock, read_table, write_table
from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.molecules.jobs import ON_ERROR_CHOICES, read_smiles_table
from embedkit.outputs import check_output_dir, check_output_file, summary_line
from embedkit.plots import plot_format
from embedkit.provenance import input_fields
from embedkit.retrieval.index import ProfileIndex, build_index, describe_model
from embedkit.retrieval.metrics import (
    RetrievalMetrics,
    plot_rank_histogram,
    retrieval_metrics,
    truth_ranks,
)
from embedkit.retrieval.search import decode_molecules, retrieve, score_matrix


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


def build_index_file(
    profiles_path: str | Path,
    out_dir: str | Path,
    embedder: MoleculeEmbedder,
    feature_space: str | None = None,
    metric: str = "likelihood",
    index_type: str = "auto",
    on_nan: str = "raise",
    overwrite: bool = False,
) -> str:
    """`embedkit index build`: returns the summary line. An existing `out_dir` is refused
    unless `overwrite` (and a folder that is not an index even then)."""
    start = time.perf_counter()
    out_dir = check_output_dir(out_dir, overwrite)
    table = read_profiles(profiles_path)
    feature_spaces = embedder.model.extra.get("feature_spaces", {})
    index, prepared = build_index(
        table,
        feature_spaces,
        embedder.run_info,
        str(profiles_path),
        feature_space,
        metric,
        index_type,
        on_nan,
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
        [f"{index.manifest['index_type']} index, {metric} scoring"],
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


def describe_index(index_dir: str | Path) -> str:
    """`embedkit index info`: what is inside and what built it."""
    index = ProfileIndex.load(index_dir)
    m = index.manifest
    space = index.space
    sources = "; ".join(f"{s['source']} ({s['indexed']} rows)" for s in m.get("sources", []))
    meta = [c for c in index.metadata.columns]
    return "\n".join(
        [
            f"index:         {index_dir}",
            f"profiles:      {index.count}",
            f"model:         {describe_model(index.model)}",
            f"feature space: {space.name}, {len(space.columns)} of {space.space_size} columns",
            f"scoring:       {index.metric}",
            f"index type:    {m['index_type']} {m.get('search_params') or ''}".rstrip(),
            f"normalization: {m.get('normalization', m.get('normalisation', ''))}",  # older indexes
            f"metadata:      {', '.join(meta)}",
            f"sources:       {sources}",
            f"built by:      embedkit {m.get('embedkit_version', '?')}",
        ]
    )


@dataclass
class RetrieveSummary:
    molecules: int
    invalid: int
    hits: int
    seconds: float
    output: Path
    column: str = ""  # where the SMILES came from (SmilesColumn.describe())

    def line(self) -> str:
        counts = f"{self.molecules} molecules in, {self.invalid} invalid"
        return summary_line(counts, self.seconds, self.output, [f"{self.hits} hits", self.column])


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
) -> RetrieveSummary:
    """`embedkit retrieve`: one output row per (query, rank), written atomically; an
    existing output is refused unless `overwrite`."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    start = time.perf_counter()
    output_path = check_output_file(output_path, overwrite)
    index = ProfileIndex.load(index_dir)
    table, chosen = read_smiles_table(queries_path, smiles_column, id_column)
    column = chosen.name
    smiles = table[column].tolist()
    ids = table[id_column].astype(str).tolist() if id_column else None
    result = retrieve(smiles, index, embedder, k, reverse, ids, batch_size, progress)
    if on_error == "raise" and result.invalid:
        row = result.invalid[0]
        raise InputError(
            f"{queries_path}: row {row + 1} ({column}={str(smiles[row])[:60]!r}): "
            f"{result.errors[row]}; {len(result.invalid)} invalid rows in all; nothing was "
            "written"
        )
    hits = result.hits
    if on_error == "drop" and "Molecule_Valid" in hits:
        hits = hits[hits["Molecule_Valid"]].reset_index(drop=True)
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
    }
    write_table(hits, output_path, run_info)
    return RetrieveSummary(
        len(smiles),
        len(result.invalid),
        int(hits["Rank"].notna().sum()),
        time.perf_counter() - start,
        Path(output_path),
        chosen.describe(),
    )


@dataclass
class Evaluation:
    metrics: RetrievalMetrics
    ranks: np.ndarray
    skipped: int  # queries without a valid structure or without a true profile
    seconds: float = 0.0
    outputs: tuple[Path, ...] = ()

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
) -> Evaluation:
    """Rank of each molecule's own profile(s) among all indexed profiles (exact scores)."""
    if key_column not in index.metadata.columns:
        raise InputError(
            f"the index has no metadata column {key_column!r}; it has: "
            f"{', '.join(index.metadata.columns)}"
        )
    index.check_model(embedder.run_info)
    decoded = decode_molecules(smiles, index, embedder)
    scores = score_matrix(decoded, index)
    candidate_keys = index.metadata[key_column].astype(str).to_numpy()
    query_keys = np.asarray([str(k) for k in keys], dtype=object)[decoded.valid]
    truth = query_keys[:, None] == candidate_keys[None, :]
    usable = truth.any(axis=1)
    if not usable.any():
        raise InputError(
            f"no query's key matches a profile's {key_column!r}; check --key / --query-key"
        )
    ranks = truth_ranks(scores[usable], truth[usable])
    candidates = index.count - truth[usable].sum(axis=1) + 1
    return Evaluation(retrieval_metrics(ranks, candidates), ranks, len(smiles) - int(usable.sum()))


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
        table[column].tolist(), table[query_key].tolist(), index, embedder, key
    )
    if output_json is not None:
        with atomic_path(Path(output_json)) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        **evaluation.metrics.to_dict(),
                        "skipped_queries": evaluation.skipped,
                        "ranks": evaluation.ranks.tolist(),
                        "model": index.model,
                        "index": str(index_dir),
                        "metric": index.metric,
                    },
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


def load_index_model(index_dir: Path, model: str | None, device: str, command: str = "retrieve"):
    """The model (with decoders) an index was built with. Only the manifest is read here;
    the job loads and verifies the index once and refuses a different model."""
    from embedkit.api import load
    from embedkit.retrieval.index import model_spec, read_manifest

    spec = model or model_spec(read_manifest(index_dir)["model"])
    return load(spec, device=device, with_heads=True, task="molecules", command=command)
