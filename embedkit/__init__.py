"""embedkit: embeddings that carry biology, from a pinned model zoo."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    # `embedkit.load` needs torch; importing it on first use keeps `import embedkit` (and
    # `embedkit --help`, `zoo list`, the profile commands) free of torch, timm and faiss.
    if name == "load":
        from embedkit.api import load

        return load
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")
