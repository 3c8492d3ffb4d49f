"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): what is its own.

Each frame is resized to a multiple of patch x merge (28 px for the real checkpoints) within the
config's pixel budget (transformers' ``smart_resize``), frames are paired into temporal groups
(the last one repeated to fill a pair) and 2 x 2 patches merge: a 448 x 616 frame pair gives one
16 x 22 grid. Video tokens carry 3-D rotary positions, so :meth:`Qwen2_5_VLBackend.answer`
prompts with the stock run of placeholders and ``video_grid_thw``, and a compressed token takes
the position of its ``source`` (the patch's representative rule; docs/patch.md). Pixels:
``Qwen2VLVideoProcessor`` where torchvision runs, else transformers' ``PilBackend`` for the
frames and the video processors' patch order (:class:`QwenPreprocessing`).
``second_per_grid_ts`` is not given (the sampled frames' rate is the app's, not the model's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from scissor_viz.models.base import check_frames
from scissor_viz.models.processors import pil_backend, video_processor
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIDEO = 2  # mm_token_type_ids of a video placeholder


@dataclass(frozen=True)
class QwenPreprocessing:
    """Resize to the budget's multiple of patch x merge, rescale, normalise, pair frames and cut
    them into the vision tower's flattened patches (the Qwen2-VL processors' order).

    ``video_class`` (Qwen2.5-VL: ``Qwen2VLVideoProcessor``) does it all where torchvision runs,
    each frame within the per-frame budget (``cap_pixels_per_frame=False``), so the grid is
    :meth:`grid`'s whatever the batch. Without it (or without a video processor whose sizes
    depend on the frame size alone: Qwen3-VL's budget is the clip's), transformers'
    ``PilBackend`` makes the frames and :meth:`__call__` cuts them as the video processors'
    ``patchify`` does (no torchvision-free transformers class pairs frames)."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    rescale_factor: float = 1 / 255
    resample: int = 3  # bicubic
    source: str = ""
    video_class: str = ""  # the family's video processor, where its sizes are per frame
    config: dict = field(default_factory=dict, compare=False, repr=False)  # the file's own

    @classmethod
    def from_config(cls, cfg: dict, source: str = "", video_class: str = "") -> QwenPreprocessing:
        size = cfg.get("size") or {}
        return cls(
            patch_size=int(cfg.get("patch_size", 14)),
            merge_size=int(cfg.get("merge_size", 2)),
            temporal_patch_size=int(cfg.get("temporal_patch_size", 2)),
            min_pixels=int(cfg.get("min_pixels") or size.get("shortest_edge") or cls.min_pixels),
            max_pixels=int(cfg.get("max_pixels") or size.get("longest_edge") or cls.max_pixels),
            mean=tuple(cfg.get("image_mean", CLIP_MEAN)),
            std=tuple(cfg.get("image_std", CLIP_STD)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            resample=int(cfg.get("resample", 3)),
            source=source,
            video_class=video_class,
            config=dict(cfg),
        )

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) a frame is resized to (transformers' ``smart_resize``)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def grid(self, height: int, width: int) -> TokenGrid:
        h, w = self.size(height, width)
        return TokenGrid(h // self.factor, w // self.factor, self.temporal_patch_size)

    @cached_property
    def frames(self):
        """transformers' ``PilBackend`` with this resample / rescale / normalise: each frame
        resized to :meth:`size` (the processors' ``smart_resize``) and normalised."""
        return pil_backend(
            {
                "do_resize": True,
                "resample": self.resample,
                "do_rescale": True,
                "rescale_factor": self.rescale_factor,
                "do_normalize": True,
                "image_mean": list(self.mean),
                "image_std": list(self.std),
            }
        )

    @cached_property
    def video(self):
        """The family's video processor on these settings, or None (no torchvision, or none)."""
        if not self.video_class:
            return None
        cfg = {
            **self.config,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "rescale_factor": self.rescale_factor,
            "resample": self.resample,
            "cap_pixels_per_frame": False,  # per-frame sizes: the grid of grid_for
        }
        for key in ("min_pixels", "max_pixels"):
            cfg.pop(key, None)
        return video_processor(self.video_class, cfg)

    def __call__(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """(T, H, W, 3) uint8 -> ``pixel_values_videos`` (t*h*w, C*temporal*p*p) and
        ``video_grid_thw`` [[t, h, w]] of one video (t = ceil(T / temporal)): the family's
        video processor's, else the frames from :attr:`frames` cut as the Qwen video
        processors' ``patchify`` cuts them (pairs of frames, the last repeated to fill a pair;
        2 x 2 merge blocks in order)."""
        frames = check_frames(frames)
        if self.video is not None:
            out = self.video(videos=[frames], return_tensors="pt")
            return {k: out[k] for k in ("pixel_values_videos", "video_grid_thw")}
        height, width = self.size(*frames.shape[1:3])
        size = {"height": height, "width": width}
        out = self.frames(images=list(frames), size=size, return_tensors="pt")["pixel_values"]
        pad = -len(out) % self.temporal_patch_size
        pixels = torch.cat([out, out[-1:].expand(pad, -1, -1, -1)])  # (F, C, H, W)
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        f, c = pixels.shape[:2]
        t, h, w = f // tp, height // p, width // p
        x = pixels.reshape(t, tp, c, h // m, m, p, w // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # t, block row, block col, row, col, C, tp, p, p
        return {
            "pixel_values_videos": x.reshape(t * h * w, c * tp * p * p).contiguous(),
            "video_grid_thw": torch.tensor([[t, h, w]]),
        }


class Qwen2_5_VLBackend(VideoLLMBackend):
    family = "Qwen2.5-VL"
    model_types = ("qwen2_5_vl",)
    model_class = "Qwen2_5_VLForConditionalGeneration"
    video_processor = "Qwen2VLVideoProcessor"
    features = "its vision transformer's merged 2×2 patches, per pair of frames"
    has_llm_attention = False  # FastV on M-RoPE positions: not wired (declared, not probed)

    def __init__(self, model, tokenizer, preprocessing: QwenPreprocessing, **kwargs):
        super().__init__(model, tokenizer, preprocessing, **kwargs)
        vision = model.config.vision_config
        mine = (preprocessing.patch_size, preprocessing.merge_size)
        if mine != (vision.patch_size, vision.spatial_merge_size):
            raise ValueError(
                f"preprocessing patch/merge {mine} differ from the vision tower's "
                f"{(vision.patch_size, vision.spatial_merge_size)}"
            )
        self.grid = preprocessing.grid(448, 616)  # a 16 x 22 pair for a 448 x 616 frame

    @classmethod
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> QwenPreprocessing:
        return QwenPreprocessing.from_config(cfg, source, cls.video_processor)

    def grid_for(self, frames: np.ndarray) -> TokenGrid:
        return self.preprocessing.grid(*np.asarray(frames).shape[1:3])

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        return self.preprocessing(frames)

    def video_inputs(
        self, question: str, shape: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        """The stock prompt: the placeholder repeated groups * rows * cols times, and the
        ``video_grid_thw`` the stock positions are computed from."""
        if shape is None:
            raise ValueError("Qwen2.5-VL positions tokens on the video's grid: give shape=")
        groups, rows, cols = shape
        prompt = self.build_prompt(question)
        return self._grid_inputs(
            prompt.replace(self.video_token, self.video_token * (groups * rows * cols)), shape
        )

    def _grid_inputs(self, prompt: str, shape: tuple[int, int, int]) -> dict[str, Any]:
        """The model's inputs for a prompt whose video placeholders are laid out already: ids,
        mask, the video's grid (``shape`` in merged tokens) and each placeholder's type."""
        groups, rows, cols = shape
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.device)
        merge = self.preprocessing.merge_size
        thw = torch.tensor([[groups, rows * merge, cols * merge]], device=self.device)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "video_grid_thw": thw,
            "mm_token_type_ids": (ids == self.video_token_id).long() * VIDEO,
        }
