"""Qwen3-VL (``Qwen3VLForConditionalGeneration``) behind the SCC patch.

As in Qwen2.5-VL the vision tower turns each pair of frames into a temporal group of
(h/2 * w/2) merged patches, and SCC runs on the (groups, P, d) grid. Unlike it, the prompt
gives every group its own run, introduced by its timestamp: ``<t seconds><|vision_start|>`` +
P ``<|video_pad|>`` + ``<|vision_end|>``, and ``get_rope_index`` positions each group like an
image (time, row and column all start at the position after the text before it; the text after
it continues at that start + max(h/2, w/2)). A merged token goes into the run of its
representative's group, so each timestamp still introduces what that group kept, and takes its
representative's stock 3-D position; every other token, and all text, keeps its stock position
(the rule of :mod:`.qwen2_5_vl`).

DeepStack: the language model adds features from several vision layers to the hidden states at
the video's positions in its first layers. The patch merges each of those grids with the very
partition SCC found for the main grid (:func:`~scissor_viz.patch.representatives.merge`) and
hands the merged tokens to the stock model as its encoder outputs (``mm_encoder_outputs``), so
the stock code splices them and adds their DeepStack features itself.
"""

from __future__ import annotations

from typing import Any

import torch

from scissor_viz.patch.base import Run, SplicedTokens, runs_contiguous
from scissor_viz.patch.qwen2_5_vl import Qwen2_5_VLAdapter


class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    classes = ("Qwen3VLForConditionalGeneration",)
    video_inputs = ("pixel_values_videos", "video_grid_thw")
    frame_runs = True

    def encode(self, inputs: dict[str, Any]) -> list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        thw = inputs["video_grid_thw"]  # (V, 3) temporal groups, patch rows, patch columns
        out = self.model.model.get_video_features(
            inputs["pixel_values_videos"], thw, return_dict=True
        )
        groups = thw[:, 0].tolist()

        def grid(f: torch.Tensor, t: int) -> torch.Tensor:
            return f.reshape(t, -1, f.shape[-1])

        layers = [[grid(f, t) for f, t in zip(level, groups)] for level in out.deepstack_features]
        return [
            (grid(f, t), tuple(level[v] for level in layers))
            for v, (f, t) in enumerate(zip(out.pooler_output, groups))
        ]

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        return [grid for grid, _ in self.encode(inputs)]

    def given_runs(self, input_ids: torch.Tensor, inputs: dict[str, Any]) -> list[list[Run]]:
        """Video v is the next ``video_grid_thw[v, 0]`` runs (one per temporal group)."""
        runs, thw = runs_contiguous(input_ids, self.video_token_id), inputs.get("video_grid_thw")
        groups = [len(runs)] if thw is None else thw[:, 0].tolist()
        if sum(groups) != len(runs):
            raise ValueError(f"{len(runs)} placeholder runs for video_grid_thw's {groups} groups")
        starts = [sum(groups[:v]) for v in range(len(groups))]
        return [runs[s : s + n] for s, n in zip(starts, groups)]

    def finish(self, out: dict[str, Any], videos: list[SplicedTokens], new_ids: torch.Tensor):
        """The stock model splices the tokens itself (from ``input_ids``), and adds their
        DeepStack features (zeros for given tokens without ``layers``)."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import (
            BaseModelOutputWithDeepstackFeatures,
        )

        model = self.model.model
        embeds = out.pop("inputs_embeds")
        levels = len(self.model.config.vision_config.deepstack_visual_indexes)
        layers = [
            tuple(
                v.layers[level] if v.layers else v.tokens.new_zeros(v.tokens.shape) for v in videos
            )
            for level in range(levels)
        ]
        encoded = {
            "video": BaseModelOutputWithDeepstackFeatures(
                pooler_output=tuple(v.tokens.to(embeds.dtype) for v in videos),
                deepstack_features=layers,
            )
        }
        if out.get("pixel_values") is not None:  # images: encoded here, as the stock model would
            encoded["image"] = model.get_image_features(
                out.pop("pixel_values"), out.get("image_grid_thw"), return_dict=True
            )
        out.update(input_ids=new_ids, mm_encoder_outputs=encoded)
        return out
