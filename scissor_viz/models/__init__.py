"""Feature backends: where a video's per-frame tokens (and answers) come from.

* :class:`~scissor_viz.models.vlm.VideoLLMBackend`: a checkpoint of a supported video LLM
  family through transformers (the tokens its LLM reads, from the SCC patch's own feature
  extraction; answers through the patched model), one subclass per family:
  ``LlavaOnevisionBackend``, ``LlavaNextVideoBackend``, ``Qwen2_5_VLBackend``,
  ``Qwen3VLBackend``, ``InternVLBackend``, ``SmolVLMBackend``;
* :class:`~scissor_viz.models.pixels.PixelBackend`: no weights, per-cell colour/texture
  descriptors on the configured family's grid; it cannot answer.

Modules: ``base`` (Backend, its abilities and token grid, Answer, errors), ``loading`` (device,
dtype, Hub, the families, the checkpoint policy, load_backend, LazyBackend, BackendRegistry),
``vlm`` (what every family shares), one module per family, ``attention`` (attention maps read
out of a model), ``cache`` (bounded LRU caches), ``pixels``. This file only re-exports.
"""

from scissor_viz.models.base import (
    AbilityUnavailable,
    Answer,
    AnswerUnavailable,
    Backend,
    BackendLoadError,
    CheckpointRefused,
    Encoded,
    check_frames,
)
from scissor_viz.models.cache import TokenCache
from scissor_viz.models.internvl import InternVLBackend
from scissor_viz.models.llava_next_video import LlavaNextVideoBackend
from scissor_viz.models.llava_onevision import LlavaOnevisionBackend
from scissor_viz.models.loading import (
    ALLOW_ANY_ENV,
    CHECKPOINT_ENV,
    DEFAULT_CHECKPOINT,
    DEVICE_ENV,
    FAMILIES,
    MAX_BACKENDS_ENV,
    REFUSED,
    BackendRegistry,
    CheckpointPolicy,
    LazyBackend,
    LoadStatus,
    default_checkpoint,
    load_backend,
    load_model,
    resolve_checkpoint,
    resolve_device,
)
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.models.qwen2_5_vl import Qwen2_5_VLBackend
from scissor_viz.models.qwen3_vl import Qwen3VLBackend
from scissor_viz.models.smolvlm import SmolVLMBackend
from scissor_viz.models.vlm import VideoLLMBackend, reduce_layers

__all__ = [
    "ALLOW_ANY_ENV",
    "CHECKPOINT_ENV",
    "MAX_BACKENDS_ENV",
    "REFUSED",
    "DEFAULT_CHECKPOINT",
    "DEVICE_ENV",
    "FAMILIES",
    "AbilityUnavailable",
    "Answer",
    "AnswerUnavailable",
    "Backend",
    "BackendLoadError",
    "BackendRegistry",
    "CheckpointPolicy",
    "CheckpointRefused",
    "Encoded",
    "LazyBackend",
    "LoadStatus",
    "LlavaNextVideoBackend",
    "LlavaOnevisionBackend",
    "Qwen2_5_VLBackend",
    "Qwen3VLBackend",
    "InternVLBackend",
    "SmolVLMBackend",
    "VideoLLMBackend",
    "PixelBackend",
    "TokenCache",
    "check_frames",
    "default_checkpoint",
    "load_model",
    "load_backend",
    "reduce_layers",
    "resolve_checkpoint",
    "resolve_device",
]
