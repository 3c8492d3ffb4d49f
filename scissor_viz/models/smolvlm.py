"""SmolVLM2 (``SmolVLMForConditionalGeneration``): what is its own.

SmolVLM2 reads a video as its frames' images: each frame's SigLIP patches pixel-shuffled
(``scale_factor`` x ``scale_factor`` -> 1) and projected, 8 x 8 = 64 tokens a frame for the 256M
and 500M video checkpoints, and the prompt introduces every frame with its own text
(``Frame from MM:SS:``) before its run of ``<image>`` placeholders. With fewer tokens each goes
into the run of its representative's frame (the patch's rule, docs/patch.md), so it needs its
``source``. Preprocessing is the video processor's (:class:`SmolVLMPreprocessing`: each frame's
longest edge resized to the video size, then the frame resized to the tower's square input,
with the checkpoint's mean/std), and frame t is labelled second t (the app, not the model, picks
the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from scissor_viz.models.processors import FrameProcessor
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid

FRAME_TEXT = "\nFrame from {:02d}:{:02d}:"
AROUND, GLOBAL = "<fake_token_around_image>", "<global-img>"  # the real processor's markers


def _smolvlm_pil(cfg: dict):
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    return SmolVLMImageProcessorPil.from_dict(cfg)


@dataclass(frozen=True)
class SmolVLMPreprocessing:
    """SmolVLM2's video preprocessing from the checkpoint's config: ``SmolVLMVideoProcessor``
    where torchvision runs, else ``SmolVLMImageProcessorPil`` without image splitting -- what
    the video processor is defined as (its ``resize``: "resize again to match image processor
    when do_image_splitting=False"): the longest edge to the video size (``video_sampling``'s
    ``video_size``, else ``size``), then the square ``max_image_size``; rescale, normalise."""

    side: int  # the tower's square input (max_image_size)
    config: dict = field(compare=False, repr=False)
    source: str = ""

    @classmethod
    def from_config(cls, cfg: dict, source: str = "") -> SmolVLMPreprocessing:
        missing = [k for k in ("image_mean", "image_std") if cfg.get(k) is None]
        if missing and cfg.get("do_normalize", True):
            raise ValueError(f"{source or 'preprocessor config'} has no {' / '.join(missing)}")
        square = cfg.get("max_image_size") or cfg.get("size") or {}
        side = square.get("longest_edge") if isinstance(square, dict) else square
        if not side:
            raise ValueError(f"{source or 'preprocessor config'}: no max_image_size {square!r}")
        video = (cfg.get("video_sampling") or {}).get("video_size") or cfg.get("size")
        cfg = {
            **cfg,
            "size": video or {"longest_edge": int(side)},
            "max_image_size": {"longest_edge": int(side)},
            "do_image_splitting": False,  # frames are never split (the video processor's rule)
        }
        return cls(int(side), cfg, source)

    @property
    def height(self) -> int:
        return self.side

    @property
    def width(self) -> int:
        return self.side

    @cached_property
    def processor(self) -> FrameProcessor:
        return FrameProcessor(
            "SmolVLMVideoProcessor",
            self.config,
            _smolvlm_pil,
            pil_call=lambda p, frames: p(images=[frames], return_tensors="pt"),
        )

    def __call__(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """(T, H, W, 3) uint8 -> ``pixel_values`` (1, T, 3, S, S) and its
        ``pixel_attention_mask`` (1, T, S, S), as the model takes one video."""
        out = self.processor(frames)
        return {
            "pixel_values": out["pixel_values"].float(),
            "pixel_attention_mask": out["pixel_attention_mask"].bool(),
        }


class SmolVLMBackend(VideoLLMBackend):
    family = "SmolVLM2"
    model_types = ("smolvlm",)
    model_class = "SmolVLMForConditionalGeneration"
    video_processor = "SmolVLMVideoProcessor"
    features = "SigLIP features pixel-shuffled and projected, per frame"
    has_llm_attention = False  # FastV over per-frame runs: not wired (declared, not probed)

    def __init__(self, model, tokenizer, preprocessing: SmolVLMPreprocessing, **kwargs):
        super().__init__(model, tokenizer, preprocessing, **kwargs)
        vision = model.config.vision_config
        if (preprocessing.height, preprocessing.width) != (vision.image_size, vision.image_size):
            raise ValueError(
                f"preprocessing gives {preprocessing.height}x{preprocessing.width} frames but "
                f"the vision tower expects {vision.image_size}x{vision.image_size}"
            )
        side = vision.image_size // vision.patch_size // model.config.scale_factor
        self.grid = TokenGrid.square(side)
        vocab = tokenizer.get_vocab()
        self.markers = AROUND in vocab and GLOBAL in vocab

    @classmethod
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> SmolVLMPreprocessing:
        return SmolVLMPreprocessing.from_config(cfg, source)

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        return self.preprocessing(frames)

    def video_inputs(
        self, question: str, shape: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        """The stock prompt: per frame its text, then its run of placeholders."""
        if shape is None:
            raise ValueError("SmolVLM2 gives each frame its own run: give shape=")
        frames, rows, cols = shape
        run = self.video_token * (rows * cols)
        if self.markers:
            run = AROUND + GLOBAL + run + AROUND
        video = "".join(FRAME_TEXT.format(t // 60, t % 60) + run for t in range(frames))
        prompt = self.build_prompt(question).replace(self.video_token, video, 1)
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
