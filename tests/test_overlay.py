"""Overlays that keep the video readable: colours follow labels, lines lie exactly between
different labels, the mean fill, highlight, heat maps, the tint, tokens left alone, bad input."""

import numpy as np
import pytest
import torch

from scissor_viz.pictures import grid, overlay
from scissor_viz.pictures import regions as region_views
from tests.picture_inputs import G, P, luminance_r, textured_frames


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


def test_overlay_video_same_label_same_colour_across_frames(region_video):
    _, regions, _ = region_video
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


def test_mean_fill_is_the_pixel_mean_of_each_region(region_video):
    _, regions, _ = region_video
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


def test_highlight_keeps_one_region_and_dims_the_rest(region_video):
    _, regions, _ = region_video
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


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="square grid"):
        overlay.overlay(np.zeros((10, 10, 3), np.uint8), np.zeros(195, int))
    with pytest.raises(ValueError, match="uint8"):
        overlay.overlay(np.zeros((10, 10, 3), np.float32), np.zeros(P, int))
    with pytest.raises(ValueError, match="frames but labels"):
        overlay.overlay_video(np.zeros((2, 10, 10, 3), np.uint8), np.zeros((3, P), int))
