"""Which original token each SCC token stands for, and the merge step with autograd.

``scissor_compress`` orders its K tokens by their *representatives*: a final token's
representative is the spatial component of highest degree in the temporal graph, and a spatial
component's is its token of highest degree in the frame graph (ties to the lower index). The
engine finds them while it orders its tokens and returns them as
``Compression.representatives``, so a model that positions video tokens on their grid
(Qwen2.5-VL's M-RoPE) can place each merged token where its representative was.
"""

from __future__ import annotations

import torch

from scissor_viz.scc import Compression, segment_mean, video_labels


def spatial_ids(comp: Compression) -> tuple[torch.Tensor, int]:
    """(N,) spatial component of every token numbered across frames, and their number M."""
    return video_labels(comp.spatial_labels), int(comp.spatial_counts.sum())


def representatives(tokens: torch.Tensor, comp: Compression) -> torch.Tensor:
    """(K,) flat index (frame * P + i) of each compressed token's representative token: the
    engine's ``comp.representatives``, found while it ordered its tokens (nothing is
    recomputed here); ``tokens``, the grid SCC ran on, is only checked against the compression.

    Strictly increasing, because SCC orders its tokens by their representatives."""
    if tokens.shape[0] * tokens.shape[1] != comp.spatial_labels.numel():
        raise ValueError(
            f"tokens {tuple(tokens.shape)} are not the grid of this compression "
            f"{tuple(comp.spatial_labels.shape)}"
        )
    if comp.representatives is None:
        raise ValueError("this compression has no representatives: make it with scissor_compress")
    return comp.representatives


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
