"""The SCC engine: exact components (against networkx), the two steps, the merge, tau search."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scissor_viz import pairs, scc
from scissor_viz.scc import ScissorIndex, scissor_compress, semantic_components, tau_for_retention
from scissor_viz.synthetic import video_tokens
from tests.conftest import graph_partition, networkx_partition, partition

# ----------------------------------------------------------------------------- references


def engine_similarity(x: torch.Tensor) -> np.ndarray:
    """The similarity matrix the engine thresholds (float32, clamped)."""
    xn = scc.unit_rows(x)
    return scc._similarity(xn, xn).numpy()


def expected_order(sim: np.ndarray, tau: float, parts: set[frozenset[int]]) -> list[frozenset]:
    """Components sorted by representative: highest degree (diagonal included), lowest index."""
    adjacency = np.triu(sim > np.float32(tau), 1)
    degree = 1 + adjacency.sum(0) + adjacency.sum(1)
    rep = {p: min(p, key=lambda i: (-degree[i], i)) for p in parts}
    return sorted(parts, key=rep.get)


def assert_exact_components(x: torch.Tensor, tau: float) -> None:
    labels = semantic_components(x, tau)
    sim = engine_similarity(x)
    parts = networkx_partition(sim, tau)
    assert partition(labels) == parts
    ordered = expected_order(sim, tau, parts)
    for k, part in enumerate(ordered):  # ids follow the representatives' order
        assert set(np.flatnonzero(labels.numpy() == k)) == set(part)


# ----------------------------------------------------------------------------- components

TAUS = [-2.0, -1.0, -0.5, 0.0, 0.3, 0.6, 0.8, 0.9, 0.99, 1.0, 1.5]


@pytest.mark.parametrize("tau", TAUS)
def test_random_tokens_match_networkx(tau):
    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(1))
    assert_exact_components(x, tau)


@pytest.mark.parametrize("tau", TAUS)
def test_structured_tokens_match_networkx(tau):
    x = video_tokens(frames=2, dim=32, seed=2).reshape(-1, 32)
    assert_exact_components(x, tau)


@pytest.mark.parametrize("tau", [-1.5, -1.0, 0.0, 0.5, 0.999, 1.0])
def test_all_equal_tokens(tau):
    x = torch.ones(20, 5) * 3.0
    labels = semantic_components(x, tau)
    expect = 1 if tau < 1 else 20  # similarity is 1 (clamped), and the graph needs sim > tau
    assert labels.max().item() + 1 == expect
    assert_exact_components(x, tau)


@pytest.mark.parametrize("tau", [-1.5, -0.5, 0.0, 0.5])
def test_orthogonal_tokens(tau):
    x = torch.eye(12)
    labels = semantic_components(x, tau)
    assert labels.max().item() + 1 == (1 if tau < 0 else 12)
    assert_exact_components(x, tau)


def test_single_token_and_zero_vectors():
    assert semantic_components(torch.randn(1, 4), 0.5).tolist() == [0]
    x = torch.zeros(3, 4)  # cosine with a zero vector is 0
    assert semantic_components(x, -0.1).tolist() == [0, 0, 0]
    assert semantic_components(x, 0.0).tolist() == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 6),
    tau=st.floats(-1.2, 1.2),
    seed=st.integers(0, 10_000),
    clusters=st.integers(1, 4),
)
def test_property_matches_networkx(n, d, tau, seed, clusters):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    x = centres[torch.randint(0, clusters, (n,), generator=g)] + 0.3 * torch.randn(
        n, d, generator=g
    )
    assert_exact_components(x, tau)


def test_blocked_graph_equals_one_block(monkeypatch):
    x = video_tokens(frames=3, dim=16, seed=3).reshape(-1, 16)
    whole = semantic_components(x, 0.7)
    monkeypatch.setattr(scc, "BLOCK_ELEMENTS", 500)  # about one row per block
    assert torch.equal(semantic_components(x, 0.7), whole)
    assert_exact_components(x, 0.7)


def test_sampled_components_are_seeded_refinements(monkeypatch):
    x = video_tokens(frames=4, dim=16, seed=4).reshape(-1, 16)  # 784 tokens
    exact = partition(semantic_components(x, 0.6))
    monkeypatch.setattr(scc, "EXACT_LIMIT", 100)
    epsilon = 0.5  # k = ceil(ln 784 / 0.25) = 27 sampled nodes
    rows = scc._sample_rows(len(x), epsilon, 0, x.device)
    assert len(rows) == math.ceil(math.log(len(x)) / epsilon**2)
    a = semantic_components(x, 0.6, epsilon=epsilon, seed=0)
    assert torch.equal(a, semantic_components(x, 0.6, epsilon=epsilon, seed=0))
    approx = partition(a)
    assert sum(len(p) for p in approx) == len(x)  # every token is in exactly one component
    assert all(any(p <= q for q in exact) for p in approx)  # sampling can only under-connect
    assert len(approx) >= len(exact)
    assert not torch.equal(a, semantic_components(x, 0.6, epsilon=epsilon, seed=1))
    assert torch.equal(  # epsilon = 0 means exact at any size
        semantic_components(x, 0.6, epsilon=0), semantic_components(x.double(), 0.6, epsilon=0)
    )


# ----------------------------------------------------------------------------- the two steps


@pytest.fixture(scope="module")
def tokens():
    return video_tokens(frames=6, dim=48, seed=5)


@pytest.mark.parametrize("tau", [0.5, 0.8, 0.9])
def test_spatial_step_is_scc_per_frame(tokens, tau):
    comp = scissor_compress(tokens, tau)
    for t in range(len(tokens)):
        assert torch.equal(comp.spatial_labels[t], semantic_components(tokens[t], tau))
    assert torch.equal(comp.spatial_counts, comp.spatial_labels.amax(1) + 1)


@pytest.mark.parametrize("gram", [True, False])
@pytest.mark.parametrize("tau", [0.5, 0.8, 0.9])
def test_temporal_and_merge_steps_by_hand(tokens, tau, gram):
    comp = ScissorIndex(tokens, gram=gram).compress(tau)
    frames, per_frame, dim = tokens.shape
    x = tokens.reshape(-1, dim).double()
    # spatial representatives, in frame order then component order
    reps, members = [], []
    for t in range(frames):
        for k in range(int(comp.spatial_labels[t].max()) + 1):
            idx = t * per_frame + torch.nonzero(comp.spatial_labels[t] == k).flatten()
            reps.append(x[idx].mean(0))
            members.append(idx)
    reps = torch.stack(reps)
    temporal = semantic_components(reps.float(), tau)
    for rep_id, idx in enumerate(members):  # a token's final token is its representative's
        assert (comp.temporal_labels.flatten()[idx] == temporal[rep_id]).all()
    num = int(temporal.max()) + 1
    finals = torch.stack([reps[temporal == k].mean(0) for k in range(num)])
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(finals, dim=1).T
    assignment = comp.assignment.flatten()
    chosen = cos.gather(1, assignment[:, None])[:, 0]
    assert torch.all(chosen >= cos.max(1).values - 1e-5)  # most similar final token
    merged = torch.stack(
        [
            (finals[k] + x[assignment == k].sum(0)) / (1 + (assignment == k).sum())
            for k in range(num)
        ]
    )
    assert comp.tokens.shape == (num, dim)
    torch.testing.assert_close(comp.tokens.double(), merged, rtol=1e-4, atol=1e-4)
    assert comp.retention_reached == num / (frames * per_frame)


def test_no_token_is_lost(tokens):
    comp = scissor_compress(tokens, 0.85)
    n = tokens.shape[0] * tokens.shape[1]
    for labels in (comp.temporal_labels, comp.assignment):
        counts = torch.bincount(labels.flatten(), minlength=comp.num_tokens)
        assert len(counts) == comp.num_tokens and counts.sum() == n
    assert (torch.bincount(comp.temporal_labels.flatten()) > 0).all()  # no empty component
    for t in range(len(tokens)):  # spatial ids run 0..count-1 in every frame
        assert set(comp.spatial_labels[t].tolist()) == set(range(int(comp.spatial_counts[t])))


def test_gram_and_direct_paths_agree(tokens):
    for tau in (0.6, 0.85, 0.95):
        a, b = (
            ScissorIndex(tokens, gram=True).compress(tau),
            ScissorIndex(tokens, gram=False).compress(tau),
        )
        assert torch.equal(a.temporal_labels, b.temporal_labels)
        assert torch.equal(a.assignment, b.assignment)
        torch.testing.assert_close(a.tokens, b.tokens)


def test_gram_counts_are_the_direct_counts_in_any_order():
    """The Gram path reads merged regions' products from the Gram matrix and single tokens'
    pairs from a cache kept above a floor (rebuilt lower when a lower tau comes): its counts,
    temporal labels and representatives are the direct path's at every tau, asked in any order."""
    x = video_tokens(frames=4, dim=32, seed=8)
    direct = ScissorIndex(x, gram=False)
    taus = [float(t) for t in np.linspace(0.5, 0.99, 15)]
    for order in (taus, taus[::-1], taus[::3] + taus[1::3] + taus[2::3]):
        gram = ScissorIndex(x, gram=True)
        for tau in order:
            assert gram.count(tau) == direct.count(tau), tau
        for tau in order[::4]:
            a, b = gram.compress(tau), direct.compress(tau)
            assert torch.equal(a.temporal_labels, b.temporal_labels)
            assert torch.equal(a.representatives, b.representatives)
            assert torch.equal(a.assignment, b.assignment)
    assert gram._pairs.floor <= min(taus)


def test_output_runs_in_frame_order_without_temporal_merges():
    # Each frame's tokens live in their own coordinates, so nothing merges across frames and
    # the representatives' order (by index) puts the final tokens frame by frame.
    x = torch.zeros(4, 49, 4 * 16)
    for t in range(4):
        x[t, :, t * 16 : (t + 1) * 16] = video_tokens(frames=1, side=7, dim=16, seed=t)[0]
    comp = scissor_compress(x, 0.8)
    frame_of_final = [
        int(torch.nonzero(comp.temporal_labels == k)[0, 0]) for k in range(comp.num_tokens)
    ]
    assert frame_of_final == sorted(frame_of_final)
    assert comp.num_tokens <= int(comp.spatial_counts.sum())  # merges within a frame may remain


def test_extreme_taus(tokens):
    n = tokens.shape[0] * tokens.shape[1]
    keep_all = scissor_compress(tokens, 1.0)
    assert keep_all.num_tokens == n and keep_all.retention_reached == 1.0
    torch.testing.assert_close(keep_all.tokens, tokens.reshape(n, -1))  # nothing merged, in order
    one = scissor_compress(tokens, -1.5)
    assert one.num_tokens == 1 and (one.assignment == 0).all()
    frame_means = tokens.mean(1)
    expect = (frame_means.mean(0) + tokens.reshape(n, -1).sum(0)) / (1 + n)
    torch.testing.assert_close(one.tokens[0], expect, rtol=1e-4, atol=1e-5)


def test_one_frame_and_one_token_per_frame():
    x = video_tokens(frames=1, dim=16, seed=6)
    comp = scissor_compress(x, 0.8)
    assert torch.equal(comp.spatial_labels[0], semantic_components(x[0], 0.8))
    y = torch.randn(10, 1, 16, generator=torch.Generator().manual_seed(0))
    comp = scissor_compress(y, 0.2)
    assert (comp.spatial_labels == 0).all()
    assert partition(comp.temporal_labels) == networkx_partition(engine_similarity(y[:, 0]), 0.2)


def test_low_precision_inputs_compare_in_float32(tokens):
    half = tokens.to(torch.bfloat16)
    a, b = scissor_compress(half, 0.85), scissor_compress(half.float(), 0.85)
    assert a.tokens.dtype == torch.bfloat16
    assert torch.equal(a.temporal_labels, b.temporal_labels)
    torch.testing.assert_close(a.tokens.float(), b.tokens, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tokens):
    a, b = scissor_compress(tokens.cuda(), 0.85), scissor_compress(tokens, 0.85)
    assert a.tokens.is_cuda
    assert (a.temporal_labels.cpu() == b.temporal_labels).float().mean() > 0.99


# ----------------------------------------------------------------------------- tau search


def brute_force_counts(index: ScissorIndex, extra: int = 400) -> dict[float, int]:
    """K at every breakpoint of the per-frame graphs (and between), and on a fine grid."""
    sim = index.frame_similarity
    values = np.unique(sim[torch.isfinite(sim)].numpy())
    taus = np.concatenate([values, np.nextafter(values, -2), np.linspace(-1.01, 1, extra)])
    return {float(t): index.count(float(t)) for t in np.unique(taus.astype(np.float32))}


@pytest.mark.slow  # every retention, brute force
@pytest.mark.parametrize("seed", [0, 1])
def test_tau_for_retention_finds_nearest_achievable(seed):
    x = video_tokens(frames=3, side=5, dim=12, regions=3, seed=seed)  # 75 tokens
    reference = brute_force_counts(ScissorIndex(x))
    n = 75
    for retention in (0.02, 0.1, 0.25, 0.35, 0.5, 0.8, 1.0):
        tau = tau_for_retention(x, retention)
        k = scissor_compress(x, tau).num_tokens
        best = min(abs(kk - retention * n) for kk in reference.values())
        assert abs(k - retention * n) <= best + 1e-9, (retention, k, best)
        # the one-shot search (region dot products at a bracketing tau, no token Gram matrix)
        comp = scissor_compress(x.clone(), retention=retention)
        assert abs(comp.num_tokens - retention * n) <= best + 1e-9, (retention, comp, best)
        again = scissor_compress(x.clone(), comp.tau)  # its tau gives the same compression
        assert torch.equal(again.temporal_labels, comp.temporal_labels)
        assert torch.equal(again.assignment, comp.assignment)


@pytest.mark.slow  # 16 frames of 196 tokens
def test_tau_for_retention_on_video_sized_tokens():
    x = video_tokens(frames=4, dim=64, seed=7)
    n = x.shape[0] * x.shape[1]
    index = ScissorIndex(x)
    for retention in (0.05, 0.1, 0.35, 0.5):
        comp = index.compress(index.tau_for_retention(retention))
        assert abs(comp.num_tokens - retention * n) <= 2, (retention, comp.num_tokens)
    assert index.count(index.tau_for_retention(1.0)) == n
    assert index.count(index.tau_for_retention(0.1 / n)) == 1  # below one token: one token


def test_tau_for_retention_with_a_tolerance_stops_early_within_it():
    """A slider's search: any K within tolerance * N of the target, found with fewer graphs
    than the exact search; tolerance 0 is the exact search; a bad tolerance is refused."""
    x = video_tokens(frames=8, dim=64, seed=3)
    n = x.shape[0] * x.shape[1]
    exact, loose = ScissorIndex(x), ScissorIndex(x)
    for retention in (0.35, 0.3, 0.12, 0.5, 0.2):
        tau = exact.tau_for_retention(retention)
        assert exact.tau_for_retention(retention, 0.0) == tau
        near = loose.tau_for_retention(retention, tolerance=0.01)
        assert abs(loose.count(near) - retention * n) <= 0.01 * n
        assert abs(loose.count(near) - retention * n) >= abs(exact.count(tau) - retention * n)
    assert len(loose._counts) < len(exact._counts)
    for bad in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="tolerance"):
            loose.tau_for_retention(0.3, bad)


def test_functional_api_reuses_the_index(tokens):
    assert scc.scissor_index(tokens) is scc.scissor_index(tokens)
    other = tokens.clone()
    assert scc.scissor_index(other) is not scc.scissor_index(tokens)
    index = scc.scissor_index(other)
    other.mul_(2)  # modified in place: a new index
    assert scc.scissor_index(other) is not index


def test_inference_mode_tensors_are_compressed_without_the_cache(tokens):
    """Tokens made under torch.inference_mode (a model's features) keep no version counter:
    the functional API builds their index afresh and gives the same result."""
    with torch.inference_mode():
        frozen = tokens.clone()
        comp = scissor_compress(frozen, 0.9)
        tau = tau_for_retention(frozen, 0.3)
    expected = scissor_compress(tokens, 0.9)
    assert torch.equal(comp.temporal_labels, expected.temporal_labels)
    assert torch.equal(comp.tokens, expected.tokens)
    k = scissor_compress(tokens, tau).num_tokens  # the same K (a search's tau is any in its run)
    assert k == scissor_compress(tokens, tau_for_retention(tokens, 0.3)).num_tokens
    assert scissor_compress(frozen, 0.9).num_tokens == comp.num_tokens  # outside the mode too


def test_tensor_cache_is_bounded_in_bytes_and_keeps_the_newest():
    cache = scc.TensorCache(8, max_bytes=100, size_of=lambda v: v)
    tensors = [torch.zeros(1) for _ in range(4)]
    for t, size in zip(tensors, (40, 40, 40, 500)):
        cache.put(t, "x", size)
    assert cache.peek(tensors[3], "x") == 500  # over the bound alone: kept, the others go
    assert all(cache.peek(t, "x") is None for t in tensors[:3])
    cache.put(tensors[0], "x", 40)
    cache.put(tensors[1], "x", 40)
    assert cache.peek(tensors[3], "x") is None  # the oldest goes first
    assert cache.get(tensors[0], "x", lambda: 1 / 0) == 40  # kept: not computed again
    cache.discard(tensors[0])
    assert cache.peek(tensors[0], "x") is None and cache.peek(tensors[1], "x") == 40


def test_share_index_and_forget(tokens):
    index = scc.ScissorIndex(tokens)
    scc.forget(tokens)
    scc.share_index(index)
    assert scc.scissor_index(tokens) is index
    scc.forget(tokens)
    assert scc.scissor_index(tokens) is not index
    scc.share_index(index)  # replaces the one built meanwhile
    assert scc.scissor_index(tokens) is index
    assert scc.scissor_index(tokens, epsilon=0.1) is not index  # another epsilon, another index


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: semantic_components(torch.randn(3, 4, 5), 0.5), "dimensions"),
        (lambda: semantic_components(torch.randn(0, 4), 0.5), "empty"),
        (lambda: semantic_components(torch.tensor([[1.0, float("nan")]]), 0.5), "NaN"),
        (lambda: semantic_components(torch.ones(3, 2, dtype=torch.long), 0.5), "floating"),
        (lambda: semantic_components([[1.0]], 0.5), "torch.Tensor"),
        (lambda: semantic_components(torch.randn(3, 4), float("nan")), "tau"),
        (lambda: semantic_components(torch.randn(3, 4), float("inf")), "tau"),
        (lambda: semantic_components(torch.randn(3, 4), 0.5, epsilon=1.5), "epsilon"),
        (lambda: scissor_compress(torch.randn(4, 5), 0.5), "dimensions"),
        (lambda: scissor_compress(torch.randn(2, 0, 5), 0.5), "empty"),
        (lambda: scissor_compress(torch.full((2, 3, 4), float("inf")), 0.5), "NaN"),
        (lambda: scissor_compress(torch.randn(2, 3, 4), "0.5"), "tau"),
        (lambda: tau_for_retention(torch.randn(2, 3, 4), 0.0), "retention"),
        (lambda: tau_for_retention(torch.randn(2, 3, 4), 1.5), "retention"),
        (lambda: tau_for_retention(torch.randn(2, 3, 4), -0.1), "retention"),
        (lambda: tau_for_retention(torch.randn(2, 3, 4), float("nan")), "retention"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- one-shot calls


def test_one_shot_search_without_region_products_agrees(monkeypatch):
    """The counts from region dot products are the plain path's counts at the same tau; both
    searches land within two tokens of the target (K is not strictly monotone in tau: the
    spatial means move with it, so two searches may stop on neighbouring counts)."""
    x = video_tokens(frames=4, dim=32, seed=8)
    n = x.shape[0] * x.shape[1]
    for r in (0.05, 0.2, 0.4):
        comp = scissor_compress(x, retention=r)
        assert ScissorIndex(x, gram=False).count(comp.tau) == comp.num_tokens
        assert abs(comp.num_tokens - r * n) <= 2
        once = ScissorIndex(x, gram=False, once=True)  # what a one-shot call builds
        assert once.tau_for_retention(r) == comp.tau and once._regions is None
    monkeypatch.setattr(scc, "SEARCH_LIMIT", 0)  # too many regions: plain evaluations
    for r in (0.05, 0.2, 0.4):
        assert abs(scissor_compress(x, retention=r).num_tokens - r * n) <= 2


@pytest.mark.parametrize("prune_min", [64, 1 << 30])  # 64: far region pairs are skipped
def test_band_counts_are_the_plain_counts(monkeypatch, prune_min):
    """Without room for region products, a search's plain evaluation above the target keeps
    its region pairs above the bracket's lower end (a band), and the taus between them are
    evaluated from it: every such count, temporal step and representative is the plain path's
    at that tau, the search lands within two tokens of the target, and the band is gone after
    the search; so too where the pairs skip groups of regions that are far apart. A band
    evaluation hands on a band from its own regions where the search goes on below it (seen
    used); the unit means it reads (the band's rows for whole regions, fresh sums for merged
    ones) are the plain path's, bit for bit."""
    banded, bands, unit_checks = [], set(), []
    band_steps, merged_units = ScissorIndex._band_steps, ScissorIndex._merged_units

    def checked_steps(self, tau, floor=None):
        banded.append(tau)
        band = self._band
        bands.add((band.tau, band.floor))
        steps = band_steps(self, tau, floor)
        num = len(steps.region_reps)
        plain = scc.unit_rows(scc.segment_mean(self.flat, steps.regions, num))
        coarse = steps.regions[band.reps]
        alone = torch.bincount(coarse, minlength=num)[coarse] == 1
        rows = torch.cat(band.units)[band.row[alone]]
        unit_checks.append(torch.equal(rows, plain[coarse[alone]]))
        return steps

    def checked_units(self, regions, merged):
        fresh = merged_units(self, regions, merged)
        plain = scc.unit_rows(scc.segment_mean(self.flat, regions, int(regions.max()) + 1))
        unit_checks.append(torch.equal(fresh, plain[merged]))
        return fresh

    monkeypatch.setattr(ScissorIndex, "_band_steps", checked_steps)
    monkeypatch.setattr(ScissorIndex, "_merged_units", checked_units)
    monkeypatch.setattr(pairs, "PRUNE_MIN", prune_min)
    monkeypatch.setattr(pairs, "GROUP_ROWS", 16)
    for seed in (0, 3):
        x = video_tokens(frames=6, dim=64, seed=seed)
        n = x.shape[0] * x.shape[1]
        monkeypatch.setattr(scc, "SEARCH_LIMIT", 30_000)  # no products; 10,000 band pairs
        for r in (0.1, 0.35, 0.6):
            banded.clear()
            index = ScissorIndex(x, gram=False)
            tau = index.tau_for_retention(r)
            assert index._regions is None and index._band is None
            assert banded, "no tau was counted from a band"
            assert (index._basis is not None) == (prune_min < n)
            plain = ScissorIndex(x, gram=False)
            monkeypatch.setattr(pairs, "PRUNE_MIN", 1 << 30)  # the reference: every product
            for t in banded:
                assert plain.count(t) == index._counts[t], (seed, r, t)
            for t in [t for t in banded if t in index._recent]:  # the band's steps, kept
                a, b = index.compress(t), plain.compress(t)
                assert torch.equal(a.temporal_labels, b.temporal_labels), (seed, r, t)
                assert torch.equal(a.representatives, b.representatives), (seed, r, t)
            monkeypatch.setattr(pairs, "PRUNE_MIN", prune_min)
            assert abs(index.count(tau) - r * n) <= 2
    assert unit_checks and all(unit_checks), unit_checks
    assert len(bands) > 2 * 3, "no search handed a band on"  # 2 seeds x 3 retentions


def test_search_frees_its_scratch_and_capped_region_products_agree(monkeypatch):
    """The evaluations' scratch is gone after a search or a count (nbytes says so); with room
    for the products of only a third of the tokens' regions the bracket stops there, taus above
    it are plain evaluations, and the counts are the plain path's."""
    x = video_tokens(frames=4, dim=32, seed=8)
    n = x.shape[0] * x.shape[1]
    index = ScissorIndex(x, gram=False)
    tau = index.tau_for_retention(0.3)
    assert index._regions is not None and index._regions.work is None
    held = index.nbytes
    index.count(float(np.float32(tau - 1e-4)))  # an evaluation from the region products
    assert index._regions.work is None and index.nbytes == held
    monkeypatch.setattr(scc, "SEARCH_LIMIT", (n // 3) ** 2)
    for r in (0.05, 0.2, 0.4):
        capped = ScissorIndex(x, gram=False)
        t = capped.tau_for_retention(r)
        assert capped._regions is None or len(capped._regions.reps) ** 2 <= scc.SEARCH_LIMIT
        assert ScissorIndex(x, gram=False).count(t) == capped.count(t)
        assert abs(capped.count(t) - r * n) <= 2


def test_one_shot_keeps_nothing_and_reuse_keeps_the_index(tokens):
    x = tokens.clone()
    comp = scissor_compress(x, 0.85)
    assert scc._INDEXES.peek(x, (0.05, 0)) is None
    kept = scissor_compress(x, 0.85, reuse=True)
    index = scc._INDEXES.peek(x, (0.05, 0))
    assert index is not None and 0.85 in {round(t, 6) for t in index._counts}
    assert torch.equal(kept.temporal_labels, comp.temporal_labels)
    assert torch.equal(kept.representatives, comp.representatives)
    torch.testing.assert_close(kept.tokens, comp.tokens)
    with pytest.raises(ValueError, match="exactly one"):
        scissor_compress(x)
    with pytest.raises(ValueError, match="exactly one"):
        scissor_compress(x, 0.5, retention=0.2)


# ----------------------------------------------------------------------------- representatives


def rule_representatives(x: torch.Tensor, comp) -> list[int]:
    """Each final token's representative by the documented rule, by brute force: the spatial
    component of highest degree in the temporal graph (ties: lowest), then its token of
    highest degree in its frame's graph (ties: lowest index)."""
    frames, per_frame, dim = x.shape
    tau = np.float32(comp.tau)
    region_rep, region_tokens = [], []
    for t in range(frames):
        sim = engine_similarity(x[t])
        np.fill_diagonal(sim, -2)
        degree = (sim > tau).sum(1)
        for k in range(int(comp.spatial_counts[t])):
            members = np.flatnonzero(comp.spatial_labels[t].numpy() == k)
            region_rep.append(t * per_frame + min(members, key=lambda i: (-degree[i], i)))
            region_tokens.append(t * per_frame + members)
    flat = x.reshape(-1, dim).double()
    reps = torch.stack([flat[m].mean(0) for m in region_tokens]).float()
    sim = engine_similarity(reps)
    np.fill_diagonal(sim, -2)
    degree = (sim > tau).sum(1)
    final_of = [int(comp.temporal_labels.flatten()[m[0]]) for m in region_tokens]
    out = []
    for k in range(comp.num_tokens):
        regions = [a for a in range(len(reps)) if final_of[a] == k]
        out.append(region_rep[min(regions, key=lambda a: (-degree[a], a))])
    return out


@pytest.mark.parametrize("tau", [0.5, 0.8, 0.9, 0.97])
def test_representatives_follow_the_rule(tokens, tau):
    comp = scissor_compress(tokens, tau)
    reps = comp.representatives
    assert reps.tolist() == rule_representatives(tokens, comp)
    assert bool((reps[1:] > reps[:-1]).all())  # the order of the compressed tokens
    assert torch.equal(comp.temporal_labels.flatten()[reps], torch.arange(comp.num_tokens))
    gram = ScissorIndex(tokens, gram=True).compress(tau)  # every path finds the same ones
    assert torch.equal(gram.representatives, reps)


# ----------------------------------------------------------------------------- device path


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), edges=st.integers(0, 120), seed=st.integers(0, 10_000))
def test_device_components_match_networkx(n, edges, seed):
    g = torch.Generator().manual_seed(seed)
    i, j = torch.randint(0, n, (edges,), generator=g), torch.randint(0, n, (edges,), generator=g)
    num, labels = scc.device_components(n, i, j)
    assert partition(labels) == graph_partition(n, i.numpy(), j.numpy())
    assert num == len(partition(labels)) and labels.max().item() + 1 == num


def test_long_chain_needs_several_rounds():
    n = 1000  # a path numbered against the hooking order: many rounds of label propagation
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    num, labels = scc.device_components(n, order[:-1], order[1:])
    assert num == 1 and (labels == 0).all()


@pytest.mark.parametrize("tau", [0.3, 0.8, 0.9, 0.97])
def test_forced_device_path_matches_scipy_and_networkx(monkeypatch, tokens, tau):
    """The torch components (as on an accelerator), run here on CPU tensors: the same
    partitions, order, representatives and tokens as the scipy path."""
    expected = scissor_compress(tokens, tau)
    monkeypatch.setattr(scc, "DEVICE_COMPONENTS", True)
    assert_exact_components(tokens.reshape(-1, tokens.shape[-1]), tau)
    comp = scissor_compress(tokens, tau)
    for field in ("spatial_labels", "temporal_labels", "assignment", "representatives"):
        assert torch.equal(getattr(comp, field), getattr(expected, field)), field
    torch.testing.assert_close(comp.tokens, expected.tokens)
    assert scissor_compress(tokens, retention=0.2).num_tokens == (
        ScissorIndex(tokens).compress(ScissorIndex(tokens).tau_for_retention(0.2)).num_tokens
    )


def test_spatial_merge_heights_are_the_spanning_trees():
    index = ScissorIndex(video_tokens(frames=3, dim=24, seed=9))
    heights = scc.spatial_merge_heights(index.frame_similarity)
    for t in range(3):
        np.testing.assert_array_equal(heights[t], scc.merge_forest(index.frame_similarity[t])[1])


# ----------------------------------------------------------------------------- search pieces


def test_symmetric_gram_is_the_full_product():
    x = torch.randn(700, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scc.symmetric_gram(x, blocks=5), x @ x.T, rtol=1e-5, atol=1e-4)


def test_search_stops_only_when_no_count_between_could_be_closer():
    # target 10.4: 10 is the nearest integer; once known, nothing inside (9, 12) beats it
    assert scc._settled(10.4, 9, 12, [1, 9, 12, 10])
    assert not scc._settled(10.4, 9, 12, [1, 9, 12])  # 10 or 11 may exist
    assert scc._settled(10.5, 10, 11, [10, 11])  # nothing between
    assert scc._settled(10.5, 8, 11, [8, 11])  # 10 would only tie 11, and ties go to 11
    assert not scc._settled(10.6, 8, 12, [8, 12])  # 11 would be closer


@pytest.mark.slow  # every retention, brute force
@pytest.mark.parametrize("one_shot_gram", [scc.ONE_SHOT_GRAM, 2.0])  # 2.0: never the Gram
@pytest.mark.parametrize("seed", [2, 3])
def test_one_shot_search_matches_brute_force_on_every_retention(seed, one_shot_gram, monkeypatch):
    """The search by spatial count (below ONE_SHOT_GRAM without the token Gram matrix, or at
    every retention) against every achievable count: the nearest one wherever K rises
    monotonically with tau around the target; where K steps back (the spatial means move with
    tau) a search may stop at a crossing one token further."""
    monkeypatch.setattr(scc, "ONE_SHOT_GRAM", one_shot_gram)
    x = video_tokens(frames=3, side=4, dim=16, regions=4, seed=seed)  # 48 tokens
    reference = brute_force_counts(ScissorIndex(x))
    ks = [reference[t] for t in sorted(reference)]
    drops = [(a, b) for a, b in zip(ks, ks[1:]) if b < a]
    for retention in np.linspace(0.02, 0.98, 13):
        comp = scissor_compress(x.clone(), retention=float(retention))
        target = retention * 48
        best = min(abs(k - target) for k in reference.values())
        slack = 1 if any(b - 2 <= target <= a + 2 for a, b in drops) else 0
        assert abs(comp.num_tokens - target) <= best + slack + 1e-9, (retention, comp.num_tokens)
        assert ScissorIndex(x, gram=False).count(comp.tau) == comp.num_tokens
