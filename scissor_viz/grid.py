"""The token grid on a frame: which pixels each of the g x g token cells covers, and the checks
every picture makes on its inputs.

The model squashes every frame to a square, so token cell (r, c) of a g x g grid covers rows
r*H/g .. (r+1)*H/g and columns c*W/g .. (c+1)*W/g of an H x W frame, whatever its aspect ratio;
a pixel belongs to the cell that holds its centre (:func:`cell_of`, the one map every overlay
uses). Labels are (P,) or (g, g) arrays, numpy or torch, with P = g * g.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

GRID = 14  # LLaVA-OneVision: 14 x 14 = 196 pooled tokens per frame


def cell_of(pixels: Any, size: int, grid: int = GRID) -> np.ndarray:
    """Token row (column) of pixel rows (columns) ``pixels`` in a frame ``size`` pixels tall
    (wide): the cell k with k*size/grid <= pixel centre < (k+1)*size/grid."""
    return (2 * np.asarray(pixels, dtype=np.int64) + 1) * grid // (2 * size)


@lru_cache(maxsize=8)
def cell_index(height: int, width: int, grid: int = GRID) -> np.ndarray:
    """(H, W) read-only token index r * grid + c of every pixel of an H x W frame."""
    rows = cell_of(np.arange(height), height, grid)
    cols = cell_of(np.arange(width), width, grid)
    index = rows[:, None] * grid + cols[None, :]
    index.flags.writeable = False
    return index


def cell_edges(size: int, grid: int = GRID) -> np.ndarray:
    """(grid + 1,) first pixel of each cell along one axis, then ``size``."""
    return np.searchsorted(cell_of(np.arange(size), size, grid), np.arange(grid + 1))


def token_at(y: int, x: int, height: int, width: int, grid: int = GRID) -> int:
    """Token index of the cell under pixel (y, x), e.g. a click on the frame."""
    return int(cell_of(y, height, grid) * grid + cell_of(x, width, grid))


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


def label_grid(labels: Any) -> np.ndarray:
    """Labels of one frame as a (g, g) int64 grid."""
    lab = as_numpy(labels).astype(np.int64)
    if lab.ndim == 1:
        g = grid_side(lab.size)
        lab = lab.reshape(g, g)
    if lab.ndim != 2 or lab.shape[0] != lab.shape[1]:
        raise ValueError(f"labels must be (P,) or (g, g), got shape {lab.shape}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be non-negative")
    return lab


def label_grids(labels: Any, frames: int) -> list[np.ndarray]:
    """Per-frame (g, g) label grids from (T, P) or (T, g, g) labels of ``frames`` frames."""
    lab = as_numpy(labels)
    if len(lab) != frames:
        raise ValueError(f"{frames} frames but labels for {len(lab)}")
    return [label_grid(x) for x in lab]


def check_frame(frame: Any) -> np.ndarray:
    """The frame as a uint8 (H, W, 3) array (ValueError otherwise)."""
    image = as_numpy(frame)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image
