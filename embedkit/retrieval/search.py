"""Molecule → profiles and profile → molecules search over a `ProfileIndex`.

Results are long tables, one row per (query, rank), with `Molecule_*` columns for the
molecule side, the profile's own `Metadata_*` columns and `Profile_Row` for the profile
side, and `Rank` (1 = best) and `Score` (see `scoring`). Invalid SMILES never get hits:
as queries they keep one row with `Molecule_Valid = False` and their error; as candidates
they are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd

from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.retrieval.index import ROW_COLUMN, ProfileIndex, check_k
from embedkit.retrieval.scoring import (
    decode,
    molecule_candidates,
    molecule_queries,
    per_feature,
    profile_queries,
)


@dataclass
class DecodedMolecules:
    """Decoder logits of the valid molecules, and which rows those are."""

    logits: np.ndarray  # (n_valid, shared columns)
    valid: np.ndarray  # (n,) bool
    errors: list[str]


@dataclass
class RetrievalResult:
    hits: pd.DataFrame
    molecules: int
    invalid: list[int]  # 0-based rows of molecules RDKit could not use
    errors: list[str]


def decode_molecules(
    smiles: Sequence[str],
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    batch_size: int = 256,
    progress: bool = False,
) -> DecodedMolecules:
    """Embed, then decode into the index's feature space (its shared columns only)."""
    result = embedder.embed(list(smiles), batch_size=batch_size, progress=progress)
    logits = decode(embedder, result.embeddings[result.valid], index.space)
    return DecodedMolecules(logits, result.valid, result.errors)


def molecule_frame(smiles: Sequence[str], ids: Sequence | None, rows: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"Molecule_Row": rows})
    if ids is not None:
        frame["Molecule_ID"] = np.asarray(ids, dtype=object)[rows]
    frame["Molecule_SMILES"] = np.asarray(smiles, dtype=object)[rows]
    return frame


def search_profiles(
    decoded: DecodedMolecules,
    smiles: Sequence[str],
    ids: Sequence | None,
    index: ProfileIndex,
    k: int,
) -> pd.DataFrame:
    """Top-k profiles per valid molecule, plus one empty row per invalid molecule."""
    check_k(k, index.count, "profiles in the index")
    rows = np.flatnonzero(decoded.valid)
    queries, constant = molecule_queries(decoded.logits, index.metric)
    scores, ids_found = (
        index.search(queries, k) if len(rows) else (np.zeros((0, k)), np.zeros((0, k), int))
    )
    scores = per_feature(scores + constant[:, None], index.space, index.metric)
    found = ids_found >= 0  # approximate indexes may return fewer than k
    query_pos = np.repeat(np.arange(len(rows)), k).reshape(len(rows), k)[found]
    hits = molecule_frame(smiles, ids, rows[query_pos])
    hits["Molecule_Valid"] = True
    hits["Molecule_Error"] = ""
    hits["Rank"] = pd.array(np.tile(np.arange(1, k + 1), (len(rows), 1))[found], dtype="Int64")
    hits["Score"] = scores[found].astype(np.float64)
    profiles = index.metadata.iloc[ids_found[found]].reset_index(drop=True)
    hits = pd.concat([hits, profiles], axis=1)
    bad = np.flatnonzero(~decoded.valid)
    if len(bad):
        empty = molecule_frame(smiles, ids, bad)
        empty["Molecule_Valid"] = False
        empty["Molecule_Error"] = [decoded.errors[i] for i in bad]
        empty["Rank"] = pd.array([pd.NA] * len(bad), dtype="Int64")
        empty["Score"] = np.nan
        hits = pd.concat([hits, empty], ignore_index=True)
        hits = hits.sort_values(["Molecule_Row", "Rank"], kind="stable", na_position="first")
    hits[ROW_COLUMN] = hits[ROW_COLUMN].astype("Int64")
    return hits.reset_index(drop=True)


def search_molecules(
    decoded: DecodedMolecules,
    smiles: Sequence[str],
    ids: Sequence | None,
    index: ProfileIndex,
    k: int,
) -> pd.DataFrame:
    """Top-k valid molecules for every profile in the index (exact search)."""
    rows = np.flatnonzero(decoded.valid)
    check_k(k, len(rows), "valid molecules given")
    candidates = molecule_candidates(decoded.logits, index.metric)
    flat = faiss.IndexFlatIP(candidates.shape[1])
    flat.add(candidates)
    scores, found = flat.search(profile_queries(index.stored_vectors(), index.metric), k)
    scores = per_feature(scores, index.space, index.metric)
    profiles = index.metadata.loc[index.metadata.index.repeat(k)].reset_index(drop=True)
    hits = profiles[[ROW_COLUMN] + [c for c in profiles.columns if c != ROW_COLUMN]].copy()
    hits["Rank"] = np.tile(np.arange(1, k + 1), index.count)
    hits["Score"] = scores.reshape(-1).astype(np.float64)
    return pd.concat([hits, molecule_frame(smiles, ids, rows[found.reshape(-1)])], axis=1)


def retrieve(
    smiles: Sequence[str] | str,
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    k: int = 10,
    reverse: bool = False,
    ids: Sequence | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> RetrievalResult:
    """Molecules → their k most likely profiles, or (`reverse`) profiles → k molecules."""
    if isinstance(smiles, str):
        smiles = [smiles]
    smiles = list(smiles)
    index.check_model(embedder.run_info)
    decoded = decode_molecules(smiles, index, embedder, batch_size, progress)
    search = search_molecules if reverse else search_profiles
    hits = search(decoded, smiles, ids, index, k)
    invalid = [int(i) for i in np.flatnonzero(~decoded.valid)]
    return RetrievalResult(hits, len(smiles), invalid, decoded.errors)


def score_matrix(decoded: DecodedMolecules, index: ProfileIndex) -> np.ndarray:
    """Exact scores of every valid molecule against every indexed profile (evaluation)."""
    queries, constant = molecule_queries(decoded.logits, index.metric)
    scores = queries @ index.stored_vectors().T + constant[:, None]
    return per_feature(scores, index.space, index.metric)
