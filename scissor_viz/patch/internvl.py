"""InternVL (``InternVLForConditionalGeneration``) behind the SCC patch.

The model sees a video as its frames' images: the processor turns each frame into one image
(``pixel_values`` row) and writes per frame ``Frame{i}: <img>`` + ``image_seq_length``
``<IMG_CONTEXT>`` placeholders + ``</img>``, frames separated by newlines. The vision tower's
patch features are pixel-shuffled (2x2 -> 1, ``downsample_ratio`` 0.5) and projected: 256 tokens
a frame for the 448 px checkpoints (a 16 x 16 grid). The patch takes all images of a prompt as
the frames of its one video (a (frames, P, d) grid); each merged token goes into the run of its
representative's frame, so each ``Frame{i}:`` still introduces what that frame kept. Positions
are 1-D.
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Adapter, Run, runs_contiguous


def per_prompt(feats: torch.Tensor, input_ids: torch.Tensor, token_id: int) -> list[torch.Tensor]:
    """(frames, P, d) features of all prompts -> one (frames_b, P, d) grid per prompt that has
    frames, in prompt order (frames fill the placeholders in row-major order)."""
    per_frame = feats.shape[1]
    counts = ((input_ids == token_id).sum(1) // per_frame).tolist()
    return [grid for grid in feats.split(counts) if len(grid)]


def runs_per_prompt(input_ids: torch.Tensor, token_id: int) -> list[list[Run]]:
    """All placeholder runs of a prompt are one video."""
    videos: dict[int, list[Run]] = {}
    for run in runs_contiguous(input_ids, token_id):
        videos.setdefault(run.sample, []).append(run)
    return list(videos.values())


class InternVLAdapter(Adapter):
    classes = ("InternVLForConditionalGeneration",)
    video_inputs = ("pixel_values",)
    pixels = "pixel_values"
    frame_runs = True

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs["pixel_values"], return_dict=True
        )  # (frames, P, d), the config's feature layer and strategy
        return per_prompt(out.pooler_output, inputs["input_ids"], self.video_token_id)

    def given_runs(self, input_ids: torch.Tensor, inputs: dict[str, Any]) -> list[list[Run]]:
        return runs_per_prompt(input_ids, self.video_token_id)
