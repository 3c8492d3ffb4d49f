"""The tau scrubber: one frame's regions as tau falls, exact at every step from the frame's
maximum spanning tree (:func:`scissor_viz.scc.merge_forest`).

Two-line API::

    steps = tau_scrub(frame, index.frame_similarity[0], steps=12)
    fig = tau_scrub_figure(steps)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from scissor_viz.figures import _figure, image_uri
from scissor_viz.grid import check_frame
from scissor_viz.overlay import overlay, region_means
from scissor_viz.scc import components, merge_forest

CAPTION = (
    "One frame as tau falls: every token starts alone, and regions grow by joining "
    "their most similar neighbours until the whole frame is one region."
)


def forest_labels(edges: np.ndarray, heights: np.ndarray, tau: float) -> np.ndarray:
    """(P,) region of each token at ``tau`` from :func:`merge_forest`, named by its smallest
    token index, so a region keeps its name (and colour) as it grows."""
    n = len(edges) + 1
    e = edges[heights > np.float32(tau)]
    _, comp = components(n, e[:, 0], e[:, 1])
    smallest = np.full(comp.max() + 1, n)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


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
    image = check_frame(frame)
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
        return image_uri(np.asarray(image))

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
