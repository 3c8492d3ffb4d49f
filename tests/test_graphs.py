"""The τ-graph and the temporal graph against the engine, and the temporal graph's bounded
memory."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scissor_viz.pictures import graphs
from scissor_viz.scc import ScissorIndex
from tests.conftest import graph_partition, partition
from tests.picture_inputs import P, drawn_edges


def line_pairs(traces, x, y) -> list[tuple[int, int]]:
    return [pair for t in traces for pair in drawn_edges(t, x, y)]


@pytest.mark.parametrize("tau", [0.7, 0.93, 2.0])
def test_tau_graph_draws_the_spanning_tree(region_video, tau):
    _, _, index = region_video
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


def test_temporal_graph_draws_each_regions_strongest_link(region_video):
    tokens, _, index = region_video
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
