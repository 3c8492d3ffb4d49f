"""A tiny, randomly initialised LLaVA-OneVision saved like a Hub checkpoint, for offline tests.

The way transformers' own model tests work: a tiny config, the real classes, the real code paths.
:func:`build_tiny_llava_folder` writes a folder that ``load_backend(folder)`` (and
``LlavaOnevisionForConditionalGeneration.from_pretrained(folder)``) loads exactly as it would a
downloaded checkpoint:

* ``config.json`` / ``model.safetensors`` / ``generation_config.json`` -- SigLIP vision tower
  (hidden 32, 2 layers, 384 px, patch 14, so 27x27 patches and 196 pooled tokens per frame, as in
  the real model) + projector + Qwen2 LM (hidden 64, 2 layers); ``vision_feature_select_strategy
  = "full"``, ``vision_feature_layer = -1`` like the llava-hf checkpoints;
* a byte-level BPE tokenizer trained in-process (special tokens ``<|im_start|>``, ``<|im_end|>``,
  ``<|endoftext|>``, ``<image>``, ``<video>``) with a Qwen-style chat template that understands
  typed content (``{"type": "video"}``), saved as ``tokenizer.json`` & co.;
* ``preprocessor_config.json`` and ``video_preprocessor_config.json`` with SigLIP's mean/std
  (0.5), which differ from the processor classes' CLIP defaults -- so a test notices if anything
  reads the class defaults instead of the checkpoint's values.

About 0.2 M parameters; building and saving takes well under a second, a 10-token ``generate``
from ~500 embeddings ~0.1 s on a laptop CPU. The weights are random: answers are gibberish, and
every backend built from this folder reports ``pretrained = False``.

Tests use the session fixture ``tiny_llava_folder`` (tests/conftest.py)::

    def test_something(tiny_llava_folder):
        backend = load_backend(str(tiny_llava_folder))
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scissor_viz.models.llava_onevision import RANDOM_WEIGHTS_FLAG

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# Qwen-style chat template, typed content as in the llava-hf processors' templates: an image or a
# video part renders its placeholder, a text part its text. A plain string content works too.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif part['type'] == 'video' -%}{{ '<video>\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# SigLIP's normalisation; deliberately not the processor classes' CLIP defaults.
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]

_CORPUS = [
    "What is happening in this video? Describe the scene in detail.",
    "A person is walking a dog in the park on a sunny afternoon.",
    "The cat jumps onto the table and knocks over a glass of water.",
    "How many people are there? What colour is the car? Where is the ball?",
    "Cars drive along a busy street while pedestrians cross at the light.",
    "system user assistant You are a helpful assistant.",
    "0123456789 red green blue yellow black white left right up down.",
]


def build_tokenizer(vocab_size: int = 400):
    """A byte-level BPE (trained here, no download) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def text_config(tokenizer, **extra) -> dict:
    """The tiny language model's settings (a 2-layer, 64-wide decoder; every twin shares them)."""
    base = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    return {**base, **extra}


def build_tiny_config(tokenizer, **text_overrides):
    """LlavaOnevisionConfig with a 2-layer SigLIP (384 px / patch 14) and a 2-layer Qwen2."""
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=384,
        patch_size=14,
        vision_use_head=False,
    )
    text = text_config(tokenizer, tie_word_embeddings=False, **text_overrides)
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=Qwen2Config(**text),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    # Marks the weights as random: backends loaded from this folder report pretrained = False.
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    return config


def build_tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised LlavaOnevisionForConditionalGeneration (eval mode, float32)."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    config = build_tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.do_sample = False
    return model


def write_preprocessor_configs(folder: Path) -> None:
    """The image processor's own ``save_pretrained`` + the video processor's JSON (written by hand:
    ``LlavaOnevisionVideoProcessor`` cannot be instantiated without torchvision)."""
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    LlavaOnevisionImageProcessorPil(image_mean=IMAGE_MEAN, image_std=IMAGE_STD).save_pretrained(
        folder
    )
    video = {
        "video_processor_type": "LlavaOnevisionVideoProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": 384, "width": 384},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
    }
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))


def build_tiny_llava_folder(path: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny LLaVA-OneVision checkpoint folder at ``path`` and return it.

    Offline and deterministic for a given ``seed``; the folder loads through the real
    ``from_pretrained`` code paths (model, tokenizer, preprocessing config)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_preprocessor_configs(folder)
    return folder


def random_frames(num_frames: int = 2, height: int = 96, width: int = 128, seed: int = 0):
    """(T, H, W, 3) uint8 frames with some structure (gradients + blocks + noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        base = np.stack(
            [
                (xx * 255 / max(width - 1, 1) + 40 * t) % 256,
                (yy * 255 / max(height - 1, 1)),
                ((xx + yy + 17 * t) % 64) * 4,
            ],
            axis=-1,
        )
        noise = rng.integers(0, 32, size=base.shape)
        frames[t] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return frames
