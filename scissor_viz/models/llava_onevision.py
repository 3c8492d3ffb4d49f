"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): what is its own.

The stock model reads, per frame, SigLIP's 27 x 27 patch features projected and pooled
bilinearly to 14 x 14 = 196 tokens, then ONE ``image_newline`` per video (docs/models.md).
:class:`LlavaOnevisionBackend` adds to the shared :class:`~scissor_viz.models.vlm.VideoLLMBackend`
the family's preprocessing (:class:`VideoPreprocessing`: its video processor where torchvision
runs, else transformers' ``PilBackend`` on the same config), its 14 x 14 grid, and the tower's
attention (VisionZip). Its ``encode`` is the patch's ``grids`` (the model's own
``get_video_features``, newline removed); its ``answer`` the patched ``generate``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from scissor_viz.models.attention import (
    batch_within_budget,
    capture_attention,
    last_vision_attention,
)
from scissor_viz.models.base import RANDOM_WEIGHTS_FLAG, check_frames
from scissor_viz.models.processors import FrameProcessor, pil_backend
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.pictures.grid import TokenGrid
from scissor_viz.progress import ProgressFn, report

__all__ = [
    "RANDOM_WEIGHTS_FLAG",
    "LlavaOnevisionBackend",
    "VideoPreprocessing",
    "load_preprocessing",
]


@dataclass(frozen=True)
class VideoPreprocessing:
    """A checkpoint's per-frame preprocessing (its video config, else its image config): the
    geometry the backend checks against its vision tower, and the transformers processor that
    makes the pixels (:class:`~scissor_viz.models.processors.FrameProcessor`: the family's
    video processor where torchvision runs, else ``PilBackend`` on the same settings -- the
    class defaults filled in here are the video processors' own: bicubic, 1/255, all steps on).
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    resample: int = 3  # PIL bicubic
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    source: str = ""
    shortest_edge: int | None = None  # set: resize the short side to it, then centre-crop
    video_class: str = "LlavaOnevisionVideoProcessor"  # the family's, where cfg names none
    config: dict = field(default_factory=dict, compare=False, repr=False)  # the file's own

    @classmethod
    def from_config(
        cls, cfg: dict, source: str = "", video_class: str = "LlavaOnevisionVideoProcessor"
    ) -> VideoPreprocessing:
        missing = [k for k in ("image_mean", "image_std") if cfg.get(k) is None]
        if missing and cfg.get("do_normalize", True):
            raise ValueError(f"{source or 'preprocessor config'} has no {' / '.join(missing)}")
        size = cfg.get("size") or {}
        crop = cfg.get("crop_size") or {}
        shortest = None
        if cfg.get("do_center_crop") and "height" in crop and isinstance(size, dict):
            shortest = size.get("shortest_edge")  # LLaVA-NeXT-Video: short side, then a crop
            size = crop
        if isinstance(size, int):
            height = width = size
        elif "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        elif "shortest_edge" in size:
            height = width = int(size["shortest_edge"])
        else:
            raise ValueError(f"{source or 'preprocessor config'}: unsupported size {size!r}")

        def triple(v) -> tuple[float, float, float]:
            v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3)]
            return (v[0], v[1], v[2])

        return cls(
            height=height,
            width=width,
            mean=triple(cfg.get("image_mean", 0.0)),
            std=triple(cfg.get("image_std", 1.0)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            resample=int(cfg.get("resample", 3)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            source=source,
            shortest_edge=None if shortest is None else int(shortest),
            video_class=video_class,
            config=dict(cfg),
        )

    @property
    def processor_config(self) -> dict:
        """The checkpoint's config with the settings read from it (and the video processors'
        defaults where it is silent) made explicit."""
        size = {"height": self.height, "width": self.width}
        crop: dict = {"do_center_crop": False}
        if self.shortest_edge is not None:
            size, crop = {"shortest_edge": self.shortest_edge}, {"do_center_crop": True}
            crop["crop_size"] = {"height": self.height, "width": self.width}
        return {
            **self.config,
            "size": size,
            **crop,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "rescale_factor": self.rescale_factor,
            "resample": self.resample,
            "do_resize": self.do_resize,
            "do_rescale": self.do_rescale,
            "do_normalize": self.do_normalize,
        }

    @cached_property
    def processor(self) -> FrameProcessor:
        return FrameProcessor(self.video_class, self.processor_config, pil_backend)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, height, width) float32 tensor."""
        out = self.processor(frames)
        if self.processor.is_video:
            return out["pixel_values_videos"][0].float()
        return out["pixel_values"].float()


def load_preprocessing(checkpoint: str, local_files_only: bool = True) -> VideoPreprocessing:
    """The checkpoint's own video preprocessing (video config, else image config, else the
    processor config's nested one). Never the processor classes' defaults: raises if none."""
    from scissor_viz.models.loading import preprocessing_config

    cfg, source = preprocessing_config(checkpoint, local_files_only)
    return VideoPreprocessing.from_config(cfg, source=source)


class LlavaOnevisionBackend(VideoLLMBackend):
    """A LLaVA-OneVision model: exact per-frame video tokens, and answers from any tokens."""

    family = "LLaVA-OneVision"
    model_types = ("llava_onevision",)
    model_class = "LlavaOnevisionForConditionalGeneration"
    video_processor = "LlavaOnevisionVideoProcessor"
    features = "SigLIP features, projected and pooled to 14×14 per frame"
    has_vision_attention = True

    def __init__(self, model, tokenizer, preprocessing: VideoPreprocessing, **kwargs):
        super().__init__(model, tokenizer, preprocessing, **kwargs)
        config = model.config
        vision = config.vision_config
        if config.vision_feature_select_strategy != "full":
            raise ValueError(
                "expected vision_feature_select_strategy='full' (the llava-hf OneVision "
                f"checkpoints), got {config.vision_feature_select_strategy!r}"
            )
        if (preprocessing.height, preprocessing.width) != (vision.image_size, vision.image_size):
            raise ValueError(
                f"preprocessing resizes to {preprocessing.height}x{preprocessing.width} but the "
                f"vision tower expects {vision.image_size}x{vision.image_size}"
            )
        self.grid = TokenGrid.square(math.ceil((vision.image_size // vision.patch_size) / 2))

    @classmethod
    def preprocessing_from_config(cls, cfg: dict, source: str = "") -> VideoPreprocessing:
        return VideoPreprocessing.from_config(cfg, source, cls.video_processor)

    @classmethod
    def from_pretrained(cls, checkpoint: str, **kwargs) -> VideoLLMBackend:
        """Load a hub id or a local folder (:func:`scissor_viz.models.loading.load_model`)."""
        from scissor_viz.models.loading import load_model

        return load_model(checkpoint, **kwargs)

    @property
    def cache_id(self) -> Hashable:
        if self.checkpoint is None:
            return ("llava_onevision", id(self.model))
        return ("llava_onevision", self.checkpoint, str(self.device), str(self.dtype))

    # -- encoding -----------------------------------------------------------------------------

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, S, S) float32 pixel values, as the model expects."""
        return self.preprocessing(frames)

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        return {"pixel_values_videos": self.preprocess(frames)[None]}

    def video_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(b, 3, S, S) pixel values -> (b, tokens_per_frame, d): the model's own
        ``get_video_features`` (vision tower -> projector -> pooling), without the newline."""
        b, n = pixel_values.shape[0], pixel_values.shape[0] * self.tokens_per_frame
        # positional: the argument is `pixel_values_videos` in transformers 5.24, `pixel_values`
        # in earlier 5.x releases
        feats = self.model.model.get_video_features(pixel_values[None], return_dict=True)
        feats = feats.pooler_output.reshape(-1, self.hidden_size)
        if feats.shape[0] == n + 1:  # 5.24 appends the video's image_newline here
            feats = feats[:n]
        elif feats.shape[0] != n:  # earlier 5.x append it in forward()
            raise RuntimeError(f"expected {n} (+1) video features, got {feats.shape[0]}")
        return feats.reshape(b, self.tokens_per_frame, self.hidden_size)

    def vision_attention(
        self, frames: np.ndarray, key: Hashable | None = None, progress: ProgressFn | None = None
    ) -> torch.Tensor:
        """VisionZip's importance of each pooled token -> (T, tokens_per_frame) float32: the
        attention each patch receives in the vision tower's last layer (mean over heads and
        queries; SigLIP has no CLS token), pooled 27x27 -> 14x14 by the model's own video
        pooling. Cached like the tokens."""
        frames = check_frames(frames)
        ckey = ("vision-importance", self.cache_key(frames, key))
        hit = self.cache.get(ckey)
        if hit is not None:
            return hit
        tower = self.model.model.vision_tower
        vision = self.model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        heads = vision.num_attention_heads
        batch = batch_within_budget("VisionZip", heads, patches, self.batch_size)  # per frame

        def received(weights: torch.Tensor) -> torch.Tensor:  # (b, heads, queries, patches)
            return weights.float().mean(dim=(1, 2))

        n = len(frames)
        with (
            self._lock,
            torch.inference_mode(),
            capture_attention(tower, last_vision_attention(tower), keep=received) as maps,
        ):
            for start in range(0, n, batch):
                pixels = self.preprocess(frames[start : start + batch])
                tower(pixel_values=pixels.to(self.device, self.dtype))
                report(progress, min(start + batch, n) / n, "vision attention")
        importance = self.model.model.apply_pooling(torch.cat(maps)[..., None])[..., 0].cpu()
        self.cache.put(ckey, importance)
        return importance

    def stock_input_ids(self, question: str, num_frames: int) -> torch.Tensor:
        """(1, L) ids as transformers' processor builds them for a ``num_frames`` video: the
        placeholder repeated num_frames * tokens_per_frame + 1 times (the +1: image_newline)."""
        prompt = self.build_prompt(question)
        count = num_frames * self.tokens_per_frame + 1
        return self.tokenizer(
            prompt.replace(self.video_token, self.video_token * count), return_tensors="pt"
        ).input_ids
