"""Pixel descriptors: a weight-free stand-in for the vision tower, on the configured family's
token grid (14 x 14 for LLaVA-OneVision; any rows x cols).

When no checkpoint can be loaded, the app still shows how SCC groups a video's
regions -- on colour/texture descriptors of each token cell, not on model features (what each
of the 19 numbers is, and how a clip's descriptors are made comparable: docs/models.md).
``answer`` is unavailable: nothing is ever made up.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from scissor_viz.models.base import Backend
from scissor_viz.models.cache import TokenCache
from scissor_viz.pictures.grid import TokenGrid
from scissor_viz.progress import ProgressFn, report

GRID = TokenGrid.square()  # the default: LLaVA-OneVision's 14 x 14 = 196 tokens per frame
SIZE = 384  # frames are squashed to SIZE rows (x SIZE * cols / rows columns) first, as a model's
# preprocessing squashes them to its input size
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


def _cell_sum(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum (H, W, ...) over a rows x cols grid of near-equal cells -> (rows, cols, ...)."""
    e0, e1 = _edges(x.shape[0], rows), _edges(x.shape[1], cols)
    return np.add.reduceat(np.add.reduceat(x, e0, axis=0), e1, axis=1)


def _cell_counts(h: int, w: int, rows: int, cols: int) -> np.ndarray:
    return np.outer(
        np.diff(np.append(_edges(h, rows), h)), np.diff(np.append(_edges(w, cols), w))
    ).astype(np.float32)


def frame_size(grid: TokenGrid, size: int = SIZE) -> tuple[int, int]:
    """(height, width) a frame is squashed to for ``grid``: ``size`` rows, square cells."""
    return size, max(round(size * grid.cols / grid.rows), grid.cols)


def frame_descriptors(frame: np.ndarray, size: int = SIZE, grid: TokenGrid = GRID) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (rows * cols, DESCRIPTOR_SIZE) float32, row-major cells."""
    rows, cols = grid.shape
    height, width = frame_size(grid, size)
    img = Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR)
    lab = srgb_to_lab(np.asarray(img))
    light = lab[..., 0]

    count = _cell_counts(height, width, rows, cols)[..., None]
    mean = _cell_sum(lab, rows, cols) / count
    row = np.searchsorted(_edges(height, rows), np.arange(height), side="right") - 1
    col = np.searchsorted(_edges(width, cols), np.arange(width), side="right") - 1
    centred = lab - mean[row][:, col]  # two passes: no cancellation in flat cells
    std = np.sqrt(_cell_sum(centred * centred, rows, cols) / count)

    sub = _cell_sum(light, 2 * rows, 2 * cols) / _cell_counts(height, width, 2 * rows, 2 * cols)
    quad = sub.reshape(rows, 2, cols, 2).transpose(0, 2, 1, 3).reshape(rows, cols, 4)
    quad = quad - mean[..., :1]

    gy, gx = np.gradient(light)
    mag = np.hypot(gx, gy)
    strength = _cell_sum(mag, rows, cols) / count[..., 0]
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
    bins = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(np.int64), ORIENTATION_BINS - 1)
    onehot = np.zeros((height, width, ORIENTATION_BINS), dtype=np.float32)
    np.put_along_axis(onehot, bins[..., None], mag[..., None].astype(np.float32), axis=-1)
    hist = _cell_sum(onehot, rows, cols)
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
    return out.reshape(rows * cols, DESCRIPTOR_SIZE)


def clip_descriptors(
    raw: np.ndarray, passes: int = SMOOTHING_PASSES, grid: TokenGrid = GRID
) -> np.ndarray:
    """(frames, rows * cols, 19) :func:`frame_descriptors` of one clip -> the tokens SCC
    compares.

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
    cells = x.reshape(len(x), grid.rows, grid.cols, DESCRIPTOR_SIZE)
    for _ in range(passes):
        cells = _smooth(cells)
    return cells.reshape(x.shape)


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
    """Weight-free per-cell pixel descriptors on ``grid`` (the configured family's token grid;
    a temporal group's descriptors are those of its first frame); cannot answer.

    ``stand_in_for``: the model whose features these stand in for while it encodes (the app
    shows pixel regions at once, on the model's grid, and replaces them with the model's)."""

    name = "pixels"
    source = "pixel"
    pretrained = False
    can_answer = False
    hidden_size = DESCRIPTOR_SIZE

    def __init__(
        self,
        load_error: str | None = None,
        cache: TokenCache | None = None,
        grid: TokenGrid = GRID,
        stand_in_for: str | None = None,
    ):
        super().__init__(cache)
        self.grid = grid
        self.load_error = load_error
        self.stand_in_for = stand_in_for
        height, width = frame_size(grid)
        what = "no model loaded" if stand_in_for is None else f"until {stand_in_for}'s arrive"
        self.description = (
            f"pixel descriptors — {what}: colour, colour spread, lightness layout and "
            f"edge statistics of each of the {grid.rows}×{grid.cols} cells of a {height}×{width} "
            f"frame ({DESCRIPTOR_SIZE} numbers per cell), not a model's features"
        )
        reason = "Answers need a video language model, and none is loaded."
        if stand_in_for is not None:
            reason = f"Answers come once {stand_in_for}'s features are in."
        self.unavailable_reason = f"{reason}\n{load_error}" if load_error else reason

    @classmethod
    def standing_in(
        cls, model: Backend, frames: np.ndarray, cache: TokenCache | None = None
    ) -> PixelBackend:
        """Pixel descriptors on the grid ``model`` gives these frames, standing in for its
        features while it encodes them."""
        return cls(cache=cache, grid=model.grid_for(frames), stand_in_for=model.source)

    @property
    def cache_id(self):
        return ("pixels", DESCRIPTOR_SIZE, self.grid, SIZE, SMOOTHING_PASSES)

    def _encode(self, frames: np.ndarray, progress: ProgressFn | None) -> torch.Tensor:
        step = self.grid.frames_per_group
        firsts = frames[::step]
        out = np.empty((len(firsts), self.tokens_per_frame, DESCRIPTOR_SIZE), dtype=np.float32)
        for t, frame in enumerate(firsts):
            out[t] = frame_descriptors(frame, grid=self.grid)
            report(
                progress, (t + 1) / len(firsts), f"pixel descriptors: frame {t + 1}/{len(firsts)}"
            )
        return torch.from_numpy(clip_descriptors(out, grid=self.grid))
