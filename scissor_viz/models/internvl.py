"""InternVL (``InternVLForConditionalGeneration``, the transformers-native "-hf" checkpoints):
what is its own.

InternVL reads a video as its frames' images: each frame squashed to the tower's square input
(448 px for InternVL3) with the checkpoint's mean/std (``InternVLVideoProcessor`` where
torchvision runs, else transformers' ``PilBackend`` on the same config),
its patch features pixel-shuffled (``downsample_ratio`` 0.5: 2 x 2 -> 1) and projected,
16 x 16 = 256 tokens a frame. The prompt gives every frame its own line, ``Frame{i}: <img>`` +
its run of ``<IMG_CONTEXT>`` placeholders + ``</img>`` (the processor's layout), so a
compressed token goes into the run of its representative's frame (docs/patch.md) and needs its
``source``. Positions are 1-D.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scissor_viz.models.llava_onevision import VideoPreprocessing
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid

START, END = "<img>", "</img>"  # the real tokenizer's markers around a frame's run


class InternVLBackend(VideoLLMBackend):
    family = "InternVL"
    model_types = ("internvl",)
    model_class = "InternVLForConditionalGeneration"
    video_processor = "InternVLVideoProcessor"
    features = "InternViT features pixel-shuffled and projected, per frame"
    has_llm_attention = False  # FastV over per-frame runs: not wired (declared, not probed)

    def __init__(self, model, tokenizer, preprocessing: VideoPreprocessing, **kwargs):
        super().__init__(model, tokenizer, preprocessing, **kwargs)
        config = model.config
        vision = config.vision_config
        side = vision.image_size
        side = side[0] if isinstance(side, (list, tuple)) else side
        if (preprocessing.height, preprocessing.width) != (side, side):
            raise ValueError(
                f"preprocessing gives {preprocessing.height}x{preprocessing.width} frames but "
                f"the vision tower expects {side}x{side}"
            )
        patch = vision.patch_size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        self.grid = TokenGrid.square(round(side // patch * config.downsample_ratio))
        vocab = tokenizer.get_vocab()
        self.markers = START in vocab and END in vocab

    @classmethod
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> VideoPreprocessing:
        return VideoPreprocessing.from_config(cfg, source, cls.video_processor)

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """One image per frame, and the placeholders that say they are one prompt's frames
        (the patch splits the tower's output by prompt)."""
        pixels = self.preprocessing(frames)  # (T, C, S, S)
        ids = torch.full((1, len(frames) * self.tokens_per_frame), self.video_token_id)
        return {"pixel_values": pixels, "input_ids": ids}

    def video_inputs(
        self, question: str, shape: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        """The stock prompt: per frame its line, ``Frame{i}: `` and its run of placeholders."""
        if shape is None:
            raise ValueError("InternVL gives each frame its own run: give shape=")
        frames, rows, cols = shape
        run = self.video_token * (rows * cols)
        if self.markers:
            run = START + run + END
        video = "\n".join(f"Frame{t + 1}: " + run for t in range(frames))
        prompt = self.build_prompt(question).replace(self.video_token, video, 1)
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
