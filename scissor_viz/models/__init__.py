"""Feature backends: where a video's per-frame tokens (and answers) come from.

Two backends share one interface, :class:`Backend`:

* :class:`~scissor_viz.models.llava_onevision.LlavaOnevisionBackend` -- the real thing: a
  LLaVA-OneVision checkpoint through transformers. ``encode`` gives the exact tokens the model
  feeds its LLM for a video (SigLIP -> projector -> bilinear 27->14 pooling: 196 per frame),
  ``answer`` splices any (compressed or full) token sequence into the prompt and generates.
* :class:`~scissor_viz.models.pixels.PixelBackend` -- no weights: per-cell colour/texture
  descriptors on the same 14x14 grid, so the compression can still be shown. It cannot answer.

:func:`load_backend` tries the model and falls back to pixels with the reason recorded;
:class:`LazyBackend` defers that (a UI can be built at once, the model loads in a thread).

Every backend says in plain words what it is (``description``) and whether its weights are real
pretrained weights (``pretrained``); a randomly initialised test model is never passed off as one.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

from scissor_viz.models.cache import TokenCache, frames_digest, frames_fingerprint

TOKENS_PER_FRAME = 196  # 14 x 14 pooled tokens per 384 px frame
DEFAULT_CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
CHECKPOINT_ENV = "SCISSOR_VIZ_CHECKPOINT"
DEVICE_ENV = "SCISSOR_VIZ_DEVICE"

ProgressFn = Callable[[float, str], None]


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    """Call ``progress(fraction, message)`` if there is a callback (fraction clipped to [0, 1])."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: ProgressFn | None, start: float, stop: float) -> ProgressFn | None:
    """A callback that maps [0, 1] of a sub-task onto [start, stop] of ``progress``."""
    if progress is None:
        return None
    return lambda f, msg: report(progress, start + (stop - start) * f, msg)


class AnswerUnavailable(RuntimeError):
    """Raised by ``Backend.answer`` when the backend cannot answer (no language model)."""


class BackendLoadError(RuntimeError):
    """A checkpoint could not be loaded. ``str(err)`` says what was tried and how to fix it."""

    def __init__(self, message: str, tried: str = "", hint: str = ""):
        super().__init__(message)
        self.tried = tried
        self.hint = hint


@dataclass
class Answer:
    """One generated answer, with what a fidelity comparison needs.

    ``first_logits``/``first_probs`` are the model's raw distribution over the vocabulary for the
    first answer token (float32, CPU); ``scissor_viz.metrics.first_token_kl`` compares two.
    """

    text: str
    visual_tokens: int  # visual embeddings handed to the LLM (K), the image_newline not counted
    prefill_seconds: float  # the prompt's forward pass (the first forward of generate)
    generate_seconds: float  # the whole generate call
    new_tokens: int
    token_ids: list[int]
    first_logits: torch.Tensor  # (vocab,) float32
    first_probs: torch.Tensor  # (vocab,) float32, softmax of first_logits
    first_top: list[tuple[str, float]] = field(default_factory=list)  # top-5 (token, prob)
    newline: bool = True  # whether the model's image_newline followed the visual tokens
    prompt_tokens: int = 0  # total length of the LLM's input (text + visual [+ newline])
    backend: str = ""
    pretrained: bool = True  # False: random weights, the text is not a real answer

    @property
    def decode_seconds(self) -> float:
        return max(self.generate_seconds - self.prefill_seconds, 0.0)


class Backend(ABC):
    """What the rest of scissor-viz needs from a feature backend.

    ``encode`` caches its result per (backend, clip key, frames): call it freely.
    """

    name: str = "backend"
    description: str = ""
    pretrained: bool = False  # True only for real pretrained weights
    can_answer: bool = False
    unavailable_reason: str | None = None  # why answer() is unavailable (None when it is)
    tokens_per_frame: int = TOKENS_PER_FRAME
    hidden_size: int = 0
    checkpoint: str | None = None
    load_error: str | None = None  # why a requested model is not loaded (pixel fallback)

    def __init__(self, cache: TokenCache | None = None):
        self.cache = cache if cache is not None else TokenCache()

    # -- identity used in cache keys: two backends with equal ids give equal tokens
    @property
    def cache_id(self) -> Hashable:
        return (type(self).__name__, self.checkpoint, id(self))

    def cache_key(self, frames: np.ndarray, key: Hashable | None = None) -> Hashable:
        clip = ("key", key) if key is not None else ("digest", frames_digest(frames))
        return (self.cache_id, clip, frames_fingerprint(frames))

    def encode(
        self,
        frames: np.ndarray,
        key: Hashable | None = None,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB frames -> (T, tokens_per_frame, hidden_size) float32 CPU tensor.

        ``key`` names the clip (e.g. the video module's clip key); without it the frames are
        hashed. The result is cached and returned as stored: do not modify it in place."""
        frames = check_frames(frames)
        ckey = self.cache_key(frames, key)
        hit = self.cache.get(ckey)
        if hit is not None:
            report(progress, 1.0, "tokens from cache")
            return hit
        tokens = self._encode(frames, progress)
        self.cache.put(ckey, tokens)
        return tokens

    @abstractmethod
    def _encode(self, frames: np.ndarray, progress: ProgressFn | None) -> torch.Tensor: ...

    def answer(
        self,
        question: str,
        tokens: torch.Tensor,
        max_new_tokens: int = 64,
        **kwargs,
    ) -> Answer:
        """Answer ``question`` about a video given as ``tokens`` (K, hidden_size)."""
        raise AnswerUnavailable(self.unavailable_reason or f"{self.name} cannot answer questions")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.description}>"


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    return frames


def resolve_checkpoint(checkpoint: str | None = None) -> str:
    """The argument, else ``$SCISSOR_VIZ_CHECKPOINT``, else the default 0.5B checkpoint."""
    return checkpoint or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The argument, else ``$SCISSOR_VIZ_DEVICE``, else CUDA when present, else CPU."""
    device = device or os.environ.get(DEVICE_ENV)
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backend(
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    fallback: bool = True,
    **kwargs,
) -> Backend:
    """Load a LLaVA-OneVision checkpoint (hub id or local folder); on failure, pixel descriptors.

    The returned pixel backend's ``load_error`` (and ``unavailable_reason``) say what was tried
    and how to fix it. With ``fallback=False`` the :class:`BackendLoadError` is raised instead.
    Extra keyword arguments go to ``LlavaOnevisionBackend.from_pretrained``.
    """
    from scissor_viz.models.llava_onevision import LlavaOnevisionBackend
    from scissor_viz.models.pixels import PixelBackend

    checkpoint = resolve_checkpoint(checkpoint)
    try:
        return LlavaOnevisionBackend.from_pretrained(
            checkpoint, device=device, progress=progress, **kwargs
        )
    except BackendLoadError as err:
        if not fallback:
            raise
        report(progress, 1.0, "model not loaded; using pixel descriptors")
        return PixelBackend(load_error=str(err))


class LazyBackend:
    """Loads a backend on first need, or in a background thread after :meth:`start`.

    Building a UI never waits for a model: create this, call ``start()``, and ``get()`` the
    backend when a request needs it (it waits for the load, reporting progress meanwhile).
    """

    def __init__(self, checkpoint: str | None = None, device=None, **kwargs):
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = device
        self.kwargs = kwargs
        self.fraction = 0.0
        self.message = "not loaded"
        self._backend: Backend | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._listeners: list[ProgressFn] = []

    @property
    def loaded(self) -> bool:
        return self._done.is_set()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        for fn in list(self._listeners):
            fn(fraction, message)

    def _load(self) -> None:
        try:
            self._backend = load_backend(
                self.checkpoint, self.device, progress=self._progress, **self.kwargs
            )
            self._progress(1.0, f"ready: {self._backend.name}")
        except BaseException as err:
            self._error = err
        finally:
            self._done.set()

    def start(self) -> LazyBackend:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, name="load-backend", daemon=True)
                self._thread.start()
        return self

    def get(self, progress: ProgressFn | None = None, timeout: float | None = None) -> Backend:
        """The backend, loading it first if needed; ``progress`` sees the load's progress."""
        if progress is not None and not self._done.is_set():
            self._listeners.append(progress)
            report(progress, self.fraction, self.message)
        try:
            self.start()
            if not self._done.wait(timeout):
                raise TimeoutError(f"backend still loading after {timeout} s: {self.message}")
        finally:
            if progress is not None and progress in self._listeners:
                self._listeners.remove(progress)
        if self._error is not None:
            raise self._error
        assert self._backend is not None
        return self._backend


__all__ = [
    "CHECKPOINT_ENV",
    "DEFAULT_CHECKPOINT",
    "DEVICE_ENV",
    "TOKENS_PER_FRAME",
    "Answer",
    "AnswerUnavailable",
    "Backend",
    "BackendLoadError",
    "LazyBackend",
    "ProgressFn",
    "TokenCache",
    "load_backend",
    "resolve_checkpoint",
    "resolve_device",
]
