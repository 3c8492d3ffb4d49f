"""Structured stand-ins for video tokens (tests, benchmarks, teaching): regions of prototype
vectors drifting over a 14x14 grid, plus a smooth field and noise."""

import torch
import torch.nn.functional as F


def video_tokens(
    frames: int = 8,
    side: int = 14,
    dim: int = 64,
    regions: int = 6,
    noise: float = 0.35,
    motion: float = 0.02,
    field: float = 0.6,
    seed: int = 0,
) -> torch.Tensor:
    """(frames, side*side, dim) float32 tokens: Voronoi regions that move, a smooth field, noise.

    ``regions=1, field=0, noise`` small gives a near-static video (one component per frame).
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(dim, generator=g)
    protos = 0.8 * base + torch.randn(regions, dim, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    grid = torch.stack([yy, xx], -1).reshape(-1, 2)
    seeds = torch.rand(regions, 2, generator=g)
    velocity = torch.randn(regions, 2, generator=g) * motion
    coarse = torch.randn(1, dim, frames // 4 + 2, 4, 4, generator=g)
    smooth = F.interpolate(coarse, size=(frames, side, side), mode="trilinear")[0]
    smooth = field * smooth.permute(1, 2, 3, 0).reshape(frames, side * side, dim)
    out = []
    for t in range(frames):
        region = torch.cdist(grid, seeds + velocity * t).argmin(1)
        out.append(protos[region] + smooth[t] + noise * torch.randn(side * side, dim, generator=g))
    return torch.stack(out)
