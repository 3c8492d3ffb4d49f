"""Pictures of LLaVA-Scissor's token partitions: overlays (numpy/PIL) and figures (plotly).

Two-line API::

    images = overlay_video(frames, comp.temporal_labels)          # list of uint8 (H, W, 3)
    fig = tau_graph_figure(index.frame_similarity[0], comp.tau, comp.spatial_labels[0])

Geometry: the model squashes every frame to a square, so token cell (r, c) of a g x g grid
covers rows r*H/g .. (r+1)*H/g and columns c*W/g .. (c+1)*W/g of an H x W frame, whatever its
aspect ratio; a pixel belongs to the cell that holds its centre (:func:`cell_of`, the one map
every overlay uses). Labels are (P,) or (g, g) arrays, numpy or torch, with P = g * g. Figures
take plain arrays, so they draw a loaded JSON partition as well as a live ``Compression``.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import sequential
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from scissor_viz.scc import merge_forest, spatial_merge_heights  # noqa: F401 - part of viz's API

GRID = 14  # LLaVA-OneVision: 14 x 14 = 196 pooled tokens per frame
MAX_EDGES = 3000  # graph figures draw at most this many edges, the strongest

CAPTIONS: dict[str, str] = {
    "overlay": "Each coloured patch is one semantic region: the tokens in it were merged into a "
    "single token. White lines separate neighbouring tokens that ended up in different regions.",
    "mean_fill": "Each region painted with its average colour: roughly what the compressed "
    "sequence still 'sees'. Large flat patches are where many tokens became one.",
    "highlight": "Only the clicked token's region stays bright, in every frame: these are all the "
    "tokens that were merged with it into one token.",
    "contact_sheet": "Several frames side by side with the same colours, so a region that keeps "
    "its colour across frames was merged into one token over time.",
    "tau_graph": "One frame's tokens as dots on their 14 x 14 grid; a line joins two tokens whose "
    "similarity is above tau. Each connected group of dots becomes one token (dot colour).",
    "temporal_graph": "Each dot is one region found inside one frame (placed at its frame and its "
    "centre). Lines join regions more similar than tau; connected regions become one final token.",
    "similarity_matrix": "Cosine similarity between every pair of tokens, rows and columns sorted "
    "by region. Bright square blocks on the diagonal are regions: tokens alike among themselves.",
    "retention": "How many tokens survive (as a share of all) for each tau: a lower tau joins "
    "more tokens and keeps fewer. The marker shows the tau in use and the share it keeps.",
    "probe": "How similar one chosen token (marked x) is to every token of every frame. Bright "
    "cells above tau are joined to it directly; its region can reach further through neighbours.",
    "heat_overlay": "The probe's similarity painted on the frame: bright means the token there "
    "looks like the chosen one to the model.",
    "tokens_per_frame": "How many tokens each frame keeps after merging inside the frame, before "
    "frames are merged with each other. Busy frames keep more, flat or static ones fewer.",
    "tau_scrub": "One frame as tau falls: every token starts alone, and regions grow by joining "
    "their most similar neighbours until the whole frame is one region.",
}


# ----------------------------------------------------------------------------- geometry


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


def _np(x: Any) -> np.ndarray:
    """A numpy view of an array or a (CPU or GPU, any float) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def _grid_of(p: int) -> int:
    g = math.isqrt(p)
    if g * g != p:
        raise ValueError(f"{p} tokens per frame is not a square grid")
    return g


def _label_grid(labels: Any) -> np.ndarray:
    """Labels of one frame as a (g, g) int64 grid."""
    lab = _np(labels).astype(np.int64)
    if lab.ndim == 1:
        g = _grid_of(lab.size)
        lab = lab.reshape(g, g)
    if lab.ndim != 2 or lab.shape[0] != lab.shape[1]:
        raise ValueError(f"labels must be (P,) or (g, g), got shape {lab.shape}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be non-negative")
    return lab


def _frame(frame: Any) -> np.ndarray:
    image = _np(frame)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _video_labels(labels: Any, frames: int) -> list[np.ndarray]:
    """Per-frame (g, g) label grids from (T, P) or (T, g, g) labels."""
    lab = _np(labels)
    if len(lab) != frames:
        raise ValueError(f"{frames} frames but labels for {len(lab)}")
    return [_label_grid(x) for x in lab]


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


def _hex(colors: np.ndarray) -> list[str]:
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.asarray(colors, dtype=np.uint8)]


def _colormap(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Viridis colours (float, 0..255) of values scaled from [vmin, vmax]."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in sequential.Viridis])
    x = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1) * (len(anchors) - 1)
    stops = np.arange(len(anchors))
    return np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=-1)


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


def _cell_sums(frame: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) pixel sums and (P,) pixel counts of every token cell."""
    h, w = frame.shape[:2]
    rows, cols = cell_edges(h, grid), cell_edges(w, grid)
    sums = _band_sums(_band_sums(frame, rows, 0), cols, 1)
    counts = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums.reshape(-1, 3), counts.reshape(-1)


def region_means(frames: Sequence[np.ndarray] | np.ndarray, labels: Any) -> np.ndarray:
    """(K, 3) float mean colour of each label's pixels over all frames (labels (T, P) or
    (T, g, g); K = max label + 1). A label with no pixels gets grey."""
    grids = _video_labels(labels, len(frames))
    num = max(int(g.max()) for g in grids) + 1
    sums, counts = np.zeros((num, 3)), np.zeros(num)
    for frame, lab in zip(frames, grids):
        cell_sum, cell_count = _cell_sums(_frame(frame), lab.shape[0])
        np.add.at(sums, lab.ravel(), cell_sum)
        np.add.at(counts, lab.ravel(), cell_count)
    means = np.full((num, 3), 128.0)
    hit = counts > 0
    means[hit] = sums[hit] / counts[hit, None]
    return means


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


def overlay(
    frame: Any,
    labels: Any,
    colors: Any = None,
    alpha: float = 0.5,
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
    image = _frame(frame)
    lab = _label_grid(labels)
    h, w = image.shape[:2]
    pixel_label = lab.ravel()[cell_index(h, w, lab.shape[0])]
    colors = palette(int(lab.max()) + 1) if colors is None else _np(colors)
    out = _blend(image, _paint(colors, pixel_label), alpha)
    if highlight is not None:
        pixel_label = pixel_label == highlight
        out = np.where(pixel_label[..., None], out, image * np.float32(dim))
    if borders:
        width = max(1, min(h, w) // 256) if border_width is None else border_width
        out[_border_mask(pixel_label, width)] = border_color
    return _to_uint8(out)


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
    grids = _video_labels(labels, len(frames))
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
    image = _frame(frame)
    vals = _np(values).astype(np.float64)
    g = _grid_of(vals.size)
    vmin = float(vals.min()) if vmin is None else vmin
    vmax = float(vals.max()) if vmax is None else vmax
    colors = _colormap(vals.ravel(), vmin, vmax)
    return _to_uint8(_blend(image, _paint(colors, cell_index(*image.shape[:2], g)), alpha))


def frame_caption(index: int, timestamp: float | None = None, tokens: int | None = None) -> str:
    """'frame 3 | 1.50 s | 12 tokens' (ASCII: PIL's built-in font has no Greek)."""
    parts = [f"frame {index}"]
    if timestamp is not None:
        parts.append(f"{timestamp:.2f} s")
    if tokens is not None:
        parts.append(f"{tokens} token{'s' if tokens != 1 else ''}")
    return " | ".join(parts)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    columns: int | None = None,
    pad: int = 4,
    background: int = 255,
) -> np.ndarray:
    """Images (uint8 (H, W, 3)) on a grid, each centred in a cell of the largest size, with an
    optional caption line under each. ``columns`` defaults to about a square sheet."""
    if not len(images):
        raise ValueError("contact_sheet needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    font_size = int(np.clip(w // 20, 10, 28))
    text_h = font_size + 6 if captions is not None else 0
    sheet = np.full((rows * (h + text_h + pad) + pad, columns * (w + pad) + pad, 3), background)
    sheet = sheet.astype(np.uint8)
    for n, im in enumerate(images):
        im = _frame(im)
        top = pad + (n // columns) * (h + text_h + pad) + (h - im.shape[0]) // 2
        left = pad + (n % columns) * (w + pad) + (w - im.shape[1]) // 2
        sheet[top : top + im.shape[0], left : left + im.shape[1]] = im
    if captions is None:
        return sheet
    canvas = Image.fromarray(sheet)
    draw, font = ImageDraw.Draw(canvas), _font(font_size)
    ink = (0, 0, 0) if background > 127 else (255, 255, 255)
    for n, text in enumerate(captions):
        x = pad + (n % columns) * (w + pad)
        y = pad + (n // columns) * (h + text_h + pad) + h + 2
        draw.text((x, y), str(text), fill=ink, font=font)
    return np.asarray(canvas)


# ----------------------------------------------------------------------------- spanning forests


def forest_labels(edges: np.ndarray, heights: np.ndarray, tau: float) -> np.ndarray:
    """(P,) region of each token at ``tau`` from :func:`merge_forest`, named by its smallest
    token index, so a region keeps its name (and colour) as it grows."""
    n = len(edges) + 1
    keep = heights > np.float32(tau)
    e = edges[keep]
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    smallest = np.full(comp.max() + 1, n)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


def spatial_counts(heights: np.ndarray, tau: float) -> np.ndarray:
    """(T,) tokens each frame keeps after the spatial step at ``tau`` (exact, from heights)."""
    return heights.shape[1] + 1 - (heights > np.float32(tau)).sum(axis=1)


def spatial_retention(heights: np.ndarray, taus: Any) -> np.ndarray:
    """Share of tokens left after the spatial step alone, at each tau (exact, vectorised)."""
    total = heights.shape[0] * (heights.shape[1] + 1)
    flat = np.sort(heights.ravel())
    above = flat.size - np.searchsorted(flat, np.asarray(taus, dtype=np.float32), side="right")
    return (total - above) / total


def retention_curve(index: Any, taus: Any) -> np.ndarray:
    """LLaVA-Scissor's retention (K / N) at each tau, from a ``ScissorIndex`` (cached there)."""
    return np.array([index.count(float(t)) for t in np.asarray(taus)]) / index.num_total


# ----------------------------------------------------------------------------- figures


def _figure(title: str, x: str, y: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 50, "b": 45},
        **layout,
    )
    return fig


def _image_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """The image squashed to side x side, as the model sees it."""
    return np.asarray(Image.fromarray(_frame(image)).resize((side, side), Image.BILINEAR))


def _edges_above(sim: np.ndarray, tau: float, max_edges: int) -> tuple[np.ndarray, ...]:
    """Upper-triangle pairs (i, j) with sim > tau, the strongest ``max_edges`` of them, and
    how many there were."""
    i, j = np.nonzero(np.triu(sim > np.float32(tau), 1))
    total = len(i)
    if total > max_edges:
        top = np.argpartition(-sim[i, j], max_edges - 1)[:max_edges]
        i, j = i[top], j[top]
    return i, j, total


def _segments(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict:
    """x/y of line segments i -> j for one Scatter trace (NaN between segments)."""
    gap = np.full(len(i), np.nan)
    return {
        "x": np.stack([x[i], x[j], gap], 1).ravel(),
        "y": np.stack([y[i], y[j], gap], 1).ravel(),
    }


def _edge_note(drawn: int, total: int) -> str:
    return f"{total} edges" if drawn == total else f"strongest {drawn} of {total} edges"


def _add_graph(
    fig: go.Figure,
    x: np.ndarray,
    y: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    labels: np.ndarray,
    size: Any,
    name: str,
    customdata: np.ndarray,
    hover: str,
    edge_alpha: float,
) -> None:
    """A graph's edges (grey lines i-j) under its nodes (dots coloured by label)."""
    fig.add_trace(
        go.Scatter(
            **_segments(x, y, i, j),
            mode="lines",
            name="edges",
            hoverinfo="skip",
            line={"color": f"rgba(60,60,60,{edge_alpha})", "width": 1},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name=name,
            marker={
                "size": size,
                "color": _hex(palette(int(labels.max()) + 1)[labels]),
                "line": {"color": "black", "width": 0.5},
            },
            customdata=customdata,
            hovertemplate=hover + "<extra></extra>",
        )
    )


def tau_graph_figure(
    similarity: Any,
    tau: float,
    labels: Any = None,
    frame: Any = None,
    max_edges: int = MAX_EDGES,
    title: str | None = None,
) -> go.Figure:
    """One frame's tau-graph on its grid: a dot per token, a line per pair with similarity
    > tau (the strongest ``max_edges``), dots coloured by region; ``frame`` underneath."""
    sim = _np(similarity).astype(np.float32)
    g = _grid_of(len(sim))
    tokens = np.arange(len(sim))
    x, y = tokens % g, tokens // g
    i, j, total = _edges_above(sim, tau, max_edges)
    lab = np.zeros(len(sim), np.int64) if labels is None else _label_grid(labels).ravel()
    fig = _figure(
        title or f"Token graph at τ = {tau:.3f}: {_edge_note(len(i), total)}",
        "column",
        "row",
        showlegend=False,
    )
    if frame is not None:
        side = 16 * g
        fig.add_trace(
            go.Image(
                source=_image_uri(_thumbnail(frame, side)),
                x0=-0.5 + 0.5 / 16,
                dx=1 / 16,
                y0=-0.5 + 0.5 / 16,
                dy=1 / 16,
                opacity=0.55,
                hoverinfo="skip",
            )
        )
    _add_graph(
        fig, x, y, i, j, lab, 9, "tokens", np.stack([tokens, lab], 1),
        "token %{customdata[0]} (row %{y}, col %{x})<br>region %{customdata[1]}", 0.45,
    )  # fmt: skip
    fig.update_xaxes(range=[-0.6, g - 0.4], showgrid=False, constrain="domain")
    fig.update_yaxes(range=[g - 0.4, -0.6], showgrid=False, scaleanchor="x")
    return fig


def spatial_representatives(tokens: Any, spatial_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean token of every spatial region, numbered across frames in frame order: ((M, d) means,
    (T, P) global region id of each token)."""
    x = _np(tokens).astype(np.float32)
    spatial = _np(spatial_labels).astype(np.int64).reshape(x.shape[:2])
    counts = spatial.max(axis=1) + 1
    glob = spatial + (np.cumsum(counts) - counts)[:, None]
    m, n = int(counts.sum()), glob.size
    member = coo_matrix((np.ones(n, np.float32), (glob.ravel(), np.arange(n))), shape=(m, n))
    sizes = np.bincount(glob.ravel(), minlength=m)
    return (member.tocsr() @ x.reshape(n, -1)) / sizes[:, None], glob


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity is then a dot product)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def temporal_graph_figure(
    tokens: Any,
    comp: Any,
    max_edges: int = MAX_EDGES,
    timestamps: Sequence[float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """The temporal step's graph: a dot per spatial region at (its frame, its mean cell), a line
    per pair of regions with similarity > tau (the strongest ``max_edges``), dots coloured by
    the final token. ``comp``: anything with spatial_labels, temporal_labels and tau."""
    reps, glob = spatial_representatives(tokens, comp.spatial_labels)
    t_count, p = glob.shape
    g = _grid_of(p)
    temporal = _np(comp.temporal_labels).astype(np.int64).reshape(t_count, p)
    m, flat = len(reps), glob.ravel()
    sizes = np.bincount(flat, minlength=m)
    cells = np.tile(np.arange(p), t_count)
    row = np.bincount(flat, weights=cells // g, minlength=m) / sizes
    col = np.bincount(flat, weights=cells % g, minlength=m) / sizes
    frame_of, final = np.zeros(m, np.int64), np.zeros(m, np.int64)
    frame_of[flat] = np.repeat(np.arange(t_count), p)
    final[flat] = temporal.ravel()  # every member of a region has its region's final token
    x = frame_of + 0.1 + 0.8 * (col + 0.5) / g
    unit = _unit(reps.astype(np.float32))
    i, j, total = _edges_above(np.clip(unit @ unit.T, -1, 1), comp.tau, max_edges)
    fig = _figure(
        title or f"Regions across frames at τ = {comp.tau:.3f}: {_edge_note(len(i), total)}",
        "frame",
        "row",
        showlegend=False,
    )
    _add_graph(
        fig, x, row, i, j, final, 4 + 2 * np.sqrt(sizes), "regions",
        np.stack([frame_of, sizes, final], 1),
        "frame %{customdata[0]}, %{customdata[1]} tokens<br>final token %{customdata[2]}", 0.35,
    )  # fmt: skip
    ticks = [
        f"{t}" if timestamps is None else f"{t} ({timestamps[t]:.1f} s)" for t in range(t_count)
    ]
    fig.update_xaxes(tickvals=np.arange(t_count) + 0.5, ticktext=ticks, range=[0, t_count])
    fig.update_yaxes(range=[g - 0.4, -0.6])
    return fig


def order_by_labels(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """A stable order that sorts ``labels``, and the positions in it where a new label starts."""
    lab = _np(labels).ravel()
    order = np.argsort(lab, kind="stable")
    return order, np.flatnonzero(np.diff(lab[order])) + 1


def similarity_matrix_figure(
    similarity: Any, labels: Any, max_size: int = 512, title: str | None = None
) -> go.Figure:
    """The similarity matrix with rows and columns grouped by label, block edges marked. Above
    ``max_size`` rows, every k-th row of the grouped order is shown (and the title says so)."""
    sim = _np(similarity).astype(np.float32)
    lab = _np(labels).ravel()
    order, _ = order_by_labels(lab)
    step = math.ceil(len(order) / max_size)
    order = order[::step]
    bounds = np.flatnonzero(np.diff(lab[order])) + 1 - 0.5
    z = sim[np.ix_(order, order)]
    z[~np.isfinite(z)] = 1.0  # the engine stores -inf on the diagonal; a token is itself
    note = "" if step == 1 else f" (1 in {step} tokens shown)"
    fig = _figure(title or f"Similarity, grouped by region{note}", "token", "token")
    hover = {"hovertemplate": "positions %{y}, %{x}: %{z:.3f}<extra></extra>"}
    if len(order) <= 256:  # token ids in the hover; beyond that they would double the payload
        pairs = np.stack(np.broadcast_arrays(order[:, None], order[None, :]), -1)
        hover = {
            "customdata": pairs,
            "hovertemplate": "tokens %{customdata[0]}, %{customdata[1]}: %{z:.3f}<extra></extra>",
        }
    fig.add_trace(
        go.Heatmap(
            z=z,
            colorscale="Viridis",
            zmax=1.0,
            colorbar={"title": "cos"},
            name="similarity",
            **hover,
        )
    )
    along = np.stack([np.full_like(bounds, -0.5), np.full_like(bounds, len(order) - 0.5)], 1)
    across = np.stack([bounds, bounds], 1)
    gap = np.full((len(bounds), 1), np.nan)
    vertical, horizontal = np.hstack([across, gap]).ravel(), np.hstack([along, gap]).ravel()
    fig.add_trace(  # vertical then horizontal lines at each block edge
        go.Scatter(
            x=np.concatenate([vertical, horizontal]),
            y=np.concatenate([horizontal, vertical]),
            mode="lines",
            name="region edges",
            hoverinfo="skip",
            line={"color": "white", "width": 1},
            showlegend=False,
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return fig


def retention_figure(
    taus: Any,
    retention: Any,
    tau: float | None = None,
    reached: float | None = None,
    spatial_heights: np.ndarray | None = None,
    title: str = "Tokens kept vs τ",
) -> go.Figure:
    """Retention against tau (from :func:`retention_curve`), the current (tau, retention) marked,
    and with ``spatial_heights`` (:func:`spatial_merge_heights`) the exact spatial-only curve."""
    taus, retention = np.asarray(taus, dtype=np.float64), np.asarray(retention)
    fig = _figure(title, "τ (similarity threshold)", "retention (tokens kept / all)")
    fig.add_trace(go.Scatter(x=taus, y=retention, mode="lines+markers", name="spatial + temporal"))
    if spatial_heights is not None:
        h = np.sort(spatial_heights.ravel()).astype(np.float64)
        total = spatial_heights.shape[0] * (spatial_heights.shape[1] + 1)
        y = (total - h.size + np.arange(h.size + 2)) / total  # one more token after each height
        x = np.concatenate([[-1.0], h, [1.0]])
        y[-1] = y[-2]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line_shape="hv",
                name="spatial step only",
                line={"dash": "dot"},
            )
        )
    if tau is not None:
        fig.add_vline(x=tau, line={"color": "grey", "dash": "dash"})
        if reached is not None:
            fig.add_trace(
                go.Scatter(
                    x=[tau],
                    y=[reached],
                    mode="markers",
                    name="current",
                    marker={"size": 12, "symbol": "x", "color": "crimson"},
                )
            )
    if taus.size:
        fig.update_xaxes(range=[taus.min(), taus.max()])
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(legend={"x": 0.02, "y": 0.98})
    return fig


def probe_similarity(tokens: Any, frame: int, token: int) -> np.ndarray:
    """(T, P) cosine similarity of token ``token`` of frame ``frame`` to every token."""
    xn = _unit(_np(tokens).astype(np.float32))
    return np.clip(xn @ xn[frame, token], -1, 1)


def probe_figure(
    similarity: Any,
    frame: int | None = None,
    token: int | None = None,
    tau: float | None = None,
    columns: int | None = None,
    title: str | None = None,
) -> go.Figure:
    """(T, P) probe similarities as one mosaic of T grid heatmaps (frame f at tile f, read
    left-to-right), the probe token marked x, cells above ``tau`` dotted."""
    sim = _np(similarity).astype(np.float32)
    t_count, p = sim.shape
    g = _grid_of(p)
    columns = columns or min(t_count, 8)
    rows = math.ceil(t_count / columns)
    mosaic = np.full((rows * (g + 1) - 1, columns * (g + 1) - 1), np.nan, dtype=np.float32)
    tile_r, tile_c = np.divmod(np.arange(t_count), columns)
    cells = np.arange(p)
    ys = (tile_r[:, None] * (g + 1) + cells // g).ravel()
    xs = (tile_c[:, None] * (g + 1) + cells % g).ravel()
    mosaic[ys, xs] = sim.ravel()
    fig = _figure(title or "Similarity to the probe token", "", "", showlegend=False)
    fig.add_trace(
        go.Heatmap(
            z=mosaic,
            colorscale="Viridis",
            zmax=1.0,
            colorbar={"title": "cos"},
            hovertemplate="%{z:.3f}<extra></extra>",
            name="similarity",
        )
    )
    if tau is not None:
        above = sim.ravel() > np.float32(tau)
        fig.add_trace(
            go.Scatter(
                x=xs[above],
                y=ys[above],
                mode="markers",
                name="above τ",
                marker={"size": 3, "color": "white"},
                hoverinfo="skip",
            )
        )
    if frame is not None and token is not None:
        k = frame * p + token
        fig.add_trace(
            go.Scatter(
                x=[xs[k]],
                y=[ys[k]],
                mode="markers",
                name="probe",
                marker={"size": 12, "symbol": "x", "color": "crimson"},
            )
        )
    for t in range(t_count):
        fig.add_annotation(
            x=tile_c[t] * (g + 1) + (g - 1) / 2,
            y=tile_r[t] * (g + 1) - 0.5,
            text=f"frame {t}",
            showarrow=False,
            yshift=8,
            font={"size": 10},
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return fig


def tokens_per_frame_figure(
    counts: Any, timestamps: Sequence[float] | None = None, title: str | None = None
) -> go.Figure:
    """Bar chart of the tokens each frame keeps after the spatial step (``comp.spatial_counts``)."""
    counts = _np(counts).ravel()
    x = np.arange(len(counts))
    mean = float(counts.mean()) if len(counts) else 0.0
    fig = _figure(
        title or f"Tokens per frame after the spatial step (mean {mean:.1f})", "frame", "tokens"
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=counts,
            name="tokens",
            marker_color=_hex(palette(1))[0],
            customdata=timestamps if timestamps is not None else x,
            hovertemplate="frame %{x}: %{y} tokens"
            + ("<br>%{customdata:.2f} s" if timestamps is not None else "")
            + "<extra></extra>",
        )
    )
    return fig


# ----------------------------------------------------------------------------- teaching


class ScrubStep(NamedTuple):
    tau: float
    regions: int
    labels: np.ndarray  # (P,) region of each token, named by its smallest token
    image: np.ndarray  # uint8 (H, W, 3)


def tau_scrub(
    frame: Any,
    similarity: Any,
    steps: int = 12,
    fill: str = "palette",
    alpha: float = 0.6,
    **kwargs: Any,
) -> list[ScrubStep]:
    """One frame's regions at ``steps`` taus as tau falls, from every token alone (P regions) to
    one region, the counts spaced geometrically. Exact, from the frame's maximum spanning tree;
    a region keeps its colour as it grows. ``fill="mean"`` paints regions their mean colour."""
    image = _frame(frame)
    edges, heights = merge_forest(similarity)
    p = len(heights) + 1
    merges = np.unique(p - np.round(np.geomspace(p, 1, max(2, steps))).astype(np.int64))
    # tau = heights[m] leaves exactly the m strongest edges above it (up to ties)
    last = np.nextafter(heights[-1], np.float32(-np.inf)) if p > 1 else np.float32(-1)
    taus = np.append(heights, last)[merges]
    out = []
    for tau in taus.astype(np.float32):
        labels = forest_labels(edges, heights, tau)
        colors = None
        if fill == "mean":
            colors = region_means([image], labels[None])
        out.append(
            ScrubStep(
                float(tau),
                len(np.unique(labels)),
                labels,
                overlay(image, labels, colors, alpha, **kwargs),
            )
        )
    return out


def tau_scrub_figure(scrub: Sequence[ScrubStep], max_side: int = 384) -> go.Figure:
    """A plotly animation (play button and slider) of :func:`tau_scrub`'s images."""

    def uri(step: ScrubStep) -> str:
        image = Image.fromarray(step.image)
        image.thumbnail((max_side, max_side))
        return _image_uri(np.asarray(image))

    names = [f"τ = {s.tau:.3f}: {s.regions} regions" for s in scrub]
    fig = _figure(f"Regions as τ falls: {names[0]}", "", "")
    fig.add_trace(go.Image(source=uri(scrub[0]), hoverinfo="skip"))
    fig.frames = [
        go.Frame(
            data=[go.Image(source=uri(s))],
            name=str(k),
            layout={"title": {"text": f"Regions as τ falls: {n}"}},
        )
        for k, (s, n) in enumerate(zip(scrub, names))
    ]
    play = {
        "frame": {"duration": 700, "redraw": True},
        "fromcurrent": True,
        "transition": {"duration": 0},
    }
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "x": 0,
                "y": -0.05,
                "xanchor": "left",
                "yanchor": "top",
                "buttons": [{"label": "Play", "method": "animate", "args": [None, play]}],
            }
        ],
        sliders=[
            {
                "active": 0,
                "x": 0.12,
                "len": 0.88,
                "y": -0.02,
                "currentvalue": {"prefix": ""},
                "steps": [
                    {
                        "label": f"{s.tau:.3f}",
                        "method": "animate",
                        "args": [[str(k)], {"mode": "immediate", "frame": {"redraw": True}}],
                    }
                    for k, s in enumerate(scrub)
                ],
            }
        ],
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


# ----------------------------------------------------------------------------- comparison

METRICS = {  # plotted against the retention asked, with their titles
    "coverage": "coverage (higher: better)",
    "redundancy": "redundancy (lower: better)",
    "retention_reached": "retention reached",
}

_COLORS = (  # SCC first, in red
    "#d62728", "#ff7f0e", "#bcbd22", "#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd",
    "#8c564b", "#e377c2", "#17becf",
)  # fmt: skip


def metric_curves_figure(
    rows: Sequence[dict], labels: dict[str, str] | None = None, video: str = ""
) -> go.Figure:
    """Each of :data:`METRICS` against the retention asked, one line per method, from rows of
    ``scissor_viz.sweep`` (keys: method, retention, backend and the metrics). ``labels`` names
    the methods; its order fixes their colours."""
    from plotly.subplots import make_subplots

    labels = labels or {}
    order = list(labels)
    fig = make_subplots(rows=1, cols=len(METRICS), subplot_titles=list(METRICS.values()))
    for method in dict.fromkeys(r["method"] for r in rows):
        color = _COLORS[(order.index(method) if method in order else len(order)) % len(_COLORS)]
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["retention"])
        for c, metric in enumerate(METRICS, start=1):
            fig.add_scatter(
                x=[r["retention"] for r in mine],
                y=[r[metric] for r in mine],
                name=labels.get(method, method),
                legendgroup=method,
                showlegend=c == 1,
                mode="lines+markers",
                line_color=color,
                row=1,
                col=c,
            )
            fig.update_xaxes(title_text="retention asked", row=1, col=c)
    backends = ", ".join(sorted({str(r["backend"]) for r in rows}))
    name = f"{Path(video).name}: " if video else ""
    fig.update_layout(title=f"{name}tokens from {backends}", height=420, template="plotly_white")
    return fig
