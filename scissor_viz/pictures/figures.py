"""Plotly figures of LLaVA-Scissor's numbers -- the similarity matrix, the probe, the retention
curve, tokens per frame, the methods' metric curves -- and the captions of every figure (the
two graphs are drawn in :mod:`scissor_viz.pictures.graphs`).

Two-line API::

    fig = retention_figure(taus, retention, comp.tau, comp.retention_reached, heights)
    fig = similarity_matrix_figure(index.frame_similarity[0], comp.spatial_labels[0])

Figures take plain arrays (numpy or torch), so they draw a loaded JSON partition as well as a
live ``Compression``; similarities come from the engine's helpers (:mod:`scissor_viz.scc`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from PIL import Image

from scissor_viz.numbers import GAP_FLOOR, tau_text
from scissor_viz.pictures.grid import as_numpy, grid_shape
from scissor_viz.pictures.regions import plural
from scissor_viz.scc import unit_rows

SPATIAL_BAR = "#c7d7ee"  # pale blue: the caption names these colours
KEPT_BAR = "#f26b30"  # orange
MAX_MATRIX = 512  # the similarity matrix shows at most this many rows (every k-th beyond)
MAX_CURVE_POINTS = 2000  # the spatial-only retention curve is thinned to about this many steps
WHITE = pio.templates["plotly_white"]  # every figure's template
TAU_TICKS = (
    -1.0,
    0.0,
    0.5,
    0.8,
    0.9,
    0.95,
    0.98,
    0.99,
    0.995,
    0.998,
    0.999,
    0.9995,
    0.9998,
    0.9999,
    0.99999,
)

CAPTIONS: dict[str, str] = {
    "tau_graph": "The frame's maximum spanning tree on its token grid: each line links two "
    "tokens, the strongest links first. Solid coloured lines are above tau and join tokens into "
    "regions (exactly the spatial step's); faint lines are the joins a lower tau would make.",
    "temporal_graph": "The temporal step: each dot is a region one frame kept, in its frame's "
    "column and in the row of the final token it joined (rows in order of the frame that keeps "
    "them). A line links a region to its most similar region when that is above tau.",
    "similarity_matrix": "Cosine similarity between the frame's tokens, grouped by region "
    "(largest first, boxed); the colour range spans the middle of the values, so blocks show.",
    "retention": "Tokens kept for each tau, with tau on a stretched axis (distance from 1, "
    "logarithmic) so the range where the count changes is spread out; x marks the tau in use.",
    "probe": "How similar the clicked token (red square) is to every token of every frame. White "
    "dots are above tau: joined to it directly; its region can reach further through neighbours.",
    "tokens_per_frame": "Pale blue bars: tokens each frame keeps after merging inside the frame. "
    "Orange bars: tokens that frame still contributes after merging across frames.",
    "metric_curves": "Each method's coverage, redundancy and reached retention against the "
    "retention asked for, on the same tokens.",
}


# ----------------------------------------------------------------------------- helpers


def new_figure(title: str, x: str, y: str, *, note: str = "", **layout: Any) -> go.Figure:
    """An empty white figure with a title, an optional one-line note under it, axis titles."""
    # Validating plotly's own white template costs 40 ms a figure, most of a redraw under the
    # slider: it is set unvalidated, and everything after it is validated as usual.
    fig = go.Figure(layout={"template": WHITE}, _validate=False)
    fig._validate = fig.layout._validate = True
    fig.update_layout(
        title={"text": title, "subtitle": {"text": note}},
        xaxis_title=x,
        yaxis_title=y,
        margin={"l": 55, "r": 20, "t": 70 if note else 50, "b": 45},
        **layout,
    )
    return fig


def image_uri(image: np.ndarray) -> str:
    """A JPEG data URI of a uint8 (H, W, 3) image (for go.Image sources: a photo under a
    graph, sent with every redraw; a tenth of the PNG's bytes)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def as_tensor(x: Any) -> torch.Tensor:
    """A float32 CPU tensor of an array or tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def cosine(x: torch.Tensor) -> np.ndarray:
    """(n, n) cosine similarities of the rows of x, float32, clamped to [-1, 1]."""
    xn = unit_rows(x)
    return (xn @ xn.T).clamp_(-1.0, 1.0).numpy()


# ----------------------------------------------------------------------------- matrices


def order_by_regions(labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stable order of the tokens grouped by label, largest region first (ties: lower
    label), the position where each group starts, and each group's size."""
    lab = as_numpy(labels).ravel().astype(np.int64)
    sizes = np.bincount(lab)
    order = np.lexsort((np.arange(len(lab)), lab, -sizes[lab]))
    starts = np.flatnonzero(np.r_[True, np.diff(lab[order]) != 0])
    return order, starts, np.diff(np.r_[starts, len(lab)])


def color_range(values: np.ndarray, low: float = 0.05) -> tuple[float, float]:
    """(zmin, zmax) that spread finite values over the colour scale: the ``low`` quantile to
    the largest value."""
    v = values[np.isfinite(values)]
    if not v.size:
        return -1.0, 1.0
    zmin, zmax = float(np.quantile(v, low)), float(v.max())
    return (zmin, zmax) if zmax > zmin else (zmin - 1e-3, zmax + 1e-3)


def similarity_matrix_figure(
    similarity: Any, labels: Any, *, max_size: int = MAX_MATRIX, title: str | None = None
) -> go.Figure:
    """The similarity matrix, tokens grouped by region (largest first) with each region of two
    or more tokens boxed, the colour range from the off-diagonal values' 5 % quantile to their
    maximum, the axes tight around the matrix. Above ``max_size`` tokens every k-th of the
    grouped order is shown (the note says so)."""
    sim = as_numpy(similarity).astype(np.float32)
    order, starts, sizes = order_by_regions(labels)
    step = math.ceil(len(order) / max_size)
    shown = order[::step]
    z = sim[np.ix_(shown, shown)]
    off = ~np.eye(len(shown), dtype=bool)
    zmin, zmax = color_range(z[off])
    z[~off] = zmax  # the engine stores -inf on the diagonal; a token is itself
    note = f"{plural(len(starts), 'region')}, {int((sizes > 1).sum())} of 2+ tokens (boxed)"
    if step > 1:
        note += f" · 1 in {step} tokens shown"
    fig = new_figure(
        title or "Similarity, grouped by region",
        "tokens, by region",
        "tokens, by region",
        note=note,
        showlegend=False,
    )
    hover = "positions %{y}, %{x}: %{z:.3f}<extra></extra>"
    fig.add_trace(
        go.Heatmap(
            z=z,
            colorscale="Viridis",
            zmin=zmin,
            zmax=zmax,
            colorbar={"title": "cos"},
            name="similarity",
            hovertemplate=hover,
        )
    )
    fig.add_trace(_region_boxes(starts, sizes, step))
    _tight_square_axes(fig, len(shown))
    return fig


def _region_boxes(starts: np.ndarray, sizes: np.ndarray, step: int) -> go.Scatter:
    """White squares around the diagonal blocks of regions of two or more tokens (group k
    spans positions starts[k] .. starts[k] + sizes[k] of the order, 1 in ``step`` shown)."""
    big = sizes > 1
    lo, hi = starts[big] / step - 0.5, (starts[big] + sizes[big]) / step - 0.5
    gap = np.full_like(lo, np.nan)
    return go.Scatter(
        x=np.stack([lo, hi, hi, lo, lo, gap], 1).ravel(),
        y=np.stack([lo, lo, hi, hi, lo, gap], 1).ravel(),
        mode="lines",
        name="regions",
        hoverinfo="skip",
        line={"color": "white", "width": 1.5},
    )


def _tight_square_axes(fig: go.Figure, n: int) -> None:
    """Axes exactly around an n x n matrix (row 0 on top), square cells, no tick labels."""
    square = {"showgrid": False, "constrain": "domain", "showticklabels": False}
    fig.update_xaxes(range=[-0.5, n - 0.5], **square)
    fig.update_yaxes(range=[n - 0.5, -0.5], scaleanchor="x", **square)


# ----------------------------------------------------------------------------- the probe


def probe_similarity(tokens: Any, frame: int, token: int) -> np.ndarray:
    """(T, P) cosine similarity of token ``token`` of frame ``frame`` to every token."""
    xn = unit_rows(as_tensor(tokens))
    return (xn @ xn[frame, token]).clamp_(-1.0, 1.0).numpy()


def _mosaic(
    values: np.ndarray, columns: int, cols: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, P) values as one image of T h x g tiles (P = h * g, g = ``cols``, square unless
    given), ``columns`` to a row, two empty (NaN) rows above every tile for its label and one
    empty column between tiles; and the mosaic row and column of every value (flattened,
    frame-major)."""
    t_count, p = values.shape
    h, g = grid_shape(p, cols)
    rows = math.ceil(t_count / columns)
    mosaic = np.full((rows * (h + 2), columns * (g + 1) - 1), np.nan, dtype=np.float32)
    tile_r, tile_c = np.divmod(np.arange(t_count), columns)
    cells = np.arange(p)
    ys = (tile_r[:, None] * (h + 2) + 2 + cells // g).ravel()
    xs = (tile_c[:, None] * (g + 1) + cells % g).ravel()
    mosaic[ys, xs] = values.ravel()
    return mosaic, ys, xs


def _label_tiles(fig: go.Figure, names: Sequence[str], columns: int, h: int, g: int) -> None:
    """A tile's name ('f3', a group's 'f2–3') in the two empty rows above each h x g tile of a
    :func:`_mosaic`: short, so labels never run into their neighbours however narrow the tiles
    (times are in the hover)."""
    for t, name in enumerate(names):
        tile_r, tile_c = divmod(t, columns)
        fig.add_annotation(
            x=tile_c * (g + 1) + (g - 1) / 2,
            y=tile_r * (h + 2) + 0.5,
            text=name,
            showarrow=False,
            font={"size": 10},
        )


def _tile_hover(shape: tuple, ys, xs, p: int, timestamps, names: Sequence[str]) -> np.ndarray:
    """Hover text of every mosaic cell: 'f3 · 1.0s · token 100' ('' between tiles)."""
    text = np.full(shape, "", dtype=object)
    frame, token = np.divmod(np.arange(len(ys)), p)
    when = [""] * len(names)
    if timestamps is not None:
        when = [f" · {s:.1f}s" for s in timestamps]
    text[ys, xs] = [f"{names[f]}{when[f]} · token {k}" for f, k in zip(frame, token)]
    return text


def _probe_marks(fig: go.Figure, xs, ys, above, frame: int | None, token: int | None, p: int):
    """White dots on the cells ``above`` tau (if given) and a red square on the clicked cell."""
    if above is not None:
        dots = {"size": 3, "color": "white"}
        fig.add_trace(
            go.Scatter(
                x=xs[above],
                y=ys[above],
                mode="markers",
                name="above τ",
                marker=dots,
                hoverinfo="skip",
            )
        )
    if frame is not None and token is not None:
        k = frame * p + token
        square = {"size": 14, "symbol": "square-open", "color": "crimson", "line": {"width": 3}}
        fig.add_trace(go.Scatter(x=[xs[k]], y=[ys[k]], mode="markers", name="probe", marker=square))


def probe_figure(
    similarity: Any,
    frame: int | None = None,
    token: int | None = None,
    tau: float | None = None,
    *,
    columns: int | None = None,
    timestamps: Sequence[float] | None = None,
    title: str | None = None,
    cols: int | None = None,
    names: Sequence[str] | None = None,
) -> go.Figure:
    """(T, P) probe similarities as one mosaic of T grid heatmaps (frame f at tile f, read
    left-to-right, labelled above with ``names``, default 'f<t>'; rows of ``cols`` cells,
    square unless given), the clicked token boxed in red, cells above ``tau`` dotted; the
    colour range spreads the values (5 % quantile to 1). ``frame`` is the clicked token's
    tile; ``timestamps`` one per tile."""
    sim = as_numpy(similarity).astype(np.float32)
    t_count, p = sim.shape
    h, g = grid_shape(p, cols)
    names = [f"f{t}" for t in range(t_count)] if names is None else list(names)
    columns = columns or min(t_count, 8)
    mosaic, ys, xs = _mosaic(sim, columns, g)
    zmin, _ = color_range(sim)
    above = sim.ravel() > np.float32(tau) if tau is not None else np.zeros(sim.size, bool)
    if frame is not None and token is not None:
        above[frame * p + token] = False  # the token itself is not news
    where = above.reshape(t_count, p).any(axis=1).sum()
    clicked = "the clicked token" if token is None else f"token {token} of frame {frame}"
    note = f"{plural(int(above.sum()), 'token')} in {plural(int(where), 'frame')} above τ"
    fig = new_figure(
        title or f"Similarity to {clicked}",
        "",
        "",
        note="" if tau is None else f"{note} = {tau_text(tau)} (white dots)",
        showlegend=False,
    )
    fig.add_trace(
        go.Heatmap(
            z=mosaic,
            colorscale="Viridis",
            zmin=min(zmin, 0.999),
            zmax=1.0,
            colorbar={"title": "cos"},
            name="similarity",
            text=_tile_hover(mosaic.shape, ys, xs, p, timestamps, names),
            hovertemplate="%{text}: %{z:.4f}<extra></extra>",
        )
    )
    _probe_marks(fig, xs, ys, above if tau is not None else None, frame, token, p)
    _label_tiles(fig, names, columns, h, g)
    rows = mosaic.shape[0] / (h + 2)  # about 520 px of tiles across: no empty bands
    fig.update_layout(height=int(np.clip(120 + rows * 520 * (h + 2) / mosaic.shape[1], 260, 900)))
    fig.update_xaxes(visible=False, range=[-0.5, mosaic.shape[1] - 0.5])
    fig.update_yaxes(visible=False, range=[mosaic.shape[0] - 0.5, -0.5], scaleanchor="x")
    return fig


# ----------------------------------------------------------------------------- curves and bars


def _gap(tau: Any) -> np.ndarray:
    """1 - tau, floored at GAP_FLOOR: the retention curve's x (on a log axis)."""
    return np.maximum(1.0 - np.asarray(tau, dtype=np.float64), GAP_FLOOR)


def _spatial_curve(heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact spatial-only retention as a step curve over 1 - tau (hold each y until the
    next x): one more token each time 1 - tau passes 1 - height; thinned to about
    MAX_CURVE_POINTS steps."""
    h = np.sort(heights.ravel())[::-1].astype(np.float64)  # gaps ascending
    total = heights.shape[0] * (heights.shape[1] + 1)
    x = np.concatenate([[GAP_FLOOR], _gap(h), [2.0]])
    y = (total - np.concatenate([[0], np.arange(1, h.size + 1), [h.size]])) / total
    keep = np.unique(np.r_[0, np.arange(0, len(x), max(1, len(x) // MAX_CURVE_POINTS)), len(x) - 1])
    return x[keep], y[keep]


def _current_point(tau: float, reached: float) -> go.Scatter:
    """A red x at the compression on screen, labelled with its tau as the page writes it."""
    return go.Scatter(
        x=_gap([tau]),
        y=[reached],
        mode="markers+text",
        name="current",
        text=[f"τ = {tau_text(tau)}"],
        textposition="middle right" if reached < 0.5 else "middle left",
        marker={"size": 13, "symbol": "x", "color": "crimson"},
        hovertemplate=f"τ = {tau!r}: %{{y:.1%}}<extra></extra>",
    )


def _tau_axis(fig: go.Figure, taus: np.ndarray) -> None:
    """x: 1 - tau on a log axis, reversed (tau grows to the right), zoomed to ``taus``,
    ticked in tau."""
    span = _gap(taus) if taus.size else _gap([-1.0, 1.0])
    lo, hi = np.log10(span.min()), np.log10(span.max())
    pad = 0.03 * max(hi - lo, 0.1)
    ticks = [t for t in TAU_TICKS if lo - pad <= np.log10(_gap(t)) <= hi + pad]
    fig.update_xaxes(
        type="log",
        range=[hi + pad, lo - pad],
        tickvals=_gap(ticks).tolist(),
        ticktext=[f"{t:g}" for t in ticks],
    )


def retention_figure(
    taus: Any,
    retention: Any,
    tau: float | None = None,
    reached: float | None = None,
    spatial_heights: np.ndarray | None = None,
    *,
    title: str = "Tokens kept vs τ",
) -> go.Figure:
    """Retention against tau (``VideoAnalysis.retention_curve``) on a log axis of 1 - tau,
    reversed so tau grows to the right and ticked in tau: the range near 1 where the count
    changes is spread out, and the axis is zoomed to the curve's taus. The current (tau,
    retention) is marked; with ``spatial_heights`` (``ScissorIndex.spatial_merge_heights``)
    the exact spatial-only curve is drawn too."""
    taus, retention = np.asarray(taus, dtype=np.float64), np.asarray(retention)
    fig = new_figure(
        title, "τ (similarity threshold, stretched near 1)", "retention (tokens kept / all)"
    )
    fig.add_trace(
        go.Scatter(
            x=_gap(taus),
            y=retention,
            mode="lines+markers",
            name="spatial + temporal",
            customdata=taus,
            hovertemplate="τ = %{customdata:.7f}: %{y:.1%}<extra></extra>",
        )
    )
    if spatial_heights is not None:
        x, y = _spatial_curve(np.asarray(spatial_heights))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line_shape="hv",
                hoverinfo="skip",
                name="spatial step only",
                line={"dash": "dot"},
            )
        )
    if tau is not None:
        fig.add_vline(x=float(_gap(tau)), line={"color": "grey", "dash": "dash"})
        if reached is not None:
            fig.add_trace(_current_point(tau, reached))
    _tau_axis(fig, np.r_[taus, [] if tau is None else [tau]])
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_layout(legend={"x": 0.02, "y": 0.98})
    return fig


def tokens_per_frame_figure(
    counts: Any,
    timestamps: Sequence[float] | None = None,
    *,
    kept: Any = None,
    title: str | None = None,
) -> go.Figure:
    """Bars of the tokens each frame keeps after the spatial step (``comp.spatial_counts``)
    and, with ``kept`` (``views.kept_per_frame(comp.temporal_labels)``), the final tokens each
    frame still contributes after the temporal step, drawn inside them."""
    counts = as_numpy(counts).ravel()
    x = np.arange(len(counts))
    mean = float(counts.mean()) if len(counts) else 0.0
    note = f"mean {mean:.0f} after the spatial step"
    if kept is not None:
        kept = as_numpy(kept).ravel()
        note += f" · {int(kept.sum()):,} kept after the temporal step"
    fig = new_figure(
        title or "Tokens per frame",
        "frame",
        "tokens",
        note=note,
        barmode="overlay",
        legend={"orientation": "h", "y": -0.22, "x": 0},
    )
    when = np.zeros(len(x)) if timestamps is None else np.asarray(timestamps, dtype=float)
    hover = "frame %{x}" + ("" if timestamps is None else " (%{customdata:.1f}s)")
    fig.add_trace(
        go.Bar(
            x=x,
            y=counts,
            name="after the spatial step",
            customdata=when,
            marker_color=SPATIAL_BAR,
            hovertemplate=hover + ": %{y} tokens<extra></extra>",
        )
    )
    if kept is not None:
        fig.add_trace(
            go.Bar(
                x=x,
                y=kept,
                name="kept after the temporal step",
                width=0.5,
                customdata=when,
                marker_color=KEPT_BAR,
                hovertemplate=hover + ": %{y} kept<extra></extra>",
            )
        )
    fig.update_xaxes(range=[-0.5, len(x) - 0.5], tickvals=_frame_ticks(len(x)))
    return fig


def _frame_ticks(count: int, most: int = 16) -> list[int]:
    """Whole frame numbers to tick, at most about ``most`` of them (never 0.5 of a frame)."""
    return list(range(0, count, max(1, math.ceil(count / most))))


# ----------------------------------------------------------------------------- comparison

METRICS = {  # plotted against the retention asked, with short subplot titles
    "coverage": "coverage ↑",
    "redundancy": "redundancy ↓",
    "retention_reached": "retention reached",
}

_COLORS = (  # SCC first, in red
    "#d62728",
    "#ff7f0e",
    "#bcbd22",
    "#1f77b4",
    "#7f7f7f",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)


def metric_curves_figure(
    rows: Sequence[dict], labels: dict[str, str] | None = None, video: str = ""
) -> go.Figure:
    """Each of :data:`METRICS` against the retention asked, one line per method, from rows of
    ``scissor_viz.sweep`` (keys: method, retention, backend and the metrics). ``labels`` names
    the methods; its order fixes their colours. Short subplot titles, the legend below."""
    from plotly.subplots import make_subplots

    labels = labels or {}
    order = list(labels)
    fig = make_subplots(
        rows=1, cols=len(METRICS), subplot_titles=list(METRICS.values()), horizontal_spacing=0.09
    )
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
    fig.update_layout(
        title=f"{name}tokens from {backends}",
        height=440,
        template=WHITE,
        legend={"orientation": "h", "y": -0.22, "x": 0},
        margin={"l": 50, "r": 20, "t": 80, "b": 90},
    )
    return fig
