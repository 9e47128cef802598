"""The perturbation relational graph and the graph losses (the microscopy paper's §3.2.2).

* `readers` — gene–gene (STRING, HuMAP/Reactome pair lists, Hetionet, any edge list) and
  compound–compound (STITCH) files → edge frames; the one place these files are read.
* `mapping` — the user's `perturbation,gene` table; node edges lifted to perturbations.
* `walk` — the 5-step random-walk smoothing of a binary network (Hetionet).
* `similarity` — cosine of per-perturbation mean image features.
* `build` — each source normalized, then combined into one graph.
* `graph` — `PerturbationGraph`: vocabulary + symmetric CSR adjacency, `.npz` save/load.
* `losses` — Laplacian and node-contrastive losses, `GraphRegularizer` (torch).
* `evidence` — Proposition 3.1 measures (neighbour / non-neighbour distance ratio,
  intra-perturbation distance), numpy only.
* `jobs` — the files-in, files-out layer of `embedkit graph build|info`.

Importing this package does not import torch; `GraphRegularizer` loads it on first use.
"""

from __future__ import annotations

from embedkit.graph.graph import PerturbationGraph

__all__ = ["GraphRegularizer", "PerturbationGraph"]


def __getattr__(name: str):
    if name == "GraphRegularizer":
        from embedkit.graph.losses import GraphRegularizer

        return GraphRegularizer
    raise AttributeError(f"module 'embedkit.graph' has no attribute {name!r}")
