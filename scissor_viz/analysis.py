"""One video, analysed: frames -> tokens -> SCC at any retention -> answers. No UI.

    analysis = VideoAnalysis.open("clip.mp4", backend, num_frames=16)
    comp = analysis.compress(retention=0.35)

The app, its API endpoints and the command line all go through this, so what they show is
computed one way. Tokens come from the backend's cache, tau searches from the engine's index,
answers from a small per-video cache keyed by question and token count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from scissor_viz.methods import METHODS, Reduction
from scissor_viz.metrics import answer_fidelity
from scissor_viz.models import Answer, Backend, ProgressFn, report, scaled
from scissor_viz.scc import Compression, ScissorIndex
from scissor_viz.sweep import VideoTokens, run_method
from scissor_viz.video import VideoClip, load_video

MAX_ANSWERS = 32  # answers kept per video (question x method x retention)
MAX_REDUCTIONS = 128  # other methods' results kept per video (method x retention)
DEFAULT_FASTV_QUESTION = "Describe the video."  # FastV's attention needs a prompt


@dataclass
class VideoAnalysis:
    """A sampled clip, its tokens from one backend, and the SCC index over them."""

    clip: VideoClip
    backend: Backend
    tokens: torch.Tensor  # (frames, 196, d)
    index: ScissorIndex
    _answers: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _reductions: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(
        cls,
        path: str,
        backend: Backend,
        num_frames: int = 16,
        epsilon: float = 0.05,
        progress: ProgressFn | None = None,
    ) -> VideoAnalysis:
        """Decode ``num_frames`` frames of ``path`` and encode them (raises VideoError)."""
        report(progress, 0.0, "decoding frames")
        clip = load_video(path, num_frames)
        return cls.from_clip(clip, backend, epsilon, scaled(progress, 0.1, 1.0))

    @classmethod
    def from_clip(
        cls,
        clip: VideoClip,
        backend: Backend,
        epsilon: float = 0.05,
        progress: ProgressFn | None = None,
    ) -> VideoAnalysis:
        tokens = backend.encode(clip.frames, key=clip.key, progress=progress)
        report(progress, 1.0, "tokens ready")
        return cls(clip, backend, tokens, ScissorIndex(tokens, epsilon=epsilon))

    @property
    def num_tokens(self) -> int:
        return self.index.num_total

    def compress(self, retention: float | None = None, tau: float | None = None) -> Compression:
        """SCC at a retention ratio (tau searched) or at a given tau."""
        if (retention is None) == (tau is None):
            raise ValueError("give either a retention ratio or a tau")
        if tau is None:
            tau = self.index.tau_for_retention(retention)
        return self.index.compress(tau)

    def retention_curve(self, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
        """(taus, retention) on a grid of taus spread over the upper half of the frames'
        similarities, where the retention changes (evaluations are cached by the index)."""
        sim = self.index.frame_similarity
        values = sim[torch.isfinite(sim)].cpu().numpy()
        sample = values[:: max(1, len(values) // 200_000)]
        taus = np.unique(np.quantile(sample, np.linspace(0.5, 1.0, points)).astype(np.float32))
        retention = np.array([self.index.count(float(t)) for t in taus]) / self.num_tokens
        return taus, retention

    def summary(self, comp: Compression) -> dict:
        """The numbers a person (or the /compress endpoint) wants about one compression."""
        return dict(
            frames=len(self.clip.frames),
            timestamps=[round(float(t), 3) for t in self.clip.timestamps],
            tokens_per_frame=int(self.tokens.shape[1]),
            tokens_before=self.num_tokens,
            tokens_after=comp.num_tokens,
            spatial_tokens_per_frame=comp.spatial_counts.tolist(),
            retention=comp.retention,
            tau=comp.tau,
            exact=comp.exact,
            backend=self.backend.name,
            backend_description=self.backend.description,
        )

    def answer(
        self,
        question: str,
        reduced: Compression | Reduction | None = None,
        max_new_tokens: int = 64,
    ) -> Answer:
        """The backend's answer from a compression's (or another method's) tokens, or from
        every token when ``reduced`` is None; cached per (question, tokens). Raises
        AnswerUnavailable without a model."""
        question = question.strip()
        if not question:
            raise ValueError("ask a question about the video")
        if reduced is None:
            tokens, which = self.tokens.flatten(0, 1), ("full",)
        else:
            tokens = reduced.tokens
            which = (getattr(reduced, "method", "scc"), reduced.retention, reduced.num_tokens,
                     getattr(reduced, "tau", None))  # fmt: skip
        key = (question, max_new_tokens, which)
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        answer = self.backend.answer(question, tokens, max_new_tokens=max_new_tokens)
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > MAX_ANSWERS:
                self._answers.popitem(last=False)
        return answer

    def answer_fidelity(self, question: str, reduced: Compression | Reduction) -> dict:
        """How the answer from ``reduced`` compares with the full-token answer."""
        full, mine = self.answer(question), self.answer(question, reduced)
        return dict(
            answer_fidelity(
                full.text,
                mine.text,
                full_logits=full.first_logits,
                logits=mine.first_logits,
                visual_tokens=mine.visual_tokens,
                prefill_s=mine.prefill_seconds,
            ),
            answer=mine.text,
            full_answer=full.text,
            full_prefill_s=full.prefill_seconds,
        )

    # --- the other methods

    def methods(self) -> list[str]:
        """The comparison methods this backend can run (FastV needs a loaded model)."""
        can_attend = hasattr(self.backend, "visual_attention")
        return [k for k, m in METHODS.items() if m.model != "required" or can_attend]

    def method_tokens(self, question: str | None = None, method: str = "") -> VideoTokens:
        """This video's tokens with the model hooks the methods use where there is a model:
        the LLM's attention for FastV, the vision tower's for VisionZip (token norms without)."""
        attention_fn, importance = None, None
        if hasattr(self.backend, "visual_attention"):
            text = (question or "").strip() or DEFAULT_FASTV_QUESTION
            attention_fn = lambda t: self.backend.visual_attention(text, t)  # noqa: E731
        if method == "visionzip" and hasattr(self.backend, "vision_importance"):
            importance = self.backend.vision_importance(self.clip.frames, key=self.clip.key)
        return VideoTokens(self.tokens, self.backend.name, self.clip.key, importance, attention_fn)

    def reduce(
        self, method: str, retention: float, question: str | None = None
    ) -> tuple[Reduction, dict]:
        """One method at one retention: its reduction and metrics (cached per video)."""
        key = (method, float(retention), question if method == "fastv" else None)
        with self._lock:
            if key in self._reductions:
                self._reductions.move_to_end(key)
                return self._reductions[key]
        result = run_method(self.method_tokens(question, method), method, retention)
        with self._lock:
            self._reductions[key] = result
            while len(self._reductions) > MAX_REDUCTIONS:
                self._reductions.popitem(last=False)
        return result
