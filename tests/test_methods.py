"""Comparison methods: every reducer's contract, each one's own semantics, FastV on a tiny model."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from scissor_viz import methods
from scissor_viz.methods import METHODS, Reduction, budget, fastv_select, reduce
from scissor_viz.models.attention import fastv_scores
from scissor_viz.synthetic import video_tokens
from tests.conftest import networkx_partition, partition

MERGING = {"scc_spatial", "pool", "tome"}  # every output token is the mean of its members
SELECTING = {"random", "dycoke", "fastv"}  # every output token is one original token


def norm_scores(tokens: torch.Tensor) -> torch.Tensor:
    """A stand-in for FastV's LLM attention in tests: the token norms."""
    return tokens.norm(dim=-1)


def run(method: str, tokens: torch.Tensor, r: float, **kw) -> Reduction:
    return reduce(method, tokens, r, attention_fn=norm_scores, **kw)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    """4 frames of 14x14: drifting regions of prototypes, a smooth field, noise."""
    return video_tokens(frames=4, dim=32, regions=5, seed=1)


def check_contract(reduction: Reduction, tokens: torch.Tensor, method: str, r: float) -> None:
    frames, per_frame, d = tokens.shape
    n, k = frames * per_frame, reduction.tokens.shape[0]
    assert reduction.method == method
    assert reduction.tokens.shape == (k, d) and reduction.tokens.dtype == tokens.dtype
    assert (
        reduction.assignment.shape == (frames, per_frame)
        and reduction.assignment.dtype == torch.long
    )
    assert 0 <= int(reduction.assignment.min()) and int(reduction.assignment.max()) < k
    assert reduction.retention_reached == pytest.approx(k / n)
    assert torch.isfinite(reduction.tokens).all()
    if METHODS[method].fixed_budget:
        assert k == budget(n, r)
    flat = tokens.reshape(n, d).float()
    members = torch.bincount(reduction.assignment.flatten(), minlength=k)
    if method in MERGING | SELECTING | {"visionzip"}:
        assert (members > 0).all(), "an output token represents no original token"
    if method in MERGING:
        means = (
            torch.zeros(k, d).index_add_(0, reduction.assignment.flatten(), flat) / members[:, None]
        )
        torch.testing.assert_close(reduction.tokens.float(), means, atol=1e-5, rtol=1e-5)
    if reduction.kept_index is not None:
        assert torch.equal(
            reduction.tokens[: len(reduction.kept_index)],
            tokens.reshape(n, d)[reduction.kept_index],
        )
        assert torch.equal(
            reduction.assignment.flatten()[reduction.kept_index],
            torch.arange(len(reduction.kept_index)),
        )
    if method in SELECTING:
        assert reduction.kept_index is not None and len(reduction.kept_index) == k


# ----------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("r", [0.01, 0.1, 0.35])
def test_contract_on_structured_tokens(tokens, method, r):
    reduction = run(method, tokens, r)
    check_contract(reduction, tokens, method, r)
    again = run(method, tokens, r)  # deterministic
    assert torch.equal(reduction.tokens, again.tokens) and torch.equal(
        reduction.assignment, again.assignment
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_full_retention_keeps_everything_unchanged(tokens, method):
    reduction = run(method, tokens, 1.0)
    n = tokens.shape[0] * tokens.shape[1]
    assert reduction.retention_reached == 1.0
    torch.testing.assert_close(reduction.tokens, tokens.reshape(n, -1), atol=1e-6, rtol=0)
    assert torch.equal(reduction.assignment.flatten(), torch.arange(n))


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("r", [0.003, 0.2, 1.0])
def test_one_frame(method, r):
    tokens = video_tokens(frames=1, dim=16, seed=2)
    check_contract(run(method, tokens, r), tokens, method, r)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("r", [0.05, 0.5, 1.0])
def test_all_equal_tokens(method, r):
    tokens = torch.ones(3, 196, 8)
    reduction = run(method, tokens, r)
    check_contract(reduction, tokens, method, r)
    torch.testing.assert_close(reduction.tokens, torch.ones_like(reduction.tokens))


@pytest.mark.parametrize("method", list(METHODS))
def test_other_dtypes_and_tiny_grids(method):
    tokens = video_tokens(frames=3, side=4, dim=8, seed=3).to(torch.float64)
    check_contract(run(method, tokens, 0.3), tokens, method, 0.3)
    assert run(method, tokens.to(torch.bfloat16), 0.3).tokens.dtype == torch.bfloat16


@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from(list(METHODS)),
    frames=st.integers(1, 3),
    side=st.integers(1, 5),
    dim=st.integers(1, 6),
    r=st.floats(0.001, 1.0),
    seed=st.integers(0, 99),
    duplicates=st.booleans(),
)
def test_contract_property(method, frames, side, dim, r, seed, duplicates):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(frames, side * side, dim, generator=g)
    if duplicates:  # repeated and opposite tokens: ties everywhere
        tokens = torch.sign(tokens)
    check_contract(run(method, tokens, r), tokens, method, r)


def test_budget_rounds_half_up_and_keeps_one():
    assert budget(784, 0.1) == 78
    assert budget(10, 0.25) == 3  # 2.5 -> 3
    assert budget(10, 0.01) == 1
    assert budget(10, 1.0) == 10


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, float("nan"), "0.5", True])
def test_bad_retention_raises(tokens, bad):
    with pytest.raises(ValueError):
        reduce("tome", tokens, bad)


def test_bad_inputs_raise(tokens):
    with pytest.raises(ValueError, match="unknown method"):
        reduce("nope", tokens, 0.5)
    with pytest.raises(ValueError, match="frames, tokens, d"):
        reduce("tome", tokens[0], 0.5)
    with pytest.raises(ValueError, match="finite"):
        reduce("tome", torch.full((1, 4, 2), float("nan")), 0.5)
    with pytest.raises(ValueError, match="attention_fn"):
        reduce("fastv", tokens, 0.5)
    with pytest.raises(ValueError, match="square"):
        reduce("pool", torch.randn(2, 10, 4), 0.5)
    with pytest.raises(ValueError, match="importance"):
        reduce("visionzip", tokens, 0.5, importance=torch.ones(3))


def test_registry_labels_and_needs():
    assert set(METHODS) == {
        "scc",
        "scc_spatial",
        "scc_temporal",
        "pool",
        "random",
        "tome",
        "visionzip",
        "dycoke",
        "fastv",
    }
    assert METHODS["fastv"].needs_llm_attention and METHODS["visionzip"].uses_vision_attention
    assert all(m.label for m in METHODS.values())
    assert not METHODS["scc"].fixed_budget and METHODS["tome"].fixed_budget


# ----------------------------------------------------------------------------- SCC ablations


def count(sim: np.ndarray, tau: float) -> int:
    return connected_components(csr_matrix(sim > np.float32(tau)), directed=False)[0]


def cosine(x: torch.Tensor) -> np.ndarray:
    xn = torch.nn.functional.normalize(x.float(), dim=-1)
    return (xn @ xn.T).clamp(-1, 1).numpy()


def best_count(counts: list[int], target: float) -> float:
    return min(abs(c - target) for c in counts)


@pytest.mark.parametrize("r", [0.02, 0.1, 0.3])
def test_spatial_only_is_per_frame_scc_at_the_best_tau(tokens, r):
    reduction = reduce("scc_spatial", tokens, r)
    frames, per_frame, _ = tokens.shape
    sims = [cosine(f) for f in tokens]
    expected = set()
    for f, sim in enumerate(sims):
        expected |= {
            frozenset(i + f * per_frame for i in c) for c in networkx_partition(sim, reduction.tau)
        }
    assert partition(reduction.assignment) == expected  # the components of each frame at that tau
    starts = reduction.assignment[:, 0]
    assert torch.all(starts[1:] > reduction.assignment[:-1].max(dim=1).values)  # frame-major order
    taus = np.linspace(0.0, 1.0, 101)
    counts = [sum(count(s, t) for s in sims) for t in taus]
    target = r * frames * per_frame
    assert abs(reduction.num_tokens - target) <= best_count(counts, target)
    assert reduction.num_tokens >= frames


@pytest.mark.parametrize("r", [0.02, 0.1, 0.3])
def test_temporal_only_is_scc_over_all_tokens_then_merge(tokens, r):
    reduction = reduce("scc_temporal", tokens, r)
    flat = tokens.reshape(-1, tokens.shape[-1])
    sim = cosine(flat)
    assert reduction.num_tokens == count(sim, reduction.tau)
    taus = np.linspace(0.0, 1.0, 41)
    target = r * len(flat)
    assert abs(reduction.num_tokens - target) <= best_count([count(sim, t) for t in taus], target)


def test_temporal_only_bisection_path_agrees(tokens, monkeypatch):
    small = tokens[:2]
    dense = reduce("scc_temporal", small, 0.1)
    monkeypatch.setattr(methods, "TEMPORAL_DENSE_LIMIT", 0)
    bisected = reduce("scc_temporal", small, 0.1)
    target = 0.1 * 392
    assert abs(bisected.num_tokens - target) == abs(dense.num_tokens - target)


def test_scc_wraps_the_engine(tokens):
    from scissor_viz.scc import scissor_compress, tau_for_retention

    reduction = reduce("scc", tokens, 0.1)
    comp = scissor_compress(tokens, tau_for_retention(tokens, 0.1))
    assert reduction.tau == comp.tau and torch.equal(reduction.tokens, comp.tokens)
    assert torch.equal(reduction.assignment, comp.assignment) and reduction.compression is not None


@pytest.mark.parametrize("method", ["scc", "scc_spatial", "scc_temporal", "tome"])
def test_merges_stay_within_prototypes(method):
    """Clean prototypes in regions: merging methods never mix two prototypes at K >> regions."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 16, generator=g) * 3
    region = (torch.arange(196) // 14 // 7) * 2 + (torch.arange(196) % 14 // 7)  # quadrants
    tokens = protos[region].expand(2, -1, -1) + 0.05 * torch.randn(2, 196, 16, generator=g)
    reduction = reduce(method, tokens, 0.1)
    proto_of = region.expand(2, -1).flatten()
    for k in range(reduction.num_tokens):
        assert proto_of[reduction.assignment.flatten() == k].unique().numel() == 1


# ----------------------------------------------------------------------------- the others


def test_pooling_grid_choice():
    assert methods.pool_shape(16, 196, 1.0) == (16, 14, 14)
    assert methods.pool_shape(16, 196, 0.25) == (16, 7, 7)  # 784 exactly
    assert methods.pool_shape(16, 196, 0.1) == (16, 4, 5)  # 320 for a budget of 314
    assert methods.pool_shape(16, 196, 0.003) == (9, 1, 1)  # below a token per frame: pool time
    reduction = reduce("pool", video_tokens(frames=16, dim=8), 0.1)
    assert reduction.num_tokens == 320 and reduction.retention_reached == pytest.approx(320 / 3136)
    assert "16x4x5" in reduction.note


def test_pooling_cells_are_uniform_blocks():
    tokens = torch.arange(196.0).view(1, 196, 1).expand(2, -1, -1) + torch.tensor(
        [[[0.0]], [[1000.0]]]
    )
    reduction = reduce("pool", tokens.contiguous(), 49 / 196)  # 7x7 cells of 2x2
    grid = reduction.assignment[0].view(14, 14)
    assert torch.equal(grid[::2, ::2], grid[1::2, 1::2]) and grid.unique().numel() == 49
    assert reduction.tokens[0, 0] == pytest.approx((0 + 1 + 14 + 15) / 4)
    assert reduction.assignment[1].min() == 49  # frames never share a cell


def test_random_is_seeded(tokens):
    a, b = reduce("random", tokens, 0.2, seed=5), reduce("random", tokens, 0.2, seed=5)
    c = reduce("random", tokens, 0.2, seed=6)
    assert torch.equal(a.kept_index, b.kept_index) and not torch.equal(a.kept_index, c.kept_index)
    assert torch.all(a.kept_index.diff() > 0)  # sequence order


def test_dropped_tokens_go_to_their_most_similar_kept_token(tokens):
    reduction = reduce("random", tokens, 0.2)
    flat = torch.nn.functional.normalize(tokens.reshape(-1, tokens.shape[-1]), dim=-1)
    sim = flat @ flat[reduction.kept_index].T
    chosen = sim.gather(1, reduction.assignment.flatten()[:, None])[:, 0]
    torch.testing.assert_close(chosen, sim.max(dim=1).values)


def test_tome_merges_most_similar_first():
    # Pairs of near-duplicates at (0,1), (2,3), ...: one round to half merges exactly the pairs.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(98, 8, generator=g)
    tokens = base.repeat_interleave(2, 0)[None] + 1e-3 * torch.randn(1, 196, 8, generator=g)
    reduction = reduce("tome", tokens, 0.5)
    assert torch.equal(reduction.assignment[0], torch.arange(98).repeat_interleave(2))


def test_visionzip_dominant_and_contextual(tokens):
    importance = torch.zeros(tokens.shape[:2])
    top = torch.tensor([5, 200, 400, 700])
    importance.view(-1)[top] = 1.0
    reduction = reduce("visionzip", tokens, 10 / 784 + 1e-9, importance=importance)  # K = 10
    assert (
        reduction.num_tokens == 10 and len(reduction.kept_index) == 8
    )  # round(54/64 * 10) dominant
    assert set(top.tolist()) <= set(reduction.kept_index.tolist())
    assert reduction.note == "importance from vision-tower attention"
    assert "token norms" in reduce("visionzip", tokens, 0.1).note
    reduction = reduce(
        "visionzip", tokens, 1 / 784
    )  # K = 1: one dominant token, nothing contextual
    assert reduction.num_tokens == 1 and reduction.assignment.unique().tolist() == [0]


def test_dycoke_drops_repeated_frames_first():
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(196, 16, generator=g)
    static = frame.expand(8, -1, -1) + 0.01 * torch.randn(8, 196, 16, generator=g)
    reduction = reduce("dycoke", static, 1 / 8)  # exactly one frame's worth: frame 0 survives
    assert torch.equal(reduction.kept_index, torch.arange(196))
    assert torch.equal(reduction.assignment, torch.arange(196).expand(8, -1))
    moving = static.clone()
    moving[5:, :20] += 3 * torch.randn(20, 16, generator=g)  # something changes at frame 5
    reduction = reduce("dycoke", moving, 236 / (8 * 196))
    # Frame 5 refers to frame 4 and frame 6 to frame 4 (both see the change), 7 to 6 (does not).
    changed = {f * 196 + i for f in (5, 6) for i in range(20)}
    assert set(reduction.kept_index.tolist()) == set(range(196)) | changed


def test_fastv_select_keeps_top_scores():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.0, 0.3])
    assert fastv_select(scores, 0.5).tolist() == [1, 2, 3]
    assert fastv_select(scores, 0.01).tolist() == [1]  # ties go to the earlier token
    assert fastv_select(scores.view(2, 3), 1.0).tolist() == list(range(6))


# ----------------------------------------------------------------------------- FastV on a model


@pytest.fixture(scope="module")
def tiny_llava(tiny_backend):
    return tiny_backend.model


def reference_attention(model, embeds, mask, layer):
    """Attention maps the stock way: an eager copy of the decoder, output_attentions=True."""
    decoder = model.get_decoder()
    previous = decoder.config._attn_implementation
    decoder.set_attn_implementation("eager")
    try:
        out = decoder(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
    finally:
        decoder.set_attn_implementation(previous)
    return out.attentions[layer - 1][0].mean(0)


@pytest.mark.parametrize("layer", [1, 2])
def test_fastv_scores_match_the_stock_attention(tiny_llava, layer):
    torch.manual_seed(1)
    embeds, mask = torch.randn(1, 60, 64), torch.ones(1, 60, dtype=torch.long)
    positions = torch.arange(6, 54)
    attention = reference_attention(tiny_llava, embeds, mask, layer)
    last = fastv_scores(tiny_llava, embeds, mask, positions, layer=layer)
    torch.testing.assert_close(last, attention[-1, positions])
    every = fastv_scores(tiny_llava, embeds, mask, slice(6, 54), layer=layer, query="all")
    torch.testing.assert_close(every, attention.mean(0)[positions])
    assert tiny_llava.get_decoder().config._attn_implementation != "eager"  # restored


def test_fastv_scores_use_the_last_unpadded_token(tiny_llava):
    torch.manual_seed(2)
    embeds = torch.randn(1, 40, 64)
    mask = torch.ones(1, 40, dtype=torch.long)
    mask[0, 35:] = 0
    scores = fastv_scores(tiny_llava, embeds, mask, torch.arange(4, 30))
    attention = reference_attention(tiny_llava, embeds, mask, 2)
    torch.testing.assert_close(scores, attention[34, 4:30])


def test_fastv_end_to_end_on_the_tiny_model(tiny_llava):
    tokens = video_tokens(frames=2, side=4, dim=64, seed=4)  # 32 visual tokens of width 64
    text = torch.randn(1, 10, 64, generator=torch.Generator().manual_seed(3))

    def attention_fn(t):
        embeds = torch.cat([text[:, :4], t.reshape(1, -1, 64), text[:, 4:]], dim=1)
        return fastv_scores(tiny_llava, embeds, None, slice(4, 36))

    reduction = reduce("fastv", tokens, 0.25, attention_fn=attention_fn)
    check_contract(reduction, tokens, "fastv", 0.25)
    assert torch.equal(reduction.kept_index, fastv_select(attention_fn(tokens), 0.25))
    with pytest.raises(ValueError, match="layer"):
        fastv_scores(tiny_llava, text, None, slice(0, 4), layer=3)


def test_module_caches_are_safe_to_share_between_threads():
    """The engine's index cache and the methods' linkage cache, used from six threads on more
    videos than they hold (8), give what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    from scissor_viz import scc

    videos = [video_tokens(frames=2, side=6, dim=8, seed=s) for s in range(12)]

    def run_both(tokens):
        return reduce("scc", tokens, 0.2).tokens, reduce("scc_temporal", tokens, 0.2).tokens

    expected = [run_both(v) for v in videos]
    for v in videos:
        scc.forget(v)
        methods.forget(v)
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(run_both, videos * 3))
    for k, (a, b) in enumerate(got):
        assert torch.equal(a, expected[k % 12][0]) and torch.equal(b, expected[k % 12][1])
