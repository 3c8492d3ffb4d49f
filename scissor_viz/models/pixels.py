"""Pixel descriptors: a weight-free stand-in for the vision tower, on the same 14 x 14 grid.

When no LLaVA-OneVision checkpoint can be loaded, the app still shows how SCC groups a video's
regions -- on colour/texture descriptors of each token cell, not on model features (what each
of the 19 numbers is, and how a clip's descriptors are made comparable: docs/models.md).
``answer`` is unavailable: nothing is ever made up.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from scissor_viz.models.base import TOKENS_PER_FRAME, Backend
from scissor_viz.models.cache import TokenCache
from scissor_viz.progress import ProgressFn, report

GRID = 14  # cells per side: 14 x 14 = 196 = TOKENS_PER_FRAME
SIZE = 384  # frames are squashed to SIZE x SIZE first, as the model's preprocessing does
ORIENTATION_BINS = 8
DESCRIPTOR_SIZE = 3 + 3 + 4 + 1 + ORIENTATION_BINS  # 19
# the parts of a descriptor (slices of its 19 numbers) and their weights in a clip's similarity:
# colour decides what is one surface, texture refines it
PARTS = {
    "colour": slice(0, 3),
    "spread": slice(3, 6),
    "layout": slice(6, 10),
    "edges": slice(10, 19),
}
WEIGHTS = {"colour": 1.0, "spread": 0.5, "layout": 0.5, "edges": 0.5}
FLAT = 0.15  # edge strength (scaled) at which a cell's texture counts half: flatter cells' is noise
SMOOTHING_PASSES = 4  # edge-preserving passes over each frame's 4-neighbour grid

_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float32,
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float32 CIE L*a*b* (D65)."""
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE_D65
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def _edges(n: int, parts: int) -> np.ndarray:
    """Start offsets of ``parts`` near-equal segments of range(n) (for np.add.reduceat)."""
    return np.round(np.linspace(0, n, parts + 1)[:-1]).astype(np.int64)


def _cell_sum(x: np.ndarray, parts: int) -> np.ndarray:
    """Sum (H, W, ...) over a parts x parts grid of near-equal cells -> (parts, parts, ...)."""
    e0, e1 = _edges(x.shape[0], parts), _edges(x.shape[1], parts)
    return np.add.reduceat(np.add.reduceat(x, e0, axis=0), e1, axis=1)


def _cell_counts(h: int, w: int, parts: int) -> np.ndarray:
    rows = np.diff(np.append(_edges(h, parts), h))
    cols = np.diff(np.append(_edges(w, parts), w))
    return np.outer(rows, cols).astype(np.float32)


def frame_descriptors(frame: np.ndarray, size: int = SIZE, grid: int = GRID) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (grid * grid, DESCRIPTOR_SIZE) float32, row-major cells."""
    img = Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR)
    lab = srgb_to_lab(np.asarray(img))
    light = lab[..., 0]

    count = _cell_counts(size, size, grid)[..., None]
    mean = _cell_sum(lab, grid) / count
    cell = np.searchsorted(_edges(size, grid), np.arange(size), side="right") - 1
    centred = lab - mean[cell][:, cell]  # two passes: no cancellation in flat cells
    std = np.sqrt(_cell_sum(centred * centred, grid) / count)

    sub = _cell_sum(light, 2 * grid) / _cell_counts(size, size, 2 * grid)  # (2g, 2g)
    quad = sub.reshape(grid, 2, grid, 2).transpose(0, 2, 1, 3).reshape(grid, grid, 4)
    quad = quad - mean[..., :1]

    gy, gx = np.gradient(light)
    mag = np.hypot(gx, gy)
    strength = _cell_sum(mag, grid) / count[..., 0]
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
    bins = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(np.int64), ORIENTATION_BINS - 1)
    onehot = np.zeros((size, size, ORIENTATION_BINS), dtype=np.float32)
    np.put_along_axis(onehot, bins[..., None], mag[..., None].astype(np.float32), axis=-1)
    hist = _cell_sum(onehot, grid)
    hist = hist / np.maximum(hist.sum(-1, keepdims=True), 1e-6) - 1.0 / ORIENTATION_BINS

    scale_mean = np.array([50.0, 50.0, 50.0], dtype=np.float32)
    offset_mean = np.array([50.0, 0.0, 0.0], dtype=np.float32)
    parts = [
        (mean - offset_mean) / scale_mean,
        std / 25.0,
        quad / 25.0,
        strength[..., None] / 10.0,
        hist,
    ]
    out = np.concatenate(parts, axis=-1).astype(np.float32)
    return out.reshape(grid * grid, DESCRIPTOR_SIZE)


def clip_descriptors(raw: np.ndarray, passes: int = SMOOTHING_PASSES) -> np.ndarray:
    """(frames, 196, 19) :func:`frame_descriptors` of one clip -> the tokens SCC compares.

    Fixed scales leave every cosine similarity near 1, so nothing stands out. Here (1) a flat
    cell's texture numbers, mostly noise, fade towards zero; (2) each number is standardised
    over the clip and each part weighted (:data:`WEIGHTS`), so similarity compares cells with
    the clip's own spread; (3) each cell is averaged with those of its 4 neighbours that look
    alike (weights fall off with distance), so one surface becomes one region and edges stay.
    """
    x = raw.astype(np.float32).copy()
    strength = x[..., PARTS["edges"].start : PARTS["edges"].start + 1]
    texture = slice(PARTS["spread"].start, DESCRIPTOR_SIZE)
    x[..., texture] *= strength / (strength + FLAT)
    flat = x.reshape(-1, DESCRIPTOR_SIZE)
    x = (x - flat.mean(0)) / np.maximum(flat.std(0), 1e-6)
    for part, where in PARTS.items():
        x[..., where] *= WEIGHTS[part] / np.sqrt(where.stop - where.start)
    grid = x.reshape(len(x), GRID, GRID, DESCRIPTOR_SIZE)
    for _ in range(passes):
        grid = _smooth(grid)
    return grid.reshape(x.shape)


def _smooth(grid: np.ndarray) -> np.ndarray:
    """One edge-preserving pass: each cell averaged with its 4 neighbours, each weighted by
    exp(-distance² / median neighbour distance²) (a neighbour across an edge counts little)."""
    pad = np.pad(grid, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    shifts = [pad[:, :-2, 1:-1], pad[:, 2:, 1:-1], pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]]
    dist = np.stack([((s - grid) ** 2).sum(-1) for s in shifts])  # (4, T, g, g)
    scale = max(float(np.median(dist[dist > 0])) if (dist > 0).any() else 1.0, 1e-12)
    weight = np.exp(-dist / scale)[..., None]
    total = grid + sum(w * s for w, s in zip(weight, shifts, strict=True))
    return total / (1.0 + weight.sum(0))


class PixelBackend(Backend):
    """Weight-free per-cell pixel descriptors; cannot answer."""

    name = "pixels"
    pretrained = False
    can_answer = False
    hidden_size = DESCRIPTOR_SIZE
    tokens_per_frame = TOKENS_PER_FRAME

    def __init__(self, load_error: str | None = None, cache: TokenCache | None = None):
        super().__init__(cache)
        self.load_error = load_error
        self.description = (
            "pixel descriptors — no model loaded: colour, colour spread, lightness layout and "
            f"edge statistics of each of the 14×14 cells of a 384×384 frame ({DESCRIPTOR_SIZE} "
            "numbers per cell), not LLaVA-OneVision features"
        )
        reason = "Answers need a LLaVA-OneVision model, and none is loaded."
        self.unavailable_reason = f"{reason}\n{load_error}" if load_error else reason

    @property
    def cache_id(self):
        return ("pixels", DESCRIPTOR_SIZE, GRID, SIZE, SMOOTHING_PASSES)

    def _encode(self, frames: np.ndarray, progress: ProgressFn | None) -> torch.Tensor:
        out = np.empty((len(frames), TOKENS_PER_FRAME, DESCRIPTOR_SIZE), dtype=np.float32)
        for t, frame in enumerate(frames):
            out[t] = frame_descriptors(frame)
            report(
                progress, (t + 1) / len(frames), f"pixel descriptors: frame {t + 1}/{len(frames)}"
            )
        return torch.from_numpy(clip_descriptors(out))
