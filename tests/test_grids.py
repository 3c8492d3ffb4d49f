"""The page on any token grid: non-square (6 x 11) grids and Qwen-style temporal groups (one
grid per 2 frames) through the pictures, the views, Compare and Export, with the pixel
backend on that grid (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scissor_viz import methods
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import PixelBackend
from scissor_viz.pictures import graphs, overlay, regions
from scissor_viz.pictures.grid import TokenGrid, cell_edges
from scissor_viz.scc import scissor_compress
from scissor_viz.ui import handlers as on
from scissor_viz.ui import views
from scissor_viz.ui.session import Session

CLIP = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"
ROWS, COLS = 6, 11


def grey_frames(count: int, height: int = 60, width: int = 110) -> np.ndarray:
    return np.full((count, height, width, 3), 100, dtype=np.uint8)


def halves(groups: int) -> np.ndarray:
    """(groups, 66) labels: columns 0-4 one region, columns 5-10 another, per group."""
    left = (np.arange(ROWS * COLS) % COLS) < 5
    return np.stack([np.where(left, 2 * g, 2 * g + 1) for g in range(groups)])


class Parts:
    """A compression-like partition (what the pictures read)."""

    def __init__(self, spatial, temporal, assignment=None):
        self.spatial_labels = spatial
        self.temporal_labels = temporal
        self.assignment = temporal if assignment is None else assignment


# ----------------------------------------------------------------------------- pictures


def test_outlines_follow_a_non_square_grid():
    """Two regions split at column 5 of 11: the line is at that cell edge, not at a square
    grid's, and nowhere inside the halves."""
    labels = halves(1)
    image = overlay.overlay(grey_frames(1)[0], labels[0], cols=COLS)
    edge = cell_edges(110, COLS)[5]  # 50 px
    row = image[30].astype(int).sum(-1)
    lined = np.flatnonzero((row != row[25]) & (row != row[80]))  # neither half's tint
    assert lined.min() >= edge - 4 and lined.max() <= edge + 3
    with pytest.raises(ValueError, match="not a square"):
        overlay.overlay(grey_frames(1)[0], labels[0])  # 66 cells need their columns


def test_probe_cell_and_heat_on_a_non_square_grid():
    frame = grey_frames(1)[0]
    token = 2 * COLS + 9  # row 2, column 9
    marked = overlay.mark_cell(frame, token, grid=ROWS, cols=COLS)
    ys, xs = np.nonzero((marked != frame).any(-1))
    assert (ys.min(), ys.max() + 1) == (20, 30) and (xs.min(), xs.max() + 1) == (90, 100)
    heat = regions.probe_image(frame, np.linspace(0, 1, ROWS * COLS), token, cols=COLS)
    assert heat.shape == frame.shape and not (heat[5, 5] == heat[55, 105]).all()


def test_a_group_is_drawn_on_each_of_its_frames():
    """Temporal groups of 2: 4 frames show 2 grids; both frames of a group show its regions,
    and the second frame of a group is not "merged into an earlier frame"."""
    grid = TokenGrid(ROWS, COLS, 2)
    spatial = np.zeros((2, ROWS * COLS), dtype=np.int64)
    spatial[:, :5] = np.arange(5)
    temporal = halves(2) // 2  # both groups' halves: tokens 0 and 1 of group 0 ... of group 1
    temporal[1] = temporal[0]  # group 1 repeats group 0: merged into it
    temporal[1, :COLS] = 2  # except its first row: its own token
    comp = Parts(spatial, temporal)
    frames = grey_frames(4)
    images = regions.view_overlays(frames, comp, "temporal", grid=grid)
    assert len(images) == 4
    np.testing.assert_array_equal(images[0], images[1])  # one grid, drawn on both frames
    np.testing.assert_array_equal(images[2], images[3])
    assert images[2][45].mean() < images[0][45].mean()  # group 1's merged cells are dimmed
    captions = regions.view_captions(comp, "temporal", [0.0, 0.5, 1.0, 1.5], grid, 4)
    assert captions[0].startswith("f0–1") and "66 cells kept" in captions[0]
    assert captions[1] == "f1 · 0.5s · tokens of f0–1"
    assert captions[2].startswith("f2–3") and "55 merged into earlier frames" in captions[2]
    short = regions.short_captions(comp, "temporal", grid, 4)  # the grid's two lines
    assert short[0].startswith("f0–1 · ") and short[1] == "f1 · tokens\nof f0–1"
    assert short[2].endswith("55 cells merged") and len(short) == 4
    note = regions.probe_note(comp, "temporal", 3, 40, grid)
    assert note.startswith("Token 40 of frames 2–3 (row 3, column 7)")
    assert "across 2 groups of 2 frames" in note
    with pytest.raises(ValueError, match="labels for 2"):
        regions.view_overlays(grey_frames(6), comp, "temporal", grid=grid)


def test_source_marks_name_the_groups_first_frame():
    grid = TokenGrid(ROWS, COLS, 2)
    temporal = np.stack([halves(1)[0], halves(1)[0]])  # group 1 all merged into group 0
    comp = Parts(temporal, temporal)
    frames = grey_frames(4)
    plain = regions.view_overlays(frames, comp, "spatial", grid=grid)
    marked = regions.view_overlays(frames, comp, "temporal", grid=grid)
    assert (marked[2] != plain[2]).any()
    places = regions._mark_places(np.where(temporal[1] >= 0, 0, -1), COLS)
    assert [s for _, s in places] == [0]


def test_tau_graph_and_probe_figure_on_a_non_square_grid():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3, ROWS * COLS, 8)).astype(np.float32))
    x = torch.nn.functional.normalize(x, dim=-1)
    sim = (x[0] @ x[0].T).numpy()
    fig = graphs.tau_graph_figure(sim, 0.5, cols=COLS)
    dots = next(t for t in fig.data if t.name == "tokens")
    assert max(dots.x) == COLS - 1 and max(dots.y) == ROWS - 1
    assert tuple(fig.layout.yaxis.range) == (ROWS - 0.4, -0.6)
    from scissor_viz.pictures import figures

    probe = (x.flatten(0, 1) @ x[1, 7]).reshape(3, -1).numpy()
    fig = figures.probe_figure(probe, 1, 7, 0.9, cols=COLS, names=["f0–1", "f2–3", "f4–5"])
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (ROWS + 2, 3 * (COLS + 1) - 1)
    assert [a.text for a in fig.layout.annotations][-3:] == ["f0–1", "f2–3", "f4–5"]
    comp = scissor_compress(x, 0.3)
    fig = graphs.temporal_graph_figure(x, comp, cols=COLS)
    assert fig.data  # drawn on 11 columns without a square-grid error


def test_uniform_pooling_keeps_a_non_square_grids_shape():
    tokens = torch.randn(4, ROWS * COLS, 8)
    assert methods.pool_shape(4, 196, 0.1) == (4, 4, 5)  # the square grid as before
    t, h, w = methods.pool_shape(4, ROWS * COLS, 0.25, (ROWS, COLS))
    assert t == 4 and h <= ROWS and w <= COLS and w >= h
    red = methods.reduce("pool", tokens, 0.25, grid=(ROWS, COLS))
    assert red.num_tokens == 4 * h * w
    cell = red.assignment[0].reshape(ROWS, COLS)
    assert (cell[:, 0] != cell[:, -1]).all()  # columns pooled along the row, not squashed
    with pytest.raises(ValueError, match="not a square grid"):
        methods.uniform_pool(tokens, 0.25)


# ----------------------------------------------------------------------------- the page


@pytest.fixture(
    scope="module",
    params=[
        TokenGrid(ROWS, COLS),
        # Qwen's pairs are another family's grid: the full run only (each view takes ~4 s);
        # the fast lane draws a group by test_a_group_is_drawn_on_each_of_its_frames
        pytest.param(TokenGrid(ROWS, COLS, 2), marks=pytest.mark.slow),
    ],
)
def session(request) -> Session:
    analysis = VideoAnalysis.open(str(CLIP), PixelBackend(grid=request.param), num_frames=6)
    s = Session(analysis, video="bigbuckbunny.mp4", asked=(6, "pixels"))
    s.set_setting(0.35, False, 0.0)
    return s


def test_numbers_line_names_the_grid(session):
    grid = session.grid
    line = views.numbers_markdown(session)
    if grid.frames_per_group == 1:
        assert "(6 frames × 66)" in line and line.endswith("token grid 6 × 11 per frame")
        assert session.analysis.tokens.shape[:2] == (6, 66)
    else:
        assert "(6 frames in 3 groups of 2 × 66)" in line
        assert line.endswith("token grid 6 × 11 per group")
        assert session.analysis.tokens.shape[:2] == (3, 66)


def test_every_view_draws_the_grid(session, tmp_path, monkeypatch):
    """The main screen, the τ-graph, each tab and Export run on the grid; the pictures are
    one per frame whatever the grid."""
    grid, last = session.grid, session.frames - 1
    out = on.select_frame(session, last)
    assert out["regions"].count("<figure") == 6
    dots = next(t for t in out["tau_graph"].data if t.name == "tokens")
    assert max(dots.x) == COLS - 1 and max(dots.y) == ROWS - 1
    for tab in ("Similarity", "Probe", "Teach"):
        assert on.tab_views(session, last, "Temporal step", tab)
    probe = views.probe_views(session, last, 60, "Spatial step", False)
    assert len(probe["probe_gallery"]) == 6
    assert "(row 5, column 5)" in probe["probe_note"]
    compare = views.compare_views(session, ["scc", "pool", "tome"], last, None)
    table = {row[0]: row[1] for row in compare["compare_table"]}
    assert table[views.METHOD_LABELS["scc"]] == session.comp.num_tokens
    assert table[views.METHOD_LABELS["pool"]] > 0  # pooled on the 6 x 11 grid
    shape = session.analysis.clip.frames[0].shape
    assert all(image.shape == shape for image, _ in compare["compare_gallery"])
    monkeypatch.setattr(on, "export_folder", lambda: tmp_path)
    files = on.export_files(session, "Temporal step", False)["files"]
    data = json.loads(Path(files[2]).read_text())
    assert len(data["spatial_labels"]) == grid.groups(6)
    assert data["meta"]["grid"] == {
        "rows": ROWS,
        "cols": COLS,
        "frames": 6,
        "frames_per_group": grid.frames_per_group,
    }
