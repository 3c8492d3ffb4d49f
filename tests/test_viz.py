"""The pictures: the cell -> pixel map (grid); overlays that keep the video readable; the
gallery's three views and their captions; the graph figures against the engine (and their
bounded memory); the other figures; the tau scrubber's exact steps; which modules they import."""

import ast
import itertools
import re
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scissor_viz import export, figures, graphs, grid, overlay, scc, scrub
from scissor_viz import regions as region_views
from scissor_viz.numbers import tau_text
from scissor_viz.scc import ScissorIndex

G, P = 14, 196
SIZES = [(270, 480), (480, 270), (97, 131), (14, 14), (15, 29), (5, 9), (1, 3)]


def region_tokens(frames: int = 4, dim: int = 32, noise: float = 0.35, seed: int = 0):
    """(T, P, dim) tokens: a prototype per region plus noise, regions = two background halves and
    a square that moves right one cell a frame; also the (T, 14, 14) region map."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(4, dim, generator=gen)
    regions = np.zeros((frames, G, G), dtype=np.int64)
    regions[:, 7:] = 1
    for t in range(frames):
        regions[t, 3:8, 2 + t : 7 + t] = 2
        regions[t, 10:13, 9:12] = 3
    x = protos[torch.from_numpy(regions).reshape(frames, P)]
    return x + noise * torch.randn(x.shape, generator=gen), regions


def partition(labels) -> set[frozenset[int]]:
    labels = np.asarray(labels).ravel()
    return {frozenset(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)}


def graph_partition(n: int, i, j) -> set[frozenset[int]]:
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(np.asarray(i).tolist(), np.asarray(j).tolist()))
    return {frozenset(c) for c in nx.connected_components(graph)}


def drawn_edges(trace, x, y) -> list[tuple[int, int]]:
    """Node pairs of a NaN-separated line trace, matched back to node positions."""
    xs, ys = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    assert len(xs) % 3 == 0 and np.isnan(xs[2::3]).all()
    where = {(round(a, 6), round(b, 6)): k for k, (a, b) in enumerate(zip(x, y))}
    ends = [
        where[(round(a, 6), round(b, 6))]
        for a, b in zip(xs[np.arange(len(xs)) % 3 != 2], ys[np.arange(len(ys)) % 3 != 2])
    ]
    return list(zip(ends[0::2], ends[1::2]))


def textured_frames(count: int, height: int = 84, width: int = 140, seed: int = 0) -> np.ndarray:
    """uint8 frames with detail at every scale: gradients, stripes, blobs and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    out = []
    for k in range(count):
        base = 128 + 60 * np.sin(9 * x + k) * np.cos(7 * y) + 40 * (((x * 23 + y * 5) % 1) > 0.5)
        rgb = np.stack([base, base * 0.8 + 30, 255 - base], -1) + rng.normal(
            0, 12, (height, width, 3)
        )
        out.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return np.stack(out)


def luminance_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' luminance."""
    la, lb = overlay.luminance(a).ravel(), overlay.luminance(b).ravel()
    return float(np.corrcoef(la, lb)[0, 1])


def static_partition(frames: int = 4, new: int = 3) -> SimpleNamespace:
    """What a static camera gives: every cell of frame 0 is its own final token, and each later
    frame's cells join frame 0's token at the same place, except ``new`` cells per frame that
    start tokens of their own (two of them one token); the merge step moves 2 cells."""
    temporal = np.tile(np.arange(P), (frames, 1))
    k = P
    for t in range(1, frames):
        temporal[t, :new] = [k, k] + list(range(k + 1, k + new - 1))
        k += new - 1
    spatial = np.tile(np.arange(P), (frames, 1))
    for t in range(1, frames):
        spatial[t, 1:] = np.arange(P - 1)
    assignment = temporal.copy()
    assignment[0, 100], assignment[2, 150] = 101, 151
    return SimpleNamespace(
        spatial_labels=spatial, temporal_labels=temporal, assignment=assignment, tau=0.9
    )


@pytest.fixture(scope="module")
def video():
    tokens, regions = region_tokens()
    return tokens, regions, ScissorIndex(tokens)


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("height,width", SIZES)
def test_cell_map_covers_every_pixel_once(height, width):
    index = grid.cell_index(height, width)
    assert index.shape == (height, width) and index.min() >= 0 and index.max() < P
    rows, cols = grid.cell_edges(height), grid.cell_edges(width)
    assert rows[0] == 0 and rows[-1] == height and cols[0] == 0 and cols[-1] == width
    painted = np.zeros((height, width), dtype=np.int64)
    for r in range(G):
        for c in range(G):
            block = (slice(rows[r], rows[r + 1]), slice(cols[c], cols[c + 1]))
            painted[block] += 1
            assert (index[block] == r * G + c).all()
    assert (painted == 1).all()  # the cell rectangles tile the frame
    # every pixel's centre lies in its cell's span r*H/14 .. (r+1)*H/14
    y = np.arange(height)
    r = index[:, 0] // G
    assert ((2 * r * height <= (2 * y + 1) * G) & ((2 * y + 1) * G < 2 * (r + 1) * height)).all()
    if min(height, width) >= G:  # no empty cells, sizes differ by at most one pixel
        assert np.ptp(np.diff(rows)) <= 1 and np.ptp(np.diff(cols)) <= 1 and np.diff(rows).min() > 0
    gen = np.random.default_rng(0)
    for yy, xx in zip(gen.integers(0, height, 20), gen.integers(0, width, 20)):
        assert grid.token_at(yy, xx, height, width) == index[yy, xx]


# ----------------------------------------------------------------------------- overlays


def test_palette_prefix_stable_and_distinct():
    big = overlay.palette(3000)
    assert big.dtype == np.uint8 and big.shape == (3000, 3)
    assert (overlay.palette(17) == big[:17]).all()
    assert len(np.unique(big[:2900], axis=0)) == 2900


@pytest.mark.parametrize("height,width", [(97, 131), (300, 120)])
def test_overlay_colours_follow_labels(height, width):
    labels = np.random.default_rng(1).integers(0, 7, (G, G))
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    out = overlay.overlay(frame, labels, alpha=0.6, borders=False)
    assert out.shape == frame.shape and out.dtype == np.uint8
    rows, cols = grid.cell_edges(height), grid.cell_edges(width)
    colour = {}
    for r in range(G):
        for c in range(G):
            cell = out[rows[r] : rows[r + 1], cols[c] : cols[c + 1]].reshape(-1, 3)
            assert (cell == cell[0]).all()
            colour.setdefault(labels[r, c], set()).add(tuple(cell[0]))
    assert all(len(v) == 1 for v in colour.values())  # one colour per label
    assert len({next(iter(v)) for v in colour.values()}) == len(colour)  # distinct labels differ


def test_overlay_video_same_label_same_colour_across_frames(video):
    _, regions, _ = video
    frames = np.full((4, 64, 80, 3), 128, dtype=np.uint8)
    images = overlay.overlay_video(frames, torch.from_numpy(regions).reshape(4, P), borders=False)
    index = grid.cell_index(64, 80)
    for label in range(4):
        colours = {
            tuple(im[index == cell][0])
            for im, lab in zip(images, regions)
            for cell in np.flatnonzero(lab.ravel() == label)
        }
        assert len(colours) == 1


def expected_borders(labels, height, width, w):
    """Strips w pixels deep on both sides of every edge shared by two differently labelled cells."""
    rows, cols = grid.cell_edges(height), grid.cell_edges(width)
    mask = np.zeros((height, width), dtype=bool)
    for r in range(G):
        for c in range(G):
            if c + 1 < G and labels[r, c] != labels[r, c + 1]:
                x = cols[c + 1]
                mask[rows[r] : rows[r + 1], max(0, x - w) : x + w] = True
            if r + 1 < G and labels[r, c] != labels[r + 1, c]:
                y = rows[r + 1]
                mask[max(0, y - w) : y + w, cols[c] : cols[c + 1]] = True
    return mask


@pytest.mark.parametrize("height,width,w", [(97, 131, 1), (280, 140, 1), (280, 140, 3)])
def test_borders_exactly_between_different_labels(height, width, w):
    labels = np.random.default_rng(2).integers(0, 4, (G, G))
    labels[:5, :5] = 9  # a large block with no inner borders
    black = np.zeros((height, width, 3), dtype=np.uint8)
    out = overlay.overlay(black, labels, alpha=0.0, border_width=w, border_alpha=1.0)
    drawn = (out == 255).all(-1)
    assert ((out == 0).all(-1) | drawn).all()
    assert (drawn == expected_borders(labels, height, width, w)).all()
    rows, cols = grid.cell_edges(height), grid.cell_edges(width)
    assert not drawn[rows[0] : rows[4], cols[0] : cols[4]].any()


def test_mean_fill_is_the_pixel_mean_of_each_region(video):
    _, regions, _ = video
    frames = np.random.default_rng(3).integers(0, 256, (4, 53, 77, 3), dtype=np.uint8)
    index = grid.cell_index(53, 77)
    pixel_labels = np.stack([lab.ravel()[index] for lab in regions])  # (T, H, W)
    means = overlay.region_means(frames, regions)
    for label in range(4):
        want = frames[pixel_labels == label].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(means[label], want, rtol=1e-12)
    filled = overlay.overlay_video(frames, regions, fill="mean", alpha=1.0, borders=False)
    for image, lab in zip(filled, pixel_labels):
        assert np.abs(image - means[lab]).max() <= 0.5
    # one frame, its own (spatial) regions: the mean over that frame only
    one = overlay.region_means(frames[:1], regions[:1])
    np.testing.assert_allclose(one[2], frames[0][pixel_labels[0] == 2].mean(axis=0))


def test_highlight_keeps_one_region_and_dims_the_rest(video):
    _, regions, _ = video
    frame = np.random.default_rng(4).integers(0, 256, (84, 112, 3), dtype=np.uint8)
    plain = overlay.overlay(frame, regions[0], alpha=0.5, borders=False)
    out = overlay.overlay(
        frame, regions[0], alpha=0.5, highlight=2, dim=0.25, border_width=1, border_alpha=1.0
    )
    inside = regions[0].ravel()[grid.cell_index(84, 112)] == 2
    border = expected_borders(regions[0] == 2, 84, 112, 1)
    rim = expected_borders(regions[0] == 2, 84, 112, 2) & ~border  # a pixel each side, darker
    away = ~border & ~rim
    np.testing.assert_array_equal(out[inside & away], plain[inside & away])
    dimmed = np.clip(frame * np.float32(0.25) + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[~inside & away], dimmed[~inside & away])
    assert (out[border] == 255).all()
    base = np.where(inside[..., None], plain, dimmed)
    darker = (base * np.float32(overlay.RIM) + np.float32(0.5)).astype(np.uint8)
    np.testing.assert_array_equal(out[rim], darker[rim])


def test_heat_overlay_orders_cells_by_value():
    frame = np.zeros((56, 70, 3), dtype=np.uint8)
    values = np.linspace(-1, 1, P)
    out = overlay.heat_overlay(frame, values, alpha=1.0)
    centres = out[grid.cell_edges(56)[:-1, None] + 2, grid.cell_edges(70)[None, :-1] + 2]
    brightness = centres.reshape(P, 3).astype(int).sum(1)
    assert brightness[0] < brightness[P // 2] < brightness[-1]  # viridis: dark to bright


def test_render_is_the_affine_map_per_cell():
    rng = np.random.default_rng(6)
    frame = rng.integers(0, 256, (61, 90, 3), dtype=np.uint8)
    style = overlay.CellStyle(rng.random(P), rng.uniform(-120, 120, (P, 3)), None)
    out = overlay.render(frame, style)
    cells = grid.cell_index(61, 90)
    want = np.round(frame * style.scale[cells][..., None]) + np.round(style.offset[cells])
    assert np.abs(out - np.clip(want, 0, 255)).max() <= 1  # fixed point: at most one level


def test_tint_keeps_the_frame_readable():
    frame = textured_frames(1)[0]
    labels = np.repeat(np.repeat(np.arange(4), 7).reshape(1, -1), G, 0)[:, :G] + 4 * (
        np.arange(G)[:, None] >= 7
    )  # eight blocks
    tinted = overlay.overlay(frame, labels)
    assert luminance_r(tinted, frame) > 0.8
    # the tint is there: hue moves, by about the same in every cell of a region
    assert np.abs(tinted.astype(int) - frame).mean() > 8
    # a solid paint (the old look) hides the frame: the test can tell the two apart
    painted = overlay.overlay(frame, labels, mode="paint", alpha=1.0, borders=False)
    assert luminance_r(painted, frame) < 0.8


def test_tokens_left_alone_are_not_tinted():
    frame = textured_frames(1, seed=1)[0]
    labels = np.arange(P).reshape(G, G)
    labels[:4, :4] = 0  # one region of 16 cells, the rest alone
    plain = np.bincount(labels.ravel()) == 1
    out = overlay.overlay(frame, labels, plain=plain, borders=False)
    alone = plain[labels.ravel()][grid.cell_index(*frame.shape[:2])]
    np.testing.assert_array_equal(out[alone], frame[alone])
    assert np.abs(out[~alone].astype(int) - frame[~alone]).mean() > 5
    lined = overlay.overlay(frame, labels, plain=plain)  # lines only around the region
    assert (lined != frame).any(-1)[alone].mean() < 0.08


def test_heat_overlay_and_marked_cell():
    frame = np.zeros((56, 70, 3), dtype=np.uint8)
    marked = overlay.mark_cell(frame, 30, color=(255, 0, 0))
    rows, cols = grid.cell_edges(56), grid.cell_edges(70)
    box = marked[rows[2] : rows[3], cols[2] : cols[3]]
    assert (box[0] == (255, 0, 0)).all() and (box[:, -1] == (255, 0, 0)).all()
    assert (marked[: rows[2]] == 0).all() and (marked[rows[3] :] == 0).all()
    sim = np.linspace(-1, 1, P)
    probe = region_views.probe_image(frame, sim, 30)
    assert (probe[rows[2], cols[2] : cols[3]] == (220, 20, 60)).all()


# ----------------------------------------------------------------------------- views


def test_frame_captions_fit_a_thumbnail_and_count_right():
    assert region_views.frame_caption(3, 1.5, 12) == "f3 · 1.5s · 12 tokens"
    assert region_views.frame_caption(0, tokens=1) == "f0 · 1 token"
    long = region_views.frame_caption(127, 123.4, counts=["150 kept", "46 merged"])
    assert long == "f127 · 150 kept · 46 merged" and len(long) <= region_views.CAPTION_CHARS
    assert region_views.plural(1, "frame") == "1 frame"
    assert region_views.plural(1024, "token") == "1,024 tokens"


def test_home_frames_merged_share_and_kept(video):
    _, _, index = video
    for comp in (static_partition(), index.compress(0.6), index.compress(0.9)):
        t = np.asarray(comp.temporal_labels)
        home = region_views.home_frames(t)
        for k in np.unique(t):  # reference: the first frame holding each token
            assert home[k] == np.flatnonzero((t == k).any(axis=1))[0]
        share = region_views.merged_share(t)
        want = [np.mean([home[k] < f for k in t[f]]) for f in range(len(t))]
        np.testing.assert_allclose(share, want)
        assert share[0] == 0 and region_views.kept_per_frame(t).sum() == t.max() + 1
    static = region_views.merged_share(static_partition().temporal_labels)
    assert static[1:].min() > 0.95  # "keeps frame 0 and little else"


def test_temporal_view_keeps_frame_0_and_dims_what_went_there():
    comp = static_partition()
    frames = np.full((4, 216, 384, 3), 128, dtype=np.uint8)
    images = region_views.view_overlays(frames, comp, "temporal")
    cells = grid.cell_index(216, 384)
    np.testing.assert_array_equal(images[0], frames[0])  # all kept, each token one cell here
    dim = 128 * overlay.DIM + overlay.DIM_LIFT
    for t in range(1, 4):
        merged = (np.arange(P) >= 3)[cells]
        # dimmed, except where "→ f0" is written
        assert np.mean(np.abs(images[t][merged].astype(int) - dim) <= 1) > 0.85
        assert (images[t][merged] == 255).all(-1).sum() > 20  # the label's white
        assert images[t].mean() < 0.7 * images[0].mean()  # frame 0 kept, little else


def test_mean_fill_keeps_the_temporal_dimming_and_the_marks():
    comp = static_partition()
    frames = np.random.default_rng(6).integers(40, 216, (4, 216, 384, 3), dtype=np.uint8)
    images = region_views.view_overlays(frames, comp, "temporal", fill=True)
    means = overlay.region_means(frames, comp.temporal_labels)
    cells = grid.cell_index(216, 384)
    labels = np.asarray(comp.temporal_labels)
    for t in range(1, 4):
        merged = (np.arange(P) >= 3)[cells]
        want = means[labels[t]][cells] * overlay.DIM + overlay.DIM_LIFT  # painted, then dimmed
        close = (np.abs(images[t].astype(float) - want) <= 1.5).all(-1)
        assert close[merged].mean() > 0.85  # dimmed, except where lines and "→ f0" are drawn
        assert (images[t][merged] == 255).all(-1).sum() > 20  # the label's white, readable
    kept = (np.arange(P) < 3)[cells]
    assert images[1][kept].mean() > 1.5 * images[1][~kept].mean()


@pytest.mark.parametrize("width", [122, 640])
def test_lines_and_marks_grow_with_the_picture(width):
    comp = static_partition()
    height = round(width * 9 / 16)
    frames = np.full((4, height, width, 3), 128, dtype=np.uint8)
    image = region_views.view_overlays(frames, comp, "temporal")[1]
    line = overlay.default_border_width(height, width)
    assert line == (1 if width == 122 else 2)
    cells = grid.cell_index(height, width)
    kept = np.isin(cells, [0, 1, 2])  # kept: cells 0 and 1 as one token (lined), 2 alone
    x = grid.cell_edges(width)[2]  # between cells 1 and 2, on the first row
    row = image[grid.cell_edges(height)[1] // 2]
    lined = (row > 200).all(-1) & ~(row == 255).all(-1)
    assert lined[x - line : x + line].all() and not lined[x + line + 1 : x + line + 4].any()
    white = (image == 255).all(-1) & ~kept  # the "→ f0" label
    rows = np.flatnonzero(white.any(1))
    assert 0.06 * height <= np.ptp(rows) <= 0.3 * height  # its height follows the picture's


def test_teach_draws_the_largest_region_like_any_other(video):
    _, _, index = video
    frame = textured_frames(1, 216, 384)[0]
    steps = scrub.scrub_steps(frame, index.frame_similarity[0], steps=6)
    first, last = steps[0].image.astype(int), steps[-1].image.astype(int)
    assert steps[-1].regions == 1 and steps[-1].largest == P
    np.testing.assert_array_equal(first, frame)  # every token alone: the frame as it is
    inside = (slice(8, -8), slice(8, -8))
    assert np.abs(last[inside] - first[inside]).mean() > 8  # tinted, like any region
    for edge in (last[0], last[-1], last[:, 0], last[:, -1]):  # outlined along the frame
        assert (edge.mean(-1) > 150).mean() > 0.9
    before = steps[-2]  # a few regions: the largest lined where it meets the frame's edge
    mine = (before.labels == np.bincount(before.labels).argmax()).reshape(G, G)
    along = grid.cell_of(np.arange(384), 384, G), grid.cell_of(np.arange(216), 216, G)
    image = before.image.astype(int).mean(-1)
    edges = [  # (the region's cells on a side of the grid, the picture's pixels on that side)
        (mine[0][along[0]], image[0]),
        (mine[-1][along[0]], image[-1]),
        (mine[:, 0][along[1]], image[:, 0]),
        (mine[:, -1][along[1]], image[:, -1]),
    ]
    touching = np.concatenate([pixels[cells] for cells, pixels in edges])
    assert touching.size and (touching > 150).mean() > 0.9


def test_temporal_view_marks_the_frame_cells_went_to():
    comp = static_partition()
    temporal = np.array(comp.temporal_labels)
    temporal[3, 100:] = temporal[1, 0]  # frame 3's lower part joins a token frame 1 starts
    comp.temporal_labels = temporal
    home = region_views.home_frames(temporal)[temporal[3]]
    places = region_views._mark_places(np.where(home < 3, home, -1))  # (cell, frame) of each label
    assert {s for _, s in places} == {0, 1}
    cell_of_f1 = next(c for c, s in places if s == 1)
    assert cell_of_f1 >= 100  # inside the group that went to frame 1


def test_view_overlays_keep_luminance_and_size(video):
    tokens, _, index = video
    comp = index.compress(0.8)
    frames = textured_frames(4, 216, 384)
    for view in region_views.VIEWS:
        images = region_views.view_overlays(frames, comp, view)
        assert [im.shape for im in images] == [f.shape for f in frames]  # aspect kept
        if view != "temporal":
            assert min(luminance_r(im, f) for im, f in zip(images, frames)) > 0.8
    with pytest.raises(ValueError, match="view must be"):
        region_views.view_overlays(frames, comp, "colourful")


def test_merge_view_dots_the_moved_cells():
    comp = static_partition()
    frames = np.full((4, 84, 140, 3), 100, dtype=np.uint8)
    images = region_views.view_overlays(frames, comp, "merge")
    rows, cols = grid.cell_edges(84), grid.cell_edges(140)

    def centre(t, cell):
        r, c = divmod(cell, G)
        return images[t][(rows[r] + rows[r + 1] - 1) // 2, (cols[c] + cols[c + 1] - 1) // 2]

    assert (centre(0, 100) == 255).all() and (centre(2, 150) == 255).all()
    assert (centre(0, 99) != 255).any() and (centre(1, 100) != 255).any()


def test_probe_keeps_the_clicked_region_bright_in_every_frame():
    comp = static_partition()
    frames = np.full((4, 84, 140, 3), 128, dtype=np.uint8)
    images = region_views.view_overlays(frames, comp, "temporal", probe=(1, 50))
    cells = grid.cell_index(84, 140)
    dim = 128 * overlay.DIM
    for image in images:
        away = (np.arange(P) != 50)[cells]
        assert np.mean(np.abs(image[away].astype(int) - dim) <= 1) > 0.8
    assert (images[1] == (220, 20, 60)).all(-1).sum() > 0  # the clicked cell is outlined
    assert (images[2] == (220, 20, 60)).all(-1).sum() == 0


def caption_numbers(caption: str) -> dict[str, int]:
    """The counts a view caption states, by what they count."""
    patterns = {
        "regions": r"([\d,]+) regions? of",
        "of": r"of ([\d,]+) tokens?",
        "cells kept": r"([\d,]+) cells? kept",
        "kept tokens": r"kept as ([\d,]+) tokens?",
        "merged": r"([\d,]+) merged into earlier frames",
        "after merging": r"([\d,]+) tokens? after merging",
        "moved": r"([\d,]+) cells? moved",
    }
    found = {k: re.search(v, caption) for k, v in patterns.items()}
    return {k: int(m.group(1).replace(",", "")) for k, m in found.items() if m}


def short_numbers(caption: str) -> dict[str, int]:
    """The counts a grid caption states ('f1 · 44 tokens\n143 cells merged')."""
    patterns = {
        "regions": r"· ([\d,]+) regions?\n",
        "tokens": r"· ([\d,]+) tokens?\n",
        "merged": r"\n([\d,]+) cells? merged$",
        "moved": r"\n([\d,]+) cells? moved$",
    }
    found = {k: re.search(v, caption) for k, v in patterns.items()}
    return {k: int(m.group(1).replace(",", "")) for k, m in found.items() if m}


def check_captions_add_up(comp) -> None:
    """Each view's per-frame counts are of one unit and add up: regions of P tokens (the
    spatial counts); cells kept + cells merged = P, tokens kept summing to K; tokens after
    merging (those the frame's cells point to) and cells moved."""
    spatial_labels = np.asarray(comp.spatial_labels)
    t_count, p = spatial_labels.shape
    spatial = [caption_numbers(c) for c in region_views.view_captions(comp, "spatial")]
    temporal = [caption_numbers(c) for c in region_views.view_captions(comp, "temporal")]
    merge = [caption_numbers(c) for c in region_views.view_captions(comp, "merge")]
    assert [c["regions"] for c in spatial] == [len(np.unique(r)) for r in spatial_labels]
    assert all(c["of"] == p for c in spatial)
    assert all(c["cells kept"] + c.get("merged", 0) == p for c in temporal)
    assert temporal[0].get("merged", 0) == 0  # nothing earlier than frame 0
    assert (
        sum(c["kept tokens"] for c in temporal) == int(np.asarray(comp.temporal_labels).max()) + 1
    )
    assert all(c["kept tokens"] <= c["cells kept"] for c in temporal)
    assignment, labels = np.asarray(comp.assignment), np.asarray(comp.temporal_labels)
    assert [c["after merging"] for c in merge] == [len(np.unique(r)) for r in assignment]
    assert [c.get("moved", 0) for c in merge] == (assignment != labels).sum(1).tolist()
    # the grid's two short lines: the same counts in the same units, each line short
    for view, whole in (("spatial", spatial), ("temporal", temporal), ("merge", merge)):
        short = region_views.short_captions(comp, view)
        assert all(len(line) <= 21 for c in short for line in c.split("\n")), short
        numbers = [short_numbers(c) for c in short]
        if view == "temporal":
            assert [n["tokens"] for n in numbers] == [c["kept tokens"] for c in whole]
            assert [n.get("merged", 0) for n in numbers] == [c.get("merged", 0) for c in whole]
        elif view == "spatial":
            assert [n["regions"] for n in numbers] == [c["regions"] for c in whole]
        else:
            assert [n["tokens"] for n in numbers] == [c["after merging"] for c in whole]
            assert [n.get("moved", 0) for n in numbers] == [c.get("moved", 0) for c in whole]


def test_captions_match_the_view(video):
    _, _, index = video
    comp = index.compress(0.8)
    stamps = [0.0, 0.5, 1.0, 1.5]
    spatial = region_views.view_captions(comp, "spatial", stamps)
    assert spatial[0] == f"f0 · {comp.spatial_counts[0]} regions of 196 tokens"
    temporal = region_views.view_captions(comp, "temporal", stamps)
    assert temporal != spatial  # the caption follows the view
    check_captions_add_up(comp)
    static = region_views.view_captions(static_partition(), "temporal", stamps)
    assert static[0] == "f0 · 196 cells kept as 196 tokens"
    assert static[1] == "f1 · 3 cells kept as 2 tokens · 193 merged into earlier frames"
    merge = region_views.view_captions(static_partition(), "merge")
    assert merge[0] == "f0 · 195 tokens after merging · 1 cell moved"
    assert merge[1] == "f1 · 195 tokens after merging"


@settings(max_examples=25, deadline=None)
@given(
    frames=st.integers(1, 6),
    tau=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**16),
    noise=st.sampled_from([0.05, 0.35, 1.0]),
)
def test_captions_add_up_for_random_compressions(frames, tau, seed, noise):
    tokens, _ = region_tokens(frames=frames, noise=noise, seed=seed)
    check_captions_add_up(ScissorIndex(tokens).compress(tau))


def test_probe_note_counts_with_the_right_plurals():
    comp = static_partition()
    assert "kept alone: 1 token across 1 frame" in region_views.probe_note(comp, "spatial", 0, 0)
    note = region_views.probe_note(comp, "temporal", 0, 50)
    assert "4 tokens across 4 frames" in note and "row 3, column 8" in note


# ----------------------------------------------------------------------------- the graphs


def line_pairs(traces, x, y) -> list[tuple[int, int]]:
    return [pair for t in traces for pair in drawn_edges(t, x, y)]


@pytest.mark.parametrize("tau", [0.7, 0.93, 2.0])
def test_tau_graph_draws_the_spanning_tree(video, tau):
    _, _, index = video
    sim = index.frame_similarity[1].numpy()
    labels = index.spatial(tau)[1]
    fig = graphs.tau_graph_figure(sim, tau, labels, frame=np.zeros((60, 90, 3), np.uint8))
    nodes = next(t for t in fig.data if t.name == "tokens")
    solid = [t for t in fig.data if (t.name or "").startswith("region ")]
    faint = next(t for t in fig.data if t.name == "links below τ")
    strong = line_pairs(solid, nodes.x, nodes.y)
    weak = drawn_edges(faint, nodes.x, nodes.y)
    assert len(strong) + len(weak) == P - 1  # the whole tree, even when few links pass tau
    assert graph_partition(P, *zip(*(strong + weak))) == {frozenset(range(P))}
    assert all(sim[a, b] > np.float32(tau) for a, b in strong)
    assert all(sim[a, b] <= np.float32(tau) for a, b in weak)
    # the solid links' components are the engine's spatial regions, each in its dots' colour
    assert graph_partition(P, *zip(*strong)) == partition(labels) if strong else True
    colours = np.array(nodes.marker.color)
    for trace in solid:
        ends = {k for pair in drawn_edges(trace, nodes.x, nodes.y) for k in pair}
        assert {trace.line.color} == set(colours[list(ends)])
    alone = [k for k in range(P) if (labels == labels[k]).sum() == 1]
    assert set(colours[alone]) <= {graphs.SINGLE}
    assert f"{len(strong)} of {P - 1} tree links" in fig.layout.title.text


def test_temporal_graph_draws_each_regions_strongest_link(video):
    tokens, _, index = video
    comp = index.compress(0.6)
    reps, glob = graphs.spatial_representatives(tokens, comp.spatial_labels)
    flat, g = tokens.reshape(-1, tokens.shape[-1]).numpy(), glob.ravel()
    want = np.stack([flat[g == k].mean(0) for k in range(g.max() + 1)])
    np.testing.assert_allclose(reps, want, rtol=1e-5, atol=1e-6)
    final = np.zeros(len(reps), np.int64)
    final[g] = comp.temporal_labels.numpy().ravel()
    temporal = comp.temporal_labels.numpy()
    spans = {k: int((temporal == k).any(axis=1).sum()) for k in np.unique(temporal)}
    multi = sorted(k for k, n in spans.items() if n > 1)
    drawn = np.flatnonzero(np.isin(final, multi))  # regions of tokens that span 2+ frames
    normed = want[drawn] / np.linalg.norm(want[drawn], axis=1, keepdims=True)
    sim = normed @ normed.T
    np.fill_diagonal(sim, -np.inf)
    above = sim > comp.tau
    fig = graphs.temporal_graph_figure(tokens, comp, timestamps=[0.0, 0.5, 1.0, 1.5])
    nodes = next(t for t in fig.data if t.name == "regions")
    assert len(nodes.x) == len(drawn) > 0
    assert sorted(nodes.customdata[:, 2].tolist()) == sorted(final[drawn].tolist())
    pairs = {tuple(sorted(p)) for p in drawn_edges(fig.data[0], nodes.x, nodes.y)}
    best = {tuple(sorted((k, int(sim[k].argmax())))) for k in range(len(sim)) if above[k].any()}
    assert pairs == best  # exactly each drawn region's strongest link above tau
    rows, ends = np.asarray(nodes.y), nodes.customdata[:, 2]
    assert all(ends[a] == ends[b] for a, b in pairs)  # links stay within a final token
    assert all(((rows == rows[k]) == (ends == ends[k])).all() for k in range(len(rows)))
    assert list(np.floor(nodes.x).astype(int)) == sorted(np.floor(nodes.x).astype(int))
    singles = len(spans) - len(multi)
    note = fig.layout.title.subtitle.text
    assert f"{len(multi)} of {len(multi)} tokens that span 2+ frames" in note
    assert f"{singles} in one frame not drawn" in note


def test_temporal_graph_keeps_the_tokens_spanning_most_frames():
    labels = np.tile(np.arange(P), (5, 1))  # every cell its own region and token in frame 0
    for t in range(1, 5):  # token k lives in frames 0 .. k % 5 - 1: max(k % 5, 1) frames
        labels[t] = np.where(np.arange(P) % 5 > t, np.arange(P), P * t + np.arange(P))
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)  # ids 0 .. K - 1
    spatial = np.tile(np.arange(P), (5, 1))
    comp = SimpleNamespace(spatial_labels=spatial, temporal_labels=labels, tau=0.5)
    tokens = torch.randn(5, P, 8, generator=torch.Generator().manual_seed(2))
    fig = graphs.temporal_graph_figure(tokens, comp, max_rows=12)
    nodes = next(t for t in fig.data if t.name == "regions")
    kept = np.unique(nodes.customdata[:, 2])
    assert len(kept) == 12 and all(k % 5 == 4 for k in kept)  # 4 frames: the longest chains
    multi = int((np.arange(P) % 5 >= 2).sum())
    k = int(labels.max()) + 1
    assert f"12 of {multi} tokens that span 2+ frames, most frames first" in (
        fig.layout.title.subtitle.text
    )
    assert f"{k - multi:,} in one frame not drawn" in fig.layout.title.subtitle.text
    assert fig.layout.height <= 820
    lonely = graphs.temporal_graph_figure(
        tokens[:1], SimpleNamespace(spatial_labels=spatial[:1], temporal_labels=labels[:1], tau=0.5)
    )
    assert "no token spans two frames" in lonely.layout.title.subtitle.text
    assert "1 frame →" in lonely.layout.title.text


def test_temporal_graph_samples_and_stays_bounded(monkeypatch):
    base = torch.randn(1, P, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(40, P, 8, generator=torch.Generator().manual_seed(2))
    tokens = base + 0.01 * noise  # 196 tokens, each the same place in all 40 frames
    comp = ScissorIndex(tokens).compress(0.99)
    assert comp.num_tokens == P and int(comp.spatial_counts.min()) == P  # M = 7,840 regions
    sizes = []
    real = graphs.cosine
    monkeypatch.setattr(graphs, "cosine", lambda x: sizes.append(len(x)) or real(x))
    fig = graphs.temporal_graph_figure(tokens, comp, max_nodes=300, seed=3)
    assert sizes == [300]  # one 300 x 300 similarity, never M x M
    nodes = next(t for t in fig.data if t.name == "regions")
    assert len(nodes.x) == 300
    assert "300 of 1,600 regions sampled (seed 3)" in fig.layout.title.subtitle.text  # 40 x 40
    again = graphs.temporal_graph_figure(tokens, comp, max_nodes=300, seed=3)
    assert list(again.data[1].x) == list(nodes.x)  # seeded: the same sample
    chosen = np.array([0, 17, 4000, 7839])
    part, _ = graphs.spatial_representatives(tokens, comp.spatial_labels, chosen)
    full, _ = graphs.spatial_representatives(tokens, comp.spatial_labels)
    np.testing.assert_allclose(part, full[chosen], rtol=1e-6)
    assert graphs.MAX_NODES**2 * 4 <= 40 * 2**20  # the default cap: < 40 MiB of similarities


# ----------------------------------------------------------------------------- other figures


def test_similarity_matrix_spreads_colours_and_boxes_regions(video):
    _, _, index = video
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


def test_retention_curve_spreads_where_it_changes(video):
    _, _, index = video
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


def test_spanning_tree_gives_the_spatial_step_exactly(video):
    _, _, index = video
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


def test_probe_mosaic_labels_sit_between_tiles(video):
    tokens, _, _ = video
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


def test_tokens_per_frame_bars(video):
    _, _, index = video
    comp = index.compress(0.6)
    kept = region_views.kept_per_frame(comp.temporal_labels)
    fig = figures.tokens_per_frame_figure(comp.spatial_counts, [0, 0.5, 1, 1.5], kept=kept)
    assert list(fig.data[0].y) == comp.spatial_counts.tolist()
    assert list(fig.data[1].y) == kept.tolist() and sum(fig.data[1].y) == comp.num_tokens
    assert fig.layout.xaxis.title.text == "frame"
    assert f"{comp.num_tokens:,} kept" in fig.layout.title.subtitle.text


def test_figures_write_tau_with_the_digits_it_needs(video):
    _, _, index = video
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


# ----------------------------------------------------------------------------- the scrubber


def test_scrub_steps_grow_regions_exactly(video):
    _, _, index = video
    frame = np.random.default_rng(5).integers(0, 256, (270, 480, 3), dtype=np.uint8)
    tau = float(index.tau_for_retention(0.5))
    steps = scrub.scrub_steps(frame, index.frame_similarity[0], steps=10, tau=tau)
    regions = [s.regions for s in steps]
    assert regions[0] == P and regions[-1] == 1 and (np.diff(regions) <= 0).all()
    assert [s.tau for s in steps] == sorted((s.tau for s in steps), reverse=True)
    for step in steps:
        assert partition(step.labels) == partition(index.spatial(step.tau)[0])
        assert step.joins == P - step.regions
        assert step.image.shape == (216, 384, 3)  # the longer side 384, the aspect kept
        assert step.text.startswith(f"τ = {tau_text(step.tau)}: ")
    for before, after in itertools.pairwise(steps):  # regions only merge: each new one is a union
        for part in partition(before.labels):
            assert len(set(after.labels[list(part)])) == 1
    now = steps[scrub.current_step(steps)]
    assert now.current and now.tau == pytest.approx(tau)
    assert now.regions == int(index.spatial(now.tau)[0].max()) + 1
    assert "each of the 196 tokens" in steps[0].text and "1 region." in steps[-1].text
    middle = next(s for s in steps if 1 < s.regions < P)
    assert region_views.plural(middle.regions, "region") in middle.text
    small = np.asarray(scrub._small(frame, 384))
    np.testing.assert_array_equal(steps[0].image, small)  # every token alone: nothing drawn
    filled = scrub.scrub_steps(frame, index.frame_similarity[0], steps=3, fill=True)
    inside = filled[-1].image[3:-3, 3:-3]  # one region: its mean colour, lined at the edge
    assert np.abs(inside - small.reshape(-1, 3).mean(0)).max() <= 1
    assert (filled[-1].image[0] > inside.max(axis=(0, 1))).all(-1).mean() > 0.9
    texts = [s.text.split(":")[0] for s in steps]
    assert len(set(texts)) == len(texts)  # every step names a different tau


# ----------------------------------------------------------------------------- rules


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


PICTURES = (grid, overlay, region_views, figures, graphs, scrub, export)


def imported(module) -> set[str]:
    """Top-level package names a module's source imports (anywhere in the file)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {m.split(".")[0] for m in names}


@pytest.mark.parametrize("module", PICTURES, ids=lambda m: m.__name__)
def test_pictures_do_not_import_the_ui(module):
    assert "gradio" not in imported(module)


def test_the_engine_imports_no_ui_model_plot_or_decoder():
    assert not imported(scc) & {"gradio", "transformers", "plotly", "decord"}


def test_pictures_use_the_engines_helpers():
    """One copy of row normalisation, connected components and video-wide region ids: scc's."""
    for module in PICTURES:
        source = Path(module.__file__).read_text()
        for local_copy in ("linalg.norm", "normalize(", "csgraph", "cumsum("):
            assert local_copy not in source, (module.__name__, local_copy)


def test_no_module_named_viz_and_no_reexports():
    assert not (Path(scc.__file__).parent / "viz.py").exists()
    for module in PICTURES:  # every scc name a picture module imports, it uses itself
        tree = ast.parse(Path(module.__file__).read_text())
        source = Path(module.__file__).read_text()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "scissor_viz.scc":
                for alias in node.names:
                    assert len(re.findall(rf"\b{alias.name}\b", source)) > 1, alias.name
                lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
                assert not any("noqa" in line for line in lines)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="square grid"):
        overlay.overlay(np.zeros((10, 10, 3), np.uint8), np.zeros(195, int))
    with pytest.raises(ValueError, match="uint8"):
        overlay.overlay(np.zeros((10, 10, 3), np.float32), np.zeros(P, int))
    with pytest.raises(ValueError, match="frames but labels"):
        overlay.overlay_video(np.zeros((2, 10, 10, 3), np.uint8), np.zeros((3, P), int))


@pytest.mark.parametrize("module", PICTURES, ids=lambda m: m.__name__)
def test_functions_are_short_or_say_why(module):
    """No function over 60 lines unless a comment in it says why it is long."""
    source = Path(module.__file__).read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
            body = lines[node.lineno - 1 : node.end_lineno]
            assert any("# long:" in line for line in body), (module.__name__, node.name)
