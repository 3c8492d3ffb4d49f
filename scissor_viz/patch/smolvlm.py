"""SmolVLM / SmolVLM2 (``SmolVLMForConditionalGeneration``) behind the SCC patch.

SmolVLM2 sees a video as its frames' images: the processor gives ``pixel_values`` (prompts,
frames, C, H, W; all-zero padding frames) and writes per frame ``\\nFrame from MM:SS:`` then
``<fake_token_around_image><global-img>`` + ``image_seq_len`` ``<image>`` placeholders +
``<fake_token_around_image>``. The connector pixel-shuffles the SigLIP patches (``scale_factor``
x ``scale_factor`` -> 1) and projects them: 64 tokens a frame for the 256M / 500M video
checkpoints (an 8 x 8 grid). All images of a prompt are the frames of its one video; each merged
token goes into the run of its representative's frame, after that frame's timestamp. Positions
are 1-D.
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Adapter, Run
from scissor_viz.patch.internvl import runs_per_prompt


class SmolVLMAdapter(Adapter):
    classes = ("SmolVLMForConditionalGeneration",)
    video_inputs = ("pixel_values", "pixel_attention_mask")
    pixels = "pixel_values"
    frame_runs = True

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    @property
    def tokens_per_frame(self) -> int:
        config = self.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size
        return side * side // config.scale_factor**2

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            inputs["pixel_values"], inputs.get("pixel_attention_mask"), return_dict=True
        )  # one (frames_b * P, d) per prompt, padding frames dropped
        per_frame = self.tokens_per_frame
        return [f.unflatten(0, (-1, per_frame)) for f in out.pooler_output if len(f)]

    def given_runs(self, input_ids: torch.Tensor, inputs: dict[str, Any]) -> list[list[Run]]:
        return runs_per_prompt(input_ids, self.video_token_id)
