"""A family's frames -> its model's pixel inputs, by transformers' own processor classes.

Where torchvision imports, the family's own **video processor** (the class the checkpoint's
video config names, else the family's, built from that config as ``from_pretrained`` builds it)
does the work. Without torchvision (this CPU torch: PyPI's torchvision builds are CUDA builds
that fail to load beside it, ``torchvision::nms does not exist``) no video processor can even be
imported, so a torchvision-free transformers class runs the same operations on the same config:
``PilBackend`` (the PIL half of the video processors' ``BaseVideoProcessor``: resize, centre
crop, rescale, normalise) for LLaVA-OneVision, LLaVA-NeXT-Video, InternVL and Qwen's frames, and
``SmolVLMImageProcessorPil`` without image splitting for SmolVLM2 (its video processor is
defined as that). The choice is made by :func:`torchvision_usable` on each build, not hard-coded
(docs/models.md, "Processors").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import torch

from scissor_viz.models.base import check_frames


@cache
def torchvision_usable() -> bool:
    """Whether torchvision imports *and loads* here (a CUDA build beside a CPU torch imports
    its package and then fails registering its operators: any exception means no)."""
    try:
        import torchvision  # noqa: F401
        from torchvision.transforms.v2 import functional  # noqa: F401
    except Exception:
        return False
    return True


def video_processor(name: str, cfg: dict) -> Any | None:
    """The family's transformers video processor ``name`` built from ``cfg`` (the checkpoint's
    video or image config), or None where torchvision is not usable (or ``name`` is empty)."""
    if not name or not torchvision_usable():
        return None
    import transformers

    return getattr(transformers, name).from_dict(cfg)


class FrameProcessor:
    """(T, H, W, 3) uint8 frames -> the processor's outputs (tensors), with the processor that
    made them: the family's video processor where it can run, else the torchvision-free one.

    ``pil`` builds the torchvision-free processor from the config, ``pil_call`` runs it on a
    list of frames (default: as images, one per frame)."""

    def __init__(
        self,
        video_class: str,
        cfg: dict,
        pil: Callable[[dict], Any],
        pil_call: Callable[[Any, list[np.ndarray]], dict] | None = None,
    ):
        self.cfg = dict(cfg)
        self.video_class = self.cfg.get("video_processor_type") or video_class
        self.processor = video_processor(self.video_class, self.cfg)
        self.is_video = self.processor is not None
        if self.processor is None:
            self.processor = pil(self.cfg)
        self._pil_call = pil_call or (lambda p, frames: p(images=frames, return_tensors="pt"))

    @property
    def name(self) -> str:
        return type(self.processor).__name__

    def __call__(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        frames = check_frames(frames)
        if self.is_video:
            return dict(self.processor(videos=[frames], return_tensors="pt"))
        return dict(self._pil_call(self.processor, list(frames)))


def pil_backend(cfg: dict):
    """transformers' PIL backend with the config's resize / crop / rescale / normalise."""
    from transformers.image_processing_backends import PilBackend

    return PilBackend.from_dict(cfg)
