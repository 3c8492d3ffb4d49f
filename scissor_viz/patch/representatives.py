"""Which original token each SCC token stands for, and the merge step with autograd.

``scissor_compress`` orders its K tokens by their *representatives*: a final token's
representative is the spatial component of highest degree in the temporal graph, and a spatial
component's is its token of highest degree in the frame graph (ties to the lower index). The
engine does not return them; :func:`representatives` recomputes them from the tokens and the
:class:`~scissor_viz.scc.Compression`, so a model that positions video tokens on their grid
(Qwen2.5-VL's M-RoPE) can place each merged token where its representative was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scissor_viz.scc import BLOCK_ELEMENTS, Compression, scissor_index, segment_mean


def spatial_ids(comp: Compression) -> tuple[torch.Tensor, int]:
    """(N,) spatial component of every token numbered across frames, and their number M."""
    counts = comp.spatial_counts  # (T,)
    offsets = torch.cumsum(counts, 0) - counts
    return (comp.spatial_labels + offsets[:, None]).flatten(), int(counts.sum())


def _argmax_key(key: torch.Tensor, group: torch.Tensor, num: int, n: int) -> torch.Tensor:
    """Per group 0..num-1, the member index i in 0..n-1 with the largest key (ties: lowest i).

    ``key`` must already hold degree * n + (n - 1 - i), so the max decodes to i."""
    best = torch.full((num,), -1, dtype=torch.long, device=key.device)
    best.scatter_reduce_(0, group, key, reduce="amax")
    return (n - 1) - best % n


def _degrees(x: torch.Tensor, tau: float) -> torch.Tensor:
    """(n,) 1 + the number of other rows of x whose cosine similarity exceeds tau."""
    xn = F.normalize(x.float(), dim=-1)
    n = len(xn)
    degree = torch.ones(n, dtype=torch.long, device=x.device)
    step = max(1, BLOCK_ELEMENTS // n)
    for r0 in range(0, n, step):
        mask = (xn[r0 : r0 + step] @ xn.T).clamp_(-1.0, 1.0) > tau  # (rows, n)
        rows = torch.arange(mask.shape[0], device=x.device)
        mask[rows, rows + r0] = False
        degree[r0 : r0 + step] += mask.sum(1)
    return degree


def representatives(tokens: torch.Tensor, comp: Compression) -> torch.Tensor:
    """(K,) flat index (frame * P + i) of each compressed token's representative token.

    Strictly increasing, because SCC orders its tokens by their representatives. Exact when the
    temporal step was (``comp.exact``); otherwise the highest-degree member in the exact graph.
    """
    frames, per_frame, _ = tokens.shape
    tau = comp.tau
    index = scissor_index(tokens)  # shares the frame similarities the compression computed
    degree = (index.frame_similarity > tau).sum(-1) + 1  # (T, P)
    i = torch.arange(per_frame, device=tokens.device)
    key = (degree * per_frame + (per_frame - 1 - i)).flatten()  # (N,)
    glob, num_spatial = spatial_ids(comp)
    local = _argmax_key(key, glob, num_spatial, per_frame)  # (M,) token within its frame
    frame = torch.zeros(num_spatial, dtype=torch.long, device=tokens.device)
    frame[glob] = torch.arange(frames, device=tokens.device).repeat_interleave(per_frame)
    spatial_rep = frame * per_frame + local  # (M,) flat index of each spatial representative

    reps = segment_mean(index.flat, glob, num_spatial)  # (M, d) spatial means, as SCC's
    final = torch.zeros(num_spatial, dtype=torch.long, device=tokens.device)
    final[glob] = comp.temporal_labels.flatten()  # (M,) final token of each spatial component
    m = torch.arange(num_spatial, device=tokens.device)
    key = _degrees(reps, tau) * num_spatial + (num_spatial - 1 - m)
    return spatial_rep[_argmax_key(key, final, comp.num_tokens, num_spatial)]


def merge(tokens: torch.Tensor, comp: Compression) -> torch.Tensor:
    """(K, d) the compression's tokens recomputed from ``tokens`` with autograd: the merge step
    (final = mean of its spatial means; + every token assigned to it; averaged) as in the engine.
    """
    flat = tokens.reshape(-1, tokens.shape[-1]).float()
    glob, num_spatial = spatial_ids(comp)
    final = torch.zeros(num_spatial, dtype=torch.long, device=tokens.device)
    final[glob] = comp.temporal_labels.flatten()
    finals = segment_mean(segment_mean(flat, glob, num_spatial), final, comp.num_tokens)
    assignment = comp.assignment.flatten()
    merged = finals.index_add(0, assignment, flat)
    count = torch.bincount(assignment, minlength=comp.num_tokens)
    return (merged / (1 + count)[:, None]).to(tokens.dtype)
