"""What the frames show per view (spatial, temporal, merge; probe) and captions that count
right and add up."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scissor_viz.pictures import grid, overlay
from scissor_viz.pictures import regions as region_views
from scissor_viz.scc import ScissorIndex
from tests.picture_inputs import G, P, luminance_r, region_tokens, static_partition, textured_frames


def test_frame_captions_fit_a_thumbnail_and_count_right():
    assert region_views.frame_caption(3, 1.5, 12) == "f3 · 1.5s · 12 tokens"
    assert region_views.frame_caption(0, tokens=1) == "f0 · 1 token"
    long = region_views.frame_caption(127, 123.4, counts=["150 kept", "46 merged"])
    assert long == "f127 · 150 kept · 46 merged" and len(long) <= region_views.CAPTION_CHARS
    assert region_views.plural(1, "frame") == "1 frame"
    assert region_views.plural(1024, "token") == "1,024 tokens"


def test_home_frames_merged_share_and_kept(region_video):
    _, _, index = region_video
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


def test_view_overlays_keep_luminance_and_size(region_video):
    tokens, _, index = region_video
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


def test_captions_match_the_view(region_video):
    _, _, index = region_video
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
