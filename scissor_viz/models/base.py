"""What every feature backend is: :class:`Backend` with its declared abilities, the
:class:`Answer` it gives, and the errors it raises.

Callers ask a backend what it can do through its abilities (``can_answer``,
``has_vision_attention``, ``has_llm_attention``), never by probing for methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

from scissor_viz.models.cache import TokenCache, frames_digest, frames_fingerprint
from scissor_viz.pictures.grid import TokenGrid
from scissor_viz.progress import ProgressFn, report

RANDOM_WEIGHTS_FLAG = "scissor_viz_random_weights"  # set in config.json by test/benchmark builders


class AbilityUnavailable(RuntimeError):
    """A backend was asked for something it does not declare it can do."""


class AnswerUnavailable(AbilityUnavailable):
    """Raised by ``Backend.answer`` when the backend cannot answer (no language model)."""


class BackendLoadError(RuntimeError):
    """A checkpoint could not be loaded. ``str(err)`` says what was tried and how to fix it."""

    def __init__(self, message: str, tried: str = "", hint: str = ""):
        super().__init__(message)
        self.tried = tried
        self.hint = hint


class CheckpointRefused(BackendLoadError):
    """A checkpoint this server's operator has not allowed. The message is the same for every
    refused name, so it tells nothing about what exists on the server."""


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


@dataclass(frozen=True)
class Encoded:
    """What :meth:`Backend.encode` keeps for one clip (one cache entry, counted in the cache's
    byte budget as a whole): the tokens, and the features the language model adds at the
    video's positions, one grid per level, from the same vision pass (Qwen3-VL's DeepStack;
    no levels for other families)."""

    tokens: torch.Tensor  # (G, P, d)
    layers: tuple[torch.Tensor, ...] = ()  # (G, P, d_l) per level


class Backend(ABC):
    """What the rest of scissor-viz needs from a feature backend.

    ``encode`` caches its result per (backend, clip key, frames): call it freely. Abilities are
    class attributes a subclass sets to True when it implements the matching method:

    * ``can_answer``: :meth:`answer` generates text from any token sequence;
    * ``has_vision_attention``: :meth:`vision_attention` gives the attention each token's
      patches receive in the vision tower (VisionZip's ranking);
    * ``has_llm_attention``: :meth:`llm_attention` gives the attention each visual token receives
      inside the language model (FastV's ranking).
    """

    name: str = "backend"
    description: str = ""
    pretrained: bool = False  # True only for real pretrained weights
    can_answer: bool = False
    has_vision_attention: bool = False
    has_llm_attention: bool = False
    unavailable_reason: str | None = None  # why answer() is unavailable (None when it is)
    grid: TokenGrid = TokenGrid.square()  # the token grid of a frame (or temporal group)
    hidden_size: int = 0
    checkpoint: str | None = None
    load_error: str | None = None  # why a requested model is not loaded (pixel fallback)

    def __init__(self, cache: TokenCache | None = None):
        self.cache = cache if cache is not None else TokenCache()

    @property
    def source(self) -> str:
        """What the page calls these features, in a word or two: the model family ("pixel"
        for the pixel descriptors)."""
        return getattr(self, "family", "") or self.name

    @property
    def tokens_per_frame(self) -> int:
        """Tokens per frame (per temporal group for Qwen-VL: ``grid.frames_per_group``)."""
        return self.grid.tokens_per_frame

    def grid_for(self, frames: np.ndarray) -> TokenGrid:
        """The token grid :meth:`encode` gives for these (T, H, W, 3) frames: ``grid``, unless
        the family's grid follows the frame size (Qwen-VL's)."""
        return self.grid

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
        """(T, H, W, 3) uint8 RGB frames -> (G, P, hidden_size) float32 CPU tensor: G =
        ``grid_for(frames).groups(T)`` time steps (T, except Qwen-VL's pairs), P its
        ``tokens_per_frame``.

        ``key`` names the clip (e.g. the video module's clip key); without it the frames are
        hashed. The result is cached and returned as stored: do not modify it in place."""
        return self.encoded(frames, key, progress).tokens

    def encoded(
        self,
        frames: np.ndarray,
        key: Hashable | None = None,
        progress: ProgressFn | None = None,
    ) -> Encoded:
        """:meth:`encode`'s tokens with the levels the language model adds at the video's
        positions (``layers``, float32 on the CPU, cached with the tokens; () for most
        families), as stored: do not modify them in place."""
        frames = check_frames(frames)
        ckey = self.cache_key(frames, key)
        hit = self.cache.get(ckey)
        if hit is not None:  # reported as an encode, frame by frame: a hit tells no history
            for t in range(len(frames)):
                report(progress, (t + 1) / len(frames), f"frame {t + 1}/{len(frames)}")
            return hit
        out = self._encode(frames, progress)
        out = out if isinstance(out, Encoded) else Encoded(out)
        self.cache.put(ckey, out)
        return out

    def has_tokens(self, frames: np.ndarray, key: Hashable | None = None) -> bool:
        """Whether :meth:`encode` of these frames (under ``key``) is in the cache: it would
        return at once."""
        return self.cache_key(check_frames(frames), key) in self.cache

    @abstractmethod
    def _encode(
        self, frames: np.ndarray, progress: ProgressFn | None
    ) -> torch.Tensor | Encoded: ...

    def answer(
        self,
        question: str,
        tokens: torch.Tensor,
        max_new_tokens: int = 64,
        **kwargs,
    ) -> Answer:
        """Answer ``question`` about a video given as ``tokens`` (K, hidden_size)."""
        raise AnswerUnavailable(self.unavailable_reason or f"{self.name} cannot answer questions")

    def vision_attention(
        self, frames: np.ndarray, key: Hashable | None = None, progress: ProgressFn | None = None
    ) -> torch.Tensor:
        """(T, tokens_per_frame) float32: the attention each token receives in the vision tower
        (where ``has_vision_attention``)."""
        raise AbilityUnavailable(f"{self.name} has no vision tower attention")

    def llm_attention(self, question: str, tokens: torch.Tensor) -> torch.Tensor:
        """(K,) float32: the attention each of ``tokens`` receives inside the language model
        when asked ``question`` (where ``has_llm_attention``)."""
        raise AbilityUnavailable(f"{self.name} has no language model attention")

    def check_llm_attention(self, question: str, num_tokens: int) -> None:
        """Raise ValueError when :meth:`llm_attention` over ``num_tokens`` tokens could not fit
        this server's memory (checked before a comparison runs anything)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.description}>"


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    return frames
