"""Frames with their token regions drawn on them: numpy/PIL pictures, no plotting library.

Two-line API::

    images = overlay_video(frames, comp.temporal_labels)          # list of uint8 (H, W, 3)
    caption = frame_caption(3, 1.5, 12)                           # 'frame 3 | 1.50 s | 12 tokens'

Every overlay maps pixels to token cells with :func:`scissor_viz.grid.cell_index`; colours come
from :func:`palette`, shared across frames, so one label has one colour everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from plotly.colors import sequential

from scissor_viz.grid import (
    as_numpy,
    cell_edges,
    cell_index,
    check_frame,
    grid_side,
    label_grid,
    label_grids,
)

CAPTIONS: dict[str, str] = {
    "overlay": "Each coloured patch is one semantic region: the tokens in it were merged into a "
    "single token. White lines separate neighbouring tokens that ended up in different regions.",
    "mean_fill": "Each region painted with its average colour: roughly what the compressed "
    "sequence still 'sees'. Large flat patches are where many tokens became one.",
    "highlight": "Only the clicked token's region stays bright, in every frame: these are all the "
    "tokens that were merged with it into one token.",
    "heat_overlay": "The probe's similarity painted on the frame: bright means the token there "
    "looks like the chosen one to the model.",
}


# ----------------------------------------------------------------------------- colours


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, row k for label k: golden-ratio hues, so consecutive labels are far
    apart, at three saturations and three values. Prefix-stable (palette(m) == palette(n)[:m])
    and distinct for the first 2,900 labels."""
    k = np.arange(n)
    h = (k * 0.6180339887498949 + 0.05) % 1.0 * 6.0
    s = np.array([0.80, 0.55, 0.95])[k % 3]
    v = np.array([0.95, 0.80, 0.65])[(k // 3) % 3]
    sector, f = np.floor(h).astype(np.int64) % 6, h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = np.stack(
        [
            np.choose(sector, [v, q, p, p, t, v]),
            np.choose(sector, [t, v, v, q, p, p]),
            np.choose(sector, [p, p, t, v, v, q]),
        ],
        axis=-1,
    )
    return np.round(rgb * 255).astype(np.uint8).reshape(n, 3)


def hex_colors(colors: np.ndarray) -> list[str]:
    """'#rrggbb' strings of (n, 3) uint8 colours."""
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.asarray(colors, dtype=np.uint8)]


def _viridis(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Viridis colours (float, 0..255) of values scaled from [vmin, vmax]."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in sequential.Viridis])
    x = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1) * (len(anchors) - 1)
    stops = np.arange(len(anchors))
    return np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=-1)


# ----------------------------------------------------------------------------- pixel helpers


def _band_sums(a: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Sums of ``a`` over the bands edges[k] .. edges[k+1] along ``axis`` (int64, 0 if empty)."""
    full = edges[:-1] < edges[1:]
    shape = list(a.shape)
    shape[axis] = len(full)
    out = np.zeros(shape, dtype=np.int64)
    where = [slice(None)] * a.ndim
    where[axis] = full
    out[tuple(where)] = np.add.reduceat(a, edges[:-1][full], axis=axis, dtype=np.int64)
    return out


def _cell_sums(frame: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) pixel sums and (P,) pixel counts of every token cell."""
    h, w = frame.shape[:2]
    rows, cols = cell_edges(h, grid), cell_edges(w, grid)
    sums = _band_sums(_band_sums(frame, rows, 0), cols, 1)
    counts = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums.reshape(-1, 3), counts.reshape(-1)


def _border_mask(label_map: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a boundary between two differently labelled pixels, on
    both sides of it."""
    mask = np.zeros(label_map.shape, dtype=bool)
    dx = label_map[:, 1:] != label_map[:, :-1]  # between column x and x + 1
    dy = label_map[1:] != label_map[:-1]
    w, h = dx.shape[1], dy.shape[0]
    for k in range(min(width, max(w, h))):
        mask[:, : w - k] |= dx[:, k:]  # left side
        mask[:, 1 + k :] |= dx[:, : w - k]  # right side
        mask[: h - k] |= dy[k:]
        mask[1 + k :] |= dy[: h - k]
    return mask


def _paint(colors: np.ndarray, pixel_label: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image of colour ``colors[label]`` (rounded) at every pixel, gathered as
    one packed 32-bit word per pixel (several times faster than gathering RGB rows)."""
    packed = np.zeros((len(colors), 4), dtype=np.uint8)
    packed[:, :3] = np.clip(np.asarray(colors, dtype=np.float64) + 0.5, 0, 255)
    words = packed.view(np.uint32)[:, 0][pixel_label]
    return words.view(np.uint8).reshape(*pixel_label.shape, 4)[..., :3]


def _blend(image: np.ndarray, tint: np.ndarray, alpha: float) -> np.ndarray:
    """image + alpha * (tint - image), float32."""
    out = tint.astype(np.float32)
    out -= image
    out *= np.float32(alpha)
    out += image
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + np.float32(0.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- overlays


def region_means(frames: Sequence[np.ndarray] | np.ndarray, labels: Any) -> np.ndarray:
    """(K, 3) float mean colour of each label's pixels over all frames (labels (T, P) or
    (T, g, g); K = max label + 1). A label with no pixels gets grey."""
    grids = label_grids(labels, len(frames))
    num = max(int(g.max()) for g in grids) + 1
    sums, counts = np.zeros((num, 3)), np.zeros(num)
    for frame, lab in zip(frames, grids):
        cell_sum, cell_count = _cell_sums(check_frame(frame), lab.shape[0])
        np.add.at(sums, lab.ravel(), cell_sum)
        np.add.at(counts, lab.ravel(), cell_count)
    means = np.full((num, 3), 128.0)
    hit = counts > 0
    means[hit] = sums[hit] / counts[hit, None]
    return means


def overlay(
    frame: Any,
    labels: Any,
    colors: Any = None,
    alpha: float = 0.5,
    *,
    borders: bool = True,
    border_width: int | None = None,
    border_color: tuple[int, int, int] = (255, 255, 255),
    highlight: int | None = None,
    dim: float = 0.3,
) -> np.ndarray:
    """One frame (uint8 (H, W, 3)) with each token cell tinted by its label's colour.

    ``colors``: (K, 3) colour per label (default :func:`palette`; :func:`region_means` with
    ``alpha=1`` gives the mean-colour fill). ``borders`` draws lines ``border_width`` pixels to
    each side (default: 1 per 256 pixels of the shorter side) between differently labelled
    cells. ``highlight``: keep only that label's cells tinted and outlined; scale the rest by
    ``dim``.
    """
    image = check_frame(frame)
    lab = label_grid(labels)
    h, w = image.shape[:2]
    pixel_label = lab.ravel()[cell_index(h, w, lab.shape[0])]
    colors = palette(int(lab.max()) + 1) if colors is None else as_numpy(colors)
    out = _blend(image, _paint(colors, pixel_label), alpha)
    if highlight is not None:
        pixel_label = pixel_label == highlight
        out = np.where(pixel_label[..., None], out, image * np.float32(dim))
    if borders:
        width = max(1, min(h, w) // 256) if border_width is None else border_width
        out[_border_mask(pixel_label, width)] = border_color
    return _to_uint8(out)


def overlay_video(
    frames: Sequence[np.ndarray] | np.ndarray,
    labels: Any,
    fill: str = "palette",
    alpha: float = 0.5,
    **kwargs: Any,
) -> list[np.ndarray]:
    """:func:`overlay` of every frame with its row of (T, P) labels, colours shared across frames.

    ``fill="mean"`` paints each label with the mean colour of its pixels over *all* frames (for
    temporal labels: what the one merged token stands for); use ``alpha=1`` to see only that.
    """
    grids = label_grids(labels, len(frames))
    if fill == "mean":
        colors = region_means(frames, grids)
    elif fill == "palette":
        colors = palette(max(int(g.max()) for g in grids) + 1)
    else:
        raise ValueError(f"fill must be 'palette' or 'mean', got {fill!r}")
    return [overlay(f, lab, colors, alpha, **kwargs) for f, lab in zip(frames, grids)]


def heat_overlay(
    frame: Any,
    values: Any,
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """One frame with each token cell tinted by a value (P,) or (g, g) on a viridis scale."""
    image = check_frame(frame)
    vals = as_numpy(values).astype(np.float64)
    g = grid_side(vals.size)
    vmin = float(vals.min()) if vmin is None else vmin
    vmax = float(vals.max()) if vmax is None else vmax
    colors = _viridis(vals.ravel(), vmin, vmax)
    return _to_uint8(_blend(image, _paint(colors, cell_index(*image.shape[:2], g)), alpha))


def frame_caption(index: int, timestamp: float | None = None, tokens: int | None = None) -> str:
    """'frame 3 | 1.50 s | 12 tokens' (ASCII: PIL's built-in font has no Greek)."""
    parts = [f"frame {index}"]
    if timestamp is not None:
        parts.append(f"{timestamp:.2f} s")
    if tokens is not None:
        parts.append(f"{tokens} token{'s' if tokens != 1 else ''}")
    return " | ".join(parts)
