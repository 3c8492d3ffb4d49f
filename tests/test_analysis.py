"""VideoAnalysis: its caches are bounded in bytes, and release() frees the heavy parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scissor_viz import analysis as analysis_module
from scissor_viz import scc
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import Answer, Backend
from scissor_viz.scc import ScissorIndex
from scissor_viz.synthetic import video_tokens
from scissor_viz.video import VideoClip, VideoInfo

VOCAB = 500_000  # an answer then holds 2 x 2 MB of first-token logits and probabilities


class Talking(Backend):
    """Synthetic tokens, and answers whose first-token distributions take memory."""

    name = "talking"
    can_answer = True
    hidden_size = 32

    def _encode(self, frames, progress):
        return video_tokens(frames=len(frames), dim=self.hidden_size, seed=3)

    def answer(self, question, tokens, max_new_tokens=64, **kwargs):
        logits = torch.zeros(VOCAB)
        return Answer(question, len(tokens), 0.1, 0.2, 1, [0], logits, logits.softmax(0))


def clip(frames: int = 4) -> VideoClip:
    info = VideoInfo(Path("clip.mp4"), frames, 1.0, float(frames), 14, 14, "h264")
    pixels = np.zeros((frames, 14, 14, 3), np.uint8)
    return VideoClip(pixels, np.arange(frames, dtype=float), np.arange(frames), info, "key")


@pytest.fixture
def small_caches(monkeypatch):
    monkeypatch.setattr(analysis_module, "MAX_ANSWER_BYTES", 10 << 20)  # two answers
    monkeypatch.setattr(analysis_module, "MAX_REDUCTION_BYTES", 250_000)  # a few reductions


def test_caches_are_bounded_in_bytes(small_caches):
    analysis = VideoAnalysis.from_clip(clip(), Talking())
    for question in ("one", "two", "three", "four"):
        analysis.answer(question)
    assert len(analysis._answers) == 2 and analysis.nbytes()["answers"] <= 10 << 20
    for retention in (1.0, 0.9, 0.8, 0.7):  # each keeps about 784 x 32 float32 tokens
        for method in ("pool", "tome", "random"):
            analysis.reduce(method, retention)
    held = analysis.nbytes()
    assert 0 < held["reductions"] <= 250_000 and len(analysis._reductions) < 12
    assert held["total"] == sum(v for k, v in held.items() if k != "total")


def test_release_frees_the_heavy_parts_and_stays_usable():
    backend = Talking()
    video = clip()
    tokens = backend.encode(video.frames, key=video.key)
    index = ScissorIndex(tokens, gram=True)  # the Gram path: N^2 float32 and sorted pairs
    analysis = VideoAnalysis(video, backend, tokens, index)
    before = analysis.compress(retention=0.35)
    analysis.reduce("scc", 0.35)
    analysis.answer("what?")
    n = analysis.num_total
    held = analysis.nbytes()
    assert held["index"] >= n * n * 4 and held["answers"] and held["reductions"]
    assert scc.scissor_index(tokens) is scc.scissor_index(tokens)  # cached by the engine
    analysis.release()
    freed = analysis.nbytes()
    # the Gram matrix, its pairs and the unit rows are gone; the frame similarities and the
    # search's O(N) counts (spanning forests, their sorted heights) stay
    beyond_frames = freed["index"] - index.frame_similarity.untyped_storage().nbytes()
    assert 0 <= beyond_frames <= 32 * n
    assert freed["answers"] == freed["reductions"] == 0
    assert all(ref() is not tokens for ref, _ in scc._INDEXES._entries.values())
    after = analysis.compress(retention=0.35)  # rebuilt on demand, the same result
    assert torch.equal(after.tokens, before.tokens) and after.tau == before.tau


def test_the_analysis_shares_the_engine_index_with_the_methods():
    analysis = VideoAnalysis.from_clip(clip(), Talking())
    assert scc.scissor_index(analysis.tokens) is analysis.index


def test_after_release_the_methods_use_the_analysis_index_again():
    analysis = VideoAnalysis.from_clip(clip(), Talking())
    first, _ = analysis.reduce("scc", 0.35)
    analysis.release()
    assert scc._INDEXES.peek(analysis.tokens, (0.05, 0)) is None  # nothing module-level pins it
    again, _ = analysis.reduce("scc", 0.35)  # recomputed, with the same index, same result
    assert scc.scissor_index(analysis.tokens) is analysis.index
    assert torch.equal(again.tokens, first.tokens) and again.tau == first.tau


def test_retention_curve_is_dense_where_the_retention_changes():
    """Points spaced evenly in log(1 - tau): no jump between neighbours is large, the curve
    rises monotonically from a few tokens to nearly all, and each point is the index's count."""
    analysis = VideoAnalysis.from_clip(clip(16), Talking())
    taus, retention = analysis.retention_curve(points=40)
    assert len(taus) >= 30 and (np.diff(taus) > 0).all()
    assert (np.diff(retention) >= 0).all()
    assert retention[0] < 0.2 and retention[-1] > 0.8
    assert np.diff(retention).max() < 0.15, np.diff(retention).max()
    for t, r in zip(taus[::7], retention[::7], strict=True):
        assert r == analysis.index.count(float(t)) / analysis.num_total
