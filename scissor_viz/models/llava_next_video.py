"""LLaVA-NeXT-Video (``LlavaNextVideoForConditionalGeneration``): what is its own.

Per frame the stock model reads the vision tower's patch grid (CLS dropped) pooled 2 x 2
(``spatial_pool_stride``) and projected: 12 x 12 = 144 tokens for the 336 px / patch 14
checkpoints, nothing after a video. Preprocessing: the short side resized to the config's
``shortest_edge``, then the centre crop, with the checkpoint's own mean/std
(:class:`VideoPreprocessing`: ``LlavaNextVideoVideoProcessor`` where torchvision runs, else
transformers' ``PilBackend`` on the same config).
"""

from __future__ import annotations

import numpy as np
import torch

from scissor_viz.models.llava_onevision import VideoPreprocessing
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid


class LlavaNextVideoBackend(VideoLLMBackend):
    family = "LLaVA-NeXT-Video"
    model_types = ("llava_next_video",)
    model_class = "LlavaNextVideoForConditionalGeneration"
    video_processor = "LlavaNextVideoVideoProcessor"
    features = "CLIP features pooled 2×2 and projected, per frame"

    def __init__(self, model, tokenizer, preprocessing: VideoPreprocessing, **kwargs):
        super().__init__(model, tokenizer, preprocessing, **kwargs)
        config = model.config
        vision = config.vision_config
        if (preprocessing.height, preprocessing.width) != (vision.image_size, vision.image_size):
            raise ValueError(
                f"preprocessing gives {preprocessing.height}x{preprocessing.width} frames but "
                f"the vision tower expects {vision.image_size}x{vision.image_size}"
            )
        stride = getattr(config, "spatial_pool_stride", 2)
        self.grid = TokenGrid.square(-(-(vision.image_size // vision.patch_size) // stride))

    @classmethod
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> VideoPreprocessing:
        return VideoPreprocessing.from_config(cfg, source, cls.video_processor)

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        return {"pixel_values_videos": self.preprocessing(frames)[None]}
