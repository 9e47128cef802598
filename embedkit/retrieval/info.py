"""`embedkit index info`: what an index holds, what built it, and how hub-prone its scoring
is. Reads only the index folder: no model, no torch, no RDKit (the hubness diagnostics use
the reference molecules' decoded logits stored with the index)."""

from __future__ import annotations

from pathlib import Path

from embedkit.retrieval.activity import ACTIVE_THRESHOLD, ACTIVITY_COLUMN
from embedkit.retrieval.hubness import HUB_K, Hubness, hubness_from_top
from embedkit.retrieval.index import ProfileIndex, describe_model
from embedkit.retrieval.scoring import molecule_queries


def reference_hubness(index: ProfileIndex, k: int = HUB_K) -> Hubness | None:
    """Hubness of the index's scoring with its reference molecules as queries (None when
    the index stores no reference set). The per-query constants do not change a query's
    ranking, so the FAISS search alone gives it."""
    if index.reference is None or not len(index.reference[1]):
        return None
    queries, _ = molecule_queries(index.reference[1], index.metric, index.calibration)
    _, top = index.search(queries, min(k, index.count))
    return hubness_from_top(top, index.count)


def describe_index(index_dir: str | Path) -> str:
    """The lines `embedkit index info` prints."""
    index = ProfileIndex.load(index_dir)
    m = index.manifest
    space = index.space
    sources = "; ".join(f"{s['source']} ({s['indexed']} rows)" for s in m.get("sources", []))
    meta = [c for c in index.metadata.columns]
    lines = [
        f"index:         {index_dir}",
        f"profiles:      {index.count}",
        f"model:         {describe_model(index.model)}",
        f"feature space: {space.name}, {len(space.columns)} of {space.space_size} columns",
        f"scoring:       {index.metric}",
        f"index type:    {m['index_type']} {m.get('search_params') or ''}".rstrip(),
        f"normalization: {m.get('normalization', m.get('normalisation', ''))}",  # older indexes
        f"metadata:      {', '.join(meta)}",
        f"sources:       {sources}",
    ]
    reference = m.get("reference")
    if reference:
        lines.append(
            f"reference:     {reference['source']}, {reference['used']} of "
            f"{reference['molecules']} molecules ({reference['invalid']} invalid SMILES left out)"
        )
    activity = m.get("activity")
    if activity and ACTIVITY_COLUMN in index.metadata:
        threshold = activity.get("threshold", ACTIVE_THRESHOLD)
        active = int((index.metadata[ACTIVITY_COLUMN] > threshold).sum())
        lines.append(
            f"activity:      RMS robust z from the median of {activity['reference']}; "
            f"{active} of {index.count} profiles above {threshold:g} (active)"
        )
    hubness = reference_hubness(index)
    lines.append(
        "hubness:       "
        + (
            f"reference molecules as queries: {hubness.line()}"
            if hubness is not None
            else "no reference molecules stored (index built before embedkit recorded them)"
        )
    )
    lines.append(f"built by:      embedkit {m.get('embedkit_version', '?')}")
    return "\n".join(lines)
