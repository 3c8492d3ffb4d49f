"""The plotly figures: similarity matrix, retention curve (and the spatial step read from
the spanning tree), probe mosaic, tokens per frame, τ written with its digits, captions."""

import itertools
import re

import numpy as np
import pytest
import torch

from scissor_viz import scc
from scissor_viz.numbers import tau_text
from scissor_viz.pictures import figures, graphs, scrub
from scissor_viz.pictures import regions as region_views
from tests.conftest import partition
from tests.picture_inputs import G, P


def test_similarity_matrix_spreads_colours_and_boxes_regions(region_video):
    _, _, index = region_video
    labels = index.spatial(0.6)[2].numpy()
    order, starts, sizes = figures.order_by_regions(labels)
    assert (np.diff(sizes) <= 0).all() and sizes.sum() == P  # largest region first
    assert all(len(set(labels[order[s : s + n]])) == 1 for s, n in zip(starts, sizes))
    sim = index.frame_similarity[2].numpy()
    fig = figures.similarity_matrix_figure(sim, labels)
    heat = fig.data[0]
    z = np.asarray(heat.z)
    off = ~np.eye(P, dtype=bool)
    want = sim[np.ix_(order, order)]
    np.testing.assert_array_equal(z[off], want[off])
    assert heat.zmin == pytest.approx(np.quantile(want[off], 0.05))
    assert heat.zmax == pytest.approx(want[off].max())
    boxes = np.asarray(fig.data[1].x, dtype=float).reshape(-1, 6)
    big = sizes > 1
    np.testing.assert_allclose(boxes[:, 0], starts[big] - 0.5)
    np.testing.assert_allclose(boxes[:, 1], starts[big] + sizes[big] - 0.5)
    assert tuple(fig.layout.xaxis.range) == (-0.5, P - 0.5)  # no empty axis space
    assert tuple(fig.layout.yaxis.range) == (P - 0.5, -0.5)
    big_fig = figures.similarity_matrix_figure(np.eye(300), np.arange(300) % 7, max_size=100)
    assert np.asarray(big_fig.data[0].z).shape == (100, 100)
    assert "1 in 3 tokens" in big_fig.layout.title.subtitle.text


def gap_position(fig, values) -> np.ndarray:
    """Where values of 1 - tau sit across the figure's x axis (0: left edge, 1: right)."""
    left, right = fig.layout.xaxis.range
    return (np.log10(values) - left) / (right - left)


def test_retention_curve_spreads_where_it_changes(region_video):
    _, _, index = region_video
    sim = index.frame_similarity
    values = sim[torch.isfinite(sim)].numpy()
    taus = np.unique(np.quantile(values, np.linspace(0.5, 1.0, 40)).astype(np.float32))
    curve = np.array([index.count(float(t)) for t in taus]) / index.num_total
    tau = float(taus[-3])
    fig = figures.retention_figure(taus, curve, tau=tau, reached=index.count(tau) / P / 4)
    assert fig.layout.xaxis.type == "log"
    line = fig.data[0]
    np.testing.assert_allclose(line.x, np.maximum(1 - taus.astype(np.float64), 1e-6))
    x = gap_position(fig, np.asarray(line.x))
    assert x.min() >= 0 and x.max() <= 1 and (np.diff(x) > 0).all()  # tau grows to the right
    change = (curve > curve.min() + 0.1 * np.ptp(curve)) & (curve < curve.max())
    linear = (taus - taus.min()) / np.ptp(taus)
    spread = np.ptp(x[change | np.roll(change, 1)])
    assert spread > 0.25 and spread > 3 * np.ptp(linear[change | np.roll(change, 1)])
    current = next(t for t in fig.data if t.name == "current")
    assert current.x[0] == pytest.approx(1 - tau) and current.y[0] == index.count(tau) / P / 4
    ticks = [float(t) for t in fig.layout.xaxis.ticktext]
    np.testing.assert_allclose(fig.layout.xaxis.tickvals, 1 - np.array(ticks))


def spatial_counts(heights: np.ndarray, tau: float) -> np.ndarray:
    """(T,) tokens each frame keeps after the spatial step at tau, from merge heights."""
    return heights.shape[1] + 1 - (heights > np.float32(tau)).sum(axis=1)


def test_spanning_tree_gives_the_spatial_step_exactly(region_video):
    _, _, index = region_video
    heights = scc.spatial_merge_heights(index.frame_similarity)
    assert heights.shape == (4, P - 1) and (np.diff(heights, axis=1) <= 0).all()
    taus = [-0.5, 0.3, 0.6, 0.75, 0.9, float(heights[1, 20]), float(heights[2, 150])]
    for tau in taus:  # the last two sit exactly on merge heights: strict ">" must hold
        want = (index.spatial(tau).amax(dim=1) + 1).numpy()
        np.testing.assert_array_equal(spatial_counts(heights, tau), want)
        edges, h = scc.merge_forest(index.frame_similarity[3])
        assert partition(scrub.forest_labels(edges, h, tau)) == partition(index.spatial(tau)[3])
    fig = figures.retention_figure([0.0, 0.99], [0.01, 1.0], spatial_heights=heights)
    step = next(t for t in fig.data if t.name == "spatial step only")
    x, y = np.asarray(step.x), np.asarray(step.y)
    flat = np.unique(heights)
    for tau in (flat[:-1] + flat[1:])[::37] / 2:  # between merge heights ("hv": hold y)
        assert y[np.searchsorted(x, 1 - tau, side="right") - 1] == pytest.approx(
            spatial_counts(heights, tau).sum() / (4 * P)
        )


def test_probe_mosaic_labels_sit_between_tiles(region_video):
    tokens, _, _ = region_video
    sim = figures.probe_similarity(tokens, 2, 30)
    want = torch.nn.functional.cosine_similarity(tokens, tokens[2, 30], dim=-1).numpy()
    np.testing.assert_allclose(sim, want, atol=1e-5)
    assert sim[2, 30] == pytest.approx(1.0, abs=1e-6)
    fig = figures.probe_figure(sim, 2, 30, tau=0.7, columns=3, timestamps=[0, 0.5, 1, 1.5])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 16, 3 * 15 - 1)
    np.testing.assert_allclose(z[2:16, 30:44].ravel(), sim[2], rtol=1e-6)  # frame 2: row 0, tile 2
    np.testing.assert_allclose(z[18:32, 0:14].ravel(), sim[3], rtol=1e-6)  # frame 3: row 1, tile 0
    labels = {a.text: (a.x, a.y) for a in fig.layout.annotations}
    assert set(labels) == {"f0", "f1", "f2", "f3"}  # short: never wider than a tile
    for x, y in labels.values():  # on an empty row, above the tile it names
        assert np.isnan(z[int(np.floor(y)), :]).all() and np.isnan(z[int(np.ceil(y)), :]).all()
    assert labels["f3"][1] < 18 and labels["f3"][1] > 15
    hover = np.asarray(fig.data[0].text, dtype=object)
    assert hover[18, 3] == "f3 · 1.5s · token 3" and hover[0, 0] == ""  # the time is in the hover
    probe = next(t for t in fig.data if t.name == "probe")
    assert (probe.y[0], probe.x[0]) == (2 + 30 // G, 2 * 15 + 30 % G)
    assert probe.marker.symbol == "square-open"
    dots = next(t for t in fig.data if t.name == "above τ")
    assert len(dots.x) == (sim > np.float32(0.7)).sum() - 1  # the clicked token is not a dot
    assert fig.data[0].zmin == pytest.approx(np.quantile(sim, 0.05))
    one = figures.probe_figure(np.full((1, P), -1.0), 0, 5, tau=0.5)
    assert "0 tokens in 0 frames" in one.layout.title.subtitle.text


def test_tokens_per_frame_bars(region_video):
    _, _, index = region_video
    comp = index.compress(0.6)
    kept = region_views.kept_per_frame(comp.temporal_labels)
    fig = figures.tokens_per_frame_figure(comp.spatial_counts, [0, 0.5, 1, 1.5], kept=kept)
    assert list(fig.data[0].y) == comp.spatial_counts.tolist()
    assert list(fig.data[1].y) == kept.tolist() and sum(fig.data[1].y) == comp.num_tokens
    assert fig.layout.xaxis.title.text == "frame"
    assert f"{comp.num_tokens:,} kept" in fig.layout.title.subtitle.text


def test_figures_write_tau_with_the_digits_it_needs(region_video):
    _, _, index = region_video
    tau = 1 - 3.21e-4
    comp = index.compress(tau)
    sim = index.frame_similarity[0].numpy()
    text = tau_text(tau)
    assert text == "1 − 3.21·10⁻⁴"
    assert graphs.tau_graph_figure(sim, tau).layout.title.text.startswith(f"τ = {text}:")
    temporal = graphs.temporal_graph_figure(index.tokens, comp)
    assert temporal.layout.title.text.startswith(f"τ = {text}:")
    curve = figures.retention_figure([0.5, 0.9, tau], [0.1, 0.5, 0.9], tau, 0.9)
    marker = next(t for t in curve.data if t.name == "current")
    assert list(marker.text) == [f"τ = {text}"] and repr(tau) in marker.hovertemplate
    probe = figures.probe_figure(sim[:1], 0, 3, tau)
    assert f"= {text} (white dots)" in probe.layout.title.subtitle.text


def test_small_figure_texts_fit_and_say_the_truth():
    note = graphs.tau_graph_figure(np.eye(P, dtype=np.float32), 0.5).layout.title.subtitle.text
    assert len(note) <= 50  # fits the τ-graph's column: "joins at a low…" was cut off
    words = figures.CAPTIONS["tokens_per_frame"]
    assert "Orange bars" in words and "Pale blue bars" in words and "Dark" not in words
    bars = figures.tokens_per_frame_figure([120], [0.0], kept=[100])
    assert [t.marker.color for t in bars.data] == [figures.SPATIAL_BAR, figures.KEPT_BAR]
    assert tuple(bars.layout.xaxis.range) == (-0.5, 0.5) and list(bars.layout.xaxis.tickvals) == [0]
    many = figures.tokens_per_frame_figure(np.full(64, 50), kept=np.full(64, 20))
    ticks = list(many.layout.xaxis.tickvals)
    assert ticks[0] == 0 and len(ticks) <= 16 and all(float(t).is_integer() for t in ticks)


def test_metric_curve_titles_do_not_overlap():
    rows = [
        dict(method=m, retention=r, backend="pixels", coverage=r, redundancy=1 - r,
             retention_reached=r)
        for m in ("scc", "uniform") for r in (0.1, 0.5)
    ]  # fmt: skip
    fig = figures.metric_curves_figure(rows, {"scc": "SCC", "uniform": "Uniform"})
    titles = sorted(fig.layout.annotations, key=lambda a: a.x)
    width, char = 560, 9  # a narrow figure; 16 px titles are about 9 px a character
    for a, b in itertools.pairwise(titles):
        assert (b.x - a.x) * width > (len(a.text) + len(b.text)) / 2 * char + 8, (a.text, b.text)
    assert fig.layout.legend.orientation == "h"


def test_captions_cover_the_figures():
    texts = {**region_views.CAPTIONS, **figures.CAPTIONS, "tau_scrub": scrub.CAPTION}
    for key, text in texts.items():
        assert 20 < len(text) < 300 and 1 <= len(re.findall(r"[.!?](\s|$)", text)) <= 2, key
    assert {"spatial", "temporal", "merge", "mean_fill", "highlight"} <= set(region_views.CAPTIONS)
    assert {
        "tau_graph",
        "temporal_graph",
        "similarity_matrix",
        "retention",
        "probe",
        "tokens_per_frame",
    } <= set(figures.CAPTIONS)
