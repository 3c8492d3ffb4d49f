"""Pairs above a floor with far groups skipped: the same pairs as every product, and the
components networkx finds on the full similarity matrix."""

import numpy as np
import pytest
import torch

from scissor_viz import pairs, scc
from scissor_viz.scc import semantic_components
from scissor_viz.synthetic import video_tokens
from tests.conftest import networkx_partition, partition


def clustered(n: int = 900, dim: int = 48, clusters: int = 9, seed: int = 0) -> torch.Tensor:
    """Unit rows around a few directions (the case where far groups can be skipped)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen)
    x = centres[torch.randint(0, clusters, (n,), generator=gen)]
    return scc.unit_rows(x + 0.25 * torch.randn(n, dim, generator=gen))


def found(blocks) -> dict[tuple[int, int], float]:
    """{(i, j): similarity} of every pair the blocks give, checking that none comes twice."""
    out: dict[tuple[int, int], float] = {}
    for i, j, sim in blocks:
        for key, value in zip(zip(i.tolist(), j.tolist(), strict=True), sim.tolist(), strict=True):
            assert key not in out and (key[1], key[0]) not in out, f"{key} twice"
            out[key] = value
    return out


def reference(xn: torch.Tensor, floor: float, rows=None) -> set[tuple[int, int]]:
    """The pairs above floor of the full product (upper triangle, or rows against all)."""
    sim = scc._similarity(xn, xn).numpy()
    above = sim > np.float32(floor)
    np.fill_diagonal(above, False)
    if rows is None:
        i, j = np.nonzero(np.triu(above, 1))
        return set(zip(i.tolist(), j.tolist(), strict=True))
    mine = np.zeros(len(xn), dtype=bool)
    mine[rows.numpy()] = True
    i, j = np.nonzero(above & mine[:, None])
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if not mine[b] or b > a}


@pytest.fixture
def pruning(monkeypatch):
    monkeypatch.setattr(pairs, "PRUNE_MIN", 1)
    monkeypatch.setattr(pairs, "GROUP_ROWS", 30)


@pytest.mark.parametrize("floor", [0.5, 0.8, 0.9, 0.97])
def test_pruned_pairs_are_the_dense_pairs(pruning, floor):
    xn = clustered()
    basis = pairs.fit_basis(xn)
    plan = pairs._plan(xn, floor, None, basis)
    if floor >= 0.8:  # far enough apart: the plan skips groups (else the test proves nothing)
        assert plan is not None and not plan[2].all()
    dense, pruned = found(pairs.above(xn, floor)), found(pairs.above(xn, floor, basis=basis))
    assert set(dense) == reference(xn, floor)
    assert set(pruned) == set(dense)
    for key, value in pruned.items():
        assert value == pytest.approx(dense[key], abs=1e-5)
    small = found(pairs.above(xn, floor, basis=basis, block_elements=500))
    assert set(small) == set(dense)


@pytest.mark.parametrize("floor", [0.6, 0.9])
def test_pruned_rows_against_all(pruning, floor):
    xn = clustered(seed=1)
    rows = torch.randperm(len(xn), generator=torch.Generator().manual_seed(2))[:150].sort().values
    basis = pairs.fit_basis(xn)
    want = reference(xn, floor, rows)
    assert set(found(pairs.above(xn, floor, rows))) == want
    assert set(found(pairs.above(xn, floor, rows, basis))) == want
    assert set(found(pairs.above(xn, floor, rows, basis, block_elements=500))) == want


def test_far_groups_are_never_multiplied(pruning, monkeypatch):
    """The plan's skipped groups hold no pair above the floor, and their products are not
    computed: fewer multiply-adds than the upper triangle."""
    xn = clustered(n=1200, clusters=12, seed=3)
    done = []
    matmul = torch.matmul
    monkeypatch.setattr(
        torch, "matmul", lambda a, b: done.append(a.shape[0] * b.shape[1]) or matmul(a, b)
    )
    pruned = found(pairs.above(xn, 0.9, basis=pairs.fit_basis(xn)))
    monkeypatch.setattr(torch, "matmul", matmul)
    assert set(pruned) == reference(xn, 0.9)
    assert sum(done) < 0.5 * len(xn) ** 2 / 2


@pytest.mark.parametrize("tau", [-0.5, 0.0, 0.5, 0.8, 0.9, 0.95, 1.0])
def test_pruned_components_match_networkx(pruning, tau):
    x = video_tokens(frames=3, dim=32, seed=5).reshape(-1, 32)
    xn = scc.unit_rows(x)
    if tau >= 0.9:  # the plan skips groups here (else the test proves nothing)
        assert pairs._plan(xn, tau, None, pairs.fit_basis(xn)) is not None
    sim = scc._similarity(xn, xn).numpy()
    assert partition(semantic_components(x, tau)) == networkx_partition(sim, tau)


def test_zero_rows_and_ties(pruning):
    """Zero rows (similarity 0 to all) and exact duplicates (similarity 1) at the floor."""
    xn = clustered(n=200, seed=4)
    xn[::7] = 0
    xn[1::9] = xn[2]
    basis = pairs.fit_basis(xn)
    for floor in (-0.1, 0.0, 0.999, 1.0):
        assert set(found(pairs.above(xn, floor, basis=basis))) == reference(xn, floor)


@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_nearest_is_the_dense_nearest(pruning, seed):
    """Each row's most similar final row skipping the finals beyond its group's candidates is
    the dense argmax. (Exact duplicates are left out: two equal columns of one matmul may differ
    in the last bit with the blocking, so a tie between them is a float tie.)"""
    xn = clustered(n=1500, clusters=10, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    anchors = torch.randperm(len(xn), generator=gen)[:60]
    labels = (xn @ xn[anchors].T).argmax(dim=1)  # local groups, as components are
    finals = scc.segment_mean(xn, labels, 60)
    yn = scc.unit_rows(finals)
    basis = pairs.fit_basis(xn)
    found = pairs.nearest(xn, yn, labels, basis)
    assert found is not None  # the plan skips finals here (else the test proves nothing)
    assert torch.equal(found, scc.nearest(xn, finals, unit=True)[1])
    small = pairs.nearest(xn, yn, labels, basis, block_elements=300)
    assert torch.equal(small, found)
