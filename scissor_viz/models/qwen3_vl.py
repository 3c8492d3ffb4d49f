"""Qwen3-VL (``Qwen3VLForConditionalGeneration``): what is its own.

Preprocessing and grid as Qwen2.5-VL's (:class:`~scissor_viz.models.qwen2_5_vl.QwenPreprocessing`,
read from the checkpoint's config: 16 px patches, 2 x 2 merge, pairs of frames; a 448 x 608
frame pair gives one 14 x 19 grid). The prompt differs: every temporal group has its own run,
introduced by its timestamp, ``<t seconds><|vision_start|>`` + P placeholders +
``<|vision_end|>`` (the processor's layout). The app, not the model, picks the frames, so frame t
is labelled second t and a group the mean of its frames' seconds (the processor averages a
group's timestamps the same way). A compressed token goes into the run of its representative's
group and takes its representative's position (docs/patch.md), so it needs its ``source``.

DeepStack: the language model also adds features of other vision layers (one grid per level,
from the same vision pass) at the video's positions. ``encode`` keeps them with the tokens
(:meth:`~scissor_viz.models.base.Backend.encoded`, one cache entry), and ``answer`` takes them
as ``layers=``, reduced like the tokens (:func:`~scissor_viz.models.vlm.reduce_layers`: SCC's
partition for SCC, the patch's own rule), so an answer is the patched model's ``generate``.
"""

from __future__ import annotations

from typing import Any

from scissor_viz.models.qwen2_5_vl import Qwen2_5_VLBackend

START, END = "<|vision_start|>", "<|vision_end|>"


class Qwen3VLBackend(Qwen2_5_VLBackend):
    family = "Qwen3-VL"
    model_types = ("qwen3_vl",)
    model_class = "Qwen3VLForConditionalGeneration"
    # Qwen3VLVideoProcessor sizes frames from the whole clip's pixel budget, so its grid would
    # depend on how many frames an encode batch holds: the per-frame path is used everywhere
    video_processor = ""
    features = "its vision transformer's merged 2×2 patches, per pair of frames"

    @property
    def layer_levels(self) -> int:
        """DeepStack levels: vision layers whose features the language model adds."""
        return len(self.model.config.vision_config.deepstack_visual_indexes)

    def group_seconds(self, group: int) -> float:
        """The timestamp a group's run is introduced by: its frames' mean second."""
        step = self.preprocessing.temporal_patch_size
        return group * step + (step - 1) / 2

    def video_inputs(
        self, question: str, shape: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        """The stock prompt: per temporal group its timestamp, then its run of placeholders
        (inside the vision start/end markers where the tokenizer has them), and the
        ``video_grid_thw`` the stock positions are computed from."""
        if shape is None:
            raise ValueError("Qwen3-VL positions tokens on the video's grid: give shape=")
        groups, rows, cols = shape
        prompt = self.build_prompt(question)
        vocab = self.tokenizer.get_vocab()
        marked = START in vocab and END in vocab
        start, end = (START, END) if marked else ("", "")
        run = start + self.video_token * (rows * cols) + end
        video = "".join(f"<{self.group_seconds(g):.1f} seconds>" + run for g in range(groups))
        wrapped = START + self.video_token + END  # the chat template's wrapper: one per group
        if marked and wrapped in prompt:
            prompt = prompt.replace(wrapped, video, 1)
        else:
            prompt = prompt.replace(self.video_token, video, 1)
        return self._grid_inputs(prompt, shape)
