"""Semantic Connected Components (LLaVA-Scissor, Sun et al. 2025), on plain tensors.

Two-line API::

    comp = scissor_compress(tokens, tau=0.9)   # tokens: (frames, tokens_per_frame, d)
    comp = scissor_compress(tokens, tau_for_retention(tokens, 0.35))

A token set's *semantic components* are the connected components of the graph that joins two
tokens when their cosine similarity is above ``tau``. LLaVA-Scissor finds them within each frame
(spatial step), then among all frames' component means (temporal step), then assigns every
original token to its most similar surviving token and averages it in (merge step).

Similarities are computed in float32 and clamped to [-1, 1]; the graph on ``n`` tokens is
defined by the upper triangle of the similarity matrix, computed in row blocks, so no dense
all-token matrix is ever held, and blocks of rows that a bound shows are far apart are not
computed at all (:mod:`scissor_viz.pairs`: the pairs found are the same). Components are
exact up to ``EXACT_LIMIT`` tokens; above it the paper's epsilon-sampled approximation is
used, seeded so that runs repeat. They run on the tokens' device: scipy for CPU tensors,
torch label propagation (:func:`device_components`) elsewhere (``DEVICE_COMPONENTS`` forces
either).

How a call is made decides what is computed: :func:`scissor_compress` is one-shot (only the
floor's work, nothing kept; ``retention=`` searches and compresses in one call), while a kept
:class:`ScissorIndex` (:func:`scissor_index`, ``reuse=True``, :func:`tau_for_retention`)
caches what many taus on one video share. ``Compression.representatives`` names the original
token each kept token is ordered by.
"""

from __future__ import annotations

import math
import numbers
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from scissor_viz import pairs

T = TypeVar("T")

EXACT_LIMIT = 16_384  # token sets up to this size get exact components, whatever epsilon says
GRAM_LIMIT = 4_096  # up to this many tokens ScissorIndex keeps their Gram matrix (64 MiB)
# A one-shot search for a retention from this one on <= GRAM_LIMIT tokens reads their Gram
# matrix (N^2 d / 2 once; then every tau and the merge step cost O(N^2) at most). Below it the
# plain evaluations with far pairs skipped (scissor_viz.pairs) and a band cost less: measured
# on a 2-core CPU at 16 frames, the Gram path took 1.3-2x as long from 10 % to 50 % retention,
# about as long at 60 %, and won only from 70 % on model features (1.5x at 80 %).
ONE_SHOT_GRAM = 0.6
SEARCH_LIMIT = 1 << 26  # region dot products a retention search may hold (256 MiB float32)
BRACKET_START = 3  # a retention search first tries the regions of a spatial count 3 x target
# A search's plain evaluation aims this share of the way from the target's K to N (see _Band):
# its interpolation from below tends to undershoot, and one that lands above makes the band;
# about 1.5 x the target at 10 % retention, 1.1 x at 35 % (a plain evaluation costs M^2 d, and
# each tau in the band the products of the regions merged below it; 0.06 beat 0.12, 0.03 and
# 0.015 on 16 and 64 frames of both feature sets of bench_patch, at 10 and 35 %)
BAND_AIM = 0.06
RECENT_STEPS = 16  # the taus whose steps an index keeps for a later compress
BLOCK_ELEMENTS = 1 << 23  # similarity entries per block (32 MiB of float32)
TAU_FLOOR = float(np.nextafter(np.float32(-1), np.float32(-2)))  # below every similarity: K = 1
TAU_RESOLUTION = 2e-6  # tau search stops here: float32 similarities of d-dim tokens differ by
# about this much between devices and matmul kernels, so finer tau are not reproducible


@dataclass(frozen=True)
class Compression:
    """The result of :func:`scissor_compress` on a (frames, tokens_per_frame, d) tensor."""

    tokens: torch.Tensor  # (K, d) compressed sequence, in order, input dtype
    spatial_labels: torch.Tensor  # (frames, tokens_per_frame) component within its frame
    temporal_labels: torch.Tensor  # (frames, tokens_per_frame) final token of its component
    assignment: torch.Tensor  # (frames, tokens_per_frame) final token the merge step assigns
    tau: float
    retention_reached: float  # K / (frames * tokens_per_frame)
    exact: bool  # False when the temporal step used the epsilon-sampled approximation
    representatives: torch.Tensor  # (K,) flat index (frame * P + i) of each token's representative

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]

    @property
    def spatial_counts(self) -> torch.Tensor:
        """Number of spatial components (tokens after the spatial step) in each frame."""
        return self.spatial_labels.amax(dim=1) + 1


# ----------------------------------------------------------------------------- checks


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_tau(tau: float) -> float:
    """The similarity threshold as a float32-exact float, or a ValueError unless it is finite."""
    if isinstance(tau, torch.Tensor) and tau.numel() == 1:
        tau = tau.item()
    if not _is_real(tau):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    return float(np.float32(tau))  # similarities are float32; compare against the same number


def check_epsilon(epsilon: float) -> float:
    """The sampling tolerance as a float, or a ValueError unless it is in [0, 1)."""
    if not _is_real(epsilon) or not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
    return float(epsilon)


def check_seed(seed: int) -> int:
    """The sampling seed as an int, or a ValueError unless it is a whole number in [0, 2**63)."""
    if not _is_real(seed) or not float(seed).is_integer() or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    return int(seed)


def check_retention(retention: float) -> float:
    """The retention as a float, or a ValueError unless it is a ratio in (0, 1]."""
    if not _is_real(retention) or not 0 < retention <= 1:
        raise ValueError(f"retention must be a ratio in (0, 1], got {retention!r}")
    return float(retention)


def _check_tokens(x: torch.Tensor, rank: int, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{what} must have {rank} dimensions, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {x.dtype}")
    # one pass where all is well (a NaN or an infinity makes the sum NaN or infinite); a sum
    # that overflowed from finite values is told apart by the full check
    if not torch.isfinite(x.sum(dtype=torch.float32)) and not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinite values")


# ----------------------------------------------------------------------------- graph pieces

# Connected components: scipy on the CPU (measured faster there), torch label propagation
# where the tensors are (an accelerator). None: by device; True / False force either path.
DEVICE_COMPONENTS: bool | None = None


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """x in float32 with every row (last dimension) scaled to length 1 (zero rows stay zero)."""
    return F.normalize(x.float(), dim=-1)


def _similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of L2-normalised rows (batched or not), float32, clamped to [-1, 1]."""
    return torch.matmul(a, b.mT).clamp_(-1.0, 1.0)


def components(n: int, i: np.ndarray, j: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the undirected graph on n nodes with edges (i, j)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)


def device_components(n: int, i: torch.Tensor, j: torch.Tensor) -> tuple[int, torch.Tensor]:
    """:func:`components` in torch, on the edges' device: each round hooks every edge's larger
    root under its smaller one, then pointer jumping flattens the forest (log2 n gathers); one
    host check per round, not per step. Labels 0..num-1 in the order of each component's root."""
    parent = torch.arange(n, device=i.device)
    jumps = max(1, math.ceil(math.log2(max(n, 2))))
    while len(i):
        pi, pj = parent[i], parent[j]  # roots: the forest is flat between rounds
        if bool((pi == pj).all()):
            break
        parent.scatter_reduce_(0, torch.maximum(pi, pj), torch.minimum(pi, pj), reduce="amin")
        for _ in range(jumps):  # parent[x] <= x always, so no cycle can form
            parent = parent[parent]
    roots, labels = torch.unique(parent, return_inverse=True)
    return len(roots), labels


def _components(n: int, i: torch.Tensor, j: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Components of edges given as tensors, labels as a tensor on their device."""
    on_device = i.device.type != "cpu" if DEVICE_COMPONENTS is None else DEVICE_COMPONENTS
    if on_device:
        return device_components(n, i, j)
    num, labels = components(n, i.cpu().numpy(), j.cpu().numpy())
    return num, torch.from_numpy(labels.astype(np.int64)).to(i.device)


def _order_labels(
    labels: torch.Tensor, num: int, degree: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Renumber components by the index of their representative: the member of highest
    degree, ties to the lowest index (the order of the paper's code). Returns the new labels
    and the (num,) representatives in that order (increasing)."""
    n = len(labels)
    index = torch.arange(n, device=labels.device)
    key = degree.long() * n + (n - 1 - index)
    best = torch.full((num,), -1, dtype=torch.long, device=labels.device)
    best.scatter_reduce_(0, labels, key, reduce="amax")
    member = (n - 1) - best % n
    order = torch.argsort(member)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num, device=labels.device)
    return rank[labels], member[order]


# pairs of nodes above a floor, for a floor and the nodes whose rows are read (None: all)
PairSource = Callable[[float, torch.Tensor | None], Iterable[pairs.Pairs]]


def _graph_labels(
    n: int, tau: float, blocks: Iterable[pairs.Pairs], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Component of each of n nodes in the graph "similarity > tau", and each node's degree,
    from ``blocks`` of node pairs (each pair once) with their similarity (at least every pair
    above tau): each block's edges are merged into the running labels, so memory is bounded by
    one block whatever the number of edges."""
    labels, num = torch.arange(n, device=device), n
    degree = torch.ones(n, dtype=torch.long, device=device)  # the diagonal is always in the graph
    for i, j, sim in blocks:
        above = sim > tau
        i, j = i[above], j[above]
        if len(i) == 0:
            continue
        degree += torch.bincount(i, minlength=n) + torch.bincount(j, minlength=n)
        num, merged = _components(num, labels[i], labels[j])
        labels = merged[labels]
    return labels, degree


def _sample_rows(n: int, epsilon: float, seed: int, device: torch.device) -> torch.Tensor | None:
    """The paper's sample of k = ceil(ln n / eps^2) nodes, or None where components are exact."""
    if n <= EXACT_LIMIT or epsilon == 0:
        return None
    k = math.ceil(math.log(n) / epsilon**2)
    if k >= n:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:k].sort().values.to(device)


def _ordered_components(
    n: int, tau: float, pairs_of: PairSource, epsilon: float, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Ordered component ids of n nodes, each component's representative node (increasing),
    and whether they are exact (with sampled nodes, only the edges of their rows are read)."""
    rows = _sample_rows(n, epsilon, seed, device)
    labels, degree = _graph_labels(n, tau, pairs_of(tau, rows), device)
    ordered, reps = _order_labels(labels, int(labels.max()) + 1, degree)
    return ordered, reps, rows is None


def unit_pairs(xn: torch.Tensor, basis: pairs.Basis | None = None) -> PairSource:
    """The pairs of the unit rows ``xn`` above a floor (:func:`pairs.above`, in blocks of
    ``BLOCK_ELEMENTS``), skipping groups of rows that ``basis`` shows are far apart."""
    return lambda floor, rows: pairs.above(xn, floor, rows, basis, BLOCK_ELEMENTS)


def semantic_components(
    x: torch.Tensor, tau: float, epsilon: float = 0.05, seed: int = 0
) -> torch.Tensor:
    """Component id (0..K-1) of each row of ``x`` (n x d) in the graph "cosine similarity > tau".

    Ids follow each component's representative (highest degree, ties to the lower index).
    Exact for n <= EXACT_LIMIT or epsilon == 0; otherwise only the edges of
    ceil(ln n / epsilon^2) sampled nodes (seeded) are used and unreached nodes stay alone.
    """
    _check_tokens(x, 2, "x")
    tau, epsilon = check_tau(tau), check_epsilon(epsilon)
    xn = unit_rows(x)
    pairs_of = unit_pairs(xn, pairs.fit_basis(xn) if len(xn) >= pairs.PRUNE_MIN else None)
    return _ordered_components(len(x), tau, pairs_of, epsilon, seed, x.device)[0]


def merge_forest(similarity: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's maximum spanning tree: (P-1, 2) token pairs and their similarities, strongest
    first. At any tau the components of "similarity > tau" are those of the tree's edges above
    tau, so this one tree gives the spatial step's regions at every tau exactly."""
    if isinstance(similarity, torch.Tensor):
        similarity = similarity.cpu().numpy()
    sim = np.asarray(similarity, dtype=np.float32)
    weight = 2.0 - sim.astype(np.float64)  # > 0 for every pair; 0 means "no edge" to scipy
    weight[~np.isfinite(weight)] = 0
    np.fill_diagonal(weight, 0)
    tree = minimum_spanning_tree(weight).tocoo()
    heights = sim[tree.row, tree.col]
    order = np.argsort(-heights, kind="stable")
    return np.stack([tree.row, tree.col], axis=1)[order].astype(np.int64), heights[order]


def _spanning_forest(frame_similarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's maximum spanning tree by Prim's algorithm on all frames at once (P - 1
    vector steps, in numpy: steps this small cost more as torch ops on a busy thread pool; the
    diagonal is ignored): (T, P-1, 2) token pairs and (T, P-1) similarities, in the order
    added, on the input's device. At any tau the components of "similarity > tau" are those of
    the tree edges above tau (single linkage), so one tree gives the spatial step at every tau."""
    sim = frame_similarity.detach().float().cpu().numpy()
    frames, per_frame, _ = sim.shape
    rows = np.arange(frames)
    link = sim[:, 0].copy()  # each token's strongest edge into the tree (token 0 first)
    source = np.zeros((frames, per_frame), dtype=np.int64)
    done = np.zeros((frames, per_frame), dtype=bool)
    done[:, 0] = True
    edges = np.empty((frames, max(per_frame - 1, 0), 2), dtype=np.int64)
    heights = np.empty((frames, max(per_frame - 1, 0)), dtype=np.float32)
    for k in range(per_frame - 1):
        v = np.where(done, -np.inf, link).argmax(axis=1)
        heights[:, k] = link[rows, v]
        edges[:, k, 0], edges[:, k, 1] = source[rows, v], v
        done[rows, v] = True
        new = sim[rows, v]
        closer = new > link
        link = np.where(closer, new, link)
        source = np.where(closer, v[:, None], source)
    device = frame_similarity.device
    return torch.from_numpy(edges).to(device), torch.from_numpy(heights).to(device)


def spatial_merge_heights(frame_similarity: torch.Tensor | np.ndarray) -> np.ndarray:
    """(T, P-1) similarities of each frame's maximum-spanning-tree edges, descending: the taus
    at which the spatial step joins two regions (single linkage)."""
    _, heights = _spanning_forest(torch.as_tensor(frame_similarity, dtype=torch.float32))
    return heights.sort(dim=1, descending=True).values.cpu().numpy()


def video_labels(frame_labels: torch.Tensor) -> torch.Tensor:
    """(frames, P) ids numbered within each frame -> (frames * P,) ids numbered across the video
    (frame f's ids follow the ids of frames 0..f-1)."""
    counts = frame_labels.amax(dim=1) + 1  # (frames,)
    return (frame_labels + (torch.cumsum(counts, 0) - counts)[:, None]).flatten()


def segment_mean(
    x: torch.Tensor, labels: torch.Tensor, num: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of the rows of x (float32) that share each label 0..num-1 (into ``out`` if given)."""
    if out is None:
        out = torch.empty(num, x.shape[1], dtype=torch.float32, device=x.device)
    out.zero_().index_add_(0, labels, x.float())
    return out.div_(torch.bincount(labels, minlength=num).clamp_(min=1)[:, None])


def symmetric_gram(x: torch.Tensor, blocks: int = 8) -> torch.Tensor:
    """x @ x.T (x: n x d, float32) from the blocks on and above the diagonal, mirrored below:
    about (1 + 1/blocks) / 2 of the multiply-adds of the full product."""
    n = len(x)
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    step = max(256, -(-n // blocks))
    for r0 in range(0, n, step):
        block = x[r0 : r0 + step] @ x[r0:].T
        out[r0 : r0 + step, r0:] = block
        out[r0 + step :, r0 : r0 + step] = block[:, step:].T
    return out


def nearest(
    x: torch.Tensor, y: torch.Tensor, exclude_self: bool = False, unit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``x`` (..., d), the highest cosine similarity to a row of ``y`` (k, d)
    and that row's index (ties to the lower index), in row blocks of ``BLOCK_ELEMENTS``. With
    ``exclude_self`` (x and y the same set) a row never matches itself; a single row then gets
    similarity -1 and index 0. A zero row has similarity 0 to everything: index 0. With
    ``unit`` the rows of x are already :func:`unit_rows`."""
    x = x.reshape(-1, x.shape[-1])
    yn = unit_rows(y.reshape(-1, y.shape[-1]))
    n, k = len(x), len(yn)
    best = torch.empty(n, device=x.device)
    index = torch.empty(n, dtype=torch.long, device=x.device)
    step = max(1, BLOCK_ELEMENTS // max(k, 1))
    for r0 in range(0, n, step):  # x normalised block by block: no float32 copy of all of x
        sim = _similarity(x[r0 : r0 + step] if unit else unit_rows(x[r0 : r0 + step]), yn)
        if exclude_self:
            rows = torch.arange(len(sim), device=sim.device)
            sim[rows, rows + r0] = -2.0
        best[r0 : r0 + step], index[r0 : r0 + step] = sim.max(dim=1)
    if exclude_self and k == 1:
        best.fill_(-1.0)
    return best.clamp_(min=-1.0), index


def merge_step(finals: torch.Tensor, x: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """LLaVA-Scissor's merge step: each final token (K, d) becomes (itself + the rows of x
    (N, d) assigned to it) / (1 + their number), in float32."""
    merged = finals.float().clone().index_add_(0, assignment, x.float())
    return merged.div_((1 + torch.bincount(assignment, minlength=len(finals)))[:, None])


# ----------------------------------------------------------------------------- the index


@dataclass
class _Steps:
    """What the spatial and temporal steps leave for the merge step."""

    spatial: torch.Tensor  # (frames, P) component within the frame
    regions: torch.Tensor  # (N,) spatial component of each token, numbered across the video
    region_reps: torch.Tensor  # (M,) flat index of each spatial component's representative
    reps: torch.Tensor | None  # (M, d) spatial representatives, float32 (None: not needed yet)
    temporal: torch.Tensor  # (M,) final token of each spatial representative
    final_reps: torch.Tensor  # (K,) spatial component each final token is ordered by
    gram: bool  # whether the steps read the token Gram matrix (so does the merge step)
    exact: bool


@dataclass
class _Regions:
    """Dot products of the token sums of the spatial regions at ``tau``; the regions at any
    lower tau are unions of these, so their similarities follow without touching d."""

    tau: float
    reps: torch.Tensor  # (M,) flat index of each region's representative token
    gram: torch.Tensor  # (M, M)
    work: torch.Tensor | None = None  # (2, M * M) scratch of the evaluations during a search


@dataclass
class _Pairs:
    """Token pairs i < j whose cosine is above ``floor``, sorted by cosine (descending)."""

    floor: float
    ij: torch.Tensor  # (2, E) int32
    cos: torch.Tensor  # (E,)


def _sparse(index: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A sparse (COO) matrix with ``values`` at ``index`` (2, nnz), for torch.sparse.mm."""
    return torch.sparse_coo_tensor(index, values, shape, check_invariants=False)


@dataclass
class _Band:
    """The pairs of spatial regions at ``tau`` whose similarity is above ``floor``, kept by a
    plain evaluation at ``tau``: at any tau' in (floor, tau) the regions are unions of these,
    and a region that is one of them has the same mean, so only the merged regions need new
    similarities (a few rows) and the rest of the graph is these pairs above tau'. A band
    evaluation at tau' may hand on a band from its own regions (``ScissorIndex._band_steps``):
    its unit rows are the parts of the band it came from plus one part for the merged regions."""

    tau: float
    floor: float
    reps: torch.Tensor  # (M,) flat index of each region's representative token
    units: list[torch.Tensor]  # unit rows of region means, in parts: (R_1, d), (R_2, d), ...
    row: torch.Tensor  # (M,) each region's row in the parts, concatenated
    i: torch.Tensor  # (E,) int32 pairs i < j of regions ...
    j: torch.Tensor
    sim: torch.Tensor  # (E,) ... and their similarity (> floor)


class _BandRecorder:
    """A plain evaluation's pair source that reads every pair above ``floor`` (not only above
    the evaluation's tau, which the graph keeps) and keeps them, at most ``limit`` (else none)."""

    def __init__(self, pairs_of: PairSource, floor: float, limit: int):
        self.pairs_of, self.floor, self.limit = pairs_of, floor, limit
        self.parts: list[pairs.Pairs] | None = []
        self.held = 0

    def __call__(self, tau: float, rows: torch.Tensor | None) -> Iterable[pairs.Pairs]:
        for i, j, sim in self.pairs_of(min(self.floor, tau), rows):
            if self.parts is not None:
                self.held += len(i)
                if self.held > self.limit:
                    self.parts = None  # too many: the band is not kept
                else:
                    self.parts.append((torch.minimum(i, j).int(), torch.maximum(i, j).int(), sim))
            yield i, j, sim

    def band(self, tau: float, reps: torch.Tensor, unit: torch.Tensor) -> _Band | None:
        if self.parts is None:
            return None
        none = reps.new_empty(0, dtype=torch.int32)
        i, j, sim = zip((none, none, none.float()), *self.parts, strict=True)
        row = torch.arange(len(unit), device=unit.device)
        return _Band(tau, self.floor, reps, [unit], row, torch.cat(i), torch.cat(j), torch.cat(sim))


def _merged_pairs(
    band: _Band,
    coarse: torch.Tensor,
    alone: torch.Tensor,
    merged: torch.Tensor,
    fresh: torch.Tensor,
    floor: float,
) -> Iterable[pairs.Pairs]:
    """The pairs above ``floor`` of the regions at a tau inside ``band`` that involve a merged
    region (``merged``, with unit means ``fresh``), each once: their rows against the band's
    unit rows (a column counts where its band region is a whole region, ``alone``; ``coarse``
    maps it to its region), then against each other (i < j)."""
    column = torch.full((sum(map(len, band.units)),), -1, dtype=torch.long, device=merged.device)
    column[band.row[alone]] = coarse[alone]  # unit row -> the whole region it stands for
    step = max(1, BLOCK_ELEMENTS // max(len(column), len(merged)))
    for r0 in range(0, len(merged), step):
        rows = fresh[r0 : r0 + step]
        sim = torch.cat([rows @ part.mT for part in band.units], dim=1).clamp_(-1.0, 1.0)
        r, c = (sim > floor).nonzero(as_tuple=True)
        region = column[c]
        ok = region >= 0
        yield merged[r0 + r[ok]], region[ok], sim[r[ok], c[ok]]
        sim = (rows @ fresh[r0:].mT).clamp_(-1.0, 1.0)  # merged against merged, i < j
        r, c = (sim > floor).nonzero(as_tuple=True)
        ok = c > r
        yield merged[r0 + r[ok]], merged[r0 + c[ok]], sim[r[ok], c[ok]]


class ScissorIndex:
    """LLaVA-Scissor on one video's tokens, with everything that does not depend on tau cached.

    Caches each frame's token similarities (frames x P x P), so the spatial step at any tau is
    a threshold; every (tau -> K) already evaluated, so a search for a new retention starts
    from a tight bracket; and, for up to ``GRAM_LIMIT`` tokens, the Gram matrix of all tokens,
    built the first time a tau leaves so many spatial representatives that the temporal and
    merge similarities are cheaper from it. On it a tau costs little: a region of one token
    has that token's similarities (its pairs above tau are a prefix of the token pairs kept
    sorted above a floor), so only the merged regions need products, their rows against every
    region as two sparse sums over the Gram matrix (O(tokens in them x N), not O(M^2 d));
    the merge step is one sparse product (O(N^2)). With the Gram matrix the spatial step reads
    each frame's spanning tree and its sorted rows (no P x P pass per tau).
    ``gram=True/False`` forces either path (both give the same partitions up to float ties).

    Without the token Gram matrix (``gram=False``, or above ``GRAM_LIMIT`` tokens) the
    temporal step reads only the pairs of spatial means above tau (:mod:`scissor_viz.pairs`):
    from ``pairs.PRUNE_MIN`` means on, groups of means that lie far apart in a few principal
    directions are never multiplied (a basis fitted once per index; dropped for the index if it
    skips too little), and the merge step skips the final tokens that lie beyond each group of
    tokens' own. A retention search brackets K from the spatial step's counts at every tau
    (each frame's maximum spanning tree: K <= spatial count). A kept index, where they fit
    ``SEARCH_LIMIT``, computes the dot products of the regions at the tau of BRACKET_START x
    the target's spatial count and evaluates every lower tau from them (O(M^2) per tau, in one
    scratch freed after the search); a one-shot index (``once=True``) builds nothing only later
    searches would reuse (no token Gram matrix unless ``gram=True``), and starts from a plain
    evaluation at the target's spatial count. A
    tau above is a plain evaluation aimed above the target, which keeps its region pairs above
    the bracket's lower end (a band, at most ``SEARCH_LIMIT / 3`` pairs): every tau between the
    two is then counted from those pairs and the regions that merged (their rows against every
    region), and such an evaluation hands on a narrower band where the search goes on below it,
    so each later tau multiplies only the few regions merged since. It interpolates K in the
    spatial count and damps an end that stays put (Illinois rule), so it needs few evaluations.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        epsilon: float = 0.05,
        seed: int = 0,
        gram: bool | None = None,
        once: bool = False,
    ):
        _check_tokens(tokens, 3, "tokens")
        self.once = once
        self.tokens = tokens
        self.epsilon = check_epsilon(epsilon)
        self.seed = check_seed(seed)
        frames, per_frame, _ = tokens.shape
        self.num_total = frames * per_frame
        self.flat = tokens.reshape(self.num_total, -1).float()  # a view when already float32
        sim = torch.empty(frames, per_frame, per_frame, device=tokens.device)
        step = max(1, BLOCK_ELEMENTS // (per_frame * per_frame))
        for f0 in range(0, frames, step):
            xn = unit_rows(tokens[f0 : f0 + step])
            sim[f0 : f0 + step] = _similarity(xn, xn)
        # the unit rows serve the merge step too where one block held them all
        self._unit = xn.reshape(self.num_total, -1) if frames <= step else None
        upper = sim.triu(1)  # the graph is the upper triangle; mirror it for degrees
        self.frame_similarity = upper + upper.mT
        self.frame_similarity.diagonal(dim1=1, dim2=2).fill_(-math.inf)
        self._gram_mode = False if once and gram is None else gram  # once: no Gram unless asked
        self._gram: torch.Tensor | None = None
        self._pairs: _Pairs | None = None  # token pairs above a floor, from the Gram matrix
        self._regions: _Regions | None = None  # the search's region dot products
        self._band: _Band | None = None  # the search's region pairs near its tau
        self._nested: _Band | None = None  # the band the latest band evaluation could hand on
        self._recent: dict[float, _Steps] = {}  # the latest taus' steps, for compress
        self._counts: dict[float, int] = {}
        self._lock = threading.RLock()  # the workspace is shared by every call on this index
        self._heights: np.ndarray | None = None
        self._ascending: np.ndarray | None = None  # every frame's merge heights, sorted
        self._forest: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sorted: torch.Tensor | None = None  # (N, P) each token's frame row, ascending
        self._basis: pairs.Basis | None = None  # where region means lie: rules out far pairs

    # --- the Gram matrix, built the first time a step is cheaper with it

    def _use_gram(self, num_reps: int) -> bool:
        """Whether the temporal and merge steps read the Gram matrix (a function of tau only,
        through num_reps, so the same tau always takes the same path)."""
        if self._gram_mode is not None:
            return self._gram_mode
        # A matmul does M^2 d multiply-adds at full speed; the Gram path cost, when it made a
        # few memory-bound passes over N^2 entries per tau, about 64 N^2 multiply-adds (measured
        # on a 2-core CPU). It costs less per tau now; the rule stays, so that a tau's path
        # (and a float tie's outcome) is the one it always was.
        dim = self.flat.shape[1]
        return self.num_total <= GRAM_LIMIT and num_reps**2 * dim > 64 * self.num_total**2

    @property
    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = symmetric_gram(self.flat)
            # a video asked many taus: the spatial step from the forest and sorted rows too
            self._sorted = self.frame_similarity.flatten(0, 1).sort(dim=1).values
            self.forest  # noqa: B018
        return self._gram

    def _token_pairs(self, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The token pairs i < j whose cosine (from the Gram matrix) is above tau: (2, E)
        indices and (E,) cosines, from pairs kept above a floor <= tau, sorted by cosine
        (descending), so every tau above the floor is a prefix. A tau below the floor keeps the
        pairs above 2 tau - 1 (the floor's distance from 1 doubles: few rebuilds)."""
        if self._pairs is None or tau < self._pairs.floor:
            gram = self.gram
            floor = min(tau, 2 * tau - 1)
            norm = gram.diagonal().clamp(min=1e-24).rsqrt()
            n = len(gram)
            step = max(1, BLOCK_ELEMENTS // n)
            parts = [(gram.new_empty(2, 0, dtype=torch.long), gram.new_empty(0))]
            for r0 in range(0, n, step):
                block = gram[r0 : r0 + step, r0:] * norm[r0 : r0 + step, None]
                block = block.mul_(norm[None, r0:]).clamp_(-1.0, 1.0)
                r, c = (block > floor).triu_(1).nonzero(as_tuple=True)
                parts.append((torch.stack([r + r0, c + r0]), block[r, c]))
            ij, cos = (torch.cat(part, dim=-1) for part in zip(*parts, strict=True))
            cos, order = cos.sort(descending=True)
            self._pairs = _Pairs(floor, ij[:, order].int(), cos)
        pairs = self._pairs
        above = int(torch.searchsorted(-pairs.cos, -tau))  # cos > tau: a prefix
        return pairs.ij[:, :above].long(), pairs.cos[:above]

    def _gram_temporal(
        self, tau: float, regions: torch.Tensor, num: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The temporal step at tau from the token Gram matrix (exact, ordered): a region of one
        token has that token's similarities, so the pairs of such regions are the token pairs
        above tau (a cached prefix); only the regions of several tokens need new products, their
        rows against every region (two sparse sums over the Gram matrix, O(tokens in them x N)).
        A pair of two merged regions is read from the row of the lower one."""
        gram, device = self.gram, self.flat.device
        size = torch.bincount(regions, minlength=num)
        merged = (size > 1).nonzero()[:, 0]  # (R,) regions of several tokens
        local = torch.full((num,), -1, dtype=torch.long, device=device)
        local[merged] = torch.arange(len(merged), device=device)
        tokens = (size[regions] > 1).nonzero()[:, 0]
        n = self.num_total
        ones = torch.ones(len(tokens), device=device)
        pick = _sparse(torch.stack([local[regions[tokens]], tokens]), ones, (len(merged), n))
        sums = torch.sparse.mm(pick, gram)  # (R, N): merged region sums . each token
        spread = _sparse(
            torch.stack([regions, torch.arange(n, device=device)]),
            torch.ones(n, device=device),
            (num, n),
        )
        products = torch.sparse.mm(spread, sums.T).T  # (R, num): region sums . region sums
        square = torch.zeros(num, device=device)  # |region sum|^2
        single = size[regions] == 1
        square[regions[single]] = gram.diagonal()[single]
        square[merged] = products[torch.arange(len(merged), device=device), merged]
        norm = square.clamp(min=1e-24).rsqrt()
        cos = products.mul_(norm[merged, None]).mul_(norm[None, :]).clamp_(-1.0, 1.0)
        r, c = (cos > tau).nonzero(as_tuple=True)
        once = (local[c] < 0) | (c > merged[r])  # each pair once, not itself
        r, c = r[once], c[once]
        ij, _ = self._token_pairs(tau)
        a, b = regions[ij[0]], regions[ij[1]]
        alone = (size[a] == 1) & (size[b] == 1)
        i = torch.cat([merged[r], a[alone]])
        j = torch.cat([c, b[alone]])
        degree = 1 + torch.bincount(i, minlength=num) + torch.bincount(j, minlength=num)
        count, labels = _components(num, i, j)
        return _order_labels(labels, count, degree)

    def release(self) -> None:
        """Free the Gram matrix (N^2 float32), its sorted pairs, the search's products and the
        tokens' unit rows; a later tau that needs them builds them again. Counts, frame
        similarities and spanning forests stay."""
        with self._lock:
            self._gram, self._pairs, self._regions, self._sorted = None, None, None, None
            self._recent, self._unit = {}, None  # (the merge step normalises tokens again)
            self._band = None

    @property
    def nbytes(self) -> int:
        """Bytes this index holds beyond the tokens it was given."""
        held = [self.frame_similarity, self._gram, self._sorted, self._unit]
        held += list(self._forest or ())
        if self._pairs is not None:
            held += [self._pairs.ij, self._pairs.cos]
        if self._regions is not None:
            held += [self._regions.gram, self._regions.work]
        if self._band is not None:
            held += [*self._band.units, self._band.i, self._band.j, self._band.sim]
        if self.flat.untyped_storage().data_ptr() != self.tokens.untyped_storage().data_ptr():
            held.append(self.flat)  # a float32 copy of tokens in another dtype
        total = sum(t.untyped_storage().nbytes() for t in held if t is not None)
        arrays = (self._heights, self._ascending)
        return total + sum(a.nbytes for a in arrays if a is not None)

    @property
    def forest(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's maximum spanning tree (:func:`_spanning_forest`), computed once."""
        with self._lock:
            if self._forest is None:
                self._forest = _spanning_forest(self.frame_similarity)
            return self._forest

    def spatial_merge_heights(self) -> np.ndarray:
        """:func:`spatial_merge_heights` of this video's frames (computed once)."""
        with self._lock:
            if self._heights is None:
                self._heights = self.forest[1].sort(dim=1, descending=True).values.cpu().numpy()
            return self._heights

    # --- the two steps

    def spatial(self, tau: float) -> torch.Tensor:
        """Spatial step: (frames, P) component of each token within its frame."""
        return self._spatial(tau)[0]

    def _spatial(self, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial step, and each component's representative token (flat index), in the
        video's order of components."""
        frames, per_frame, _ = self.frame_similarity.shape
        if self._sorted is not None:  # degree = similarities above tau in each token's row
            above = torch.searchsorted(
                self._sorted, self._sorted.new_full((len(self._sorted), 1), tau), right=True
            )
            degree = (per_frame + 1) - above[:, 0]
        else:
            adjacency = self.frame_similarity > tau
            degree = adjacency.sum(-1).flatten() + 1
        if self._forest is not None:  # a search built it: its edges above tau suffice
            edges, heights = self._forest
            f, e = (heights > tau).nonzero(as_tuple=True)
            i, j = edges[f, e].unbind(-1)
        else:
            f, i, j = adjacency.nonzero(as_tuple=True)
            f, i, j = f[i < j], i[i < j], j[i < j]  # the upper triangle
        num, labels = _components(self.num_total, f * per_frame + i, f * per_frame + j)
        # Representatives are ordered by index, so each frame's ids are one contiguous run.
        ordered, reps = _order_labels(labels, num, degree)
        ordered = ordered.reshape(frames, per_frame)
        return ordered - ordered.amin(dim=1, keepdim=True), reps

    def _region_similarity(self, regions: torch.Tensor, num: int) -> torch.Tensor:
        """(num, num) cosine similarity of the spatial representatives ``regions`` defines,
        summed from the search's finer regions (their unions)."""
        fine = self._regions
        coarse = regions[fine.reps]  # a fine region lies inside the coarse region of its rep
        if fine.work is None:  # reused by every evaluation (fresh buffers cost page faults)
            fine.work = fine.gram.new_empty(2, fine.gram.numel())
        out = fine.work[1, : num * num].view(num, num)
        if num < len(coarse):
            rows = fine.work[0, : num * len(coarse)].view(num, len(coarse))
            rows.zero_().index_add_(0, coarse, fine.gram)
            out.zero_().index_add_(1, coarse, rows)
        else:
            out.copy_(fine.gram)
        norm = out.diagonal().clamp(min=1e-24).rsqrt()
        return out.mul_(norm[:, None]).mul_(norm[None, :]).clamp_(-1.0, 1.0)

    def _steps(self, tau: float, floor: float | None = None) -> _Steps:
        """The spatial and temporal steps at tau; with ``floor`` (< tau, a search's lower end)
        a plain evaluation also keeps its region pairs above it (:class:`_Band`)."""
        if tau in self._recent:
            return self._recent[tau]
        spatial, region_reps = self._spatial(tau)
        regions = video_labels(spatial)
        num_reps = len(region_reps)
        reps, recorder = None, None
        if self._regions is not None and tau <= self._regions.tau:
            rep_sim = self._region_similarity(regions, num_reps)
            pairs_of = lambda floor, rows: pairs.above_in(rep_sim, floor, rows, BLOCK_ELEMENTS)  # noqa: E731
        elif not self._use_gram(num_reps):
            reps = segment_mean(self.flat, regions, num_reps)
            unit = unit_rows(reps)
            pairs_of = self._unit_pairs(unit)
            exact = _sample_rows(num_reps, self.epsilon, self.seed, "cpu") is None
            if floor is not None and floor < tau and exact:
                pairs_of = recorder = _BandRecorder(pairs_of, floor, SEARCH_LIMIT // 3)
        else:  # from the token Gram matrix: only the merged regions need new products
            temporal, final_reps = self._gram_temporal(tau, regions, num_reps)
            self._counts[tau] = len(final_reps)
            steps = _Steps(spatial, regions, region_reps, None, temporal, final_reps, True, True)
            return self._remember(tau, steps)
        temporal, final_reps, exact = _ordered_components(
            num_reps, tau, pairs_of, self.epsilon, self.seed, self.tokens.device
        )
        self._counts[tau] = len(final_reps)
        if recorder is not None and (band := recorder.band(tau, region_reps, unit)) is not None:
            self._band = band
        steps = _Steps(spatial, regions, region_reps, reps, temporal, final_reps, False, exact)
        return self._remember(tau, steps)

    def _unit_pairs(self, xn: torch.Tensor) -> PairSource:
        """:func:`unit_pairs` of these unit rows (region means), with a basis fitted once per
        index (on the first rows that are ``pairs.PRUNE_MIN`` or more) and kept for every tau."""
        if self._basis is None and len(xn) >= pairs.PRUNE_MIN:
            self._basis = pairs.fit_basis(xn)
        return unit_pairs(xn, self._helpful_basis())

    def _helpful_basis(self) -> pairs.Basis | None:
        """The basis, unless grouping by it saved too little the last time (then it is not
        tried again on this video: its region means all lie close together)."""
        basis = self._basis
        return basis if basis is not None and basis.helped is not False else None

    def _remember(self, tau: float, steps: _Steps) -> _Steps:
        """Keep the steps of the latest taus (a search's best is often not its last), only the
        newest with its spatial means (d-dim; compress recomputes them, O(N d))."""
        for seen in list(self._recent)[-1:]:
            self._recent[seen] = replace(self._recent[seen], reps=None)
        while len(self._recent) >= RECENT_STEPS:
            del self._recent[next(iter(self._recent))]
        self._recent[tau] = steps
        return steps

    def count(self, tau: float) -> int:
        """K: the number of tokens LLaVA-Scissor keeps at this tau (cached)."""
        with self._lock:
            try:
                return self._count(tau)
            finally:
                self._drop_work()

    def _count(self, tau: float, floor: float | None = None) -> int:
        tau = check_tau(tau)
        if tau not in self._counts:
            if self._band is not None and self._band.floor < tau < self._band.tau:
                self._band_steps(tau, floor)
            else:
                self._steps(tau, floor)
        return self._counts[tau]

    def _plain(self, tau: float) -> bool:
        """Whether counting at tau costs a plain evaluation (O(M^2 d)): no search data covers it."""
        band, regions = self._band, self._regions
        return not (
            (band is not None and band.floor < tau < band.tau)
            or (regions is not None and tau <= regions.tau)
            or self._gram is not None
        )

    def _band_steps(self, tau: float, floor: float | None = None) -> _Steps:
        """The steps at a tau inside the band: the band's pairs above tau between regions that
        did not merge, and the merged regions' similarities to every region (a few rows of
        d-dim dot products against the band's unit rows), as one graph, ordered as the plain
        path orders it. With ``floor`` (a search's lower end) the pairs above it are kept too,
        as a band from ``floor`` to tau (``_nested``): where the search goes on below tau, it
        has fewer merged regions than the band it came from."""
        band = self._band
        low = tau if floor is None else min(max(floor, band.floor), tau)  # pairs above: kept
        spatial, region_reps = self._spatial(tau)
        regions = video_labels(spatial)
        num = len(region_reps)
        coarse = regions[band.reps]  # a band region lies inside the region of its representative
        size = torch.bincount(coarse, minlength=num)
        alone = size[coarse] == 1  # a band region that is a whole region at tau: same mean
        i, j = band.i.long(), band.j.long()
        keep = (band.sim > low) & alone[i] & alone[j]
        found = [(coarse[i[keep]], coarse[j[keep]], band.sim[keep])]
        merged = (size > 1).nonzero()[:, 0]
        fresh = self._merged_units(regions, merged)
        if len(merged):
            found.extend(_merged_pairs(band, coarse, alone, merged, fresh, low))
        i, j, sim = (torch.cat(part) for part in zip(*found, strict=True))
        above = sim > tau
        edges_i, edges_j = i[above], j[above]
        degree = 1 + torch.bincount(edges_i, minlength=num) + torch.bincount(edges_j, minlength=num)
        count, labels = _components(num, edges_i, edges_j)
        temporal, final_reps = _order_labels(labels, count, degree)
        self._counts[tau] = len(final_reps)
        if low < tau and len(i) <= SEARCH_LIMIT // 3:
            row = torch.empty(num, dtype=torch.long, device=regions.device)
            row[coarse[alone]] = band.row[alone]
            row[merged] = sum(map(len, band.units)) + torch.arange(len(merged), device=row.device)
            lo, hi = torch.minimum(i, j).int(), torch.maximum(i, j).int()
            self._nested = _Band(tau, low, region_reps, [*band.units, fresh], row, lo, hi, sim)
        steps = _Steps(spatial, regions, region_reps, None, temporal, final_reps, False, True)
        return self._remember(tau, steps)

    def _merged_units(self, regions: torch.Tensor, merged: torch.Tensor) -> torch.Tensor:
        """The unit means of the ``merged`` regions (increasing), from their tokens alone, summed
        in the plain path's order (the same rows, bit for bit)."""
        local = torch.full((int(regions.max()) + 1,), -1, dtype=torch.long, device=regions.device)
        local[merged] = torch.arange(len(merged), device=regions.device)
        members = (local[regions] >= 0).nonzero()[:, 0]  # increasing: the plain path's order
        return unit_rows(segment_mean(self.flat[members], local[regions[members]], len(merged)))

    def _drop_work(self) -> None:
        """Free the search's scratch (a later tau that needs it allocates it again)."""
        if self._regions is not None:
            self._regions.work = None
        self._band, self._nested = None, None

    # --- the merge step

    def _assign(self, steps: _Steps, finals: torch.Tensor) -> torch.Tensor:
        """Each original token's most similar final token (ties to the lower index)."""
        if steps.gram:  # cos(final_k, x_j) |x_j| from the Gram matrix, O(N^2)
            num, n = len(finals), self.num_total
            final_of = steps.temporal[steps.regions]  # final token of each original token
            weight = (  # final_k / |final_k| = sum_i weight_i x_i over its tokens i
                finals.square().sum(1).clamp(min=1e-24).rsqrt()[final_of]
                / torch.bincount(steps.temporal, minlength=num)[final_of]
                / torch.bincount(steps.regions)[steps.regions]
            )
            index = torch.stack([final_of, torch.arange(n, device=final_of.device)])
            final_x = torch.sparse.mm(_sparse(index, weight.float(), (num, n)), self.gram)
            # |x_j| > 0 scales a whole column, so it cannot change the column's argmax and is
            # left out (zero columns give token 0, as cos 0); argmax along rows is the fast one
            return final_x.T.contiguous().argmax(dim=1)
        if (basis := self._helpful_basis()) is not None:  # only finals near a token's own win
            xn = self._unit if self._unit is not None else unit_rows(self.flat)
            candidate = steps.temporal[steps.regions]  # each token's own final token
            found = pairs.nearest(xn, unit_rows(finals), candidate, basis, BLOCK_ELEMENTS)
            if found is not None:
                return found
        if self._unit is not None:
            return nearest(self._unit, finals, unit=True)[1]
        return nearest(self.flat, finals)[1]

    def compress(self, tau: float) -> Compression:
        """Spatial step, temporal step and merge step at this tau."""
        tau = check_tau(tau)
        with self._lock:
            steps = self._steps(tau)
            self._drop_work()
            reps = steps.reps
            if reps is None:
                reps = segment_mean(self.flat, steps.regions, len(steps.temporal))
            finals = segment_mean(reps, steps.temporal, len(steps.final_reps))
            assignment = self._assign(steps, finals)
        merged = merge_step(finals, self.flat, assignment)
        shape = steps.spatial.shape
        return Compression(
            tokens=merged.to(self.tokens.dtype),
            spatial_labels=steps.spatial,
            temporal_labels=steps.temporal[steps.regions].reshape(shape),
            assignment=assignment.reshape(shape),
            tau=tau,
            retention_reached=len(finals) / self.num_total,
            exact=steps.exact,
            representatives=steps.region_reps[steps.final_reps],
        )

    def tau_for_retention(self, retention: float, tolerance: float = 0.0) -> float:
        """The tau whose K comes closest to retention * N (ties to the larger retention).

        K rises with tau, so this is a bracketed search in tau (interpolating, with bisection
        steps to guarantee progress) that stops once no count lies strictly between the
        bracket's two counts, or its ends are within ``TAU_RESOLUTION``; with ``tolerance``
        > 0, as soon as a count within ``tolerance * N`` tokens of the target is known (a
        slider needs no more, and each evaluation is a graph). Every evaluation is cached, so
        later targets on the same video start from a tight bracket.
        """
        target = max(check_retention(retention) * self.num_total, 1.0)  # K is at least 1
        if not (_is_real(tolerance) and 0.0 <= tolerance < 1.0):
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
        with self._lock:
            try:
                return self._search(target, tolerance * self.num_total)
            finally:
                self._drop_work()

    def _bracket(self, target: float) -> None:
        """The search's first two counts, both cheap. The spatial count bounds K (K <= spatial
        count), so the tau whose spatial count is the target has K <= target: its plain
        evaluation (at most the target's regions) is the bracket's lower end. If the products
        of BRACKET_START x the target's regions fit SEARCH_LIMIT, they are computed at that
        spatial count's tau, and every tau below it (the lower end included) is evaluated from
        them without d-dimensional work. Taus above are the search's plain evaluations, each
        keeping its region pairs near the target (:class:`_Band`) for the taus below it."""
        heights = torch.from_numpy(self.spatial_merge_heights()).flatten()
        heights = heights.sort(descending=True).values  # spatial count at tau: N - #(h > tau)
        n, merges = self.num_total, len(heights)
        if merges == 0:
            return
        want = BRACKET_START * target
        if not self.once and want**2 <= SEARCH_LIMIT:
            tau = float(heights[min(int(n - min(want, n)), merges - 1)])  # spatial count >= want
            if self._regions is None or self._regions.tau < tau:
                spatial, reps = self._spatial(tau)
                sums = torch.zeros(len(reps), self.flat.shape[1], device=self.flat.device)
                sums.index_add_(0, video_labels(spatial), self.flat)
                self._regions = _Regions(tau, reps, symmetric_gram(sums))
                self._counts = {t: k for t, k in self._counts.items() if t > tau}  # one source
                self._recent = {}
            if self._count(tau) < target:
                return  # the lower end: taus above are plain evaluations
        below = math.ceil(n - target)  # merges that bring the spatial count to the target
        if 0 < below <= merges:  # just under that height the spatial count is the target's
            self._count(float(np.nextafter(np.float32(heights[below - 1]), np.float32(-2))))

    def _tau_between(
        self, lo: float, hi: float, counts: tuple[int, int, float], bisect: bool
    ) -> float | None:
        """A tau strictly between lo and hi, chosen by spatial count S: where the line through
        (log S, log K) at lo and hi reaches the target K = ``counts[2]`` (or, with ``bisect``,
        the middle S), rounded strictly between lo's and hi's S; None where no S lies between."""
        heights = self._ascending_heights()
        merges = len(heights)
        above = lambda tau: merges - int(np.searchsorted(heights, tau, side="right"))  # noqa: E731
        m_lo, m_hi = above(lo), above(hi)  # merges above tau; spatial count = N - merges
        if m_lo - m_hi < 2:
            return None
        s_lo, s_hi = self.num_total - m_lo, self.num_total - m_hi
        k_lo, k_hi, target = counts
        if bisect or k_lo < 1:
            s = (s_lo + s_hi) / 2
        else:  # K ~ S ** a between the two
            s = s_lo * (target / k_lo) ** (math.log(s_hi / s_lo) / math.log(k_hi / k_lo))
        m = min(max(round(self.num_total - s), m_hi + 1), m_lo - 1)
        # exactly m heights above tau: tau in [heights[-m - 1], heights[-m]); take the middle
        low, high = heights[merges - m - 1], heights[merges - m]
        tau = float(np.float32((float(low) + float(high)) / 2))
        if not low <= tau < high:
            tau = float(low)
        return tau if lo < tau < hi else None

    def _ascending_heights(self) -> np.ndarray:
        with self._lock:
            if self._ascending is None:
                self._ascending = np.sort(self.spatial_merge_heights(), axis=None)
            return self._ascending

    def _search(self, target: float, slack: float = 0.0) -> float:
        if self._gram is None and (self._gram_mode is False or self.num_total > GRAM_LIMIT):
            self._bracket(target)
        lo, hi = TAU_FLOOR, 1.0  # K = 1 .. K = N
        self._counts.setdefault(lo, 1)
        self._counts.setdefault(hi, self.num_total)
        width, stalls = math.inf, 0  # the bracket's count range one evaluation ago
        ends, kept = (None, None), (None, 0)  # the last bracket; which end stayed, how often
        for _ in range(64):
            below = [t for t, k in self._counts.items() if k <= target]
            above = [t for t, k in self._counts.items() if k >= target]
            lo, hi = max(below), min(above)
            k_lo, k_hi = self._counts[lo], self._counts[hi]
            if (lo == ends[0]) != (hi == ends[1]):  # one end moved, the other stayed
                side = 0 if lo == ends[0] else 1
                kept = (side, kept[1] + 1 if kept[0] == side else 1)
            ends = (lo, hi)
            if k_hi - k_lo <= 1 or hi - lo <= TAU_RESOLUTION:  # no K left between the two
                break
            if min(target - k_lo, k_hi - target) <= slack:  # close enough for the caller
                break
            if _settled(target, k_lo, k_hi, self._counts.values()):
                break
            # K is close to proportional to the spatial count (known at every tau from the
            # spanning forests), much closer than to tau: interpolate and bisect in that count
            # (log K against log S; a bisection after three steps that did not halve the
            # bracket's counts, so that it always progresses)
            stalls = stalls + 1 if k_hi - k_lo > width / 2 else 0
            bisect, width = stalls >= 3, k_hi - k_lo
            stalls = 0 if bisect else stalls
            # Illinois rule: an end kept three times or more pulls its count to the target
            # (square roots in log K), so that interpolation does not creep from one side
            damp = 0.5 ** (kept[1] - 2) if kept[1] >= 3 else 1.0
            k_lo_eff = target * (k_lo / target) ** damp if kept[0] == 0 else k_lo
            k_hi_eff = target * (k_hi / target) ** damp if kept[0] == 1 else k_hi
            mid = self._tau_between(lo, hi, (k_lo_eff, k_hi_eff, target), bisect)
            aim_k = target + BAND_AIM * (self.num_total - target)
            if mid is not None and not bisect and self._plain(mid) and k_hi > aim_k:
                # a plain evaluation keeps its region pairs above lo (a band) for every tau
                # between lo and it: aimed above the target, it makes the rest of the search cheap
                aim = (k_lo_eff, k_hi_eff, aim_k)
                mid = self._tau_between(lo, hi, aim, False) or mid
            if mid is None:  # no spatial count between them: the same in tau
                share = 0.5 if bisect else (target - k_lo_eff) / (k_hi_eff - k_lo_eff)
                mid = float(np.float32(lo + (hi - lo) * share))
            if not lo < mid < hi:
                mid = float(np.float32((lo + hi) / 2))
            if not lo < mid < hi:  # no float32 tau left between them
                break
            self._count(mid, lo)
            nested, self._nested = self._nested, None
            if nested is not None and self._counts[mid] >= target:  # the search goes on below mid
                self._band = nested
        candidates = sorted(self._counts.items(), key=lambda tk: _closeness(tk[1], target))
        return candidates[0][0]


def _closeness(k: int, target: float) -> tuple[float, int]:
    """The search's order of counts: nearest the target first, ties to the larger count."""
    return abs(k - target), -k


def _settled(target: float, k_lo: int, k_hi: int, counts) -> bool:
    """Whether no count strictly between k_lo and k_hi could come closer to the target than
    the best count already known (so more evaluations would not change the answer): the best
    such count is the integer nearest the target inside that open interval."""
    if k_hi - k_lo <= 1:
        return True
    inside = [min(max(k, k_lo + 1), k_hi - 1) for k in (math.floor(target), math.ceil(target))]
    return min(_closeness(k, target) for k in counts) <= min(_closeness(k, target) for k in inside)


# ----------------------------------------------------------------------------- functional API


class TensorCache:
    """Values computed from a tensor, remembered while the tensor lives and is not modified
    (keyed by the tensor's identity and version, plus an extra key); at most ``size`` entries
    and, with ``size_of``, at most ``max_bytes`` of values (measured when an entry is added, so
    a value that grows later counts as it is then), oldest dropped first; safe to use from
    several threads. A value that holds its own tensor keeps it alive until it is dropped."""

    def __init__(
        self,
        size: int = 8,
        max_bytes: int | None = None,
        size_of: Callable[[object], int] | None = None,
    ):
        self.size = size
        self.max_bytes = max_bytes
        self.size_of = size_of
        self._entries: dict[tuple, tuple[weakref.ref, object]] = {}
        self._lock = threading.Lock()

    def get(self, tensor: torch.Tensor, extra: Hashable, compute: Callable[[], T]) -> T:
        key = (id(tensor), tensor._version, extra)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0]() is tensor:
                return hit[1]
        value = compute()  # outside the lock: other tensors need not wait
        self.put(tensor, extra, value)
        return value

    def peek(self, tensor: torch.Tensor, extra: Hashable) -> object | None:
        """The value kept for (tensor, extra), or None; computes nothing."""
        with self._lock:
            hit = self._entries.get((id(tensor), tensor._version, extra))
            return hit[1] if hit is not None and hit[0]() is tensor else None

    def put(self, tensor: torch.Tensor, extra: Hashable, value: object) -> None:
        """Keep ``value`` for (tensor, extra), replacing what was kept for them."""
        key = (id(tensor), tensor._version, extra)
        with self._lock:
            dead = [k for k, (ref, _) in self._entries.items() if ref() is None]
            for k in dead + [k for k in self._entries if k[0] == id(tensor) and k[2] == extra]:
                self._entries.pop(k, None)
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (weakref.ref(tensor), value)
            if self.max_bytes is not None and self.size_of is not None:
                sizes = {k: self.size_of(v) for k, (_, v) in self._entries.items()}
                total = sum(sizes.values())
                for k in list(self._entries)[:-1]:  # the newest stays, whatever its size
                    if total <= self.max_bytes:
                        break
                    del self._entries[k]
                    total -= sizes[k]

    def discard(self, tensor: torch.Tensor) -> None:
        """Forget every value computed from ``tensor``."""
        with self._lock:
            for key in [k for k, (ref, _) in self._entries.items() if ref() is tensor]:
                del self._entries[key]


INDEX_CACHE_BYTES = 512 << 20  # what scissor_index keeps, beyond the tokens themselves
_INDEXES = TensorCache(8, INDEX_CACHE_BYTES, lambda index: index.nbytes)


def scissor_index(tokens: torch.Tensor, epsilon: float = 0.05, seed: int = 0) -> ScissorIndex:
    """The ScissorIndex of this tensor, reused while the tensor lives and is not modified
    (an inference-mode tensor keeps no version counter, so its index is built afresh)."""
    if tokens.is_inference():
        return ScissorIndex(tokens, epsilon, seed)
    extra = (float(epsilon), int(seed))
    return _INDEXES.get(tokens, extra, lambda: ScissorIndex(tokens, epsilon, seed))


def share_index(index: ScissorIndex) -> None:
    """Let :func:`scissor_index` give ``index`` for its tokens (and epsilon and seed) again,
    e.g. after :func:`forget`, instead of building a second one."""
    extra = (float(index.epsilon), int(index.seed))
    if _INDEXES.peek(index.tokens, extra) is not index:
        _INDEXES.put(index.tokens, extra, index)


def forget(tokens: torch.Tensor) -> None:
    """Drop the indexes :func:`scissor_index` keeps for ``tokens`` (each holds the tokens, their
    frame similarities and maybe a Gram matrix, until newer videos push it out: at most 8
    indexes and ``INDEX_CACHE_BYTES``)."""
    _INDEXES.discard(tokens)


def scissor_compress(
    tokens: torch.Tensor,
    tau: float | None = None,
    epsilon: float = 0.05,
    seed: int = 0,
    *,
    retention: float | None = None,
    reuse: bool = False,
) -> Compression:
    """LLaVA-Scissor on (frames, tokens_per_frame, d) tokens: spatial, temporal, merge, at a
    fixed ``tau`` or at the tau whose K comes closest to ``retention`` * N (give one).

    How it is called decides what it computes:

    * one-shot (the default): a video asked once (a patched ``generate``, the sweep, an API
      call) gets only its floor's work: per-frame similarities, the representatives'
      similarities and the final assignment (far pairs skipped, see :mod:`scissor_viz.pairs`),
      nothing kept afterwards. With ``retention`` the search evaluates its taus from a few
      plain evaluations and a band of region pairs (:class:`ScissorIndex`, ``once=True``); from
      ``ONE_SHOT_GRAM`` retention on at most ``GRAM_LIMIT`` tokens, from their Gram matrix
      instead (the search and the merge step then cost little beyond it). If
      :func:`scissor_index` already keeps an index for ``tokens`` (e.g. after
      :func:`tau_for_retention`), it is used;
    * ``reuse=True``: the index :func:`scissor_index` keeps for ``tokens`` (built if needed)
      serves this and later calls: frame similarities, every (tau -> K) seen, and the token Gram
      matrix when many taus make it pay. A caller that asks many taus may keep a
      :class:`ScissorIndex` itself (the app does).

    ``Compression.representatives`` gives, for each kept token, the original token (flat index
    frame * P + i) SCC ordered it by: the spatial component of highest degree in the temporal
    graph, then that component's token of highest degree in its frame's graph (ties to the lower
    index); strictly increasing.
    """
    if (tau is None) == (retention is None):
        raise ValueError("give exactly one of tau= or retention=")
    if reuse:
        index = scissor_index(tokens, epsilon, seed)
    else:
        kept = None  # a kept index was built from checked tokens; a new one checks them
        if isinstance(tokens, torch.Tensor) and not tokens.is_inference():
            kept = _INDEXES.peek(tokens, (float(epsilon), int(seed)))
        if kept is not None:
            index = kept
        else:  # a search on few enough tokens reads their Gram matrix (see ONE_SHOT_GRAM)
            small = isinstance(tokens, torch.Tensor) and tokens.shape[:-1].numel() <= GRAM_LIMIT
            gram = retention is not None and small and retention >= ONE_SHOT_GRAM
            index = ScissorIndex(tokens, epsilon, seed, gram=gram, once=True)
    if retention is not None:
        tau = index.tau_for_retention(retention)
    return index.compress(tau)


def tau_for_retention(
    tokens: torch.Tensor, retention: float, epsilon: float = 0.05, seed: int = 0
) -> float:
    """The tau at which :func:`scissor_compress` keeps closest to ``retention`` of the tokens."""
    return scissor_index(tokens, epsilon, seed).tau_for_retention(retention)
