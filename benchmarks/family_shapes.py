"""The real shapes of each video-LLM family's smallest video checkpoint: one table both
family benchmarks build from (``bench_families.py``: what a visitor waits for;
``bench_patch_families.py``: SCC's share of the prefill it saves).

Timing does not depend on the weights, so every model is randomly initialised with its real
checkpoint's shapes, written here from the checkpoints' config.json (no Hub); a builder takes
the text and vision depths to build (a benchmark builds fewer blocks and scales by the
checkpoint's counts, :class:`Family`) and the tokenizer whose ids the special tokens take
(tests/tiny_llava.py's). :func:`pixel_inputs` is what the family's processor hands the model
for a clip of the family's frame size.

* llava_onevision  llava-hf/llava-onevision-qwen2-0.5b-ov-hf (SigLIP-so400m 384 px, Qwen2-0.5B)
* llava_next_video llava-hf/LLaVA-NeXT-Video-7B-hf (CLIP-L/14 336 px, Vicuna-7B)
* qwen2_5_vl       Qwen/Qwen2.5-VL-3B-Instruct
* qwen3_vl         Qwen/Qwen3-VL-2B-Instruct
* internvl         OpenGVLab/InternVL3-1B-hf (InternViT-300M 448 px, Qwen2.5-0.5B)
* smolvlm_256m     HuggingFaceTB/SmolVLM2-256M-Video-Instruct (SigLIP-B/16 512 px, SmolLM2-135M)
* smolvlm_500m     HuggingFaceTB/SmolVLM2-500M-Video-Instruct (same vision, SmolLM2-360M)

The frames are what each family's processor makes of a 640 x 360 clip: 384 px (OneVision),
336 px (NeXT-Video), 364 x 644 (Qwen2.5-VL, multiples of 28), 352 x 640 (Qwen3-VL, multiples
of 32), one 448 px tile per frame (InternVL), one 512 px image per frame (SmolVLM2).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny_llava import random_frames
from tests.tiny_vlms import normalized, qwen_patches


def _ids(tok, **names: str) -> dict[str, int]:
    return {key: tok.convert_tokens_to_ids(value) for key, value in names.items()}


def _text(tok, layers: int, **shape) -> dict:
    special = _ids(tok, eos_token_id="<|im_end|>", pad_token_id="<|endoftext|>")
    return {
        "num_hidden_layers": layers,
        "max_position_embeddings": 32768,
        "bos_token_id": special["pad_token_id"],
        **special,
        **shape,
    }


QWEN2_05B = {  # Qwen2-0.5B / Qwen2.5-0.5B
    "vocab_size": 151_936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}


def onevision(tok, layers: int, vision: int):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": vision,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 14,
            "vision_use_head": False,
        },
        text_config={"model_type": "qwen2", **_text(tok, layers, **QWEN2_05B)},
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        **_ids(tok, image_token_index="<image>", video_token_index="<video>"),
    )
    return LlavaOnevisionForConditionalGeneration(config), 24


def next_video(tok, layers: int, vision: int):
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    config = LlavaNextVideoConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": vision,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
        },
        text_config={
            "model_type": "llama",
            **_text(
                tok,
                layers,
                vocab_size=32_064,
                hidden_size=4096,
                intermediate_size=11_008,
                num_attention_heads=32,
                num_key_value_heads=32,
            ),
        },
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        spatial_pool_stride=2,
        spatial_pool_mode="average",
        **_ids(tok, image_token_index="<image>", video_token_index="<video>"),
    )
    return LlavaNextVideoForConditionalGeneration(config), 32


def _qwen_ids(tok) -> dict[str, int]:
    return _ids(
        tok,
        image_token_id="<image>",
        video_token_id="<video>",
        vision_start_token_id="<|im_start|>",
        vision_end_token_id="<|im_end|>",
    )


def qwen2_5_vl(tok, layers: int, vision: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    rope = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": vision,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "out_hidden_size": 2048,
            "fullatt_block_indexes": [i for i in range(vision) if i % 8 == 7],
            "tokens_per_second": 2,
        },
        text_config=_text(
            tok,
            layers,
            vocab_size=151_936,
            hidden_size=2048,
            intermediate_size=11_008,
            num_attention_heads=16,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            rope_parameters=rope,
        ),
        tie_word_embeddings=True,
        **_qwen_ids(tok),
    )
    return Qwen2_5_VLForConditionalGeneration(config), 36


def qwen3_vl(tok, layers: int, vision: int):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    rope = {
        "rope_type": "default",
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
        "rope_theta": 5e6,
    }
    config = Qwen3VLConfig(
        vision_config={
            "depth": vision,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 2048,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [round(i * vision / 24) for i in (5, 11, 17)],
        },
        text_config=_text(
            tok,
            layers,
            vocab_size=151_936,
            hidden_size=2048,
            intermediate_size=6144,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            tie_word_embeddings=True,
            rope_parameters=rope,
        ),
        tie_word_embeddings=True,
        **_qwen_ids(tok),
    )
    return Qwen3VLForConditionalGeneration(config), 28


def internvl(tok, layers: int, vision: int):
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": vision,
            "num_attention_heads": 16,
            "image_size": [448, 448],
            "patch_size": [14, 14],
        },
        text_config={"model_type": "qwen2", **_text(tok, layers, **QWEN2_05B)},
        downsample_ratio=0.5,
        image_seq_length=256,
        **_ids(tok, image_token_id="<image>"),
    )
    return InternVLForConditionalGeneration(config), 24


def _smolvlm(tok, layers: int, vision: int, **text):
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    config = SmolVLMConfig(
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": vision,
            "num_attention_heads": 12,
            "image_size": 512,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            **_text(tok, layers, vocab_size=49_280, tie_word_embeddings=True, **text),
        },
        scale_factor=4,
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        **_ids(tok, image_token_id="<image>"),
    )
    return SmolVLMForConditionalGeneration(config)


def smolvlm_256m(tok, layers: int, vision: int):
    shape = {"hidden_size": 576, "intermediate_size": 1536}
    heads = {"num_attention_heads": 9, "num_key_value_heads": 3}
    return _smolvlm(tok, layers, vision, **shape, **heads), 30


def smolvlm_500m(tok, layers: int, vision: int):
    shape = {"hidden_size": 960, "intermediate_size": 2560}
    heads = {"num_attention_heads": 15, "num_key_value_heads": 5}
    return _smolvlm(tok, layers, vision, **shape, **heads), 32


@dataclass(frozen=True)
class Family:
    build: Callable[..., tuple[Any, int]]  # (tokenizer, text, vision layers) -> (model, real text)
    checkpoint: str  # the checkpoint whose shapes these are
    kind: str  # Twin's family name (prompt layout)
    height: int
    width: int
    vision_depth: int  # the checkpoint's vision layers
    vision_layers: int = 4  # built and timed (Qwen2.5-VL: 8, one full-attention block as in 32)
    text_layers: int = 4  # built and timed (the 7B: 2)


FAMILIES = {
    "llava_onevision": Family(
        onevision, "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision", 384, 384, 26
    ),
    "llava_next_video": Family(
        next_video,
        "llava-hf/LLaVA-NeXT-Video-7B-hf",
        "llava_next_video",
        336,
        336,
        24,
        text_layers=2,
    ),
    "qwen2_5_vl": Family(
        qwen2_5_vl, "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", 364, 644, 32, vision_layers=8
    ),
    "qwen3_vl": Family(qwen3_vl, "Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", 352, 640, 24),
    "internvl": Family(internvl, "OpenGVLab/InternVL3-1B-hf", "internvl", 448, 448, 24),
    "smolvlm_256m": Family(
        smolvlm_256m, "HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "smolvlm", 512, 512, 12
    ),
    "smolvlm_500m": Family(
        smolvlm_500m, "HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "smolvlm", 512, 512, 12
    ),
}


# ----------------------------------------------------------------------------- inputs


def pixel_inputs(fam: Family, model, frames: int) -> dict[str, torch.Tensor]:
    """What the family's processor hands the model for one clip (the placeholders come later)."""
    pixels = normalized(random_frames(frames, fam.height, fam.width, seed=frames))
    if fam.kind in ("qwen2_5_vl", "qwen3_vl"):
        v = model.config.vision_config
        patches = qwen_patches(pixels, v.patch_size, v.spatial_merge_size, v.temporal_patch_size)
        thw = torch.tensor([[frames // v.temporal_patch_size, *pixel_rows(fam, model)]])
        return {"pixel_values_videos": patches, "video_grid_thw": thw}
    if fam.kind == "internvl":
        return {"pixel_values": pixels}
    if fam.kind == "smolvlm":
        mask = torch.ones(1, frames, fam.height, fam.width, dtype=torch.bool)
        return {"pixel_values": pixels[None], "pixel_attention_mask": mask}
    return {"pixel_values_videos": pixels[None]}


def pixel_rows(fam: Family, model) -> tuple[int, int]:
    """Qwen: the patch rows and columns of a frame (video_grid_thw's last two)."""
    patch = model.config.vision_config.patch_size
    return fam.height // patch, fam.width // patch


def towers(model, kind: str) -> tuple[Any, Any]:
    """(vision tower, language model) of the family's model."""
    inner = model.model
    if kind == "smolvlm":
        return inner.vision_model, inner.text_model
    vision = inner.visual if kind in ("qwen2_5_vl", "qwen3_vl") else inner.vision_tower
    return vision, inner.language_model
