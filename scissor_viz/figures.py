"""Plotly figures of LLaVA-Scissor's graphs and numbers, and the captions that explain them.

Two-line API::

    fig = tau_graph_figure(index.frame_similarity[0], comp.tau, comp.spatial_labels[0])
    fig = temporal_graph_figure(tokens, comp)

Figures take plain arrays (numpy or torch), so they draw a loaded JSON partition as well as a
live ``Compression``. Similarities and region means come from the engine's helpers
(:mod:`scissor_viz.scc`), so a figure shows exactly what the engine computes.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from scissor_viz.grid import as_numpy, check_frame, grid_side, label_grid
from scissor_viz.overlay import hex_colors, palette
from scissor_viz.scc import segment_mean, unit_rows, video_labels

MAX_EDGES = 3000  # graph figures draw at most this many edges, the strongest

CAPTIONS: dict[str, str] = {
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
    "tokens_per_frame": "How many tokens each frame keeps after merging inside the frame, before "
    "frames are merged with each other. Busy frames keep more, flat or static ones fewer.",
}


# ----------------------------------------------------------------------------- helpers


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


def image_uri(image: np.ndarray) -> str:
    """A PNG data URI of a uint8 (H, W, 3) image (for go.Image sources)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """The image squashed to side x side, as the model sees it."""
    return np.asarray(Image.fromarray(check_frame(image)).resize((side, side), Image.BILINEAR))


def _tensor(x: Any) -> torch.Tensor:
    """A float32 CPU tensor of an array or tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def _cosine(x: Any) -> np.ndarray:
    """(n, n) cosine similarities of the rows of x, float32, clamped to [-1, 1]."""
    xn = unit_rows(_tensor(x))
    return (xn @ xn.T).clamp_(-1.0, 1.0).numpy()


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


@dataclass(frozen=True)
class _Nodes:
    """A graph's nodes as drawn: positions, colour labels, sizes and hover text."""

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray  # colour = palette(labels)
    size: Any  # marker size: one number or one per node
    name: str  # the trace's name
    customdata: np.ndarray
    hover: str  # hovertemplate, reading customdata


def _add_graph(
    fig: go.Figure, nodes: _Nodes, *, i: np.ndarray, j: np.ndarray, edge_alpha: float
) -> None:
    """A graph's edges (grey lines i-j) under its nodes (dots coloured by label)."""
    fig.add_trace(
        go.Scatter(
            **_segments(nodes.x, nodes.y, i, j),
            mode="lines",
            name="edges",
            hoverinfo="skip",
            line={"color": f"rgba(60,60,60,{edge_alpha})", "width": 1},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=nodes.x,
            y=nodes.y,
            mode="markers",
            name=nodes.name,
            marker={
                "size": nodes.size,
                "color": hex_colors(palette(int(nodes.labels.max()) + 1)[nodes.labels]),
                "line": {"color": "black", "width": 0.5},
            },
            customdata=nodes.customdata,
            hovertemplate=nodes.hover + "<extra></extra>",
        )
    )


# ----------------------------------------------------------------------------- graphs


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
    sim = as_numpy(similarity).astype(np.float32)
    g = grid_side(len(sim))
    tokens = np.arange(len(sim))
    i, j, total = _edges_above(sim, tau, max_edges)
    lab = np.zeros(len(sim), np.int64) if labels is None else label_grid(labels).ravel()
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
                source=image_uri(_thumbnail(frame, side)),
                x0=-0.5 + 0.5 / 16,
                dx=1 / 16,
                y0=-0.5 + 0.5 / 16,
                dy=1 / 16,
                opacity=0.55,
                hoverinfo="skip",
            )
        )
    nodes = _Nodes(
        x=tokens % g,
        y=tokens // g,
        labels=lab,
        size=9,
        name="tokens",
        customdata=np.stack([tokens, lab], 1),
        hover="token %{customdata[0]} (row %{y}, col %{x})<br>region %{customdata[1]}",
    )
    _add_graph(fig, nodes, i=i, j=j, edge_alpha=0.45)
    fig.update_xaxes(range=[-0.6, g - 0.4], showgrid=False, constrain="domain")
    fig.update_yaxes(range=[g - 0.4, -0.6], showgrid=False, scaleanchor="x")
    return fig


def spatial_representatives(tokens: Any, spatial_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean token of every spatial region, numbered across frames in frame order: ((M, d) means,
    (T, P) global region id of each token)."""
    x = _tensor(tokens)
    spatial = torch.as_tensor(as_numpy(spatial_labels).astype(np.int64)).reshape(x.shape[:2])
    glob = video_labels(spatial)
    reps = segment_mean(x.reshape(len(glob), -1), glob, int(glob.max()) + 1)
    return reps.numpy(), glob.reshape(spatial.shape).numpy()


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
    g = grid_side(p)
    temporal = as_numpy(comp.temporal_labels).astype(np.int64).reshape(t_count, p)
    m, flat = len(reps), glob.ravel()
    sizes = np.bincount(flat, minlength=m)
    cells = np.tile(np.arange(p), t_count)
    row = np.bincount(flat, weights=cells // g, minlength=m) / sizes
    col = np.bincount(flat, weights=cells % g, minlength=m) / sizes
    frame_of, final = np.zeros(m, np.int64), np.zeros(m, np.int64)
    frame_of[flat] = np.repeat(np.arange(t_count), p)
    final[flat] = temporal.ravel()  # every member of a region has its region's final token
    i, j, total = _edges_above(_cosine(reps), comp.tau, max_edges)
    fig = _figure(
        title or f"Regions across frames at τ = {comp.tau:.3f}: {_edge_note(len(i), total)}",
        "frame",
        "row",
        showlegend=False,
    )
    nodes = _Nodes(
        x=frame_of + 0.1 + 0.8 * (col + 0.5) / g,
        y=row,
        labels=final,
        size=4 + 2 * np.sqrt(sizes),
        name="regions",
        customdata=np.stack([frame_of, sizes, final], 1),
        hover="frame %{customdata[0]}, %{customdata[1]} tokens<br>final token %{customdata[2]}",
    )
    _add_graph(fig, nodes, i=i, j=j, edge_alpha=0.35)
    ticks = [
        f"{t}" if timestamps is None else f"{t} ({timestamps[t]:.1f} s)" for t in range(t_count)
    ]
    fig.update_xaxes(tickvals=np.arange(t_count) + 0.5, ticktext=ticks, range=[0, t_count])
    fig.update_yaxes(range=[g - 0.4, -0.6])
    return fig


# ----------------------------------------------------------------------------- matrices


def order_by_labels(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """A stable order that sorts ``labels``, and the positions in it where a new label starts."""
    lab = as_numpy(labels).ravel()
    order = np.argsort(lab, kind="stable")
    return order, np.flatnonzero(np.diff(lab[order])) + 1


def similarity_matrix_figure(
    similarity: Any, labels: Any, max_size: int = 512, title: str | None = None
) -> go.Figure:
    """The similarity matrix with rows and columns grouped by label, block edges marked. Above
    ``max_size`` rows, every k-th row of the grouped order is shown (and the title says so)."""
    sim = as_numpy(similarity).astype(np.float32)
    lab = as_numpy(labels).ravel()
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


def probe_similarity(tokens: Any, frame: int, token: int) -> np.ndarray:
    """(T, P) cosine similarity of token ``token`` of frame ``frame`` to every token."""
    xn = unit_rows(_tensor(tokens))
    return (xn @ xn[frame, token]).clamp_(-1.0, 1.0).numpy()


def _mosaic(values: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, P) values as one image of T g x g tiles, ``columns`` to a row, one NaN row/column
    between tiles; and the mosaic row and column of every value (flattened, frame-major)."""
    t_count, p = values.shape
    g = grid_side(p)
    rows = math.ceil(t_count / columns)
    mosaic = np.full((rows * (g + 1) - 1, columns * (g + 1) - 1), np.nan, dtype=np.float32)
    tile_r, tile_c = np.divmod(np.arange(t_count), columns)
    cells = np.arange(p)
    ys = (tile_r[:, None] * (g + 1) + cells // g).ravel()
    xs = (tile_c[:, None] * (g + 1) + cells % g).ravel()
    mosaic[ys, xs] = values.ravel()
    return mosaic, ys, xs


def _label_tiles(fig: go.Figure, t_count: int, columns: int, g: int) -> None:
    """'frame t' above each tile of a :func:`_mosaic`."""
    for t in range(t_count):
        tile_r, tile_c = divmod(t, columns)
        fig.add_annotation(
            x=tile_c * (g + 1) + (g - 1) / 2,
            y=tile_r * (g + 1) - 0.5,
            text=f"frame {t}",
            showarrow=False,
            yshift=8,
            font={"size": 10},
        )


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
    sim = as_numpy(similarity).astype(np.float32)
    t_count, p = sim.shape
    g = grid_side(p)
    columns = columns or min(t_count, 8)
    mosaic, ys, xs = _mosaic(sim, columns)
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
    _label_tiles(fig, t_count, columns, g)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return fig


# ----------------------------------------------------------------------------- curves and bars


def retention_figure(
    taus: Any,
    retention: Any,
    tau: float | None = None,
    reached: float | None = None,
    spatial_heights: np.ndarray | None = None,
    title: str = "Tokens kept vs τ",
) -> go.Figure:
    """Retention against tau (``VideoAnalysis.retention_curve``), the current (tau, retention)
    marked, and with ``spatial_heights`` (``scc.spatial_merge_heights``) the exact spatial-only
    curve."""
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


def tokens_per_frame_figure(
    counts: Any, timestamps: Sequence[float] | None = None, title: str | None = None
) -> go.Figure:
    """Bar chart of the tokens each frame keeps after the spatial step (``comp.spatial_counts``)."""
    counts = as_numpy(counts).ravel()
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
            marker_color=hex_colors(palette(1))[0],
            customdata=timestamps if timestamps is not None else x,
            hovertemplate="frame %{x}: %{y} tokens"
            + ("<br>%{customdata:.2f} s" if timestamps is not None else "")
            + "<extra></extra>",
        )
    )
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
