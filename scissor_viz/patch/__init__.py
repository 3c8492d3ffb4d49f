"""LLaVA-Scissor as a two-line drop-in for transformers video LLMs::

    scissor_viz.apply_patch(model, retention=0.1)        # or tau=0.9; returns the model
    out = model.generate(**inputs, max_new_tokens=64)    # video tokens compressed by SCC

The patched model computes each video's features with its own code, compresses them with
:func:`~scissor_viz.scc.scissor_compress`, splices the K tokens where the video's placeholders
were (the runs shrink; text and images are untouched) and runs the stock ``forward`` /
``generate`` on the result. ``model.scissor`` (:mod:`.state`) holds the settings and the last
call's statistics; :mod:`.patching` swaps the model's class and back; :mod:`.base` finds
placeholders and splices, family-free; one small adapter per model family
(:mod:`.llava_onevision`, :mod:`.llava_next_video`, :mod:`.qwen2_5_vl`, :mod:`.qwen3_vl`,
:mod:`.internvl`, :mod:`.smolvlm`), listed in :mod:`.registry`. This module only re-exports.
"""

from scissor_viz.patch.base import Adapter, SampleRecord, SplicedTokens, VideoRecord
from scissor_viz.patch.patching import apply_patch, remove_patch
from scissor_viz.patch.registry import (
    ADAPTERS,
    adapter_for,
    register_adapter,
    supported_classes,
)
from scissor_viz.patch.representatives import representatives
from scissor_viz.patch.state import ScissorState

__all__ = [
    "ADAPTERS",
    "Adapter",
    "SampleRecord",
    "ScissorState",
    "VideoRecord",
    "SplicedTokens",
    "adapter_for",
    "apply_patch",
    "register_adapter",
    "remove_patch",
    "representatives",
    "supported_classes",
]
