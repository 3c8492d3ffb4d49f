"""Video-token reducers to compare with LLaVA-Scissor, all behind one interface.

Two-line API::

    reduction = reduce("tome", tokens, retention=0.1)  # tokens: (frames, 196, d)
    reduction.tokens, reduction.assignment  # (K, d) and (frames, 196) in 0..K-1

Every method takes a video's tokens (T, P, d) and a retention ratio r in (0, 1] and returns a
:class:`Reduction`: the output sequence (what the LLM would read) and, for every original token,
the output token that stands for it, so that the same overlays and metrics serve every method.

Budgets: fixed-budget methods keep exactly K = max(1, floor(r * T * P + 1/2)) tokens. SCC and its
two ablations search tau for the K closest to that (ties to the larger K) and report what they
reached; uniform pooling reports the grid it chose. ``r = 1`` returns the tokens unchanged.

Selection methods (random, DyCoke, FastV, VisionZip's dominant tokens) pass kept tokens through
unchanged and assign each dropped token to its most similar kept token (cosine) for display and
metrics; merging methods (SCC, pooling, ToMe, VisionZip's contextual tokens) output the mean of
the tokens they assign to each output token. Similarities are cosine, in float32.

Tensors in, tensors out: methods that rank tokens by a model's attention (FastV, VisionZip) take
those scores as arguments (``scissor_viz.models`` reads them out of the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage

from scissor_viz import scc as engine
from scissor_viz.scc import (
    TAU_FLOOR,
    Compression,
    TensorCache,
    check_retention,
    merge_step,
    nearest,
    scissor_index,
    segment_mean,
    semantic_components,
    unit_rows,
    video_labels,
)

TEMPORAL_DENSE_LIMIT = 8_192  # temporal-only SCC: exact tau by single linkage up to this many
VISIONZIP_DOMINANT = 54 / 64  # VisionZip's split of the budget (54 dominant + 10 contextual of 64)
TOME_STEP = 0.25  # ToMe: at most this fraction of the current tokens merges per round


@dataclass(frozen=True)
class Reduction:
    """A reduced token sequence and, for each original token, the output token representing it."""

    method: str
    tokens: torch.Tensor  # (K, d) output sequence, in order, input dtype
    assignment: torch.Tensor  # (T, P) long, in 0..K-1
    retention_reached: float  # K / (T * P)
    note: str = ""  # how the method was run, e.g. where its importance scores came from
    tau: float | None = None  # SCC methods: the threshold found for the retention
    kept_index: torch.Tensor | None = None  # selections: flat index of each unchanged output token
    compression: Compression | None = None  # "scc": the engine's full result (spatial labels, ...)

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


# ----------------------------------------------------------------------------- helpers


def _check(tokens: torch.Tensor, retention: float) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.numel() == 0:
        what = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a non-empty (frames, tokens, d) tensor, got {what}")
    if not tokens.is_floating_point() or not torch.isfinite(tokens).all():
        raise ValueError("tokens must be finite floating-point values")
    check_retention(retention)


def budget(num_total: int, retention: float) -> int:
    """K for a fixed budget: round(r * N) (halves up), at least 1."""
    return min(num_total, max(1, math.floor(retention * num_total + 0.5)))


def _flat(tokens: torch.Tensor) -> torch.Tensor:
    return tokens.reshape(-1, tokens.shape[-1])


def _first_seen(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..K-1 in order of each label's first occurrence."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _select(method: str, tokens: torch.Tensor, kept: torch.Tensor, note: str = "") -> Reduction:
    """Selection: the kept tokens (flat indices, sorted) pass unchanged; every dropped token is
    assigned to its most similar kept token, every kept token to itself."""
    flat = _flat(tokens)
    assignment = nearest(flat, flat[kept])[1]
    assignment[kept] = torch.arange(len(kept), device=kept.device)
    return Reduction(
        method=method,
        tokens=flat[kept],
        assignment=assignment.view(tokens.shape[:2]),
        retention_reached=len(kept) / len(flat),
        note=note,
        kept_index=kept,
    )


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores (ties to the lower index), in increasing index order."""
    return scores.argsort(descending=True, stable=True)[:k].sort().values


def _tau_for_target(merge_sims: np.ndarray, n: int, target: float) -> tuple[float, int]:
    """Given the similarities at which single linkage merges n nodes (float32), the tau whose
    graph "similarity > tau" has the number of components closest to ``target`` (ties to the
    larger number), and that number. Components at tau = n - #(merge_sims > tau)."""
    s = np.sort(merge_sims.astype(np.float32))
    candidates = np.unique(np.concatenate([s, np.float32([TAU_FLOOR, 1.0])]))
    counts = n - (len(s) - np.searchsorted(s, candidates, side="right"))
    best = np.lexsort((-counts, np.abs(counts - target)))[0]
    return float(candidates[best]), int(counts[best])


def _condensed_distance(x: torch.Tensor) -> np.ndarray:
    """1 - cosine similarity (float32 similarity, clamped) of the rows of x, in scipy's
    condensed (upper triangle, row-major) order, float64; built in row blocks."""
    xn, n = unit_rows(x), len(x)
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    step, at = max(1, engine.BLOCK_ELEMENTS // max(n, 1)), 0
    for r0 in range(0, n - 1, step):
        sim = (xn[r0 : r0 + step] @ xn.T).clamp_(-1.0, 1.0)
        upper = sim[torch.ones_like(sim, dtype=torch.bool).triu_(r0 + 1)]
        out[at : at + len(upper)] = 1.0 - upper.double().cpu().numpy()
        at += len(upper)
    return out


_LINKAGES = TensorCache()  # single linkage per video: a sweep asks for many retentions of one


def forget(tokens: torch.Tensor) -> None:
    """Drop what this module keeps for ``tokens`` (their single linkage)."""
    _LINKAGES.discard(tokens)


def _merge(method: str, tokens: torch.Tensor, finals: torch.Tensor, **kw) -> Reduction:
    """LLaVA-Scissor's merge step on any set of final tokens: every original token goes to its
    most similar final token, and each final becomes (itself + its tokens) / (1 + count)."""
    flat = _flat(tokens)
    assignment = nearest(flat, finals)[1]
    return Reduction(
        method=method,
        tokens=merge_step(finals, flat, assignment).to(tokens.dtype),
        assignment=assignment.view(tokens.shape[:2]),
        retention_reached=len(finals) / len(flat),
        **kw,
    )


# ----------------------------------------------------------------------------- SCC and ablations


def scc(tokens: torch.Tensor, retention: float) -> Reduction:
    """LLaVA-Scissor (spatial SCC per frame, temporal SCC, merge) via the engine, at the tau whose
    K comes closest to the budget; reports the retention reached."""
    _check(tokens, retention)
    index = scissor_index(tokens)
    tau = index.tau_for_retention(retention)  # below one token, the engine aims at one
    comp = index.compress(tau)
    return Reduction(
        "scc", comp.tokens, comp.assignment, comp.retention_reached, tau=tau, compression=comp
    )


def scc_spatial(tokens: torch.Tensor, retention: float) -> Reduction:
    """Ablation, spatial step only: the engine's per-frame SCC at one tau, each component's mean
    an output token (frame by frame, in the engine's order); no temporal step, no merge step.

    tau comes from single linkage on each frame's similarities (the engine's own), so the K
    closest to the budget is found exactly; K is at least one token per frame."""
    _check(tokens, retention)
    index = scissor_index(tokens)
    frames, per_frame, _ = tokens.shape
    merge_sims = index.spatial_merge_heights().ravel()
    tau, _ = _tau_for_target(merge_sims, index.num_total, retention * index.num_total)
    regions = video_labels(index.spatial(tau))
    num = int(regions.max()) + 1
    return Reduction(
        "scc_spatial",
        segment_mean(_flat(tokens), regions, num).to(tokens.dtype),
        regions.view(frames, per_frame),
        num / index.num_total,
        tau=tau,
    )


def _temporal_labels(tokens: torch.Tensor, target: float) -> tuple[torch.Tensor, float]:
    """Components of all tokens at the tau whose count is closest to ``target``."""
    flat = _flat(tokens)
    n = len(flat)
    if n <= TEMPORAL_DENSE_LIMIT:  # exact: single linkage gives every reachable K at once
        z = np.empty((0, 4))
        if n > 1:
            z = _LINKAGES.get(
                tokens, "single", lambda: linkage(_condensed_distance(flat), "single")
            )
        tau, _ = _tau_for_target((1.0 - z[:, 2]).astype(np.float32), n, target)
        cut = np.nextafter(1.0 - tau, -np.inf)  # merges at distance < 1 - tau, i.e. sim > tau
        labels = fcluster(z, cut, "distance") if n > 1 else np.zeros(1, dtype=np.int64)
        return torch.from_numpy(_first_seen(labels)).to(flat.device), tau
    # Large sets: bisection on float32 tau with the engine's blocked (sampled above its
    # EXACT_LIMIT) components; K(tau) is non-decreasing, K(TAU_FLOOR) = 1, K(1) = n.
    lo, hi, best = TAU_FLOOR, 1.0, (abs(n - target), -n, 1.0)
    for _ in range(48):
        mid = float(np.float32((lo + hi) / 2))
        if not lo < mid < hi:
            break
        k = int(semantic_components(flat, mid).max()) + 1
        best = min(best, (abs(k - target), -k, mid))
        if k == target:
            break
        lo, hi = (mid, hi) if k < target else (lo, mid)
    tau = best[2]
    return semantic_components(flat, tau), tau


def scc_temporal(tokens: torch.Tensor, retention: float) -> Reduction:
    """Ablation, no spatial step: one SCC over all T*P original tokens as a single set (what the
    temporal step would do without per-frame representatives), then the merge step.

    Components are numbered by first member (frame-major order). tau is exact from single
    linkage up to ``TEMPORAL_DENSE_LIMIT`` tokens; above it a bisection on tau over the engine's
    ``semantic_components`` (the paper's sampled approximation above the engine's limit)."""
    _check(tokens, retention)
    flat = _flat(tokens)
    labels, tau = _temporal_labels(tokens, retention * len(flat))
    finals = segment_mean(flat, labels, int(labels.max()) + 1)
    return _merge("scc_temporal", tokens, finals, tau=tau)


# ----------------------------------------------------------------------------- other reducers


def _near_shape_grids(rows: int, cols: int) -> np.ndarray:
    """(h, w) grids with h <= rows, w <= cols and w in {W, W + 1}, W = round(h * cols / rows)
    (at least 1): the shapes of a rows x cols grid pooled (square: w in {h, h + 1})."""
    h = np.arange(1, rows + 1)
    w = np.maximum(np.round(h * cols / rows).astype(np.int64), 1)
    grids = np.concatenate([np.stack([h, w], 1), np.stack([h, w + 1], 1)])
    return grids[grids[:, 1] <= cols]


def pool_shape(
    frames: int, per_frame: int, retention: float, grid: tuple[int, int] | None = None
) -> tuple[int, int, int]:
    """The (t, h, w) output grid of :func:`uniform_pool` for this budget (``grid``: the
    frame's rows x cols, square unless given)."""
    rows, cols = grid or (math.isqrt(per_frame),) * 2
    k = budget(frames * per_frame, retention)
    if k < frames:  # fewer tokens than frames: pool time too, one token per time cell
        return k, 1, 1
    grids = _near_shape_grids(rows, cols)
    sizes = frames * grids[:, 0] * grids[:, 1]
    best = np.lexsort((-sizes, np.abs(sizes - k)))[0]  # closest to K, ties to the larger
    return frames, int(grids[best, 0]), int(grids[best, 1])


def uniform_pool(
    tokens: torch.Tensor, retention: float, grid: tuple[int, int] | None = None
) -> Reduction:
    """PLLaVA-style uniform pooling of each frame's rows x cols ``grid`` (square unless given)
    to a smaller grid.

    The grid is the h x w of the frame's shape (w = round(h * cols / rows) or one more; square:
    h or h + 1) whose T * h * w is closest to the budget (ties to the larger), so the retention
    reached is reported, not forced; when the budget is below one token per frame, time is
    pooled too (K time cells of 1 x 1). Cells partition the grid (row i -> floor(i * h /
    rows)), so each output token is the mean of its cell; this is adaptive average pooling
    where h divides the rows, and one-cell-per-token otherwise."""
    _check(tokens, retention)
    frames, per_frame, _ = tokens.shape
    rows, cols = grid or (math.isqrt(per_frame),) * 2
    if rows * cols != per_frame:
        shape = f"{rows} x {cols}" if grid else "a square grid (give grid=(rows, cols))"
        raise ValueError(f"uniform pooling: {per_frame} tokens a frame are not {shape}")
    t, h, w = pool_shape(frames, per_frame, retention, (rows, cols))
    f = torch.arange(frames)[:, None, None] * t // frames
    i = torch.arange(rows)[None, :, None] * h // rows
    j = torch.arange(cols)[None, None, :] * w // cols
    cell = ((f * h + i) * w + j).reshape(frames, per_frame).to(tokens.device)
    pooled = segment_mean(_flat(tokens), cell.flatten(), t * h * w)
    return Reduction(
        "pool",
        pooled.to(tokens.dtype),
        cell,
        t * h * w / (frames * per_frame),
        note=f"grid {t}x{h}x{w} (frames x rows x columns)",
    )


def random_select(tokens: torch.Tensor, retention: float, seed: int = 0) -> Reduction:
    """K tokens drawn uniformly without replacement (seeded), kept in sequence order."""
    _check(tokens, retention)
    n = tokens.shape[0] * tokens.shape[1]
    gen = torch.Generator().manual_seed(seed)
    kept = torch.randperm(n, generator=gen)[: budget(n, retention)].sort().values
    return _select("random", tokens, kept.to(tokens.device), note=f"seed {seed}")


def tome(tokens: torch.Tensor, retention: float) -> Reduction:
    """ToMe bipartite soft matching over the whole video sequence, repeated until K tokens.

    Each round splits the current sequence alternately into A (even positions) and B (odd),
    links every A token to its most similar B token, and merges the r best-linked A tokens into
    their B partners (size-weighted means, so every output is the mean of its original tokens).
    r = min(n - K, max(1, TOME_STEP * n)): ToMe allows up to half per layer; smaller rounds let
    merged tokens be re-matched. Survivors keep their sequence order."""
    _check(tokens, retention)
    flat = _flat(tokens)
    n, k = len(flat), budget(len(flat), retention)
    sums, size = flat.float().clone(), torch.ones(n, device=flat.device)
    owner = torch.arange(n, device=flat.device)
    while n > k:
        r = min(n - k, max(1, int(TOME_STEP * n)))
        means = sums / size[:, None]
        score, match = nearest(means[0::2], means[1::2])
        src = score.argsort(descending=True, stable=True)[:r]
        dst = match[src] * 2 + 1
        src = src * 2
        sums.index_add_(0, dst, sums[src])
        size.index_add_(0, dst, size[src])
        keep = torch.ones(n, dtype=torch.bool, device=flat.device)
        keep[src] = False
        redirect = torch.arange(n, device=flat.device)
        redirect[src] = dst
        owner = (torch.cumsum(keep, 0) - 1)[redirect[owner]]
        sums, size, n = sums[keep], size[keep], n - r
    return Reduction(
        "tome",
        (sums / size[:, None]).to(tokens.dtype),
        owner.view(tokens.shape[:2]),
        n / len(flat),
    )


def visionzip(
    tokens: torch.Tensor, retention: float, importance: torch.Tensor | None = None
) -> Reduction:
    """VisionZip: dominant tokens (top importance) plus contextual tokens merged from the rest.

    ``importance`` (T, P) is the attention each token receives in the vision tower; without it
    the token's L2 norm stands in (said in ``note``). Of K tokens, round(54/64 K) (at least 1)
    are dominant, in sequence order; the rest of the budget are contextual: evenly spaced
    targets among the remaining tokens, each other remaining token joining its most similar
    target, each contextual token the mean of its target and members (VisionZip's code adds the
    target to the members' mean; averaging keeps the tokens' scale). Dominant come first."""
    _check(tokens, retention)
    flat = _flat(tokens)
    n, k = len(flat), budget(len(flat), retention)
    note = "importance from vision-tower attention"
    if importance is None:
        importance = flat.float().norm(dim=-1)
        note = "importance from token norms (no model attention)"
    importance = importance.reshape(-1).float().to(flat.device)
    if len(importance) != n:
        raise ValueError(f"importance has {len(importance)} values for {n} tokens")
    if k == n:  # every token stays: nothing to merge, keep the sequence order
        return _select("visionzip", tokens, torch.arange(n, device=flat.device), note)
    dominant = _top(importance, max(1, math.floor(VISIONZIP_DOMINANT * k + 0.5)))
    num_ctx = k - len(dominant)
    if num_ctx == 0:
        return _select("visionzip", tokens, dominant, note)
    rest = torch.ones(n, dtype=torch.bool, device=flat.device)
    rest[dominant] = False
    rest = rest.nonzero().flatten()
    step = len(rest) // num_ctx  # >= 1: the rest holds at least the contextual budget
    pick = torch.zeros(len(rest), dtype=torch.bool, device=flat.device)
    pick[: step * num_ctx : step] = True  # evenly spaced targets, VisionZip's choice
    targets, others = rest[pick], rest[~pick]
    ctx_of = torch.empty(n, dtype=torch.long, device=flat.device)
    ctx_of[targets] = torch.arange(num_ctx, device=flat.device)
    ctx_of[others] = nearest(flat[others], flat[targets])[1]
    contextual = segment_mean(flat[rest], ctx_of[rest], num_ctx)
    assignment = ctx_of + len(dominant)
    assignment[dominant] = torch.arange(len(dominant), device=flat.device)
    return Reduction(
        "visionzip",
        torch.cat([flat[dominant], contextual.to(flat.dtype)]),
        assignment.view(tokens.shape[:2]),
        k / n,
        note=note,
        kept_index=dominant,
    )


def dycoke(tokens: torch.Tensor, retention: float) -> Reduction:
    """DyCoke-style temporal token merging (pruning), to a global budget.

    DyCoke's TTM compares, in windows of 4 frames, frame 1 with 0, frame 3 with 2 and frame 2
    with 0, token by token at the same grid position, and drops the most similar ones. We use
    the same references, extended as a binary hierarchy to any length (frame f refers to frame
    f - lowbit(f): 1->0, 2->0, 3->2, 4->0, 5->4, 6->4, 7->6, 8->0, ...), score each token by its
    cosine similarity to its reference, and drop the N - K highest-scoring tokens across the
    video. Frame 0 has no reference: its tokens score (below every other) by their similarity to
    the most similar other token of frame 0, so they go only when the budget is below them."""
    _check(tokens, retention)
    frames, per_frame, _ = tokens.shape
    n, k = frames * per_frame, budget(frames * per_frame, retention)
    x = unit_rows(tokens)
    f = torch.arange(frames, device=tokens.device)
    score = (x * x[f - (f & -f)]).sum(-1).clamp(-1.0, 1.0)  # (T, P)
    score[0] = -3.0 + (nearest(x[0], x[0], exclude_self=True)[0] if per_frame > 1 else 0.0)
    dropped = score.flatten().argsort(descending=True, stable=True)[: n - k]
    keep = torch.ones(n, dtype=torch.bool, device=tokens.device)
    keep[dropped] = False
    return _select("dycoke", tokens, keep.nonzero().flatten())


# ----------------------------------------------------------------------------- FastV


def fastv_select(scores: torch.Tensor, retention: float) -> torch.Tensor:
    """FastV's choice: the flat indices (sorted) of the K visual tokens with the highest
    attention scores (N,), ties to the earlier token."""
    scores = scores.reshape(-1)
    return _top(scores.float(), budget(len(scores), retention))


def fastv(
    tokens: torch.Tensor,
    retention: float,
    attention_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Reduction:
    """FastV: keep the K visual tokens that receive the most attention inside the LLM.

    ``attention_fn(tokens)`` returns those scores, (T, P) or (T*P,), e.g. a backend's
    ``llm_attention`` (:func:`scissor_viz.models.attention.fastv_scores` on the prompt with
    these tokens spliced in). FastV drops tokens inside the LLM after layer K;
    here the kept tokens are fed from the start, like every other method's output."""
    _check(tokens, retention)
    if attention_fn is None:
        raise ValueError("fastv needs the LLM's attention: pass attention_fn (see llm_attention)")
    scores = attention_fn(tokens).reshape(-1).to(tokens.device)
    if len(scores) != tokens.shape[0] * tokens.shape[1]:
        raise ValueError(f"attention_fn gave {len(scores)} scores for {tuple(tokens.shape[:2])}")
    return _select("fastv", tokens, fastv_select(scores, retention), "scores from LLM attention")


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """A reducer and what it needs from a model."""

    label: str
    fn: Callable[..., Reduction]
    fixed_budget: bool = True
    needs_llm_attention: bool = False  # cannot run without the LLM's attention (attention_fn)
    uses_vision_attention: bool = False  # ranks by the vision tower's attention when given one

    def runs_with(self, llm_attention: bool) -> bool:
        """Whether the method can run when the LLM's attention is (or is not) available."""
        return llm_attention or not self.needs_llm_attention


METHODS: dict[str, Method] = {
    "scc": Method("LLaVA-Scissor (SCC)", scc, fixed_budget=False),
    "scc_spatial": Method("SCC, spatial step only", scc_spatial, fixed_budget=False),
    "scc_temporal": Method("SCC, temporal step only", scc_temporal, fixed_budget=False),
    "pool": Method("Uniform pooling (PLLaVA)", uniform_pool, fixed_budget=False),
    "random": Method("Random selection", random_select),
    "tome": Method("ToMe (bipartite matching)", tome),
    "visionzip": Method("VisionZip", visionzip, uses_vision_attention=True),
    "dycoke": Method("DyCoke (temporal merging)", dycoke),
    "fastv": Method("FastV (LLM attention)", fastv, needs_llm_attention=True),
}


def runnable_methods(llm_attention: bool) -> list[str]:
    """The keys of :data:`METHODS` that run with (or without) the LLM's attention, in order."""
    return [key for key, method in METHODS.items() if method.runs_with(llm_attention)]


def reduce(
    method: str,
    tokens: torch.Tensor,
    retention: float,
    *,
    seed: int = 0,
    importance: torch.Tensor | None = None,
    attention_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grid: tuple[int, int] | None = None,
) -> Reduction:
    """Run one of :data:`METHODS` on (T, P, d) tokens at retention ``r`` in (0, 1]. ``seed``
    is for random selection, ``importance`` (vision-tower attention, (T, P)) for VisionZip,
    ``attention_fn`` (tokens -> LLM attention scores) for FastV, ``grid`` (a frame's rows x
    cols; square unless given) for pooling; others ignore them."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    extra = {
        "random": {"seed": seed},
        "visionzip": {"importance": importance},
        "fastv": {"attention_fn": attention_fn},
        "pool": {"grid": grid},
    }
    return METHODS[method].fn(tokens, retention, **extra.get(method, {}))
