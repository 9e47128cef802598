"""Zero-shot molecule ↔ morphology retrieval: InfoAlign decoders + FAISS indexes of profiles."""

from embedkit.retrieval.index import ProfileIndex, build_index
from embedkit.retrieval.metrics import RetrievalMetrics, retrieval_metrics
from embedkit.retrieval.search import retrieve

__all__ = ["ProfileIndex", "RetrievalMetrics", "build_index", "retrieval_metrics", "retrieve"]
