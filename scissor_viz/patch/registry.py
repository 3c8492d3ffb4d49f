"""Which adapter serves which model class: the built-in families and any registered later."""

from __future__ import annotations

from typing import Any

from scissor_viz.patch.base import Adapter
from scissor_viz.patch.internvl import InternVLAdapter
from scissor_viz.patch.llava_next_video import LlavaNextVideoAdapter
from scissor_viz.patch.llava_onevision import LlavaOnevisionAdapter
from scissor_viz.patch.qwen2_5_vl import Qwen2_5_VLAdapter
from scissor_viz.patch.qwen3_vl import Qwen3VLAdapter
from scissor_viz.patch.smolvlm import SmolVLMAdapter

ADAPTERS: list[type[Adapter]] = [
    LlavaOnevisionAdapter,
    LlavaNextVideoAdapter,
    Qwen2_5_VLAdapter,
    Qwen3VLAdapter,
    InternVLAdapter,
    SmolVLMAdapter,
]


def supported_classes() -> list[str]:
    return [name for adapter in ADAPTERS for name in adapter.classes]


def register_adapter(adapter: type[Adapter]) -> type[Adapter]:
    """Add a model family (usable as a class decorator); later registrations take precedence."""
    ADAPTERS.insert(0, adapter)
    return adapter


def adapter_for(model: Any) -> Adapter:
    """The adapter of the model's class (or of the nearest base class one serves)."""
    for cls in type(model).__mro__:
        for adapter in ADAPTERS:
            if cls.__name__ in adapter.classes:
                return adapter(model)
    raise TypeError(
        f"scissor_viz.apply_patch does not support {type(model).__name__}; supported: "
        f"{', '.join(supported_classes())} (or register an Adapter: see docs/patch.md)"
    )
