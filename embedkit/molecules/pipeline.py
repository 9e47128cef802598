"""SMILES → graphs (or straight to embeddings), in order, in chunks, optionally across processes.

Two ways to use worker processes, both returning chunks in input order (row i of the output
is row i of the input):

* `featurize_stream`: workers featurize, the main process runs the model (GPU inference).
* `embed_stream`: each worker featurizes *and* runs the model with one torch thread
  (CPU inference). On 2 cores this beats one process with 2 threads: RDKit featurization is
  single-threaded and would leave a core idle, and a one-thread matmul wastes no time in
  OpenMP barriers (which also makes it far less sensitive to other load on the machine).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embedkit.molecules.featurize import MolGraph, smiles_to_graph

# Below this many molecules a process pool costs more than it saves.
MIN_ROWS_FOR_WORKERS = 2000


@dataclass
class Chunk:
    start: int
    graphs: list[MolGraph | None]
    errors: list[str]


def featurize_chunk(args: tuple[int, Sequence[object]]) -> Chunk:
    start, smiles = args
    graphs, errors = [], []
    for s in smiles:
        graph, error = smiles_to_graph(s)
        graphs.append(graph)
        errors.append(error)
    return Chunk(start, graphs, errors)


def default_num_workers(data_parallel: bool = False) -> int:
    """Worker processes for large inputs.

    Featurization only (model in the main process, e.g. on a GPU): none on ≤ 2 cores, else
    cores − 1 (≤ 8); one featurizing worker competing with the model's threads on 2 cores
    was no faster than featurizing in-process (763 vs 778 mol/s fp32).
    Data-parallel (`embed_stream`, CPU inference): one single-threaded worker per core (≤ 8),
    none on 1 core. See docs/molecules.md section 4 for the measurements.
    """
    cores = os.cpu_count() or 1
    if data_parallel:
        return 0 if cores < 2 else min(cores, 8)
    return 0 if cores <= 2 else min(cores - 1, 8)


def fork_available() -> bool:
    """`embed_stream` hands the loaded model to workers by fork (no pickling of weights).

    Linux only: forking a process whose OpenMP / oneDNN runtimes are initialized is not
    safe on macOS, where `spawn` would have to pickle the model instead.
    """
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def featurize_stream(
    smiles: Sequence[object], chunk_size: int, num_workers: int
) -> Iterator[Chunk]:
    tasks = [(i, smiles[i : i + chunk_size]) for i in range(0, len(smiles), chunk_size)]
    if num_workers <= 0 or len(smiles) < MIN_ROWS_FOR_WORKERS:
        yield from map(featurize_chunk, tasks)
        return
    # fork (as torch's DataLoader does on Linux) needs no `if __name__ == "__main__"` guard
    # in the user's script; the workers only run RDKit and NumPy.
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with context.Pool(num_workers) as pool:
        yield from pool.imap(featurize_chunk, tasks)


@dataclass
class EmbeddedChunk:
    start: int
    vectors: np.ndarray  # (len(rows), d) float32
    rows: list[int]  # chunk-relative indices of the valid SMILES
    errors: list[str]


Forward = Callable[[list[MolGraph]], np.ndarray]
_worker_forward: Forward | None = None


# glibc `mallopt` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory() -> bool:
    """Make this process's glibc malloc keep freed memory for reuse instead of returning it.

    Each batch allocates activations of a few MB (rows × 600 floats). glibc serves blocks
    that large with a fresh `mmap` and unmaps them on free, so every batch page-faults its
    activations in again: 20,000–70,000 minor faults per batch of 256 molecules, a fifth of
    a worker's CPU time (NCI 5K, 2 workers: 0.88 → 0.70 ms/mol, 2,200 → 2,750 mol/s; see
    docs/molecules.md section 4). Raising the mmap and trim thresholds keeps those pages in
    the heap. Only called in embedkit's own worker processes, which exit when the input is
    done, so the memory they keep is returned then. Returns False where there is no glibc.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    )


def _init_embed_worker(forward: Forward) -> None:
    global _worker_forward
    _worker_forward = forward
    torch.set_num_threads(1)
    retain_freed_memory()


def embed_chunk(
    args: tuple[int, Sequence[object]], forward: Forward | None = None
) -> EmbeddedChunk:
    """Featurize one chunk and embed its valid molecules."""
    forward = forward or _worker_forward
    assert forward is not None, "embed_chunk runs in a worker started by embed_stream"
    chunk = featurize_chunk(args)
    rows = [i for i, g in enumerate(chunk.graphs) if g is not None]
    graphs = [chunk.graphs[i] for i in rows]
    vectors = forward(graphs) if graphs else np.zeros((0, 0), np.float32)
    return EmbeddedChunk(chunk.start, vectors, rows, chunk.errors)


def embed_stream(
    smiles: Sequence[object], chunk_size: int, num_workers: int, forward: Forward
) -> Iterator[EmbeddedChunk]:
    """`embed_chunk` over `num_workers` forked processes, one torch thread each, in order.

    Needs fork (the workers inherit the loaded model); callers check `fork_available()`.
    """
    tasks = [(i, smiles[i : i + chunk_size]) for i in range(0, len(smiles), chunk_size)]
    context = mp.get_context("fork")
    with context.Pool(num_workers, initializer=_init_embed_worker, initargs=(forward,)) as pool:
        yield from pool.imap(embed_chunk, tasks)
