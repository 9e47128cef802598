"""Zero-shot molecule ↔ morphology retrieval: InfoAlign decoders + FAISS indexes of profiles.

`retrieve` and `decode_reference` (which need torch and RDKit) are imported on first use, so
reading an index (`embedkit index info`) does not load them."""

from embedkit.retrieval.index import ProfileIndex, build_index
from embedkit.retrieval.metrics import RetrievalMetrics, retrieval_metrics

__all__ = [
    "ProfileIndex",
    "RetrievalMetrics",
    "build_index",
    "decode_reference",
    "retrieval_metrics",
    "retrieve",
]


def __getattr__(name: str):
    if name in ("retrieve", "decode_reference"):
        from embedkit.retrieval import search

        return getattr(search, name)
    raise AttributeError(f"module 'embedkit.retrieval' has no attribute {name!r}")
