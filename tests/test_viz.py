"""The pictures: the cell -> pixel map (grid), overlays, the graph figures against the engine,
the exact spatial curve from spanning trees, the tau scrubber; and which modules they import."""

import ast
import itertools
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from scissor_viz import export, figures, grid, overlay, scc, scrub
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
    out = overlay.overlay(black, labels, alpha=0.0, border_width=w, border_color=(255, 255, 255))
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
    out = overlay.overlay(frame, regions[0], alpha=0.5, highlight=2, dim=0.25, border_width=1)
    inside = regions[0].ravel()[grid.cell_index(84, 112)] == 2
    border = expected_borders(regions[0] == 2, 84, 112, 1)
    np.testing.assert_array_equal(out[inside & ~border], plain[inside & ~border])
    dimmed = np.clip(frame * np.float32(0.25) + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[~inside & ~border], dimmed[~inside & ~border])
    assert (out[border] == 255).all()


def test_heat_overlay_orders_cells_by_value():
    frame = np.zeros((56, 70, 3), dtype=np.uint8)
    values = np.linspace(-1, 1, P)
    out = overlay.heat_overlay(frame, values, alpha=1.0)
    centres = out[grid.cell_edges(56)[:-1, None] + 2, grid.cell_edges(70)[None, :-1] + 2]
    brightness = centres.reshape(P, 3).astype(int).sum(1)
    assert brightness[0] < brightness[P // 2] < brightness[-1]  # viridis: dark to bright


def test_frame_caption_counts_tokens():
    captions = [overlay.frame_caption(k, 0.5 * k, 10 + k) for k in range(5)]
    assert (
        captions[2] == "frame 2 | 1.00 s | 12 tokens"
        and overlay.frame_caption(0, tokens=1) == "frame 0 | 1 token"
    )


# ----------------------------------------------------------------------------- figures


def test_tau_graph_draws_every_edge_above_tau(video):
    _, _, index = video
    tau = 0.7
    sim = index.frame_similarity[1].numpy()
    above = np.triu(sim > np.float32(tau), 1)
    labels = index.spatial(tau)[1]
    fig = figures.tau_graph_figure(
        index.frame_similarity[1],
        tau,
        labels,
        frame=np.zeros((60, 90, 3), np.uint8),
        max_edges=P * P,
    )
    edges_trace = next(t for t in fig.data if t.name == "edges")
    nodes = next(t for t in fig.data if t.name == "tokens")
    pairs = drawn_edges(edges_trace, nodes.x, nodes.y)
    assert 0 < len(pairs) == above.sum()
    assert all(above[min(a, b), max(a, b)] for a, b in pairs)
    # the drawn graph's components are the engine's spatial regions, coloured alike
    assert graph_partition(P, *zip(*pairs)) == partition(labels)
    colours = np.array(nodes.marker.color)
    for part in partition(labels):
        assert len(set(colours[list(part)])) == 1
    assert f"{above.sum()} edges" in fig.layout.title.text


def test_tau_graph_caps_to_the_strongest_edges(video):
    _, _, index = video
    sim = index.frame_similarity[0].numpy()
    tau = 0.0
    total = int(np.triu(sim > tau, 1).sum())
    fig = figures.tau_graph_figure(sim, tau, max_edges=50)
    nodes = next(t for t in fig.data if t.name == "tokens")
    pairs = drawn_edges(next(t for t in fig.data if t.name == "edges"), nodes.x, nodes.y)
    assert len(pairs) == 50 and total > 50
    kept = np.array([sim[a, b] for a, b in pairs])
    assert kept.min() >= np.sort(sim[np.triu_indices(P, 1)])[-50]
    assert f"strongest 50 of {total}" in fig.layout.title.text


def test_temporal_graph_matches_the_temporal_step(video):
    tokens, _, index = video
    comp = index.compress(0.6)
    reps, glob = figures.spatial_representatives(tokens, comp.spatial_labels)
    # reference: region means straight from the tokens
    flat, g = tokens.reshape(-1, tokens.shape[-1]).numpy(), glob.ravel()
    want = np.stack([flat[g == k].mean(0) for k in range(g.max() + 1)])
    np.testing.assert_allclose(reps, want, rtol=1e-5, atol=1e-6)
    normed = want / np.linalg.norm(want, axis=1, keepdims=True)
    sim = normed @ normed.T
    assert np.abs(sim - comp.tau).min() > 1e-4  # no pair sits on the threshold
    above = np.triu(sim > comp.tau, 1)
    fig = figures.temporal_graph_figure(tokens, comp, timestamps=[0.0, 0.5, 1.0, 1.5])
    nodes = next(t for t in fig.data if t.name == "regions")
    pairs = drawn_edges(next(t for t in fig.data if t.name == "edges"), nodes.x, nodes.y)
    assert len(nodes.x) == len(reps) and len(pairs) == above.sum() > 0
    final = np.zeros(len(reps), np.int64)
    final[g] = comp.temporal_labels.numpy().ravel()
    assert graph_partition(len(reps), *zip(*pairs)) == partition(final)
    assert list(np.floor(nodes.x).astype(int)) == sorted(np.floor(nodes.x).astype(int))


def test_similarity_matrix_is_grouped_by_label(video):
    _, _, index = video
    labels = index.spatial(0.6)[2].numpy()
    order, starts = figures.order_by_labels(labels)
    assert (np.diff(labels[order]) >= 0).all()
    assert list(starts) == list(np.flatnonzero(np.diff(np.sort(labels))) + 1)
    sim = index.frame_similarity[2].numpy()
    fig = figures.similarity_matrix_figure(sim, labels)
    z = np.asarray(fig.data[0].z)
    want = sim[np.ix_(order, order)].copy()
    np.fill_diagonal(want, 1.0)
    np.testing.assert_array_equal(z, want)
    lines = np.asarray(fig.data[1].x, dtype=float)
    assert set(np.unique(lines[np.isfinite(lines)])) >= set(starts - 0.5)
    big = figures.similarity_matrix_figure(np.eye(300), np.arange(300) % 7, max_size=100)
    assert (
        np.asarray(big.data[0].z).shape == (100, 100) and "1 in 3 tokens" in big.layout.title.text
    )


def test_retention_curve_matches_count(video):
    _, _, index = video
    taus = np.linspace(-0.2, 1.0, 13)
    curve = np.array([index.count(float(t)) for t in taus]) / index.num_total
    assert (np.diff(curve) >= 0).all() and curve[-1] == 1.0 and curve[0] < 0.05
    fig = figures.retention_figure(taus, curve, tau=0.7, reached=index.count(0.7) / index.num_total)
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert any(t.name == "current" for t in fig.data)


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
    fig = figures.retention_figure([0.0, 1.0], [0.01, 1.0], spatial_heights=heights)
    step = next(t for t in fig.data if t.name == "spatial step only")
    x, y = np.asarray(step.x), np.asarray(step.y)
    for tau in taus:  # the drawn step curve ("hv": hold each y until the next x)
        assert y[np.searchsorted(x, tau, side="right") - 1] == spatial_counts(
            heights, tau
        ).sum() / (4 * P)


def test_probe_similarity_and_mosaic(video):
    tokens, _, _ = video
    sim = figures.probe_similarity(tokens, 2, 30)
    want = torch.nn.functional.cosine_similarity(tokens, tokens[2, 30], dim=-1).numpy()
    np.testing.assert_allclose(sim, want, atol=1e-5)
    assert sim[2, 30] == pytest.approx(1.0, abs=1e-6)
    fig = figures.probe_figure(sim, 2, 30, tau=0.7, columns=3)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 15 - 1, 3 * 15 - 1)
    np.testing.assert_allclose(z[0:14, 30:44].ravel(), sim[2], rtol=1e-6)  # frame 2: row 0, tile 2
    np.testing.assert_allclose(z[15:29, 0:14].ravel(), sim[3], rtol=1e-6)  # frame 3: row 1, tile 0
    probe = next(t for t in fig.data if t.name == "probe")
    assert (probe.y[0], probe.x[0]) == (30 // G, 2 * 15 + 30 % G)
    dots = next(t for t in fig.data if t.name == "above τ")
    assert len(dots.x) == (sim > np.float32(0.7)).sum()


def test_tokens_per_frame_bars(video):
    _, _, index = video
    comp = index.compress(0.6)
    fig = figures.tokens_per_frame_figure(comp.spatial_counts, timestamps=[0, 0.5, 1, 1.5])
    assert list(fig.data[0].y) == comp.spatial_counts.tolist()
    assert fig.layout.xaxis.title.text == "frame"


def test_tau_scrub_grows_regions_exactly(video):
    _, _, index = video
    frame = np.random.default_rng(5).integers(0, 256, (70, 98, 3), dtype=np.uint8)
    steps = scrub.tau_scrub(frame, index.frame_similarity[0], steps=10)
    regions = [s.regions for s in steps]
    assert regions[0] == P and regions[-1] == 1 and (np.diff(regions) < 0).all()
    assert [s.tau for s in steps] == sorted((s.tau for s in steps), reverse=True)
    for step in steps:
        assert partition(step.labels) == partition(index.spatial(step.tau)[0])
        assert step.image.shape == frame.shape
    for before, after in itertools.pairwise(steps):  # regions only merge: each new one is a union
        for part in partition(before.labels):
            assert len(set(after.labels[list(part)])) == 1
    fig = scrub.tau_scrub_figure(steps)
    assert len(fig.frames) == len(steps) and len(fig.layout.sliders[0].steps) == len(steps)
    mean = scrub.tau_scrub(
        frame, index.frame_similarity[0], steps=3, fill="mean", alpha=1.0, borders=False
    )
    assert (
        mean[-1].image == np.clip(frame.reshape(-1, 3).mean(0) + 0.5, 0, 255).astype(np.uint8)
    ).all()


# ----------------------------------------------------------------------------- rules


def test_captions_cover_the_figures():
    texts = {**overlay.CAPTIONS, **figures.CAPTIONS, "tau_scrub": scrub.CAPTION}
    for key, text in texts.items():
        assert 20 < len(text) < 300 and 1 <= len(re.findall(r"[.!?](\s|$)", text)) <= 2, key
    assert {"overlay", "mean_fill", "highlight"} <= set(overlay.CAPTIONS)
    assert {
        "tau_graph",
        "temporal_graph",
        "similarity_matrix",
        "retention",
        "probe",
        "tokens_per_frame",
    } <= set(figures.CAPTIONS)


PICTURES = (grid, overlay, figures, scrub, export)


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
