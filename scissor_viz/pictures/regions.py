"""The Regions gallery: each frame of a compression drawn for one view, and captions that say
what that view shows.

The API::

    images = view_overlays(frames, comp, "temporal")          # list of uint8 (H, W, 3)
    captions = view_captions(comp, "temporal", timestamps)    # 'f3 · 46 cells kept as 29 tokens…'
    short = short_captions(comp, "temporal")                  # 'f3 · 29 tokens\n150 cells merged'

``comp`` is a ``Compression`` or a loaded ``Partition`` (spatial_labels, temporal_labels,
assignment). The views:

* ``spatial``: each frame's regions after the spatial step, tinted; a token left alone stays
  untinted.
* ``temporal``: what the temporal step keeps of each frame. A final token *belongs* to the first
  frame it has a cell in (:func:`home_frames`); a frame's cells whose token belongs to an earlier
  frame were merged away: they are dimmed and labelled with that frame ("→ f0"). The cells the
  frame keeps stay bright, tinted where several of them became one token. A static camera
  visibly keeps frame 0 and little else.
* ``merge``: the merge step's assignment, tinted like the spatial view; a white dot marks each
  cell the merge step moved to another token than its temporal component's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from scissor_viz.pictures.grid import TokenGrid, as_numpy, cell_edges, grid_shape
from scissor_viz.pictures.overlay import (
    DIM,
    DIM_LIFT,
    TINT,
    CellStyle,
    heat_overlay,
    mark_cell,
    mark_dots,
    palette,
    region_means,
    render,
    tint_offsets,
)
from scissor_viz.scc import components, video_labels

VIEWS = ("spatial", "temporal", "merge")
CAPTION_CHARS = 27  # what a ~190-pixel gallery thumbnail shows of a caption
MAX_MARKS = 4  # "→ f<s>" labels drawn per frame at most (the largest groups of cells)

CAPTIONS: dict[str, str] = {
    "overlay": "Each tinted patch is one region: its tokens were merged into a single token; "
    "untinted cells are tokens left alone. White lines separate regions.",
    "spatial": "After the spatial step: each tinted patch is a region of similar tokens inside "
    "one frame, merged into one token; untinted cells are tokens left alone.",
    "temporal": "After the temporal step: bright cells are what this frame keeps (tinted where "
    "several became one token); dimmed cells joined a token of the earlier frame marked → f.",
    "merge": "The merge step: every original token joins its most similar kept token (tint: "
    "several in one frame); a white dot marks a token moved away from its own component.",
    "mean_fill": "Each region painted with its average colour: roughly what the compressed "
    "sequence still 'sees'. Large flat patches are where many tokens became one.",
    "highlight": "Only the clicked token's region stays bright, in every frame: these are all the "
    "tokens that were merged with it into one token.",
    "probe_image": "The clicked token (red square) and how similar every token of its frame is "
    "to it: bright cells look like it to the model.",
}


# ----------------------------------------------------------------------------- words


def plural(count: int, noun: str) -> str:
    """'1 token', '2 tokens', '1,024 tokens'."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def frame_caption(
    index: int,
    timestamp: float | None = None,
    tokens: int | None = None,
    *,
    counts: Sequence[str] = (),
    name: str | None = None,
) -> str:
    """A thumbnail's caption, 'f3 · 2.1s · 12 tokens' (then ``counts``; ``name`` replaces
    'f3', e.g. a temporal group's 'f2–3'); the time is left out when the caption would be
    longer than :data:`CAPTION_CHARS`."""
    name = f"f{index}" if name is None else name
    facts = ([plural(tokens, "token")] if tokens is not None else []) + list(counts)
    if timestamp is not None:
        full = " · ".join([name, f"{timestamp:.1f}s", *facts])
        if len(full) <= CAPTION_CHARS:
            return full
    return " · ".join([name, *facts])


def _grid(labels: np.ndarray, grid: TokenGrid | None) -> TokenGrid:
    """``grid``, else the square grid of the labels' P tokens; checked against the labels."""
    grid = TokenGrid.of(labels.shape[1]) if grid is None else grid
    if grid.tokens_per_frame != labels.shape[1]:
        raise ValueError(f"{labels.shape[1]} tokens per frame is not a {grid} grid")
    return grid


# ----------------------------------------------------------------------------- the partition


def home_frames(temporal_labels: Any) -> np.ndarray:
    """(K,) the first frame in which each final token has a cell: the frame it belongs to."""
    t = as_numpy(temporal_labels).astype(np.int64)
    first = np.full(int(t.max()) + 1, len(t), dtype=np.int64)
    np.minimum.at(first, t.ravel(), np.repeat(np.arange(len(t)), t.shape[1]))
    return first


def merged_share(temporal_labels: Any) -> np.ndarray:
    """(T,) share of each frame's cells whose token belongs to an earlier frame (merged away
    by the temporal step)."""
    t = as_numpy(temporal_labels).astype(np.int64)
    return (home_frames(t)[t] < np.arange(len(t))[:, None]).mean(axis=1)


def kept_per_frame(temporal_labels: Any) -> np.ndarray:
    """(T,) final tokens that belong to each frame (sum: K)."""
    t = as_numpy(temporal_labels)
    return np.bincount(home_frames(t), minlength=len(t))


def view_labels(comp: Any, view: str) -> np.ndarray:
    """(T, P) labels a view colours by, numbered across the video (spatial regions of different
    frames get different ids)."""
    if view == "spatial":
        spatial = torch.as_tensor(as_numpy(comp.spatial_labels).astype(np.int64))
        return video_labels(spatial).reshape(spatial.shape).numpy()
    if view == "temporal":
        return as_numpy(comp.temporal_labels).astype(np.int64)
    if view == "merge":
        return as_numpy(comp.assignment).astype(np.int64)
    raise ValueError(f"view must be one of {VIEWS}, got {view!r}")


def _grouped(labels: np.ndarray) -> np.ndarray:
    """(T, P) whether a cell's label has another cell in the same frame."""
    key = np.arange(len(labels))[:, None] * (int(labels.max()) + 1) + labels
    return np.bincount(key.ravel())[key] > 1


# ----------------------------------------------------------------------------- overlays


def _styles(labels: np.ndarray, colors: np.ndarray, fill: bool, alpha: float) -> tuple:
    """(T, P) scale, (T, P, 3) offset and (T, P) outline ids: regions of more than one cell
    per frame tinted (or, with ``fill``, every cell painted its region's colour)."""
    grouped = _grouped(labels)
    if fill:
        scale, offset = np.zeros(labels.shape), np.asarray(colors, dtype=np.float64)[labels]
    else:
        scale = np.ones(labels.shape)
        offset = np.where(grouped[..., None], tint_offsets(colors, alpha)[labels], 0.0)
    return scale, offset, np.where(grouped, labels, -1)


def view_overlays(
    frames: Sequence[np.ndarray] | np.ndarray,
    comp: Any,
    view: str = "temporal",
    *,
    fill: bool = False,
    probe: tuple[int, int] | None = None,
    alpha: float = TINT,
    grid: TokenGrid | None = None,
) -> list[np.ndarray]:
    """Every frame drawn for ``view`` (see the module docstring) on the token ``grid`` (default:
    square). ``fill`` paints regions their mean colour over all their pixels instead of
    tinting; ``probe=(frame, token)`` keeps only that token's region (in this view) bright, in
    every frame, and outlines the token. A temporal group's grid (Qwen-VL: one per two frames)
    is drawn on each of its frames; "→ f2" then names the first frame of the group a cell's
    token belongs to."""
    labels = view_labels(comp, view)
    grid = _grid(labels, grid)
    if grid.groups(len(frames)) != len(labels):
        raise ValueError(f"{len(frames)} frames but labels for {len(labels)} {grid} grids")
    steps = grid.steps(len(frames))
    num = int(labels.max()) + 1
    colors = region_means(frames, labels[steps], grid.cols) if fill else palette(num)
    scale, offset, outline = _styles(labels, colors, fill, alpha)
    source = np.full(labels.shape, -1)
    if view == "temporal":  # cells merged into an earlier frame's token: dimmed, by that frame
        home = home_frames(labels)[labels]
        merged = home < np.arange(len(labels))[:, None]
        source[merged] = home[merged] * grid.frames_per_group  # the group's first frame
        scale[merged] *= DIM  # painted (fill): scale 0, so dimmed through its colour below
        offset[merged] = (offset[merged] * DIM if fill else 0.0) + DIM_LIFT
        outline = np.where(merged, -1, outline)  # lines around the kept regions only
    if probe is not None:
        keep = labels == labels[steps[probe[0]], probe[1]]
        scale, offset = np.where(keep, scale, DIM), offset * keep[..., None]
        outline = np.where(keep, 1, -1)
    moved = as_numpy(comp.assignment) != as_numpy(comp.temporal_labels)
    out = []
    rows, cols = grid.shape
    for t, frame in enumerate(frames):
        g = steps[t]
        image = render(frame, CellStyle(scale[g], offset[g], outline[g], closed=True, cols=cols))
        if view == "merge" and moved[g].any():
            image = mark_dots(image, moved[g], cols)
        if (source[g] >= 0).any():
            image = _source_marks(image, source[g], cols)
        if probe is not None and t == probe[0]:
            image = mark_cell(image, probe[1], grid=rows, cols=cols)
        out.append(image)
    return out


@lru_cache(maxsize=1)
def _grid_pairs(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of 4-neighbouring cells of a rows x cols grid (i < j)."""
    cells = np.arange(rows * cols).reshape(rows, cols)
    i = np.concatenate([cells[:, :-1].ravel(), cells[:-1].ravel()])
    j = np.concatenate([cells[:, 1:].ravel(), cells[1:].ravel()])
    return i, j


def _mark_places(source: np.ndarray, cols: int | None = None) -> list[tuple[int, int]]:
    """(cell, frame) for an arrow label: for each frame s that cells went to, the cell nearest
    the middle of the largest connected group of cells that went to s (largest groups first,
    at most :data:`MAX_MARKS`); ``source`` (P,) in rows of ``cols`` (square unless given)."""
    rows, g = grid_shape(len(source), cols)
    i, j = _grid_pairs(rows, g)
    same = (source[i] == source[j]) & (source[i] >= 0)
    num, blob = components(len(source), i[same], j[same])
    sizes = np.bincount(blob, minlength=num)
    blob_source = np.full(num, -1)
    blob_source[blob] = source
    order = np.argsort(-sizes, kind="stable")
    order = order[blob_source[order] >= 0]
    _, first = np.unique(blob_source[order], return_index=True)  # each frame's largest blob
    places = []
    for b in order[np.sort(first)][:MAX_MARKS]:
        cells = np.flatnonzero(blob == b)
        r, c = np.divmod(cells, g)
        near = np.argmin((r - r.mean()) ** 2 + (c - c.mean()) ** 2)
        places.append((int(cells[near]), int(blob_source[b])))
    return places


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


@lru_cache(maxsize=256)
def _mark(frame: int, size: int) -> Image.Image:
    """The RGBA label '→ f<frame>', white on a dark rounded plate (readable on any picture and
    at any size: no thin strokes to fill in when small), ``size`` pixels of text."""
    font = _font(size)
    text, arrow, gap, pad = f"f{frame}", 0.8 * size, 0.15 * size, max(2, round(0.25 * size))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = round(pad + arrow + gap + probe.textlength(text, font=font) + pad)
    height = round(size * 1.25 + pad)
    stamp = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(stamp)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=height // 3, fill=(0, 0, 0, 185))
    white = (255, 255, 255, 255)
    x0, y = pad, height / 2
    head = [
        (x0 + arrow, y),
        (x0 + arrow - 0.38 * size, y - 0.3 * size),
        (x0 + arrow - 0.38 * size, y + 0.3 * size),
    ]
    draw.line([(x0, y), (x0 + arrow - 0.3 * size, y)], fill=white, width=max(2, size // 7))
    draw.polygon(head, fill=white)
    draw.text((x0 + arrow + gap, y), text, font=font, anchor="lm", fill=white)
    return stamp


def _source_marks(image: np.ndarray, source: np.ndarray, cols: int | None = None) -> np.ndarray:
    """'→ f<s>' labels, centred on a cell where cells went to frame s (:func:`_mark_places`)."""
    h, w = image.shape[:2]
    rows, g = grid_shape(len(source), cols)
    ys, xs = cell_edges(h, rows), cell_edges(w, g)
    size = max(10, round(min(h, w) / 10))
    canvas = Image.fromarray(image)
    for cell, s in _mark_places(source, g):
        r, c = divmod(cell, g)
        stamp = _mark(s, size)
        y, x = (ys[r] + ys[r + 1]) / 2, (xs[c] + xs[c + 1]) / 2
        canvas.paste(stamp, (round(x - stamp.width / 2), round(y - stamp.height / 2)), stamp)
    return np.asarray(canvas)


def probe_image(
    frame: Any,
    similarity: Any,
    token: int,
    *,
    vmin: float | None = None,
    vmax: float = 1.0,
    cols: int | None = None,
) -> np.ndarray:
    """One frame tinted by every token's similarity (P,) to the clicked ``token`` (viridis:
    bright is similar), the clicked cell outlined in red; rows of ``cols`` (square unless
    given)."""
    sim = as_numpy(similarity).astype(np.float64).ravel()
    rows, cols = grid_shape(sim.size, cols)
    low = float(np.quantile(sim, 0.05)) if vmin is None else vmin
    image = heat_overlay(frame, sim, alpha=0.55, vmin=low, vmax=vmax, cols=cols)
    return mark_cell(image, token, grid=rows, cols=cols)


# ----------------------------------------------------------------------------- captions


def view_counts(comp: Any, view: str) -> list[list[str]]:
    """Each frame's (temporal group's) facts for ``view``, one unit per word, so the views'
    numbers explain each other (P tokens = P cells a frame):

    * spatial: ``133 regions of 196 tokens`` (the tokens the spatial step leaves);
    * temporal: ``46 cells kept as 29 tokens · 150 merged into earlier frames`` (cells: kept +
      merged = P; the tokens kept add up to K over the frames);
    * merge: ``129 tokens after merging · 24 cells moved`` (final tokens the frame's cells
      point to; cells moved away from their temporal component's token)."""
    labels = view_labels(comp, view)
    p = labels.shape[1]
    if view == "spatial":
        return [[f"{plural(int(n), 'region')} of {plural(p, 'token')}"] for n in _distinct(labels)]
    if view == "temporal":
        merged = (home_frames(labels)[labels] < np.arange(len(labels))[:, None]).sum(1)
        return [
            [f"{plural(p - int(m), 'cell')} kept as {plural(int(k), 'token')}"]
            + ([f"{m:,} merged into earlier frames"] if m else [])
            for k, m in zip(kept_per_frame(labels), merged)
        ]
    moved = (labels != as_numpy(comp.temporal_labels)).sum(1)
    return [
        [f"{plural(int(n), 'token')} after merging"]
        + ([plural(int(m), "cell") + " moved"] if m else [])
        for n, m in zip(_distinct(labels), moved)
    ]


def _distinct(labels: np.ndarray) -> np.ndarray:
    """(T,) how many different labels each frame's row holds."""
    rows = np.sort(labels, axis=1)
    return 1 + (np.diff(rows, axis=1) != 0).sum(1)


def view_captions(
    comp: Any,
    view: str = "temporal",
    timestamps: Sequence[float] | None = None,
    grid: TokenGrid | None = None,
    frames: int | None = None,
) -> list[str]:
    """One caption per frame that says what ``view`` shows of it (:func:`view_counts`), e.g.
    'f1 · 46 cells kept as 29 tokens · 150 merged into earlier frames'. With temporal groups
    (``grid.frames_per_group`` > 1; ``frames``: the video's, default all groups full) the
    counts are the group's, on its first frame ('f2–3 · …'), and its other frames say whose
    tokens they show ('f3 · tokens of f2–3')."""
    facts = view_counts(comp, view)
    step = 1 if grid is None else grid.frames_per_group
    frames = len(facts) * step if frames is None else frames
    stamps = [None] * frames if timestamps is None else [float(s) for s in timestamps]
    if step == 1:
        return [frame_caption(t, stamps[t], counts=f) for t, f in enumerate(facts)]
    out = []
    for t in range(frames):
        g, name = t // step, grid.step_name(t // step, frames)
        if t % step == 0:
            out.append(frame_caption(t, stamps[t], counts=facts[g], name=name))
        else:
            out.append(frame_caption(t, stamps[t], counts=[f"tokens of {name}"]))
    return out


def short_captions(
    comp: Any, view: str = "temporal", grid: TokenGrid | None = None, frames: int | None = None
) -> list[str]:
    """The captions of :func:`view_captions` in two short lines (a thumbnail about 120 pixels
    wide shows about 20 characters a line), the same counts in the same units, e.g.
    'f1 · 29 tokens' / '150 cells merged' (temporal: the tokens the frame keeps, and its cells
    merged into earlier frames); 'f1 · 133 regions' / 'of 196 tokens' (spatial); 'f1 · 129
    tokens' / '24 cells moved' (merge). With temporal groups the group's counts go on its first
    frame ('f2–3 · …'), as in :func:`view_captions`."""
    labels = view_labels(comp, view)
    p = labels.shape[1]
    if view == "spatial":
        lines = [(plural(int(n), "region"), f"of {plural(p, 'token')}") for n in _distinct(labels)]
    elif view == "temporal":
        merged = (home_frames(labels)[labels] < np.arange(len(labels))[:, None]).sum(1)
        lines = [
            (plural(int(k), "token"), f"{plural(int(m), 'cell')} merged" if m else "no cell merged")
            for k, m in zip(kept_per_frame(labels), merged)
        ]
    else:
        moved = (labels != as_numpy(comp.temporal_labels)).sum(1)
        lines = [
            (plural(int(n), "token"), f"{plural(int(m), 'cell')} moved" if m else "no cell moved")
            for n, m in zip(_distinct(labels), moved)
        ]
    step = 1 if grid is None else grid.frames_per_group
    if step == 1:
        return [f"f{t} · {first}\n{second}" for t, (first, second) in enumerate(lines)]
    frames = len(lines) * step if frames is None else frames
    out = []
    for t in range(frames):
        g, name = t // step, grid.step_name(t // step, frames)
        first, second = lines[g] if t % step == 0 else ("tokens", f"of {name}")
        out.append(f"{name if t % step == 0 else f'f{t}'} · {first}\n{second}")
    return out


def probe_note(
    comp: Any,
    view: str,
    frame: int,
    token: int,
    grid: TokenGrid | None = None,
    frames: int | None = None,
) -> str:
    """What the clicked token (of frame ``frame``) has in its region in ``view``,
    plural-aware; with temporal groups it counts groups of frames (``frames``: the video's,
    default all groups full)."""
    labels = view_labels(comp, view)
    grid = _grid(labels, grid)
    step, cols, n = grid.frames_per_group, grid.cols, grid.frames_per_group
    mine = labels == labels[frame // step, token]
    members, where_in = int(mine.sum()), int(mine.any(axis=1).sum())
    unit = "frame" if n == 1 else f"group of {n} frames"
    units = "frames" if n == 1 else f"groups of {n} frames"
    frames = len(labels) * n if frames is None else frames
    name = f"frame {frame}" if n == 1 else f"frames {grid.step_name(frame // n, frames)[1:]}"
    where = f"Token {token} of {name} (row {token // cols}, column {token % cols})"
    if members == 1:
        return f"{where} was kept alone: 1 token across 1 {unit}."
    counted = f"{where_in:,} {unit if where_in == 1 else units}"
    return (
        f"{where} is in a region of {plural(members, 'token')} across {counted}; they became "
        "one token."
    )
