"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) behind the SCC patch.

The vision tower turns each pair of frames into a temporal group and merges 2x2 patches, so a
video of grid (t, h, w) gives t x (h/2 * w/2) tokens, raster order; SCC runs on that grid.
Video tokens carry 3-D rotary positions (temporal, row, column from ``get_rope_index``). A
merged token takes the stock position of its representative (the member SCC orders it by, see
:mod:`.representatives`); every other token, and the text after the video, keeps its stock
position, so decoding continues where the stock model's would.
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Adapter

TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids


class Qwen2_5_VLAdapter(Adapter):
    classes = ("Qwen2_5_VLForConditionalGeneration",)
    video_inputs = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
    mrope = True

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        thw = inputs["video_grid_thw"]  # (V, 3) temporal groups, patch rows, patch columns
        out = self.model.model.get_video_features(
            inputs["pixel_values_videos"], thw, return_dict=True
        )
        return [
            f.reshape(t, -1, f.shape[-1]) for f, t in zip(out.pooler_output, thw[:, 0].tolist())
        ]

    def stock_positions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        types = inputs.get("mm_token_type_ids")
        if types is None:  # what the processor writes: 1 for image, 2 for video placeholders
            config = self.model.config
            types = torch.zeros_like(input_ids)
            types[input_ids == config.image_token_id] = IMAGE
            types[input_ids == config.video_token_id] = VIDEO
        positions, _ = self.model.model.get_rope_index(
            input_ids,
            types,
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=inputs.get("second_per_grid_ts"),
            attention_mask=attention_mask,
        )
        return positions  # (3, B, L)

    def position_inputs(
        self, positions: torch.Tensor, attention_mask: torch.Tensor, generate: bool
    ) -> dict[str, Any]:
        # rope_deltas (next position - prompt length) serve decoding steps that recompute
        # positions from the cache length, as the stock model's do
        valid = attention_mask.sum(-1).to(positions.device)
        self.model.model.rope_deltas = (positions.amax(dim=(0, 2)) + 1 - valid)[:, None]
        if generate:  # generate's layout: a 1-D text row (for the mask) on top of the 3 rows
            text = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
            positions = torch.cat([text[None].to(positions), positions])
        return {"position_ids": positions}
