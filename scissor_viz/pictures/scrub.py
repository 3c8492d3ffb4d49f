"""The tau scrubber: one frame's regions as tau falls, one picture and one sentence per step.

Two-line API::

    steps = scrub_steps(frame, index.frame_similarity[0], tau=comp.tau)
    image, text = steps[k].image, steps[k].text      # show one step at a time

Every step is exact and cheap: at any tau the spatial step's regions are the connected pieces
of the frame's maximum spanning tree (:func:`scissor_viz.scc.merge_forest`) cut at tau, so the
tree is built once and each step only counts components of at most P - 1 edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from scissor_viz.numbers import tau_text
from scissor_viz.pictures.grid import as_numpy, check_frame
from scissor_viz.pictures.overlay import TINT, palette, region_means
from scissor_viz.pictures.overlay import overlay as draw_regions
from scissor_viz.pictures.regions import plural
from scissor_viz.scc import components, merge_forest

CAPTION = (
    "One frame as tau falls: every token starts alone, and regions grow by joining "
    "their most similar neighbours until the whole frame is one region."
)
STEPS = 24  # default number of steps
MAX_SIDE = 384  # the longer side of the step pictures, in pixels


@dataclass(frozen=True)
class ScrubStep:
    """One tau of the scrubber: the regions at that tau and how to say what changed."""

    tau: float
    regions: int  # regions (tokens after the spatial step) at this tau
    joins: int  # tree edges above tau: each joined two regions into one (P - regions)
    largest: int  # tokens in the largest region
    labels: np.ndarray  # (P,) region of each token, named by its smallest token
    image: np.ndarray  # uint8 (h, w, 3), the frame (aspect kept) with its regions
    text: str  # one sentence saying what the picture shows
    current: bool = False  # the tau the compression on screen uses


def forest_labels(edges: np.ndarray, heights: np.ndarray, tau: float) -> np.ndarray:
    """(P,) region of each token at ``tau`` from :func:`merge_forest`, named by its smallest
    token index, so a region keeps its name (and colour) as it grows."""
    n = len(edges) + 1
    e = edges[heights > np.float32(tau)]
    _, comp = components(n, e[:, 0], e[:, 1])
    smallest = np.full(comp.max() + 1, n)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


def _sentence(tau: float, joins: int, regions: int, largest: int) -> str:
    if joins == 0:
        return (
            f"τ = {tau_text(tau)}: no two tokens are similar enough to join, so each of the "
            f"{regions} tokens is a region of its own."
        )
    if regions == 1:
        return (
            f"τ = {tau_text(tau)}: every token is linked to the rest through similar neighbours, "
            f"so the whole frame is 1 region."
        )
    return (
        f"τ = {tau_text(tau)}: {plural(joins, 'pair')} of similar tokens have joined, leaving "
        f"{plural(regions, 'region')}; the largest holds {plural(largest, 'token')}."
    )


def _taus(heights: np.ndarray, steps: int, tau: float | None) -> list[tuple[float, bool]]:
    """The steps' taus, falling: region counts spaced geometrically from P to 1, each tau a
    merge height (tau = heights[m] leaves the m strongest edges above it, up to ties), plus
    ``tau`` itself (marked current)."""
    p = len(heights) + 1
    merges = np.unique(p - np.round(np.geomspace(p, 1, max(2, steps))).astype(np.int64))
    # the last step (one region): a tau clearly below the lowest merge height, so that its
    # text differs from the step before it (tau_text writes 3 digits of the gap to 1)
    low = heights[-1] - max(1e-4, 0.01 * (1.0 - heights[-1])) if p > 1 else -1.0
    last = np.float32(low)
    taus = {float(t): False for t in np.append(heights, last)[merges].astype(np.float32)}
    if tau is not None:
        taus[float(np.float32(tau))] = True
    return sorted(taus.items(), reverse=True)


def _small(frame: np.ndarray, max_side: int) -> np.ndarray:
    """The frame with its longer side at most ``max_side`` pixels, aspect ratio kept."""
    image = Image.fromarray(frame)
    image.thumbnail((max_side, max_side), Image.BILINEAR)
    return np.asarray(image)


def scrub_steps(
    frame: Any,
    similarity: Any,
    *,
    steps: int = STEPS,
    tau: float | None = None,
    fill: bool = False,
    max_side: int = MAX_SIDE,
    cols: int | None = None,
) -> list[ScrubStep]:
    """One frame's regions at about ``steps`` taus as tau falls (every token alone ... one
    region), and at ``tau`` if given (``current=True``). Each step's picture tints and outlines
    every region of more than one token, the largest too (lines also along the picture's edge,
    so one region filling the frame is still drawn as a region); a region keeps its colour as
    it grows; a token alone is left as it is. With ``fill`` regions are painted their mean
    colour instead of tinted. The P tokens lie in rows of ``cols`` (square unless given)."""
    image = _small(check_frame(frame), max_side)
    edges, heights = merge_forest(as_numpy(similarity))
    p = len(heights) + 1
    colors = palette(p)
    out = []
    for t, current in _taus(heights, steps, tau):
        labels = forest_labels(edges, heights, t)  # named by their smallest token: < p
        sizes = np.bincount(labels, minlength=p)
        regions, largest = int((sizes > 0).sum()), int(sizes.max())
        if fill:
            colors = np.zeros((p, 3))
            colors[: labels.max() + 1] = region_means([image], labels[None], cols)
        mode, alpha = ("paint", 1.0) if fill else ("tint", TINT)
        picture = draw_regions(
            image, labels, colors, alpha, mode=mode, plain=sizes < 2, closed=True, cols=cols
        )
        joins = p - regions
        text = _sentence(t, joins, regions, largest)
        out.append(ScrubStep(t, regions, joins, largest, labels, picture, text, current))
    return out


def current_step(steps: list[ScrubStep]) -> int:
    """Index of the step marked current (0 when none is)."""
    return next((k for k, s in enumerate(steps) if s.current), 0)
