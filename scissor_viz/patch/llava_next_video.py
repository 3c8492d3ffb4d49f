"""LLaVA-NeXT-Video (``LlavaNextVideoForConditionalGeneration``) behind the SCC patch.

Per video the stock model reads frames x P tokens (vision tower -> 2x2 spatial pooling ->
projector; P = 144 for the 7B checkpoints) and nothing after them; SCC runs on (frames, P, d).
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Adapter
from scissor_viz.patch.llava_onevision import feature_options


class LlavaNextVideoAdapter(Adapter):
    classes = ("LlavaNextVideoForConditionalGeneration",)

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        pixels = inputs["pixel_values_videos"]  # (V, F, C, H, W)
        out = self.model.model.get_video_features(
            pixel_values_videos=pixels, return_dict=True, **feature_options(inputs)
        )
        return list(out.pooler_output.unflatten(1, (pixels.shape[1], -1)))  # V x (F, P, d)
