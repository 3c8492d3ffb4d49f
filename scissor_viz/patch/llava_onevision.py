"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``) behind the SCC patch.

Per video the stock model reads frames x 196 pooled tokens (SigLIP -> projector -> bilinear
27x27 -> 14x14) and then ONE ``image_newline``; the processor writes that many ``<video>``
placeholders. SCC runs on the (frames, 196, d) grid; the newline stays after the K tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Adapter

FEATURE_OPTIONS = ("vision_feature_layer", "vision_feature_select_strategy")


def feature_options(inputs: dict[str, Any]) -> dict[str, Any]:
    """The caller's feature-selection overrides (the model's config supplies the rest)."""
    return {k: inputs[k] for k in FEATURE_OPTIONS if inputs.get(k) is not None}


class LlavaOnevisionAdapter(Adapter):
    classes = ("LlavaOnevisionForConditionalGeneration",)
    video_inputs = ("pixel_values_videos", "image_sizes_videos")

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        pixels = inputs["pixel_values_videos"]  # (V, F, C, H, W)
        out = self.model.model.get_video_features(
            pixel_values_videos=pixels, return_dict=True, **feature_options(inputs)
        )
        feats = out.pooler_output[:, :-1]  # (V, F * P, d): the newline is the tail
        return list(feats.unflatten(1, (pixels.shape[1], -1)))  # V x (F, P, d)

    def tail(self) -> torch.Tensor:
        return self.model.model.image_newline[None]  # (1, d)
