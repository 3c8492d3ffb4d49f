"""The token grid on a frame: its geometry (:class:`TokenGrid`, what a backend's tokens form),
which pixels each of the rows x cols token cells covers, and the checks every picture makes on
its inputs.

The model squashes every frame (or temporal group of frames) to its input size, so token cell
(r, c) of a rows x cols grid covers rows r*H/rows .. (r+1)*H/rows and columns c*W/cols ..
(c+1)*W/cols of an H x W frame, whatever its aspect ratio; a pixel belongs to the cell that holds
its centre (:func:`cell_of`, the one map every overlay uses). Labels are (P,) or (rows, cols)
arrays, numpy or torch, with P = rows * cols; a (P,) array is square unless ``cols`` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

GRID = 14  # LLaVA-OneVision: 14 x 14 = 196 pooled tokens per frame


@dataclass(frozen=True)
class TokenGrid:
    """The grid a backend's tokens form: ``rows`` x ``cols`` tokens per frame, or per temporal
    group of ``frames_per_group`` frames (Qwen-VL encode frames in pairs: one grid per pair)."""

    rows: int
    cols: int
    frames_per_group: int = 1

    def __post_init__(self):
        if min(self.rows, self.cols, self.frames_per_group) < 1:
            raise ValueError(f"a token grid needs positive sizes, got {self}")

    @classmethod
    def square(cls, side: int = GRID) -> TokenGrid:
        return cls(side, side)

    @property
    def tokens_per_frame(self) -> int:
        """Tokens per frame (per temporal group where ``frames_per_group`` > 1)."""
        return self.rows * self.cols

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def groups(self, frames: int) -> int:
        """Token grids (time steps) for ``frames`` frames; a last partial group counts."""
        return -(-frames // self.frames_per_group)

    @classmethod
    def of(cls, p: int, cols: int | None = None) -> TokenGrid:
        """The grid of P tokens per frame in rows of ``cols`` (square unless given)."""
        return cls(*grid_shape(p, cols))

    def steps(self, frames: int) -> np.ndarray:
        """(frames,) the time step (token grid) each of ``frames`` frames is drawn with: a
        temporal group's frames all show their group's grid."""
        return np.arange(frames) // self.frames_per_group

    def step_name(self, step: int, frames: int) -> str:
        """How the page names time step ``step`` of a ``frames``-frame video: 'f3', or for a
        group the frames it covers, 'f2–3'."""
        first = step * self.frames_per_group
        last = min(first + self.frames_per_group, frames) - 1
        return f"f{first}" if last == first else f"f{first}–{last}"

    def __str__(self) -> str:
        group = f" per {self.frames_per_group} frames" if self.frames_per_group > 1 else ""
        return f"{self.rows} × {self.cols}{group}"


def cell_of(pixels: Any, size: int, grid: int = GRID) -> np.ndarray:
    """Token row (column) of pixel rows (columns) ``pixels`` in a frame ``size`` pixels tall
    (wide) cut into ``grid`` cells along that axis: the cell k with k*size/grid <= pixel
    centre < (k+1)*size/grid."""
    return (2 * np.asarray(pixels, dtype=np.int64) + 1) * grid // (2 * size)


@lru_cache(maxsize=8)
def cell_index(height: int, width: int, rows: int = GRID, cols: int | None = None) -> np.ndarray:
    """(H, W) read-only token index r * cols + c of every pixel of an H x W frame under a
    rows x cols grid (``cols`` defaults to ``rows``: square)."""
    cols = rows if cols is None else cols
    index = cell_of(np.arange(height), height, rows)[:, None] * cols + cell_of(
        np.arange(width), width, cols
    )
    index.flags.writeable = False
    return index


def cell_edges(size: int, grid: int = GRID) -> np.ndarray:
    """(grid + 1,) first pixel of each of ``grid`` cells along one axis, then ``size``."""
    return np.searchsorted(cell_of(np.arange(size), size, grid), np.arange(grid + 1))


def token_at(
    y: int, x: int, height: int, width: int, rows: int = GRID, cols: int | None = None
) -> int:
    """Token index of the cell under pixel (y, x), e.g. a click on the frame."""
    cols = rows if cols is None else cols
    return int(cell_of(y, height, rows) * cols + cell_of(x, width, cols))


# ----------------------------------------------------------------------------- inputs


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array or a (CPU or GPU, any float) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def grid_side(p: int) -> int:
    """g for P = g * g tokens per frame (ValueError if P is not a square)."""
    g = math.isqrt(p)
    if g * g != p:
        raise ValueError(f"{p} tokens per frame is not a square grid")
    return g


def grid_shape(p: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of P tokens per frame: square unless ``cols`` is given."""
    if cols is None:
        g = grid_side(p)
        return g, g
    if cols < 1 or p % cols:
        raise ValueError(f"{p} tokens per frame do not fill rows of {cols}")
    return p // cols, cols


def label_grid(labels: Any, cols: int | None = None) -> np.ndarray:
    """Labels of one frame as a (rows, cols) int64 grid; (P,) labels are square unless
    ``cols`` is given, (rows, cols) ones keep their shape."""
    lab = as_numpy(labels).astype(np.int64)
    if lab.ndim == 1:
        lab = lab.reshape(grid_shape(lab.size, cols))
    if lab.ndim != 2 or (cols is not None and lab.shape[1] != cols):
        raise ValueError(f"labels must be (P,) or (rows, cols), got shape {lab.shape}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be non-negative")
    return lab


def label_grids(labels: Any, frames: int, cols: int | None = None) -> list[np.ndarray]:
    """Per-frame (rows, cols) label grids from (T, P) or (T, rows, cols) labels of ``frames``
    frames."""
    lab = as_numpy(labels)
    if len(lab) != frames:
        raise ValueError(f"{frames} frames but labels for {len(lab)}")
    return [label_grid(x, cols) for x in lab]


def check_frame(frame: Any) -> np.ndarray:
    """The frame as a uint8 (H, W, 3) array (ValueError otherwise)."""
    image = as_numpy(frame)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image
