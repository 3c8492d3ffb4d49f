"""Feature backends: where a video's per-frame tokens (and answers) come from.

* :class:`~scissor_viz.models.llava_onevision.LlavaOnevisionBackend`: a LLaVA-OneVision
  checkpoint through transformers (the tokens its LLM reads; answers from any token sequence);
* :class:`~scissor_viz.models.pixels.PixelBackend`: no weights, per-cell colour/texture
  descriptors on the same 14 x 14 grid; it cannot answer.

Modules: ``base`` (Backend and its abilities, Answer, errors), ``loading`` (the checkpoint
policy, load_backend, LazyBackend, BackendRegistry), ``attention`` (attention maps read out of
a model), ``cache`` (bounded LRU caches), ``llava_onevision``, ``pixels``. This file only
re-exports.
"""

from scissor_viz.models.base import (
    TOKENS_PER_FRAME,
    AbilityUnavailable,
    Answer,
    AnswerUnavailable,
    Backend,
    BackendLoadError,
    CheckpointRefused,
    check_frames,
)
from scissor_viz.models.cache import TokenCache
from scissor_viz.models.llava_onevision import (
    DEFAULT_CHECKPOINT,
    DEVICE_ENV,
    LlavaOnevisionBackend,
    resolve_device,
)
from scissor_viz.models.loading import (
    ALLOW_ANY_ENV,
    CHECKPOINT_ENV,
    MAX_BACKENDS_ENV,
    REFUSED,
    BackendRegistry,
    CheckpointPolicy,
    LazyBackend,
    LoadStatus,
    load_backend,
    resolve_checkpoint,
)
from scissor_viz.models.pixels import PixelBackend

__all__ = [
    "ALLOW_ANY_ENV",
    "CHECKPOINT_ENV",
    "MAX_BACKENDS_ENV",
    "REFUSED",
    "DEFAULT_CHECKPOINT",
    "DEVICE_ENV",
    "TOKENS_PER_FRAME",
    "AbilityUnavailable",
    "Answer",
    "AnswerUnavailable",
    "Backend",
    "BackendLoadError",
    "BackendRegistry",
    "CheckpointPolicy",
    "CheckpointRefused",
    "LazyBackend",
    "LoadStatus",
    "LlavaOnevisionBackend",
    "PixelBackend",
    "TokenCache",
    "check_frames",
    "load_backend",
    "resolve_checkpoint",
    "resolve_device",
]
