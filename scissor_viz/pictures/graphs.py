"""LLaVA-Scissor's two graphs as plotly figures: one frame's tau-graph, drawn as its maximum
spanning tree on the token grid, and the temporal step's graph of regions across frames.

Two-line API::

    fig = tau_graph_figure(index.frame_similarity[0], comp.tau, comp.spatial_labels[0], frame)
    fig = temporal_graph_figure(tokens, comp, timestamps=clip.timestamps)

Both read a ``Compression`` or a loaded ``Partition``. Their memory is bounded whatever the
video: the tau-graph draws P - 1 links, the temporal graph samples at most ``MAX_NODES``
regions (seeded) before it computes any similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from scissor_viz.numbers import tau_text
from scissor_viz.pictures.figures import as_tensor, cosine, image_uri, new_figure
from scissor_viz.pictures.grid import as_numpy, check_frame, grid_shape, label_grid
from scissor_viz.pictures.overlay import hex_colors, palette
from scissor_viz.pictures.regions import home_frames, plural
from scissor_viz.scc import components, merge_forest, segment_mean, video_labels

MAX_NODES = 16 * 196  # regions drawn at most (above, a sample): at most 38 MiB of similarity
MAX_ROWS = 40  # tokens (rows) the temporal graph draws at most
SINGLE = "#b0b0b0"  # tokens alone in their region


def _segments(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict:
    """x/y of line segments i -> j for one Scatter trace (NaN between segments)."""
    gap = np.full(len(i), np.nan)
    return {
        "x": np.stack([x[i], x[j], gap], 1).ravel(),
        "y": np.stack([y[i], y[j], gap], 1).ravel(),
    }


def _lines(fig: go.Figure, ends: tuple, *, name: str, color: str, width: float, **line) -> None:
    """One trace of the line segments i -> j between points (x, y); ``ends`` = (x, y, i, j)."""
    fig.add_trace(
        go.Scatter(
            **_segments(*ends),
            mode="lines",
            name=name,
            hoverinfo="skip",
            line={"color": color, "width": width, **line},
        )
    )


# ----------------------------------------------------------------------------- the tau graph


def _background(fig: go.Figure, frame: Any, rows: int, cols: int) -> None:
    """The frame under the rows x cols grid, squashed to the grid as the model sees it."""
    square = Image.fromarray(check_frame(frame)).resize((16 * cols, 16 * rows), Image.BILINEAR)
    fig.add_trace(
        go.Image(
            source=image_uri(np.asarray(square)),
            x0=-0.5 + 0.5 / 16,
            dx=1 / 16,
            y0=-0.5 + 0.5 / 16,
            dy=1 / 16,
            opacity=0.55,
            hoverinfo="skip",
        )
    )


def _tree_links(
    fig: go.Figure, edges: np.ndarray, heights: np.ndarray, tau: float, lab, g: int
) -> None:
    """The tree's links on the grid (rows of ``g``): faint below tau, solid and in their
    region's colour above (one trace per region: a line trace has one colour), and a hover
    point at each middle."""
    x, y = np.arange(len(lab)) % g, np.arange(len(lab)) // g
    i, j = edges[:, 0], edges[:, 1]
    above = heights > np.float32(tau)
    faint = (x, y, i[~above], j[~above])
    _lines(fig, faint, name="links below τ", color="rgba(40,40,40,0.35)", width=1, dash="dot")
    colors = hex_colors(palette(int(lab.max()) + 1))
    for region in np.unique(lab[i[above]]):
        mine = above & (lab[i] == region)
        _lines(
            fig, (x, y, i[mine], j[mine]), name=f"region {region}", color=colors[region], width=3
        )
    fig.add_trace(
        go.Scatter(
            x=(x[i] + x[j]) / 2,
            y=(y[i] + y[j]) / 2,
            mode="markers",
            name="links",
            marker={"size": 8, "opacity": 0},
            customdata=np.stack([i, j, heights], 1),
            hovertemplate="tokens %{customdata[0]}–%{customdata[1]}: similarity "
            "%{customdata[2]:.4f}<extra></extra>",
        )
    )


def _token_dots(fig: go.Figure, lab: np.ndarray, g: int) -> None:
    """A dot per token on its grid cell (rows of ``g``), in its region's colour, small and grey
    when alone."""
    sizes = np.bincount(lab)
    alone = sizes[lab] == 1
    colors = np.array(hex_colors(palette(int(lab.max()) + 1)))
    fig.add_trace(
        go.Scatter(
            x=np.arange(len(lab)) % g,
            y=np.arange(len(lab)) // g,
            mode="markers",
            name="tokens",
            marker={
                "size": np.where(alone, 6, 10),
                "color": np.where(alone, SINGLE, colors[lab]),
                "line": {"color": "black", "width": 0.5},
            },
            customdata=np.stack([np.arange(len(lab)), lab, sizes[lab]], 1),
            hovertemplate="token %{customdata[0]} (row %{y}, column %{x})<br>region "
            "%{customdata[1]}: %{customdata[2]} tokens<extra></extra>",
        )
    )


def tau_graph_figure(
    similarity: Any,
    tau: float,
    labels: Any = None,
    frame: Any = None,
    *,
    title: str | None = None,
    cols: int | None = None,
) -> go.Figure:
    """One frame's maximum spanning tree on its token grid (rows of ``cols``, square unless
    given): the P - 1 links that decide its
    regions at every tau. Links above ``tau`` are solid, one colour per region (their
    components are exactly the spatial step's regions); links below are faint. Dots are
    coloured by region (``labels``, default: the tree's components), grey when alone; ``frame``
    is drawn underneath."""
    sim = as_numpy(similarity).astype(np.float32)
    p = len(sim)
    rows, g = grid_shape(p, cols)
    edges, heights = merge_forest(sim)
    above = heights > np.float32(tau)
    if labels is None:
        labels = components(p, edges[above, 0], edges[above, 1])[1]
    lab = label_grid(labels, g).ravel()
    regions = len(np.unique(lab))
    fig = new_figure(
        title
        or f"τ = {tau_text(tau)}: {int(above.sum())} of {p - 1} tree links above τ → "
        f"{plural(regions, 'region')}",
        "column",
        "row",
        note="solid: above τ (colour = region) · dotted: below",
        showlegend=False,
    )
    if frame is not None:
        _background(fig, frame, rows, g)
    _tree_links(fig, edges, heights, tau, lab, g)
    _token_dots(fig, lab, g)
    fig.update_xaxes(range=[-0.6, g - 0.4], showgrid=False, constrain="domain")
    fig.update_yaxes(range=[rows - 0.4, -0.6], showgrid=False, scaleanchor="x")
    return fig


# ----------------------------------------------------------------------------- the temporal graph


@dataclass(frozen=True)
class _Regions:
    """The spatial regions of a compression (the temporal step's nodes), numbered across
    frames in frame order."""

    glob: np.ndarray  # (T, P) region of each token
    frame: np.ndarray  # (M,) frame of each region
    final: np.ndarray  # (M,) final token each region joined
    size: np.ndarray  # (M,) tokens in each region
    column: np.ndarray  # (M,) mean grid column of each region's tokens

    @classmethod
    def of(cls, comp: Any, cols: int | None = None) -> _Regions:
        spatial = as_numpy(comp.spatial_labels).astype(np.int64)
        t_count, p = spatial.shape
        glob = video_labels(torch.as_tensor(spatial)).numpy()
        m = int(glob.max()) + 1
        final, frame = np.zeros(m, np.int64), np.zeros(m, np.int64)
        final[glob] = as_numpy(comp.temporal_labels).astype(np.int64).ravel()
        frame[glob] = np.repeat(np.arange(t_count), p)
        size = np.bincount(glob, minlength=m)
        columns = np.tile(np.arange(p) % grid_shape(p, cols)[1], t_count)
        column = np.bincount(glob, weights=columns, minlength=m) / size
        return cls(glob.reshape(t_count, p), frame, final, size, column)


def spatial_representatives(
    tokens: Any, spatial_labels: Any, regions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean token of every spatial region, or only of ``regions`` (ids numbered across frames
    in frame order): ((M or len(regions), d) means, (T, P) region id of each token). Memory:
    the means asked for, never an M x M matrix."""
    x = as_tensor(tokens)
    spatial = torch.as_tensor(as_numpy(spatial_labels).astype(np.int64)).reshape(x.shape[:2])
    glob = video_labels(spatial)
    flat, ids, num = x.reshape(len(glob), -1), glob, int(glob.max()) + 1
    if regions is not None:  # only the chosen regions' tokens are averaged
        pick = torch.full((num,), -1, dtype=torch.long)
        pick[torch.as_tensor(regions)] = torch.arange(len(regions))
        member = pick[glob]
        flat, ids, num = flat[member >= 0], member[member >= 0], len(regions)
    return segment_mean(flat, ids, num).numpy(), glob.reshape(spatial.shape).numpy()


def strongest_links(sim: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Each node's most similar other node when that similarity is above tau, as unique
    undirected pairs (i < j); and how many pairs in all are above tau. ``sim`` (symmetric) has
    its diagonal overwritten."""
    if not len(sim):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    np.fill_diagonal(sim, -np.inf)  # in place: the caller's fresh matrix, not copied
    total = int(np.count_nonzero(sim > np.float32(tau))) // 2
    best = sim.argmax(axis=1)
    has = sim[np.arange(len(sim)), best] > np.float32(tau)
    pairs = np.unique(np.sort(np.stack([np.flatnonzero(has), best[has]], 1), axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1], total


def chosen_tokens(regions: _Regions, home: np.ndarray, rows: int) -> tuple[np.ndarray, int]:
    """The final tokens the temporal graph draws: those whose regions span two or more frames
    (the only ones the temporal step made), at most ``rows`` of them, those spanning the most
    frames first (ties: more tokens, then lower id), in order of the frame that keeps them; and
    how many tokens span two or more frames in all."""
    k = len(home)
    pairs = np.unique(np.stack([regions.final, regions.frame], 1), axis=0)
    span = np.bincount(pairs[:, 0], minlength=k)
    tokens = np.bincount(regions.final, weights=regions.size, minlength=k)
    multi = np.flatnonzero(span > 1)
    best = multi[np.lexsort((multi, -tokens[multi], -span[multi]))][:rows]
    return best[np.lexsort((best, home[best]))], len(multi)


def _region_dots(fig: go.Figure, x, y, regions: _Regions, nodes, home, frames: int) -> None:
    """A dot per drawn region, sized by its tokens (smaller when frames are many), coloured by
    the frame that keeps its token."""
    final = regions.final[nodes]
    biggest = float(np.clip(560 / max(frames, 1), 5, 16))
    size = 3 + (biggest - 3) * np.sqrt(regions.size[nodes] / regions.glob.shape[1])
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="regions",
            marker={
                "size": size,
                "color": home[final],
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": max(frames - 1, 1),
                "colorbar": {"title": "kept by<br>frame"},
                "line": {"color": "white", "width": 0.5},
            },
            customdata=np.stack([regions.frame[nodes], regions.size[nodes], final, home[final]], 1),
            hovertemplate="frame %{customdata[0]}: region of %{customdata[1]} tokens<br>final "
            "token %{customdata[2]}, kept by frame %{customdata[3]}<extra></extra>",
        )
    )


def _frame_axis(fig: go.Figure, t_count: int, timestamps: Sequence[float] | None) -> None:
    """x: one band per frame, ticked at most 16 times (with times when they fit)."""
    ticks = np.arange(0, t_count, max(1, -(-t_count // 16)))
    text = [f"{t}" if timestamps is None else f"{t}<br>{float(timestamps[t]):.1f}s" for t in ticks]
    fig.update_xaxes(tickvals=ticks + 0.5, ticktext=text, range=[0, t_count], showgrid=False)


def _temporal_note(shown: int, multi: int, tokens: int, nodes: int, m: int, seed: int) -> str:
    """What the temporal graph shows and what it leaves out."""
    if not multi:
        return "no token spans two frames: nothing was merged across frames"
    note = f"{shown:,} of {plural(multi, 'token')} that span 2+ frames"
    if shown < multi:
        note += ", most frames first"
    note += f" · {tokens - multi:,} in one frame not drawn"
    if nodes < m:
        note += f" · {nodes:,} of {m:,} regions sampled (seed {seed})"
    return note


def temporal_graph_figure(
    tokens: Any,
    comp: Any,
    *,
    timestamps: Sequence[float] | None = None,
    max_rows: int = MAX_ROWS,
    max_nodes: int = MAX_NODES,
    seed: int = 0,
    title: str | None = None,
    cols: int | None = None,
) -> go.Figure:
    """The temporal step's graph (token grids in rows of ``cols``, square unless given; one x
    band per frame or temporal group, ``timestamps`` one per band), drawn where it did
    something: one row per final token whose regions span two or more frames (at most
    ``max_rows``, :func:`chosen_tokens`), rows in order of the frame that keeps the token; in
    it a dot per spatial region of that token, at x = its frame (offset by its mean column),
    sized by its tokens; a line links each region to its most similar drawn region when that
    is above tau, so a token kept across frames is a horizontal chain. Tokens within one frame
    are counted in the note, not drawn. Above ``max_nodes`` regions a seeded sample is drawn
    (the note says so). ``comp``: spatial_labels, temporal_labels, tau."""
    regions = _Regions.of(comp, cols)
    t_count, _ = regions.glob.shape
    home = home_frames(comp.temporal_labels)  # final token -> the frame that keeps it
    rows, multi = chosen_tokens(regions, home, max_rows)
    row = np.full(len(home), -1)
    row[rows] = np.arange(len(rows))
    nodes = np.flatnonzero(row[regions.final] >= 0)
    everything = len(nodes)
    if everything > max_nodes:
        nodes = np.sort(np.random.default_rng(seed).choice(nodes, max_nodes, replace=False))
    reps, _ = spatial_representatives(tokens, comp.spatial_labels, nodes)
    i, j, _ = strongest_links(cosine(torch.from_numpy(reps)), comp.tau)
    g = grid_shape(regions.glob.shape[1], cols)[1]
    x = regions.frame[nodes] + 0.1 + 0.8 * (regions.column[nodes] + 0.5) / g
    y = row[regions.final[nodes]]
    fig = new_figure(
        title
        or f"τ = {tau_text(comp.tau)}: {len(regions.final):,} regions in "
        f"{plural(t_count, 'frame')} → {plural(len(home), 'token')}",
        "frame",
        "tokens kept across frames",
        note=_temporal_note(len(rows), multi, len(home), len(nodes), everything, seed),
        showlegend=False,
        height=int(np.clip(160 + 16 * len(rows), 360, 820)),
    )
    _lines(fig, (x, y, i, j), name="links", color="rgba(60,60,60,0.55)", width=1)
    _region_dots(fig, x, y, regions, nodes, home, t_count)
    _frame_axis(fig, t_count, timestamps)
    fig.update_yaxes(range=[max(len(rows), 1) - 0.5, -0.5], showticklabels=False, showgrid=False)
    return fig
