"""Tiny, randomly initialised twins of the six video-LLM families the SCC patch supports, and
their processor outputs built by hand (the real processors need torchvision and the Hub).

* LLaVA-OneVision: ``tests/tiny_llava``'s model (SigLIP 384 px / patch 14, so 196 pooled
  tokens per frame + one image_newline per video; Qwen2 LM hidden 64, 2 layers);
* LLaVA-NeXT-Video: CLIP 64 px / patch 4 (16 x 16 patches + CLS, pooled 2x2 to 64 tokens per
  frame); Qwen2 LM hidden 64, 2 layers;
* Qwen2.5-VL: vision depth 2 / hidden 32 / patch 4 / 2x2 merge / temporal pairs of frames;
  text hidden 64, 2 layers, M-RoPE sections (2, 3, 3).
* Qwen3-VL: the same shapes (64 merged patches per temporal group), DeepStack from both vision
  layers, interleaved M-RoPE; the prompt gives each group its own run after a timestamp
  (``<0.5 seconds>``), as the Qwen3-VL processor does.
* InternVL: InternViT depth 2 / hidden 32 / 64 px / patch 4 (16 x 16 patches + CLS, pixel
  shuffle 0.5 -> 64 tokens per frame); Qwen2 LM; one run per frame after ``Frame{i}:``.
* SmolVLM(2): SigLIP-style depth 2 / hidden 32 / 64 px / patch 4, scale factor 2 -> 64 tokens
  per frame; Llama LM; one run per frame after ``Frame from 00:0i:``.

All share the byte-level BPE tokenizer of ``tests/tiny_llava`` (``<video>`` / ``<image>``).
Frames are ``random_frames`` (gradients, blocks, noise), so neighbouring tokens are similar and
SCC has components to find. :meth:`Twin.inputs` returns what the family's processor would:
prompts left-padded, one placeholder per video token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tests.tiny_llava import build_tiny_model, build_tokenizer, random_frames, text_config

PREFIX = "<|im_start|>user\n"
SUFFIX = "\n{question}<|im_end|>\n<|im_start|>assistant\n"


def _text_config(tokenizer, **extra) -> dict:
    """The shared tiny decoder, its BOS the pad token."""
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return text_config(tokenizer, bos_token_id=pad, **extra)


def _finish(model, tokenizer):
    model = model.eval()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.do_sample = False
    return model


def build_next_video(tokenizer, seed: int = 0):
    from transformers import (
        CLIPVisionConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        Qwen2Config,
    )

    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=64,
            patch_size=4,
        ),
        text_config=Qwen2Config(**_text_config(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[64, 64]],
    )
    torch.manual_seed(seed)
    return _finish(LlavaNextVideoForConditionalGeneration(config), tokenizer)


def build_qwen2_5_vl(tokenizer, seed: int = 0):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 16,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        text_config=_text_config(tokenizer, rope_parameters=rope),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(seed)
    return _finish(Qwen2_5_VLForConditionalGeneration(config), tokenizer)


def build_qwen3_vl(tokenizer, seed: int = 0):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    rope = {
        "rope_type": "default",
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
        "rope_theta": 10000.0,
    }
    config = Qwen3VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0, 1],
        },
        text_config=_text_config(tokenizer, head_dim=16, rope_parameters=rope),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(seed)
    return _finish(Qwen3VLForConditionalGeneration(config), tokenizer)


# InternVL's and SmolVLM's tiny vision towers: 64 px frames cut into 16 x 16 patches of 4 px.
SIGLIP_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 64,
    "patch_size": 4,
}


def build_internvl(tokenizer, seed: int = 0):
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        vision_config=dict(SIGLIP_VISION),
        text_config={"model_type": "qwen2", **_text_config(tokenizer)},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=64,
    )
    torch.manual_seed(seed)
    return _finish(InternVLForConditionalGeneration(config), tokenizer)


def build_smolvlm(tokenizer, seed: int = 0):
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    config = SmolVLMConfig(
        vision_config=dict(SIGLIP_VISION),
        text_config={"model_type": "llama", **_text_config(tokenizer)},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    return _finish(SmolVLMForConditionalGeneration(config), tokenizer)


# ----------------------------------------------------------------------------- pixels


def normalized(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, H, W) float32 in [-1, 1] (SigLIP's mean/std of 0.5)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def qwen_patches(pixels: torch.Tensor, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """(F, C, H, W) -> (t * h * w, C * temporal * patch^2) flattened patches in the Qwen2-VL
    processor's order: temporal group, merge block row / column, row / column inside it."""
    f, c, height, width = pixels.shape
    t, h, w = f // temporal, height // patch, width // patch
    x = pixels.reshape(t, temporal, c, h // merge, merge, patch, w // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # t, bh, bw, mh, mw, C, temporal, p, p
    return x.reshape(t * h * w, c * temporal * patch * patch)


FRAME_RUNS = {  # families whose prompt gives each frame (Qwen3-VL: each group) its own run
    "qwen3_vl": "<{:.1f} seconds>",
    "internvl": "Frame{}: ",
    "smolvlm": "\nFrame from 00:{:02d}:",
}
PER_FRAME = {"llava_onevision": 196, "llava_next_video": 64, "internvl": 64, "smolvlm": 64}


@dataclass
class Twin:
    """A tiny model of one family and how to build its processor outputs."""

    family: str
    model: Any
    tokenizer: Any
    frames: int
    size: int  # frame side in pixels

    @property
    def video_token_id(self) -> int:
        """The placeholder id of video tokens (InternVL, SmolVLM: their image token)."""
        config = self.model.config
        if self.family in ("internvl", "smolvlm"):
            return config.image_token_id
        return config.video_token_id

    @property
    def qwen(self) -> bool:
        return self.family in ("qwen2_5_vl", "qwen3_vl")

    @property
    def language_model(self) -> Any:
        inner = self.model.model
        return inner.text_model if self.family == "smolvlm" else inner.language_model

    @property
    def vision(self) -> Any:
        inner = self.model.model
        if self.qwen:
            return inner.visual
        return inner.vision_model if self.family == "smolvlm" else inner.vision_tower

    def video(self, seed: int) -> dict[str, Any]:
        """One clip's pixel inputs and its placeholder runs (one, or one per frame / group)."""
        pixels = normalized(random_frames(self.frames, self.size, self.size, seed=seed))
        if not self.qwen:
            per_frame = PER_FRAME[self.family]
            tail = 1 if self.family == "llava_onevision" else 0
            runs = [per_frame] * self.frames
            if self.family not in FRAME_RUNS:
                runs = [self.frames * per_frame + tail]
            return {"pixels": pixels, "runs": runs}
        vision = self.model.config.vision_config
        patches = qwen_patches(
            pixels, vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        )
        side = self.size // vision.patch_size
        thw = torch.tensor([[self.frames // vision.temporal_patch_size, side, side]])
        group = side * side // vision.spatial_merge_size**2
        runs = [int(thw[0, 0]) * group] if self.family == "qwen2_5_vl" else [group] * int(thw[0, 0])
        return {"pixels": patches, "video_grid_thw": thw, "runs": runs}

    def prompt_ids(self, question: str, runs: list[int] | int) -> list[int]:
        """The prompt around a video of these placeholder runs (an int: one run of that many)."""
        encode = self.tokenizer.encode
        runs = [runs] if isinstance(runs, int) else runs
        video = []
        for i, n in enumerate(runs):
            if self.family in FRAME_RUNS:
                label = i + 0.5 if self.family == "qwen3_vl" else i + 1
                video += encode(FRAME_RUNS[self.family].format(label))
            video += [self.video_token_id] * n
        return encode(PREFIX) + video + encode(SUFFIX.format(question=question))

    def inputs(self, questions: list[str], seeds: list[int]) -> dict[str, torch.Tensor]:
        """Processor outputs for one video per prompt, left-padded like the processor pads."""
        clips = [self.video(s) for s in seeds]
        rows = [self.prompt_ids(q, c["runs"]) for q, c in zip(questions, clips)]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        out = {"input_ids": ids, "attention_mask": mask}
        if self.qwen:
            out["pixel_values_videos"] = torch.cat([c["pixels"] for c in clips])
            out["video_grid_thw"] = torch.cat([c["video_grid_thw"] for c in clips])
            out["mm_token_type_ids"] = (ids == self.video_token_id).long() * 2
        elif self.family == "internvl":  # every frame one image row
            out["pixel_values"] = torch.cat([c["pixels"] for c in clips])
        elif self.family == "smolvlm":  # (prompts, frames, C, H, W) and its pixel mask
            out["pixel_values"] = torch.stack([c["pixels"] for c in clips])
            shape = out["pixel_values"].shape
            out["pixel_attention_mask"] = torch.ones(shape[:2] + shape[3:], dtype=torch.bool)
        else:
            out["pixel_values_videos"] = torch.stack([c["pixels"] for c in clips])
        return out

    @property
    def pixels(self) -> str:
        """The input that carries the frames."""
        return "pixel_values" if self.family in ("internvl", "smolvlm") else "pixel_values_videos"


def build_twins(seed: int = 0) -> dict[str, Twin]:
    """The six tiny models (a few hundred thousand parameters each, < 1 s to build)."""
    tokenizer = build_tokenizer()
    tokenizer.padding_side = "left"
    return {
        "llava_onevision": Twin(
            "llava_onevision", build_tiny_model(tokenizer, seed), tokenizer, 2, 384
        ),
        "llava_next_video": Twin(
            "llava_next_video", build_next_video(tokenizer, seed), tokenizer, 4, 64
        ),
        "qwen2_5_vl": Twin("qwen2_5_vl", build_qwen2_5_vl(tokenizer, seed), tokenizer, 8, 64),
        "qwen3_vl": Twin("qwen3_vl", build_qwen3_vl(tokenizer, seed), tokenizer, 8, 64),
        "internvl": Twin("internvl", build_internvl(tokenizer, seed), tokenizer, 4, 64),
        "smolvlm": Twin("smolvlm", build_smolvlm(tokenizer, seed), tokenizer, 4, 64),
    }


# Each twin's preprocessor config, as its checkpoint would hold it (SigLIP-style mean/std 0.5;
# the twins' 64 px frames are not resized): what the family's ``preprocessing_from_config``
# builds the transformers processor from (models/processors.py).
HALF = [0.5, 0.5, 0.5]
TWIN_CONFIGS = {
    "llava_next_video": {  # LlavaNextVideoVideoProcessor's form: short side, then a crop
        "size": {"shortest_edge": 64},
        "do_center_crop": True,
        "crop_size": {"height": 64, "width": 64},
        "image_mean": HALF,
        "image_std": HALF,
    },
    "internvl": {"size": {"height": 64, "width": 64}, "image_mean": HALF, "image_std": HALF},
    "smolvlm": {  # SmolVLM's image config with its video_sampling (the video size)
        "size": {"longest_edge": 256},
        "max_image_size": {"longest_edge": 64},
        "video_sampling": {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": 64}},
        "resample": 1,
        "image_mean": HALF,
        "image_std": HALF,
    },
    "qwen2_5_vl": {
        "size": {"shortest_edge": 8 * 8, "longest_edge": 64 * 96},
        "patch_size": 4,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "image_mean": HALF,
        "image_std": HALF,
    },
}
TWIN_CONFIGS["qwen3_vl"] = TWIN_CONFIGS["qwen2_5_vl"]


def twin_backend(family: str):
    """The family's backend on its tiny twin (tests/tiny_vlms.py), its preprocessing built by
    the family from :data:`TWIN_CONFIGS` as a checkpoint's config would be; LLaVA-NeXT-Video,
    Qwen2.5-VL, Qwen3-VL, InternVL and SmolVLM2 (OneVision's is tests/tiny_llava.py's
    checkpoint folder)."""
    from scissor_viz.models.loading import family_of

    twin = build_twins()[family]
    cls = family_of(family)
    pre = cls.preprocessing_from_config(TWIN_CONFIGS[family], f"twin {family}")
    return twin, cls(twin.model, twin.tokenizer, pre, pretrained=False)
