"""Molecule → profiles and profile → molecules search over a `ProfileIndex`.

Results are long tables, one row per (query, rank): the molecule side (`Molecule_Row`,
`Metadata_ID` as `embed-smiles` names it, `Molecule_SMILES`), the profile side
(`Profile_Row` and the profile's own `Metadata_*` columns), then `Rank` (1 = best) and
`Score` (see `scoring`). Invalid SMILES never get hits: as queries they keep one row with
`Molecule_Valid = False` and their error; as candidates they are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
import torch

from embedkit.molecules.embedder import MoleculeEmbedder
from embedkit.retrieval.index import ROW_COLUMN, ProfileIndex, check_k
from embedkit.retrieval.reference import ReferenceSet
from embedkit.retrieval.scoring import (
    cosine_queries,
    exact_scores,
    molecule_queries,
    per_feature,
    profile_queries,
)
from embedkit.retrieval.spaces import SpaceMatch, profile_spaces

# The molecule side of a hit. Its id is `Metadata_ID`, the name `embed-smiles` gives it;
# `Molecule_ID`, the name before, is written too (same values) so readers of older hits
# tables keep working.
ROW, SMILES, VALID, ERROR = "Molecule_Row", "Molecule_SMILES", "Molecule_Valid", "Molecule_Error"
ID, OLD_ID = "Metadata_ID", "Molecule_ID"
PROFILE_PREFIX = "Profile_"  # a profile metadata column named like a molecule one gets this


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


@torch.inference_mode()
def decode(embedder: MoleculeEmbedder, embeddings: np.ndarray, space: SpaceMatch) -> np.ndarray:
    """Decoder logits of `embeddings` (valid rows only) on the space's shared columns."""
    return np.ascontiguousarray(
        decode_space(embedder, embeddings, space.name)[:, space.decoder_index]
    )


@torch.inference_mode()
def decode_space(embedder: MoleculeEmbedder, embeddings: np.ndarray, name: str) -> np.ndarray:
    """Decoder logits of `embeddings` over the whole of decoder space `name`."""
    decoders = embedder.model.decoders
    if name not in decoders:
        raise ValueError(f"the loaded model has no decoder {name!r}; load it with with_heads=True")
    decoder = decoders[name]
    weight = next(decoder.parameters())
    mu = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    return decoder(mu.to(weight.device, weight.dtype)).float().cpu().numpy()


def decode_reference(
    embedder: MoleculeEmbedder, smiles: Sequence[str], source: str, batch_size: int = 256
) -> ReferenceSet:
    """Embed the reference molecules and decode them into every profile space of the model;
    invalid SMILES are left out and counted."""
    smiles = [str(s) for s in smiles]
    result = embedder.embed(smiles, batch_size=batch_size)
    valid = result.embeddings[result.valid]
    spaces = profile_spaces(embedder.model.extra.get("feature_spaces", {}))
    logits = {
        name: decode_space(embedder, valid, name)
        for name in spaces
        if name in embedder.model.decoders
    }
    kept = [s for s, ok in zip(smiles, result.valid, strict=True) if ok]
    invalid = [int(i) for i in np.flatnonzero(~result.valid)]
    return ReferenceSet(kept, logits, source, len(smiles), invalid)


def decode_molecules(
    smiles: Sequence[str],
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    batch_size: int = 256,
    progress: bool = False,
    num_workers: int | None = None,
) -> DecodedMolecules:
    """Embed, then decode into the index's feature space (its shared columns only)."""
    result = embedder.embed(
        list(smiles), batch_size=batch_size, progress=progress, num_workers=num_workers
    )
    return decode_embeddings(result.embeddings, result.valid, result.errors, index, embedder)


def decode_embeddings(
    embeddings: np.ndarray,
    valid: np.ndarray,
    errors: list[str],
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
) -> DecodedMolecules:
    """Decode embeddings already computed (`embed-smiles` output); invalid rows stay out."""
    valid = np.asarray(valid, dtype=bool)
    logits = decode(embedder, embeddings[valid], index.space)
    return DecodedMolecules(logits, valid, list(errors))


def molecule_frame(smiles: Sequence[str], ids: Sequence | None, rows: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({ROW: rows})
    if ids is not None:
        frame[ID] = np.asarray(ids, dtype=object)[rows]
        frame[OLD_ID] = frame[ID]
    frame[SMILES] = np.asarray(smiles, dtype=object)[rows]
    return frame


def profile_frame(index: ProfileIndex, rows: np.ndarray) -> pd.DataFrame:
    """The profiles' metadata; a profile column named like a molecule column gets
    `Profile_` (a profile's own Metadata_ID becomes Profile_Metadata_ID)."""
    taken = {ROW, ID, OLD_ID, SMILES, VALID, ERROR}
    profiles = index.metadata.iloc[rows].reset_index(drop=True)
    return profiles.rename(columns={c: PROFILE_PREFIX + c for c in profiles.columns if c in taken})


def csls_query_terms(queries_cosine: np.ndarray, index: ProfileIndex) -> np.ndarray:
    """r_P(x): mean cosine of each molecule with its k nearest indexed profiles (exact)."""
    k = min(index.calibration.csls_k, index.count)
    if not len(queries_cosine):
        return np.zeros(0, np.float32)
    scores, _ = index.search(queries_cosine, k)
    return scores.mean(axis=1).astype(np.float32)


def query_constants(decoded: DecodedMolecules, index: ProfileIndex):
    """(query vectors, per-query constants) of the index's scoring, r_P included for csls."""
    calibration = index.calibration
    queries, constant = molecule_queries(decoded.logits, index.metric, calibration)
    if index.metric == "csls":
        cosine = cosine_queries(decoded.logits, index.metric, calibration)
        constant = constant - csls_query_terms(cosine, index)
    return queries, constant


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
    queries, constant = query_constants(decoded, index)
    scores, ids_found = (
        index.search(queries, k) if len(rows) else (np.zeros((0, k)), np.zeros((0, k), int))
    )
    scores = per_feature(scores + constant[:, None], len(index.space.columns), index.metric)
    found = ids_found >= 0  # approximate indexes may return fewer than k
    query_pos = np.repeat(np.arange(len(rows)), k).reshape(len(rows), k)[found]
    hits = molecule_frame(smiles, ids, rows[query_pos])
    hits[VALID] = True
    hits[ERROR] = ""
    hits["Rank"] = pd.array(np.tile(np.arange(1, k + 1), (len(rows), 1))[found], dtype="Int64")
    hits["Score"] = scores[found].astype(np.float64)
    hits = pd.concat([hits, profile_frame(index, ids_found[found])], axis=1)
    bad = np.flatnonzero(~decoded.valid)
    if len(bad):
        empty = molecule_frame(smiles, ids, bad)
        empty[VALID] = False
        empty[ERROR] = [decoded.errors[i] for i in bad]
        empty["Rank"] = pd.array([pd.NA] * len(bad), dtype="Int64")
        empty["Score"] = np.nan
        hits = pd.concat([hits, empty], ignore_index=True)
        hits = hits.sort_values([ROW, "Rank"], kind="stable", na_position="first")
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
    queries, constant = query_constants(decoded, index)
    candidates = np.hstack([queries, constant[:, None]]).astype(np.float32)
    flat = faiss.IndexFlatIP(candidates.shape[1])
    flat.add(candidates)
    scores, found = flat.search(profile_queries(index.stored_vectors(), index.metric), k)
    scores = per_feature(scores, len(index.space.columns), index.metric)
    profiles = profile_frame(index, np.repeat(np.arange(index.count), k))
    hits = profiles[[ROW_COLUMN] + [c for c in profiles.columns if c != ROW_COLUMN]].copy()
    hits["Rank"] = np.tile(np.arange(1, k + 1), index.count)
    hits["Score"] = scores.reshape(-1).astype(np.float64)
    return pd.concat([hits, molecule_frame(smiles, ids, rows[found.reshape(-1)])], axis=1)


def search_decoded(
    decoded: DecodedMolecules,
    smiles: Sequence[str],
    index: ProfileIndex,
    k: int = 10,
    reverse: bool = False,
    ids: Sequence | None = None,
) -> RetrievalResult:
    """Search with molecules already decoded (from SMILES or from embeddings)."""
    search = search_molecules if reverse else search_profiles
    hits = search(decoded, list(smiles), ids, index, k)
    invalid = [int(i) for i in np.flatnonzero(~decoded.valid)]
    return RetrievalResult(hits, len(decoded.valid), invalid, decoded.errors)


def retrieve(
    smiles: Sequence[str] | str,
    index: ProfileIndex,
    embedder: MoleculeEmbedder,
    k: int = 10,
    reverse: bool = False,
    ids: Sequence | None = None,
    batch_size: int = 256,
    progress: bool = False,
    metric: str | None = None,
    num_workers: int | None = None,
) -> RetrievalResult:
    """Molecules → their k best-scoring profiles, or (`reverse`) profiles → k molecules.
    `metric`, when given, must be the one the index was built for."""
    if isinstance(smiles, str):
        smiles = [smiles]
    smiles = list(smiles)
    index.check_model(embedder.run_info)
    index.check_metric(metric)
    decoded = decode_molecules(smiles, index, embedder, batch_size, progress, num_workers)
    return search_decoded(decoded, smiles, index, k, reverse, ids)


def score_matrix(decoded: DecodedMolecules, index: ProfileIndex) -> np.ndarray:
    """Exact scores of every valid molecule against every indexed profile (evaluation)."""
    return exact_scores(
        decoded.logits,
        index.stored_vectors(),
        index.metric,
        index.calibration,
        len(index.space.columns),
    )
