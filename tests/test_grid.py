"""The token grid's geometry: every pixel in exactly one cell, the cells as even as the
frame allows."""

import numpy as np
import pytest

from scissor_viz.pictures import grid
from tests.picture_inputs import G, P

SIZES = [(270, 480), (480, 270), (97, 131), (14, 14), (15, 29), (5, 9), (1, 3)]


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
