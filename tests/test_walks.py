"""Random walks on hand-built graphs whose walk distribution and weights are known exactly."""

from __future__ import annotations

import torch

from train.walks import CSRGraph, random_walks

# 0 is a hub with leaves 1, 2, 3; 3 continues to 4; 5 is isolated.
EDGES = [(0, 1, 0.5), (0, 2, 0.25), (0, 3, 1.0), (3, 4, 0.8)]
WEIGHT = {frozenset((a, b)): w for a, b, w in EDGES}


def star() -> CSRGraph:
    src, dst, w = zip(*EDGES, strict=True)
    return CSRGraph.from_edges(src, dst, w, num_nodes=6)


def test_csr_is_symmetric_with_degrees():
    g = star()
    assert g.degree().tolist() == [3, 1, 1, 2, 1, 0]
    neighbours = {n: g.indices[g.indptr[n] : g.indptr[n + 1]].tolist() for n in range(6)}
    assert neighbours == {0: [1, 2, 3], 1: [0], 2: [0], 3: [0, 4], 4: [3], 5: []}
    assert g.weights[g.indptr[3] : g.indptr[4]].tolist() == [1.0, 0.800000011920929]


def test_alpha_is_the_cumulative_product_along_each_path():
    nodes, alpha = random_walks(
        star(), torch.zeros(500, dtype=torch.long), 4, torch.Generator().manual_seed(1)
    )
    assert nodes.shape == alpha.shape == (500, 5)
    assert (nodes[:, 0] == 0).all() and (alpha[:, 0] == 1).all()
    for path, a in zip(nodes.tolist(), alpha.tolist(), strict=True):
        expected = 1.0
        for k in range(1, 5):
            assert frozenset(path[k - 1 : k + 1]) in WEIGHT  # every step follows an edge
            w = WEIGHT[frozenset(path[k - 1 : k + 1])]
            expected = float(torch.tensor(expected) * torch.tensor(w))  # float32, as the walk
            assert a[k] == expected


def test_transitions_are_uniform_over_neighbours():
    n = 60_000
    nodes, _ = random_walks(
        star(), torch.zeros(n, dtype=torch.long), 2, torch.Generator().manual_seed(2)
    )
    first = torch.bincount(nodes[:, 1], minlength=6).double() / n
    assert torch.allclose(first[[1, 2, 3]], torch.full((3,), 1 / 3, dtype=torch.double), atol=0.01)
    second = torch.bincount(nodes[:, 2], minlength=6).double() / n
    # back to the hub from 1 and 2 surely, from 3 half the time: 1/3 + 1/3 + 1/6
    assert abs(second[0] - 5 / 6) < 0.01 and abs(second[4] - 1 / 6) < 0.01
    assert second[[1, 2, 3, 5]].sum() == 0


def test_isolated_start_gets_stuck_with_zero_weight():
    nodes, alpha = random_walks(star(), torch.tensor([5, 1]), 3, torch.Generator().manual_seed(0))
    assert nodes[0].tolist() == [5, -1, -1, -1]
    assert alpha[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert nodes[1, 1] == 0 and alpha[1, 1] == 0.5


def test_same_generator_seed_same_walks_and_empty_graph():
    g = star()
    a = random_walks(g, torch.arange(6), 4, torch.Generator().manual_seed(9))
    b = random_walks(g, torch.arange(6), 4, torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    empty = CSRGraph.from_edges([], [], [], num_nodes=3)
    nodes, alpha = random_walks(empty, torch.arange(3), 2)
    assert (nodes[:, 1:] == -1).all() and (alpha[:, 1:] == 0).all()
