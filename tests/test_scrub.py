"""The τ scrubber (Teach): its steps grow regions exactly as the engine's spatial step."""

import itertools

import numpy as np
import pytest

from scissor_viz.numbers import tau_text
from scissor_viz.pictures import grid, scrub
from scissor_viz.pictures import regions as region_views
from tests.conftest import partition
from tests.picture_inputs import G, P, textured_frames


def test_scrub_steps_grow_regions_exactly(region_video):
    _, _, index = region_video
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


def test_teach_draws_the_largest_region_like_any_other(region_video):
    _, _, index = region_video
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
