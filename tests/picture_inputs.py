"""Inputs the picture tests share: tokens with known regions, textured frames, what a static
camera gives, and readers of drawn figures."""

from types import SimpleNamespace

import numpy as np
import torch

from scissor_viz.pictures import overlay

G, P = 14, 196  # the default token grid: 14 x 14 cells, 196 tokens a frame


def region_tokens(frames: int = 4, dim: int = 32, noise: float = 0.35, seed: int = 0):
    """(T, P, dim) tokens: a prototype per region plus noise, regions = two background halves and
    a square that moves right one cell a frame; also the (T, 14, 14) region map."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(4, dim, generator=gen)
    regions = np.zeros((frames, G, G), dtype=np.int64)
    regions[:, 7:] = 1
    for t in range(frames):
        regions[t, 3:8, 2 + t : 7 + t] = 2
        regions[t, 10:13, 9:12] = 3
    x = protos[torch.from_numpy(regions).reshape(frames, P)]
    return x + noise * torch.randn(x.shape, generator=gen), regions


def drawn_edges(trace, x, y) -> list[tuple[int, int]]:
    """Node pairs of a NaN-separated line trace, matched back to node positions."""
    xs, ys = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    assert len(xs) % 3 == 0 and np.isnan(xs[2::3]).all()
    where = {(round(a, 6), round(b, 6)): k for k, (a, b) in enumerate(zip(x, y))}
    ends = [
        where[(round(a, 6), round(b, 6))]
        for a, b in zip(xs[np.arange(len(xs)) % 3 != 2], ys[np.arange(len(ys)) % 3 != 2])
    ]
    return list(zip(ends[0::2], ends[1::2]))


def textured_frames(count: int, height: int = 84, width: int = 140, seed: int = 0) -> np.ndarray:
    """uint8 frames with detail at every scale: gradients, stripes, blobs and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    out = []
    for k in range(count):
        base = 128 + 60 * np.sin(9 * x + k) * np.cos(7 * y) + 40 * (((x * 23 + y * 5) % 1) > 0.5)
        rgb = np.stack([base, base * 0.8 + 30, 255 - base], -1) + rng.normal(
            0, 12, (height, width, 3)
        )
        out.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return np.stack(out)


def luminance_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' luminance."""
    la, lb = overlay.luminance(a).ravel(), overlay.luminance(b).ravel()
    return float(np.corrcoef(la, lb)[0, 1])


def static_partition(frames: int = 4, new: int = 3) -> SimpleNamespace:
    """What a static camera gives: every cell of frame 0 is its own final token, and each later
    frame's cells join frame 0's token at the same place, except ``new`` cells per frame that
    start tokens of their own (two of them one token); the merge step moves 2 cells."""
    temporal = np.tile(np.arange(P), (frames, 1))
    k = P
    for t in range(1, frames):
        temporal[t, :new] = [k, k] + list(range(k + 1, k + new - 1))
        k += new - 1
    spatial = np.tile(np.arange(P), (frames, 1))
    for t in range(1, frames):
        spatial[t, 1:] = np.arange(P - 1)
    assignment = temporal.copy()
    assignment[0, 100], assignment[2, 150] = 101, 151
    return SimpleNamespace(
        spatial_labels=spatial, temporal_labels=temporal, assignment=assignment, tau=0.9
    )
