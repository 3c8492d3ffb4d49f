"""SmolVLM2 (``SmolVLMForConditionalGeneration``): what is its own.

SmolVLM2 reads a video as its frames' images: each frame's SigLIP patches pixel-shuffled
(``scale_factor`` x ``scale_factor`` -> 1) and projected, 8 x 8 = 64 tokens a frame for the 256M
and 500M video checkpoints, and the prompt introduces every frame with its own text
(``Frame from MM:SS:``) before its run of ``<image>`` placeholders. With fewer tokens each goes
into the run of its representative's frame (the patch's rule, docs/patch.md), so it needs its
``source``. Preprocessing squashes each frame to the tower's square input with the checkpoint's
mean/std (the video processor needs torchvision; its resize-longest-edge-and-pad differs from a
squash for non-square frames) and labels frame t as second t (the app, not the model, picks
the frames).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scissor_viz.models.llava_onevision import VideoPreprocessing
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid

FRAME_TEXT = "\nFrame from {:02d}:{:02d}:"
AROUND, GLOBAL = "<fake_token_around_image>", "<global-img>"  # the real processor's markers


class SmolVLMBackend(VideoLLMBackend):
    family = "SmolVLM2"
    model_types = ("smolvlm",)
    model_class = "SmolVLMForConditionalGeneration"
    features = "SigLIP features pixel-shuffled and projected, per frame"
    has_llm_attention = False  # FastV over per-frame runs: not wired (declared, not probed)

    def __init__(self, model, tokenizer, preprocessing: VideoPreprocessing, **kwargs):
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
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> VideoPreprocessing:
        size = cfg.get("max_image_size") or cfg.get("size") or {}
        side = size.get("longest_edge") if isinstance(size, dict) else size
        if side:  # SmolVLM's configs name the tower's input its longest edge
            cfg = {**cfg, "size": {"height": int(side), "width": int(side)}}
        return VideoPreprocessing.from_config(cfg, source=source)

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        pixels = self.preprocessing(frames)[None]  # (1, T, C, S, S)
        mask = torch.ones(pixels.shape[:2] + pixels.shape[3:], dtype=torch.bool)
        return {"pixel_values": pixels, "pixel_attention_mask": mask}

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
