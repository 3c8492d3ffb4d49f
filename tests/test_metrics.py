"""Metrics on hand-built cases whose answers are known."""

import math

import pytest
import torch

from scissor_viz import scc
from scissor_viz.methods import reduce
from scissor_viz.metrics import (
    answer_fidelity,
    coverage,
    exact_match,
    first_token_kl,
    normalize_answer,
    reduction_metrics,
    redundancy,
    token_f1,
)
from scissor_viz.scc import nearest
from scissor_viz.synthetic import video_tokens


def test_identical_sets_cover_fully():
    x = torch.randn(50, 8)
    assert coverage(x, x) == pytest.approx(1.0)
    assert coverage(x.view(5, 10, 8), x[torch.randperm(50)]) == pytest.approx(1.0)
    assert coverage(3 * x, x) == pytest.approx(1.0)  # cosine: scale does not matter


def test_orthogonal_sets_cover_nothing():
    eye = torch.eye(6)
    assert coverage(eye[:3], eye[3:]) == pytest.approx(0.0)
    assert coverage(eye[:3], -eye[:3]) == pytest.approx(0.0)  # best of one opposite, two orthogonal
    assert coverage(eye[:1], -eye[:1]) == pytest.approx(-1.0)


def test_coverage_by_hand():
    original = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reduced = torch.tensor([[1.0, 1.0]])
    assert coverage(original, reduced) == pytest.approx(1 / math.sqrt(2))


def test_redundancy_by_hand():
    assert redundancy(torch.eye(4)) == pytest.approx(0.0)
    assert redundancy(torch.ones(3, 5)) == pytest.approx(1.0)
    pair = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    # best other: row0 -> row1 (1/sqrt2), row1 -> row0 (1/sqrt2), row2 -> row0 (0)
    assert redundancy(pair) == pytest.approx(2 / math.sqrt(2) / 3)
    assert redundancy(torch.randn(1, 4)) == 0.0  # K = 1: nothing to repeat


def test_blocked_equals_unblocked(monkeypatch):
    x, y = torch.randn(300, 16), torch.randn(70, 16)
    full_cov, full_red = coverage(x, y), redundancy(x)
    full = nearest(x, y)
    monkeypatch.setattr(scc, "BLOCK_ELEMENTS", 100)  # blocks of one or two rows
    assert coverage(x, y) == pytest.approx(full_cov, abs=1e-6)
    assert redundancy(x) == pytest.approx(full_red, abs=1e-6)
    blocked = nearest(x, y)
    torch.testing.assert_close(blocked[0], full[0])
    assert torch.equal(blocked[1], full[1])


def test_nearest_ties_to_the_lower_index_and_zero_vectors():
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    sim, idx = nearest(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), y)
    assert idx.tolist() == [0, 0] and sim.tolist() == pytest.approx([1.0, 0.0])


def test_reduction_metrics_of_a_method():
    tokens = video_tokens(frames=2, dim=16)
    out = reduction_metrics(tokens, reduce("tome", tokens, 1.0))
    assert out["coverage"] == pytest.approx(1.0) and out["num_tokens"] == 392
    out = reduction_metrics(tokens, reduce("tome", tokens, 0.1))
    assert 0 < out["coverage"] < 1 and out["retention_reached"] == pytest.approx(39 / 392)


# ----------------------------------------------------------------------------- answers


def test_exact_match_normalises():
    assert exact_match("The cat.", "cat") == 1.0
    assert exact_match("  A  red Car!", "red car") == 1.0
    assert exact_match("dog", "cat") == 0.0


def test_token_f1():
    assert token_f1("a red car", "the red car") == 1.0
    assert token_f1("red car", "red bus") == pytest.approx(0.5)
    assert token_f1("red red car", "red car parked") == pytest.approx(
        2 * (2 / 3) * (2 / 3) / (4 / 3)
    )
    assert token_f1("", "") == 1.0 and token_f1("", "car") == 0.0 and token_f1("x", "y") == 0.0
    assert normalize_answer("An Apple, the end") == "apple end"


def test_kl_of_equal_distributions_is_zero():
    logits = torch.randn(100)
    assert first_token_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert first_token_kl(logits, logits + 7.0) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    p = logits.softmax(0)
    assert first_token_kl(p, p, logits=False) == pytest.approx(0.0, abs=1e-12)


def test_kl_closed_form():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert first_token_kl(p, q, logits=False) == pytest.approx(expected)
    assert first_token_kl(p.log(), q.log()) == pytest.approx(expected)
    assert first_token_kl(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), logits=False) == (
        pytest.approx(math.log(2))
    )  # 0 log 0 = 0
    assert (
        first_token_kl(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), logits=False) == math.inf
    )
    with pytest.raises(ValueError, match="shapes"):
        first_token_kl(torch.zeros(3), torch.zeros(4))


def test_answer_fidelity_carries_everything():
    logits = torch.randn(10)
    out = answer_fidelity(
        "a red car", "red car", full_logits=logits, logits=logits, visual_tokens=314, prefill_s=0.25
    )
    assert out == {
        "exact_match": 1.0,
        "token_f1": 1.0,
        "first_token_kl": pytest.approx(0.0),
        "visual_tokens": 314,
        "prefill_s": 0.25,
    }
    assert answer_fidelity("x", "y")["first_token_kl"] is None
