"""Frames with token regions drawn on them: numpy/PIL pictures, no plotting library.

Two-line API::

    image = overlay(frame, labels)                      # uint8 (H, W, 3), the frame stays visible
    images = overlay_video(frames, comp.assignment)     # one colour per label in every frame

The default *tint* shifts a region's hue towards its colour and leaves every pixel's luminance
as it was, so the video reads through the regions; lines are drawn between regions. Every
picture is one per-cell affine map of the frame's pixels (``scale * pixel + offset``, a
:class:`CellStyle`) followed by lines between cells, computed in fixed point for the whole
frame at once. Pixels map to token cells with :func:`scissor_viz.pictures.grid.cell_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from scissor_viz.pictures.grid import (
    GRID,
    as_numpy,
    cell_edges,
    cell_index,
    cell_of,
    check_frame,
    grid_shape,
    label_grid,
    label_grids,
)

WHITE = (255, 255, 255)
TINT = 0.55  # default strength of a region's tint (0: none, 1: the full chroma of its colour)
DIM = 0.4  # brightness kept by dimmed cells
DIM_LIFT = 18.0  # added to dimmed cells so dark frames stay readable
LINE_ALPHA = 0.7  # lines between regions: this much of their colour over the picture
RIM = 0.7  # brightness kept by the pixel either side of a line (a dark edge to the white)
_LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 luminance weights
_VIRIDIS = (
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
)


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


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance (float) of colours or images (..., 3)."""
    return np.asarray(image, dtype=np.float64) @ _LUMA


def tint_offsets(colors: Any, strength: float = TINT) -> np.ndarray:
    """(K, 3) offsets that move a pixel's chroma towards each colour without changing its
    luminance: strength * (colour - luminance(colour))."""
    colors = np.asarray(colors, dtype=np.float64)
    return strength * (colors - luminance(colors)[:, None])


def _viridis(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Viridis colours (float, 0..255) of values scaled from [vmin, vmax]."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in _VIRIDIS])
    x = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1) * (len(anchors) - 1)
    stops = np.arange(len(anchors))
    return np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=-1)


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class CellStyle:
    """How each of a frame's P token cells is drawn: its pixels become ``scale * pixel +
    offset``; then lines go between neighbouring cells whose ``outline`` ids differ."""

    scale: np.ndarray  # (P,) in [0, 1]
    offset: np.ndarray  # (P, 3), added after scaling
    outline: np.ndarray | None = None  # (P,) ids; None draws no lines
    closed: bool = False  # also line the picture's edge beside cells of outline id >= 0
    cols: int | None = None  # cells per grid row (None: a square grid of P cells)


def default_border_width(height: int, width: int) -> int:
    """Line width (pixels to each side of a boundary), growing with the picture so lines stay
    visible large and small: 1 up to 270-pixel sides, 2 at 360, 4 at 720."""
    return max(1, int(min(height, width) / 180))


def render(
    frame: Any,
    style: CellStyle,
    *,
    border_width: int | None = None,
    border_color: tuple[int, int, int] = WHITE,
    border_alpha: float = LINE_ALPHA,
) -> np.ndarray:
    """The frame drawn with ``style`` (uint8 (H, W, 3)), whole-frame integer arithmetic; lines
    are ``border_color`` blended over the picture by ``border_alpha``, edged by a pixel
    darkened to :data:`RIM` on each side (so white lines show on sky and snow too)."""
    image = check_frame(frame)
    h, w = image.shape[:2]
    expand = _expander(h, w, *grid_shape(len(style.scale), style.cols))
    scale = np.round(np.clip(style.scale, 0, 1) * 256).astype(np.uint16)
    if (scale != 256).any():
        scaled = image.astype(np.uint16)  # 255 * 256 + 128 fits in 16 bits unsigned
        scaled *= expand(scale)[..., None]
        scaled += 128
        scaled >>= 8  # round(pixel * scale), exact for scale 0 and 1
        out = scaled.view(np.int16)  # now <= 255: the same numbers, signed
    else:
        out = image.astype(np.int16)
    offset = np.clip(np.round(style.offset), -255, 255).astype(np.int16)
    if offset.any():
        out += expand(offset)
    np.clip(out, 0, 255, out=out)
    out = out.astype(np.uint8)
    if style.outline is not None:
        width = default_border_width(h, w) if border_width is None else border_width
        ids = expand(np.asarray(style.outline))
        if style.closed:  # a frame of "no outline" around the picture closes edge regions
            ids = np.pad(ids, 1, constant_values=-1)
        line, near = _border_masks(ids, width)
        if style.closed:
            line, near = line[1:-1, 1:-1], near[1:-1, 1:-1]
        # the pixels near a line through a table: rim darkened (kind 1), line blended (kind 2)
        kind = near.view(np.uint8) + line.view(np.uint8)
        where = np.flatnonzero(kind)
        flat = out.reshape(-1, 3)
        table = _line_table(tuple(border_color), border_alpha)
        flat[where] = table[np.arange(3), kind.ravel()[where][:, None], flat[where]]
    return out


@lru_cache(maxsize=8)
def _line_table(color: tuple[int, int, int], alpha: float) -> np.ndarray:
    """(3, 3, 256) uint8: for each channel, a value as it is, on a line's rim (darkened to
    :data:`RIM`) and on the line (``color`` blended over it by ``alpha``)."""
    v = np.arange(256, dtype=np.float32)
    rows = [
        np.stack([v, v * np.float32(RIM) + 0.5, v * np.float32(1 - alpha) + c * alpha + 0.5])
        for c in np.asarray(color, dtype=np.float32)
    ]
    return np.clip(np.stack(rows), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _repeats(height: int, width: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows of each cell row and pixel columns of each cell column (cell_edges' gaps)."""
    return np.diff(cell_edges(height, rows)), np.diff(cell_edges(width, cols))


def _expander(height: int, width: int, rows: int, cols: int):
    """A function from per-cell values (P, ...) of a rows x cols grid to per-pixel values
    (H, W, ...), contiguous: the same map as :func:`scissor_viz.pictures.grid.cell_index`, built by
    repeating rows and columns (several times faster than gathering through the index)."""
    row_px, col_px = _repeats(height, width, rows, cols)

    def expand(values: np.ndarray) -> np.ndarray:
        cells = values.reshape(rows, cols, *values.shape[1:])
        return np.repeat(np.repeat(cells, row_px, axis=0), col_px, axis=1)

    return expand


def _border_mask(label_map: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a boundary between two differently labelled pixels, on
    both sides of it."""
    return _border_masks(label_map, width)[0]


def _border_masks(label_map: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within ``width`` of a boundary between two differently labelled pixels (both
    sides of it), and pixels within ``width + 1`` (the line and its rim), in one pass."""
    mask = np.zeros(label_map.shape, dtype=bool)
    dx = label_map[:, 1:] != label_map[:, :-1]  # between column x and x + 1
    dy = label_map[1:] != label_map[:-1]
    w, h = dx.shape[1], dy.shape[0]
    line = mask
    for k in range(min(width + 1, max(w, h))):
        if k == width:
            line = mask.copy()
        mask[:, : w - k] |= dx[:, k:]  # left side
        mask[:, 1 + k :] |= dx[:, : w - k]  # right side
        mask[: h - k] |= dy[k:]
        mask[1 + k :] |= dy[: h - k]
    return line, mask


@lru_cache(maxsize=8)
def cell_dots(
    height: int, width: int, grid: int, cols: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) read-only masks of a small disc at every cell's centre and of the ring around it,
    on a ``grid`` x ``cols`` grid (``cols`` defaults to ``grid``: square)."""
    cols = grid if cols is None else cols
    ys, xs = cell_edges(height, grid), cell_edges(width, cols)
    cy, cx = (ys[:-1] + ys[1:] - 1) / 2, (xs[:-1] + xs[1:] - 1) / 2
    py, px = np.arange(height), np.arange(width)
    dy = (py - cy[cell_of(py, height, grid)])[:, None]
    dx = (px - cx[cell_of(px, width, cols)])[None, :]
    radius = max(1.5, min(height / grid, width / cols) / 4.5)
    dist = np.hypot(dy, dx)
    disc, ring = dist <= radius, (dist > radius) & (dist <= radius + 1.5)
    disc.flags.writeable = ring.flags.writeable = False
    return disc, ring


def mark_dots(image: np.ndarray, cells: np.ndarray, cols: int | None = None) -> np.ndarray:
    """A white dot ringed in black at the centre of every token cell in ``cells`` ((P,) bool,
    rows of ``cols`` cells; square unless given)."""
    h, w = image.shape[:2]
    shape = grid_shape(len(cells), cols)
    disc, ring = cell_dots(h, w, *shape)
    chosen = np.asarray(cells, dtype=bool)[cell_index(h, w, *shape)]
    out = image.copy()
    out[ring & chosen] = 0
    out[disc & chosen] = 255
    return out


def mark_cell(
    image: np.ndarray,
    token: int,
    *,
    grid: int = GRID,
    cols: int | None = None,
    color: tuple[int, int, int] = (220, 20, 60),
) -> np.ndarray:
    """The image with token cell ``token`` of a ``grid`` x ``cols`` grid (square unless
    ``cols`` is given) outlined (e.g. the clicked probe cell)."""
    out = check_frame(image).copy()
    h, w = out.shape[:2]
    cols = grid if cols is None else cols
    ys, xs = cell_edges(h, grid), cell_edges(w, cols)
    r, c = divmod(int(token), cols)
    y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
    t = max(1, 2 * default_border_width(h, w))
    sides = [
        (slice(y0, y0 + t), slice(x0, x1)),
        (slice(y1 - t, y1), slice(x0, x1)),
        (slice(y0, y1), slice(x0, x0 + t)),
        (slice(y0, y1), slice(x1 - t, x1)),
    ]
    for rows, cols in sides:
        out[rows, cols] = color
    return out


# ----------------------------------------------------------------------------- overlays


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


def _cell_sums(frame: np.ndarray, grid: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) pixel sums and (P,) pixel counts of every token cell of a grid x cols grid."""
    h, w = frame.shape[:2]
    rows, cols = cell_edges(h, grid), cell_edges(w, cols)
    sums = _band_sums(_band_sums(frame, rows, 0), cols, 1)
    counts = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums.reshape(-1, 3), counts.reshape(-1)


def region_means(
    frames: Sequence[np.ndarray] | np.ndarray, labels: Any, cols: int | None = None
) -> np.ndarray:
    """(K, 3) float mean colour of each label's pixels over all frames (labels (T, P) in rows
    of ``cols``, square unless given, or (T, rows, cols); K = max label + 1). A label with no
    pixels gets grey."""
    grids = label_grids(labels, len(frames), cols)
    num = max(int(g.max()) for g in grids) + 1
    sums, counts = np.zeros((num, 3)), np.zeros(num)
    for frame, lab in zip(frames, grids):
        cell_sum, cell_count = _cell_sums(check_frame(frame), *lab.shape)
        np.add.at(sums, lab.ravel(), cell_sum)
        np.add.at(counts, lab.ravel(), cell_count)
    means = np.full((num, 3), 128.0)
    hit = counts > 0
    means[hit] = sums[hit] / counts[hit, None]
    return means


def label_style(
    labels: np.ndarray,
    colors: np.ndarray,
    alpha: float,
    *,
    mode: str = "tint",
    plain: np.ndarray | None = None,
) -> CellStyle:
    """The style of (P,) labels: ``mode="tint"`` shifts each cell's hue towards its label's
    colour (luminance kept), ``"paint"`` blends towards the colour by ``alpha`` (1: solid).
    Labels with ``plain[label]`` are left as they are and share one outline id (no lines
    between two plain cells)."""
    colors = np.asarray(colors, dtype=np.float64)
    if mode == "tint":
        scale, offset = np.ones(len(colors)), tint_offsets(colors, alpha)
    elif mode == "paint":
        scale, offset = np.full(len(colors), 1.0 - alpha), alpha * colors
    else:
        raise ValueError(f"mode must be 'tint' or 'paint', got {mode!r}")
    outline = labels
    if plain is not None:
        if len(plain) != len(colors):
            raise ValueError(f"{len(plain)} plain flags for {len(colors)} colours")
        scale, offset = np.where(plain, 1.0, scale), np.where(plain[:, None], 0.0, offset)
        outline = np.where(plain[labels], -1, labels)
    return CellStyle(scale[labels], offset[labels], outline)


def overlay(
    frame: Any,
    labels: Any,
    colors: Any = None,
    alpha: float = TINT,
    *,
    mode: str = "tint",
    plain: Any = None,
    borders: bool = True,
    closed: bool = False,
    border_width: int | None = None,
    border_color: tuple[int, int, int] = WHITE,
    border_alpha: float = LINE_ALPHA,
    highlight: int | None = None,
    dim: float = DIM,
    cols: int | None = None,
) -> np.ndarray:
    """One frame (uint8 (H, W, 3)) with its token cells coloured by label: (P,) labels in rows
    of ``cols`` (square unless given) or (rows, cols) ones.

    ``colors``: (K, 3) colour per label (default :func:`palette`; :func:`region_means` with
    ``mode="paint", alpha=1`` gives the mean-colour fill). ``plain``: (K,) bool, labels left
    untinted (e.g. tokens left alone). ``borders`` draws lines ``border_width`` pixels to each
    side of a boundary, ``border_color`` at ``border_alpha`` over the picture; ``closed`` also
    along the picture's edge beside every outlined (not plain) region. ``highlight``:
    only that label's cells keep their colour and lines; the rest are scaled by ``dim``.
    """
    image = check_frame(frame)
    grid = label_grid(labels, cols)
    lab = grid.ravel()
    colors = palette(int(lab.max()) + 1) if colors is None else as_numpy(colors)
    plain = None if plain is None else np.asarray(plain, dtype=bool)
    style = label_style(lab, colors, alpha, mode=mode, plain=plain)
    if highlight is not None:
        keep = lab == highlight
        outline = np.where(keep, 1, -1)
        style = CellStyle(np.where(keep, style.scale, dim), style.offset * keep[:, None], outline)
    outline = style.outline if borders else None
    style = replace(style, outline=outline, closed=closed, cols=grid.shape[1])
    return render(
        image,
        style,
        border_width=border_width,
        border_color=border_color,
        border_alpha=border_alpha,
    )


def overlay_video(
    frames: Sequence[np.ndarray] | np.ndarray,
    labels: Any,
    fill: str = "palette",
    alpha: float | None = None,
    *,
    plain_singletons: bool = True,
    cols: int | None = None,
    **kwargs: Any,
) -> list[np.ndarray]:
    """:func:`overlay` of every frame with its row of (T, P) labels (rows of ``cols`` cells,
    square unless given; or (T, rows, cols)), colours shared across frames.

    ``fill="palette"`` tints (``alpha`` default :data:`TINT`), and a label with one cell in the
    whole video stays untinted unless ``plain_singletons=False``. ``fill="mean"`` paints each
    label with the mean colour of its pixels over *all* frames (``alpha`` default 1).
    """
    grids = label_grids(labels, len(frames), cols)
    num = max(int(g.max()) for g in grids) + 1
    if fill == "mean":
        colors, mode, plain = region_means(frames, grids), "paint", None
        alpha = 1.0 if alpha is None else alpha
    elif fill == "palette":
        colors, mode = palette(num), "tint"
        sizes = np.bincount(np.concatenate([g.ravel() for g in grids]), minlength=num)
        plain = sizes == 1 if plain_singletons else None
        alpha = TINT if alpha is None else alpha
    else:
        raise ValueError(f"fill must be 'palette' or 'mean', got {fill!r}")
    return [
        overlay(f, lab, colors, alpha, mode=mode, plain=plain, **kwargs)
        for f, lab in zip(frames, grids)
    ]


def heat_overlay(
    frame: Any,
    values: Any,
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    cols: int | None = None,
) -> np.ndarray:
    """One frame with each token cell blended towards a value's viridis colour; values (P,) in
    rows of ``cols`` (square unless given) or (rows, cols), scaled from [vmin, vmax] (default:
    their range)."""
    vals = as_numpy(values).astype(np.float64)
    cols = vals.shape[1] if vals.ndim == 2 else cols
    vals = vals.ravel()
    grid_shape(vals.size, cols)
    vmin = float(vals.min()) if vmin is None else vmin
    vmax = float(vals.max()) if vmax is None else vmax
    colors = _viridis(vals, vmin, vmax)
    return render(frame, CellStyle(np.full(vals.size, 1.0 - alpha), alpha * colors, cols=cols))
