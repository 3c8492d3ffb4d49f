"""One video, analysed: frames -> tokens -> SCC at any retention -> answers. No UI.

    analysis = VideoAnalysis.open("clip.mp4", backend, num_frames=16)
    comp = analysis.compress(retention=0.35)

The app, its API endpoints and the sweep command all go through this, so what they show is
computed one way: :class:`MethodInputs` and :func:`run_method` (one method at one retention, with
its metrics) are shared by the app and the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from scissor_viz.methods import Reduction, reduce, runnable_methods
from scissor_viz.methods import forget as forget_linkages
from scissor_viz.metrics import answer_fidelity, coverage, redundancy
from scissor_viz.models import Answer, Backend, reduce_layers
from scissor_viz.models.cache import BoundedCache
from scissor_viz.numbers import GAP_FLOOR
from scissor_viz.pictures.grid import TokenGrid
from scissor_viz.progress import ProgressFn, report, scaled
from scissor_viz.scc import Compression, ScissorIndex, scissor_index, share_index
from scissor_viz.scc import forget as forget_indexes
from scissor_viz.video import DEFAULT_FRAMES, VideoClip, load_video

MAX_ANSWERS = 32  # answers kept per video (question x method x retention)
MAX_ANSWER_BYTES = 64 << 20  # 64 MiB: an answer holds 2 x vocab floats (1.2 MB for Qwen2)
MAX_REDUCTIONS = 128  # other methods' results kept per video (method x retention)
MAX_REDUCTION_BYTES = 256 << 20  # 256 MiB: a reduction holds K x d tokens (+ labels)
DEFAULT_FASTV_QUESTION = "Describe the video."  # FastV's attention needs a prompt


@dataclass(frozen=True)
class MethodInputs:
    """A video's tokens, where they came from, and the model's attention the methods may use."""

    tokens: torch.Tensor  # (T, P, d)
    backend: str  # what produced the tokens (recorded in every sweep row)
    clip: str = ""  # the clip's cache key / fingerprint
    importance: torch.Tensor | None = None  # (T, P) vision-tower attention, for VisionZip
    attention_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # LLM attention, FastV
    grid: tuple[int, int] | None = None  # a frame's (group's) rows x cols (None: square)
    frames: int | None = None  # frames decoded (None: one per row of tokens; Qwen pairs them)

    @property
    def num_frames(self) -> int:
        return self.tokens.shape[0] if self.frames is None else self.frames


def backend_method_inputs(
    backend: Backend,
    clip: VideoClip,
    tokens: torch.Tensor,
    question: str | None = None,
    vision_attention: bool = True,
) -> MethodInputs:
    """``tokens`` of ``clip`` with what ``backend`` can add: the LLM's attention to
    ``question`` for FastV, the vision tower's attention for VisionZip (when
    ``vision_attention``; it costs a pass of the vision tower)."""
    attention_fn, importance = None, None
    if backend.has_llm_attention:
        text = (question or "").strip() or DEFAULT_FASTV_QUESTION
        attention_fn = lambda t: backend.llm_attention(text, t)  # noqa: E731
    if vision_attention and backend.has_vision_attention:
        importance = backend.vision_attention(clip.frames, key=clip.key)
    grid = backend.grid_for(clip.frames).shape
    frames = len(clip.frames)
    return MethodInputs(tokens, backend.name, clip.key, importance, attention_fn, grid, frames)


def token_sources(reduced: Compression | Reduction) -> torch.Tensor:
    """(K,) flat grid index whose position each reduced token takes in a model that positions
    video tokens on their grid (Qwen's M-RoPE): SCC's representatives, a selection's kept
    tokens, else the first token each output token stands for."""
    comp = reduced if isinstance(reduced, Compression) else reduced.compression
    if comp is not None:
        return comp.representatives
    if reduced.kept_index is not None and len(reduced.kept_index) == reduced.num_tokens:
        return reduced.kept_index
    flat = reduced.assignment.flatten()
    first = torch.full((reduced.num_tokens,), flat.numel(), dtype=torch.long)
    return first.scatter_reduce(0, flat, torch.arange(flat.numel()), reduce="amin")


def token_layers(
    layers: tuple[torch.Tensor, ...], reduced: Compression | Reduction | None
) -> tuple[torch.Tensor, ...]:
    """Per level of ``layers`` ((G, P, d_l) grids the model adds at the video's positions:
    Qwen3-VL's DeepStack), the (K, d_l) features of ``reduced``'s tokens
    (:func:`scissor_viz.models.reduce_layers`): SCC's merged with its very partition (as the
    patched model does inside ``generate``); a selection's kept tokens their own; any other
    token the mean of the tokens assigned to it. All of them when ``reduced`` is None."""
    if reduced is None:
        return tuple(layer.flatten(0, 1) for layer in layers)
    comp = reduced if isinstance(reduced, Compression) else reduced.compression
    return reduce_layers(
        layers,
        num_tokens=reduced.num_tokens,
        assignment=reduced.assignment,
        compression=comp,
        kept_index=getattr(reduced, "kept_index", None),
    )


def run_method(video: MethodInputs, method: str, retention: float) -> tuple[Reduction, dict]:
    """One method at one retention on one video's tokens: the reduction and its metrics."""
    start = time.perf_counter()
    reduction = reduce(
        method,
        video.tokens,
        retention,
        importance=video.importance,
        attention_fn=video.attention_fn,
        grid=video.grid,
    )
    return reduction, method_row(video.tokens, method, retention, reduction, start)


def method_row(
    tokens: torch.Tensor, method: str, retention: float, reduction: Reduction, start: float
) -> dict:
    """A reduction's metrics (one row of a comparison or a sweep); ``start``: when it began
    (``time.perf_counter``)."""
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "retention": float(retention),
        "retention_reached": float(reduction.retention_reached),
        "num_tokens": int(reduction.num_tokens),
        "tau": reduction.tau,
        "coverage": coverage(tokens, reduction.tokens),
        "redundancy": redundancy(reduction.tokens),
        "seconds": seconds,
        "note": reduction.note,
    }


def scc_reduction(comp: Compression) -> Reduction:
    """A compression as the comparison's SCC result (the same K, τ and assignment)."""
    return Reduction(
        "scc", comp.tokens, comp.assignment, comp.retention_reached, tau=comp.tau, compression=comp
    )


@dataclass
class VideoAnalysis:
    """A sampled clip, its tokens from one backend, and the SCC index over them."""

    clip: VideoClip
    backend: Backend
    tokens: torch.Tensor  # (G, P, d): G time steps (frames, or Qwen's pairs) of the backend's grid
    index: ScissorIndex
    layers: tuple[torch.Tensor, ...] = ()  # (G, P, d_l): what the LLM adds there (DeepStack)
    _answers: BoundedCache = field(
        default_factory=lambda: BoundedCache(MAX_ANSWERS, MAX_ANSWER_BYTES), repr=False
    )
    _reductions: BoundedCache = field(
        default_factory=lambda: BoundedCache(MAX_REDUCTIONS, MAX_REDUCTION_BYTES), repr=False
    )

    @classmethod
    def open(
        cls,
        path: str,
        backend: Backend,
        num_frames: int = DEFAULT_FRAMES,
        epsilon: float = 0.05,
        progress: ProgressFn | None = None,
        private: Hashable | None = None,
    ) -> VideoAnalysis:
        """Decode ``num_frames`` frames of ``path`` and encode them (raises VideoError).
        ``private`` files the tokens apart from others' (a server's visitor: no one else's
        request finds them in the backend's cache)."""
        report(progress, 0.0, "decoding frames")
        clip = load_video(path, num_frames)
        return cls.from_clip(clip, backend, epsilon, scaled(progress, 0.1, 1.0), private)

    @classmethod
    def from_clip(
        cls,
        clip: VideoClip,
        backend: Backend,
        epsilon: float = 0.05,
        progress: ProgressFn | None = None,
        private: Hashable | None = None,
    ) -> VideoAnalysis:
        key = clip.key if private is None else (clip.key, private)
        encoded = backend.encoded(clip.frames, key=key, progress=progress)
        report(progress, 1.0, "tokens ready")
        tokens = encoded.tokens
        index = scissor_index(tokens, epsilon)  # shared with the methods
        return cls(clip, backend, tokens, index, encoded.layers)

    @property
    def num_total(self) -> int:
        """N: every token of the video (the analysis's; a compression's K is its num_tokens)."""
        return self.index.num_total

    def compress(
        self, retention: float | None = None, tau: float | None = None, tolerance: float = 0.0
    ) -> Compression:
        """SCC at a retention ratio (tau searched: the closest K, or any K within ``tolerance``
        of all tokens of it) or at a given tau."""
        if (retention is None) == (tau is None):
            raise ValueError("give either a retention ratio or a tau")
        if tau is None:
            tau = self.index.tau_for_retention(retention, tolerance)
        return self.index.compress(tau)

    def retention_curve(self, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
        """(taus, retention) at ``points`` taus spaced evenly in log(1 - tau), from the frames'
        median similarity to their highest one: the figure's axis, so the points are spread
        where the retention changes, near 1 (evaluations are cached by the index)."""
        sim = self.index.frame_similarity
        values = sim[torch.isfinite(sim)].cpu().numpy()
        sample = values[:: max(1, len(values) // 200_000)]
        low, high = float(np.median(sample)), float(sample.max())
        gaps = np.geomspace(max(1.0 - high, GAP_FLOOR), max(1.0 - low, 2 * GAP_FLOOR), points)
        taus = np.unique((1.0 - gaps).astype(np.float32))
        retention = np.array([self.index.count(float(t)) for t in taus]) / self.num_total
        return taus, retention

    def summary(self, comp: Compression) -> dict:
        """The numbers a person (or the /compress endpoint) wants about one compression."""
        return dict(
            frames=len(self.clip.frames),
            timestamps=[round(float(t), 3) for t in self.clip.timestamps],
            tokens_per_frame=int(self.tokens.shape[1]),
            tokens_before=self.num_total,
            tokens_after=comp.num_tokens,
            spatial_tokens_per_frame=comp.spatial_counts.tolist(),
            retention=comp.retention_reached,
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
        every token when ``reduced`` is None; cached per (question, tokens). The features
        the model adds at the video's positions (``layers``, Qwen3-VL's DeepStack) go with the
        tokens, reduced alike (:func:`token_layers`). Raises AnswerUnavailable without a model."""
        question = question.strip()
        if not question:
            raise ValueError("ask a question about the video")
        if reduced is None:
            tokens, source = self.tokens.flatten(0, 1), ("full",)
        else:
            tokens = reduced.tokens
            method = getattr(reduced, "method", "scc")
            source = (method, reduced.retention_reached, reduced.num_tokens, reduced.tau)
        key = (question, max_new_tokens, source)
        answer = self._answers.get(key)
        if answer is None:
            grid = self.grid
            answer = self.backend.answer(
                question,
                tokens,
                max_new_tokens=max_new_tokens,
                source=None if reduced is None else token_sources(reduced),
                shape=(self.tokens.shape[0], grid.rows, grid.cols),
                layers=token_layers(self.layers, reduced),
            )
            self._answers.put(key, answer)
        return answer

    @property
    def grid(self) -> TokenGrid:
        """The token grid of this video's tokens (the backend's, for these frames)."""
        return self.backend.grid_for(self.clip.frames)

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
        """The comparison methods this backend can run (FastV needs the LLM's attention)."""
        return runnable_methods(self.backend.has_llm_attention)

    def method_inputs(self, question: str | None = None, method: str = "") -> MethodInputs:
        """This video's tokens with the model's attention the methods use where there is a
        model: the LLM's for FastV, the vision tower's for VisionZip (token norms without)."""
        return backend_method_inputs(
            self.backend, self.clip, self.tokens, question, vision_attention=method == "visionzip"
        )

    def reduce(
        self, method: str, retention: float, question: str | None = None
    ) -> tuple[Reduction, dict]:
        """One method at one retention: its reduction and metrics (cached per video)."""
        key = (method, float(retention), question if method == "fastv" else None)
        result = self._reductions.get(key)
        if result is None:
            share_index(self.index)  # the SCC methods use this index, also after release()
            result = run_method(self.method_inputs(question, method), method, retention)
            self._reductions.put(key, result)
        return result

    def compare(
        self, methods: list[str], comp: Compression, question: str | None = None
    ) -> Iterator[tuple[str, Reduction, dict]]:
        """Each of ``methods`` this backend can run, at the budget of ``comp``: SCC is ``comp``
        itself (the K the page shows), the others keep ``comp``'s retention (the same K for the
        fixed-budget ones). Yields (method, reduction, metrics) one method at a time."""
        for method in methods:
            if method not in self.methods():
                continue
            if method == "scc":
                start = time.perf_counter()
                reduction = scc_reduction(comp)
                yield (
                    method,
                    reduction,
                    method_row(self.tokens, method, comp.retention_reached, reduction, start),
                )
            else:
                yield (method, *self.reduce(method, comp.retention_reached, question))

    def curves(
        self, methods: list[str], retentions: Iterable[float], question: str | None = None
    ) -> Iterator[dict]:
        """Every runnable method's metrics at each of ``retentions`` (cached per video), one
        row at a time, method by method."""
        for method in [m for m in methods if m in self.methods()]:
            for retention in retentions:
                yield dict(self.reduce(method, retention, question)[1], backend=self.backend.name)

    def answers(
        self, methods: list[str], comp: Compression, question: str
    ) -> Iterator[tuple[str, dict]]:
        """Each runnable method's answer at ``comp``'s budget against the full-token answer."""
        for method, reduction, _ in self.compare(methods, comp, question):
            yield method, self.answer_fidelity(question, reduction)

    # --- memory

    def check_fits(self, methods: list[str], question: str | None = None) -> None:
        """Refuse (ValueError), before any of ``methods`` runs, one whose memory could not fit:
        FastV's eager attention over every token of this video."""
        if "fastv" in methods and self.backend.has_llm_attention:
            text = (question or "").strip() or DEFAULT_FASTV_QUESTION
            self.backend.check_llm_attention(text, self.num_total)

    def nbytes(self) -> dict[str, int]:
        """Bytes this analysis holds, by part, and their ``total``: the decoded ``frames``,
        the ``tokens`` and ``layers`` (shared with the backend's token cache), the ``index`` (frame
        similarities, and the Gram matrix and its workspace while built), cached ``answers``
        and ``reductions`` (each cache at most MAX_ANSWER_BYTES / MAX_REDUCTION_BYTES)."""
        parts = {
            "frames": self.clip.frames.nbytes,
            "tokens": self.tokens.untyped_storage().nbytes(),
            "layers": sum(x.untyped_storage().nbytes() for x in self.layers),
            "index": self.index.nbytes,
            "answers": self._answers.nbytes,
            "reductions": self._reductions.nbytes,
        }
        return dict(parts, total=sum(parts.values()))

    def release(self) -> None:
        """Free what can be computed again (for a session gone idle or ended): the index's
        Gram matrix and workspace, the cached answers and reductions, and what the engine and
        the methods keep for these tokens (so nothing module-level pins them). The analysis
        stays usable: the next call recomputes what it needs, with this same index. What
        stays: frames, tokens, the frame similarities (``nbytes()`` after it)."""
        self.index.release()
        self._answers.clear()
        self._reductions.clear()
        forget_indexes(self.tokens)
        forget_linkages(self.tokens)
