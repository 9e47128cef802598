"""SMILES → graphs, in order, in chunks, optionally across worker processes.

RDKit featurisation, not the GIN, is the bottleneck on a CPU, so large inputs are split
into chunks that worker processes featurise while the main process runs the model on the
previous chunk. Chunks come back in input order, so row i of the output is row i of the input.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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


def default_num_workers() -> int:
    """Featurisation processes beside the model: none on ≤ 2 cores, else cores − 1 (≤ 8).

    Measured on 2 cores (NCI 5K, benchmarks/bench_smiles.py): one worker competing with the
    model's threads was no faster than featurising in-process (763 vs 778 mol/s fp32), so
    workers only start paying once there are cores to spare.
    """
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(cores - 1, 8)


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
