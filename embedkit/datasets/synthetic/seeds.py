"""Random streams of the simulation: one seeded stream per random quantity.

Every random draw comes from `stream(seed, TAG, ...keys)`, keyed by what it is for (the tag)
and by the names and numbers it belongs to (cell line, batch, plate, well, site). So changing
one knob never reshuffles the draws of another, and a site's pixels do not depend on what
else is drawn.
"""

from __future__ import annotations

import zlib

import numpy as np

# Stream tags, one per random quantity.
T_GRAPH, T_PHENO, T_RESP, T_LINE, T_LAYOUT, T_BATCH, T_PLATE, T_WELL, T_SITE = range(101, 110)
T_EXPR, T_SUBSET, T_MORPH = range(110, 113)


def name_key(text: str) -> int:
    """Stable 32-bit id of a name (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


def stream(*keys: int) -> np.random.Generator:
    """The generator of one stream: seeded by all of `keys` together."""
    return np.random.default_rng(list(keys))
