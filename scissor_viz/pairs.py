"""The pairs of rows whose cosine similarity is above a floor, without every product.

SCC's temporal step needs, of M spatial means, only the pairs above tau, and at the taus that
keep 5 to 35 % of a video (0.93 to 0.98) those are few: two rows that are far apart in a few
directions cannot be close. For unit rows a and b,

    a . b > t   implies   |a - b|^2 = 2 - 2 a . b < 2 (1 - t),

and for any V with orthonormal columns |aV - bV| <= |a - b|. So the rows are put in groups by
their coordinates in V (:class:`Basis`: the rows' top principal directions and group centres
there), each group gets its bounding box in those coordinates, and two groups whose boxes are
farther apart than sqrt(2 (1 - t)) hold no pair above t: their products are never computed.
The products that are computed are row-block matmuls like the dense ones, so the pairs found are
those above the floor (up to float ties at it, as between any two blockings of the same matmul).
Where the boxes rule out too little (features that all look alike, low floors), the blocks are
the dense ones: the upper triangle, row block by row block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

PRUNE_MIN = 2048  # fewer rows: dense blocks (their products cost less than grouping them)
PRUNE_SHARE = 0.6  # groups whose products would cost more than this share of the dense: dense
AXES = 16  # coordinates the bound is taken in
GROUP_ROWS = 192  # rows per group, about (smaller groups: tighter boxes, more small matmuls)
LLOYD_STEPS = 8  # k-means steps that place the group centres
# a . b > t implies |a - b|^2 < 2 (1 - t) in exact arithmetic; the float32 matmul's a . b may be
# off by up to about d x 2^-24 (5e-5 at d = 896), so the squared radius is widened by far more
SLACK = 1e-3

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (E,) i, (E,) j, (E,) similarity


@dataclass
class Basis:
    """Coordinates that bound distances from below, and the centres of the rows' groups there."""

    axes: torch.Tensor  # (d, AXES) orthonormal columns
    centres: torch.Tensor  # (C, AXES)
    # whether the last plan for all pairs skipped enough (None: none made yet); where it did not,
    # a caller may stop grouping these rows' kin (features that all look alike stay so)
    helped: bool | None = None

    def groups(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's group (nearest centre), and each group's box: (n,), (C, AXES) x 2."""
        coords = xn @ self.axes
        group = torch.cdist(coords, self.centres).argmin(dim=1)
        index, shape = group[:, None].expand_as(coords), self.centres.shape
        lo = coords.new_full(shape, math.inf).scatter_reduce_(0, index, coords, "amin")
        hi = coords.new_full(shape, -math.inf).scatter_reduce_(0, index, coords, "amax")
        return group, lo, hi


def fit_basis(xn: torch.Tensor, seed: int = 0) -> Basis:
    """The top ``AXES`` principal directions of the unit rows ``xn`` (a seeded randomized range
    finder: two power steps), and ``n / GROUP_ROWS`` group centres placed there by k-means
    started from rows spread along the first direction (deterministic)."""
    n, dim = xn.shape
    width = min(AXES, dim)
    gen = torch.Generator().manual_seed(seed)
    probe = torch.randn(dim, width + 8, generator=gen).to(xn.device)
    span = torch.linalg.qr(xn @ probe).Q
    for _ in range(2):
        span = torch.linalg.qr(xn @ (xn.T @ span)).Q
    axes = torch.linalg.svd(span.T @ xn, full_matrices=False).Vh[:width].T
    axes = torch.linalg.qr(axes).Q  # orthonormal to rounding, whatever the SVD left
    coords = xn @ axes
    count = max(1, min(n, round(n / GROUP_ROWS)))
    spread = coords[:, 0].argsort()[torch.linspace(0, n - 1, count).long().to(xn.device)]
    centres = coords[spread]
    for _ in range(LLOYD_STEPS):
        group = torch.cdist(coords, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, group, coords)
        sizes = torch.bincount(group, minlength=count)
        centres = torch.where(sizes[:, None] > 0, sums / sizes.clamp(min=1)[:, None], centres)
    return Basis(axes, centres)


def above(
    xn: torch.Tensor,
    floor: float,
    rows: torch.Tensor | None = None,
    basis: Basis | None = None,
    block_elements: int = 1 << 23,
) -> Iterator[Pairs]:
    """The pairs (i, j) of unit rows ``xn`` (n x d) whose similarity (float32 matmul, clamped to
    [-1, 1]) is above ``floor``, with it, in blocks of at most ``block_elements`` products: every
    pair i < j (``rows`` None), or those with i in ``rows`` (increasing) and j any other row,
    each pair once (if j is in ``rows`` too, i < j). With a ``basis``, groups of rows whose boxes
    are too far apart are skipped where that saves more than ``1 - PRUNE_SHARE`` of the work."""
    n = len(xn)
    plan = _plan(xn, floor, rows, basis) if basis is not None and n >= PRUNE_MIN else None
    order = None
    if plan is not None:
        order, _, _ = plan
        xn = xn[order]
    products = lambda src, lo, hi: torch.matmul(xn[src], xn[lo:hi].mT).clamp_(-1.0, 1.0)  # noqa: E731
    blocks = _blocks(products, n, floor, rows, plan, block_elements)
    mine = None
    if rows is not None and order is not None:
        mine = torch.zeros(n, dtype=torch.bool, device=xn.device)
        mine[rows] = True
    for i, j, sim in blocks:
        if order is not None:  # back to the rows' own numbering, a pair of two rows as i < j
            i, j = order[i], order[j]
            swap = j < i if mine is None else mine[j] & (j < i)
            i, j = torch.where(swap, j, i), torch.where(swap, i, j)
        yield i, j, sim


def above_in(
    similarity: torch.Tensor,
    floor: float,
    rows: torch.Tensor | None = None,
    block_elements: int = 1 << 23,
) -> Iterator[Pairs]:
    """:func:`above` read from a similarity matrix already computed (n x n, symmetric)."""
    products = lambda src, lo, hi: similarity[src, lo:hi]  # noqa: E731
    return _blocks(products, len(similarity), floor, rows, None, block_elements)


def _blocks(
    products,
    n: int,
    floor: float,
    rows: torch.Tensor | None,
    plan: tuple[torch.Tensor, list[int], torch.Tensor] | None,
    block_elements: int = 1 << 23,
) -> Iterator[Pairs]:
    """The pairs above ``floor`` of :func:`above`, from ``products(src, lo, hi)`` (the
    similarities of rows ``src``, a slice or an index tensor, to rows lo..hi-1), in the order
    and groups of ``plan`` (None: one group, the rows as they are); indices in that order."""
    starts, near = [0, n], [[True]]  # one group: the dense blocks
    if plan is not None:
        _, starts, near = plan
        near = near.tolist()
    is_row = None
    if rows is not None:
        is_row = torch.zeros(n, dtype=torch.bool, device=rows.device)
        is_row[rows] = True
        if plan is not None:
            is_row = is_row[plan[0]]
    for a in range(len(starts) - 1):
        s, e = starts[a], starts[a + 1]
        if is_row is None:  # the upper triangle: groups from this one on, columns after rows
            runs = _runs([b for b in range(a, len(near)) if near[a][b]])
            own = None
        else:
            runs = _runs([b for b in range(len(near)) if near[a][b]])
            own = is_row[s:e].nonzero()[:, 0] + s
            if len(own) == 0:
                continue
        for b0, b1 in runs:
            c0, c1 = starts[b0], starts[b1 + 1]
            step = max(1, block_elements // (c1 - c0))
            count = e - s if own is None else len(own)
            for r0 in range(0, count, step):
                if own is None:
                    src = slice(s + r0, min(s + r0 + step, e))
                    lo = max(c0, src.start)
                    if lo >= c1:
                        continue
                else:
                    src = own[r0 : r0 + step]
                    lo = c0
                sim = products(src, lo, c1)
                r, c = (sim > floor).nonzero(as_tuple=True)
                i = r + src.start if own is None else src[r]
                j = c + lo
                keep = j > i if is_row is None else (j != i) & (~is_row[j] | (j > i))
                yield i[keep], j[keep], sim[r[keep], c[keep]]


def _runs(groups: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs (first, last) of increasing group numbers."""
    runs: list[tuple[int, int]] = []
    for g in groups:
        if runs and runs[-1][1] == g - 1:
            runs[-1] = (runs[-1][0], g)
        else:
            runs.append((g, g))
    return runs


def _plan(
    xn: torch.Tensor, floor: float, rows: torch.Tensor | None, basis: Basis
) -> tuple[torch.Tensor, list[int], torch.Tensor] | None:
    """The rows in group order, where each group starts, and which groups may hold a pair above
    ``floor``; None where that saves too little."""
    radius = math.sqrt(max(2.0 * (1.0 - floor), 0.0) + SLACK)
    if radius >= 2.0:  # every pair of unit rows is within 2
        return None
    group, lo, hi = basis.groups(xn)
    size = torch.bincount(group, minlength=len(lo))
    # groups ordered along the first axis, so that near groups tend to be neighbours (few runs);
    # empty groups dropped
    by = torch.where(size > 0, lo[:, 0] + hi[:, 0], math.inf).argsort()[: int((size > 0).sum())]
    rank = torch.full_like(size, -1)
    rank[by] = torch.arange(len(by), device=xn.device)
    group, lo, hi, size = rank[group], lo[by], hi[by], size[by].cpu().double()
    gap = (lo[None, :] - hi[:, None]).clamp(min=0) + (lo[:, None] - hi[None, :]).clamp(min=0)
    near = (gap.norm(dim=-1) <= radius).cpu()
    if rows is None:
        work = (torch.triu(near, 1) * size[:, None] * size[None, :]).sum() + (size**2).sum() / 2
        dense = len(xn) ** 2 / 2
    else:
        mine = torch.bincount(group[rows], minlength=len(by)).cpu().double()
        work = (near * mine[:, None] * size[None, :]).sum()
        dense = len(rows) * len(xn)
    skips = work <= PRUNE_SHARE * dense
    if rows is None:
        basis.helped = bool(skips)
    if not skips:
        return None
    order = group.argsort(stable=True)
    starts = [0, *torch.cumsum(size.long(), 0).tolist()]
    return order, starts, near


def nearest(
    xn: torch.Tensor,
    yn: torch.Tensor,
    candidate: torch.Tensor,
    basis: Basis,
    block_elements: int = 1 << 23,
) -> torch.Tensor | None:
    """For each unit row of ``xn`` (n x d), the row of ``yn`` (k x d) of highest similarity (ties
    to the lower index; two equal rows of ``yn`` may differ in the last bit of a matmul with its
    blocking), given a ``candidate`` row of ``yn`` for each (e.g. its own component's):
    no row farther than the candidate can win, so groups of ``yn`` whose boxes lie beyond every
    candidate of a group of ``xn`` are skipped. None where that saves too little."""
    n, k = len(xn), len(yn)
    if n < PRUNE_MIN:
        return None
    floor = torch.cat(  # each row's best reaches at least this (in blocks: no n x d scratch)
        [
            torch.linalg.vecdot(xn[r0 : r0 + 4096], yn[candidate[r0 : r0 + 4096]])
            for r0 in range(0, n, 4096)
        ]
    )
    row_group, row_lo, row_hi = basis.groups(xn)
    col_group, col_lo, col_hi = basis.groups(yn)
    groups = len(row_lo)
    lowest = floor.new_full((groups,), math.inf).scatter_reduce_(0, row_group, floor, "amin")
    radius = (2.0 * (1.0 - lowest)).clamp(min=0.0).add(SLACK).sqrt()
    gap = (col_lo[None, :] - row_hi[:, None]).clamp(min=0)
    gap += (row_lo[:, None] - col_hi[None, :]).clamp(min=0)
    near = gap.norm(dim=-1) <= radius[:, None]  # (row group, column group)
    rows_in = torch.bincount(row_group, minlength=groups).double()
    cols_in = torch.bincount(col_group, minlength=groups).double()
    if float(rows_in @ (near.double() @ cols_in)) > PRUNE_SHARE * n * k:
        return None
    best = torch.empty(n, dtype=torch.long, device=xn.device)
    order = row_group.argsort(stable=True)
    starts = [0, *torch.cumsum(rows_in.long(), 0).tolist()]
    for a in range(groups):
        rows = order[starts[a] : starts[a + 1]]
        if len(rows) == 0:
            continue
        cols = near[a][col_group].nonzero()[:, 0]  # increasing: the first maximum is the lowest
        step = max(1, block_elements // max(len(cols), 1))
        for r0 in range(0, len(rows), step):
            src = rows[r0 : r0 + step]
            sim = torch.matmul(xn[src], yn[cols].mT).clamp_(-1.0, 1.0)
            best[src] = cols[sim.argmax(dim=1)]
    return best
