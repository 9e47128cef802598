"""embedkit: embeddings that carry biology, from a pinned model zoo."""

from __future__ import annotations

__version__ = "0.1.0"

from embedkit.api import load  # noqa: E402

__all__ = ["__version__", "load"]
