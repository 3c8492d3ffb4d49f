"""Per family: tokens per frame, encode and prefill speed, and SCC's share of the prefill it saves.

    python benchmarks/bench_patch_families.py                    # all families, 16 frames (~10 min)
    python benchmarks/bench_patch_families.py --families smolvlm_256m qwen3_vl --frames 8

Each family's smallest video checkpoint, randomly initialised with its real shapes (timing does
not depend on the weights; the shapes are written below from the checkpoints' config.json),
float32 as the project runs on a CPU (``--dtype`` to change), sdpa attention, inference mode:

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

To fit all seven in ~10 minutes on 2 cores, both towers are built shallower than the
checkpoint -- vision 4 blocks (Qwen2.5-VL: 8, one of them full-attention, as 4 of its 32 are),
language model 4 decoder layers (the 7B: 2) -- and every block is timed by hooks; each
tower's seconds are reported for the checkpoint's depth: measured total - the measured blocks +
the checkpoint's block count x their mean (a tower's blocks are identical in shape; the rest is
patch embedding, projector / merger / pixel shuffle, splice, norm and the last token's head).
The measured (unscaled) seconds are printed too. The grids SCC runs on are therefore the
features of a 4-block random tower (Qwen3-VL: its 3 DeepStack levels at blocks 1, 2, 3).

Measured per family, at ``--frames`` (16):
* tokens per frame (Qwen: per temporal group of 2 frames) of the model's own grid;
* encode s/frame: ``model.scissor.adapter.encode`` (the vision path that makes the grids SCC
  and the model read; Qwen3-VL's DeepStack grids included), one run;
* prefill: the patched ``generate(max_new_tokens=1)`` fed the grid's tokens (``video_tokens=``),
  timed from the model's forward entry to its exit, at retention 1 (the stock prompt) and 0.1;
  s per 1,000 prompt tokens from the full prompt; each one run (the 0.1 run after a warm-up);
  encode: one run of 16 frames after a 2-frame warm-up;
* SCC: ``model.scissor.compress`` at retention 0.1 on the model's features (tau search +
  compression + representatives + the DeepStack merge), best of 3; its share of the prefill
  seconds it saves (goal <= 5 %).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scissor_viz import apply_patch
from scissor_viz.patch import VideoTokens
from tests.tiny_llava import build_tokenizer, random_frames
from tests.tiny_vlms import Twin, normalized, qwen_patches

QUESTION = "What happens in this video?"


# ----------------------------------------------------------------------------- shapes


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
    kind: str  # Twin's family name (prompt layout)
    height: int
    width: int
    vision_depth: int  # the checkpoint's vision layers
    vision_layers: int = 4  # built and timed (Qwen2.5-VL: 8, one full-attention block as in 32)
    text_layers: int = 4  # built and timed (the 7B: 2)


FAMILIES = {
    "llava_onevision": Family(onevision, "llava_onevision", 384, 384, 26),
    "llava_next_video": Family(next_video, "llava_next_video", 336, 336, 24, text_layers=2),
    "qwen2_5_vl": Family(qwen2_5_vl, "qwen2_5_vl", 364, 644, 32, vision_layers=8),
    "qwen3_vl": Family(qwen3_vl, "qwen3_vl", 352, 640, 24),
    "internvl": Family(internvl, "internvl", 448, 448, 24),
    "smolvlm_256m": Family(smolvlm_256m, "smolvlm", 512, 512, 12),
    "smolvlm_500m": Family(smolvlm_500m, "smolvlm", 512, 512, 12),
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


def prompt(twin: Twin, grid: torch.Tensor) -> torch.Tensor:
    """The stock prompt's ids around a video of this (T, P, d) grid's placeholder runs."""
    t, p = grid.shape[:2]
    if twin.family in ("qwen3_vl", "internvl", "smolvlm"):
        runs = [p] * t  # one run per frame (Qwen3-VL: per group), text between
    else:
        runs = t * p + (twin.family == "llava_onevision")  # + OneVision's image_newline
    return torch.tensor([twin.prompt_ids(QUESTION, runs)])


# ----------------------------------------------------------------------------- timing


class LayerClock:
    """Seconds of a module's calls and of its identical blocks' calls, from hooks; the module's
    seconds at ``depth`` blocks = measured - its blocks + depth x their mean."""

    def __init__(self, module, blocks):
        self.total, self.blocks, self.built, self._hooks = [], [], len(blocks), []
        for mod, out in ((module, self.total), *((b, self.blocks) for b in blocks)):
            self._hooks += [
                mod.register_forward_pre_hook(
                    lambda *_a, out=out: out.append(-time.perf_counter())
                ),
                mod.register_forward_hook(lambda *_a, out=out: _stop(out)),
            ]

    def __enter__(self) -> LayerClock:
        return self

    def __exit__(self, *_exc) -> None:
        for hook in self._hooks:
            hook.remove()

    def seconds(self, depth: int) -> tuple[float, float]:
        """(measured, at the checkpoint's depth) of the first call; blocks that ran, scaled
        (NeXT-Video's CLIP may skip its last block: it reads the second-to-last layer)."""
        total, ran = self.total[0], self.blocks
        mean = sum(ran) / len(ran)
        return total, total - sum(ran) + mean * depth * len(ran) / self.built


def _stop(out: list) -> None:
    out[-1] += time.perf_counter()


def _blocks(module, count: int):
    """The module's first ModuleList of ``count`` blocks (its encoder or decoder layers)."""
    for child in module.modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) == count:
            return child
    raise LookupError(f"no ModuleList of {count} blocks in {type(module).__name__}")


def towers(model, kind: str) -> tuple[Any, Any]:
    """(vision tower, language model) of the family's model."""
    inner = model.model
    if kind == "smolvlm":
        return inner.vision_model, inner.text_model
    vision = inner.visual if kind in ("qwen2_5_vl", "qwen3_vl") else inner.vision_tower
    return vision, inner.language_model


def encode(model, fam: Family, inputs: dict) -> tuple[Any, float, float]:
    """The video's (grid, DeepStack layers), and encode seconds measured / at full depth."""
    vision, _ = towers(model, fam.kind)
    with (
        torch.inference_mode(),
        LayerClock(vision, _blocks(vision, fam.vision_layers)) as clock,
    ):
        start = time.perf_counter()
        out = model.scissor.adapter.encode(inputs)[0]
        total = time.perf_counter() - start
    tower, scaled = clock.seconds(fam.vision_depth)
    return out, total, total - tower + scaled


def prefill(model, fam: Family, ids, extra: dict, video: VideoTokens, real: int) -> dict:
    """One patched generate(max_new_tokens=1): measured and checkpoint-depth prefill seconds."""
    with (
        torch.inference_mode(),
        LayerClock(model, _blocks(towers(model, fam.kind)[1], fam.text_layers)) as clock,
    ):
        model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            video_tokens=[video],
            max_new_tokens=1,
            do_sample=False,
            **extra,
        )
    measured, scaled = clock.seconds(real)
    return {"measured": measured, "scaled": scaled, "length": model.scissor.last[0].length_after}


def clip_inputs(fam: Family, model, twin: Twin, frames: int, dtype) -> dict:
    inputs = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in pixel_inputs(fam, model, frames).items()
    }
    if fam.kind == "internvl":  # its features are split per prompt by the placeholders
        per_frame = model.config.image_seq_length
        inputs["input_ids"] = torch.tensor([twin.prompt_ids(QUESTION, [per_frame] * frames)])
    return inputs


def measure(name: str, fam: Family, frames: int, dtype: torch.dtype, repeat: int) -> dict:
    tok = build_tokenizer()
    torch.manual_seed(0)
    start = time.perf_counter()
    model, real_layers = fam.build(tok, fam.text_layers, fam.vision_layers)
    model = model.to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    built = time.perf_counter() - start
    apply_patch(model, retention=0.1)
    twin = Twin(fam.kind, model, tok, frames, fam.height)

    encode(model, fam, clip_inputs(fam, model, twin, 2, dtype))  # warm-up, 2 frames
    (grid, layers), encode_s, encode_full = encode(
        model, fam, clip_inputs(fam, model, twin, frames, dtype)
    )
    ids = prompt(twin, grid)
    extra = {}
    if twin.qwen:
        extra["video_grid_thw"] = torch.tensor([[grid.shape[0], *pixel_rows(fam, model)]])
        extra["mm_token_type_ids"] = (ids == twin.video_token_id).long() * 2

    scc_s, video = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        video, record = model.scissor.compress(grid, layers=layers)
        scc_s = min(scc_s, time.perf_counter() - start)
    flat = grid.flatten(0, 1)
    source = torch.arange(len(flat)) if model.scissor.adapter.needs_source else None
    full = VideoTokens(flat, source, layers=tuple(g.flatten(0, 1) for g in layers))

    prefill(model, fam, ids, extra, video, real_layers)  # warm-up
    cut = prefill(model, fam, ids, extra, video, real_layers)
    stock = prefill(model, fam, ids, extra, full, real_layers)
    saved = stock["scaled"] - cut["scaled"]
    row = {
        "name": name,
        "params_m": params / 1e6,
        "built_s": built,
        "layers": f"vision {fam.vision_layers}/{fam.vision_depth}, text {fam.text_layers}/"
        f"{real_layers}",
        "grid": tuple(grid.shape),
        "encode_measured": encode_s / frames,
        "encode_s_frame": encode_full / frames,
        "stock": stock,
        "cut": cut,
        "kept": record.kept,
        "tau": record.tau,
        "per_1k": 1000 * stock["scaled"] / stock["length"],
        "scc_s": scc_s,
        "saved_s": saved,
        "share": scc_s / saved if saved > 0 else math.inf,
    }
    del model, grid, layers, video, full
    gc.collect()
    return row


def pixel_rows(fam: Family, model) -> tuple[int, int]:
    """Qwen: the patch rows and columns of a frame (video_grid_thw's last two)."""
    patch = model.config.vision_config.patch_size
    return fam.height // patch, fam.width // patch


# ----------------------------------------------------------------------------- report


def load() -> str:
    """The load average and the fp32 matmul throughput now (the machine's state)."""
    a, b = torch.randn(1024, 896), torch.randn(896, 4864)
    best = math.inf
    for _ in range(4):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    rate = 2 * 1024 * 896 * 4864 / best / 1e9
    return (
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}, matmul {rate:.0f} GFLOP/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="SCC runs (best)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
        f"{args.frames} frames, {load()}",
        flush=True,
    )
    rows = []
    for name in args.families:
        start = time.perf_counter()
        row = measure(name, FAMILIES[name], args.frames, dtype, args.repeat)
        rows.append(row)
        t, p = row["grid"][:2]
        print(
            f"{name}: {row['params_m']:,.0f} M parameters built ({row['layers']} layers) in "
            f"{row['built_s']:.1f} s; grid {t} x {p}; encode {row['encode_measured']:.2f} s/frame "
            f"measured -> {row['encode_s_frame']:.2f} s/frame at full depth; prefill measured "
            f"{row['stock']['measured']:.2f} s ({row['stock']['length']} tokens) "
            f"-> {row['stock']['scaled']:.2f} s at full depth; r=0.1: {row['kept']} tokens, "
            f"tau {row['tau']:.6f}, prefill {row['cut']['measured']:.2f} s measured -> "
            f"{row['cut']['scaled']:.2f} s ({row['cut']['length']} tokens); "
            f"SCC {row['scc_s']:.3f} s = {100 * row['share']:.2f} % of {row['saved_s']:.2f} s "
            f"saved [{time.perf_counter() - start:.0f} s; {load()}]",
            flush=True,
        )
    print(
        f"\nat the end: {load()}\n\n| family (checkpoint shape) | tokens / frame "
        "(Qwen: / group of 2) | encode s / frame | prefill s / 1k tokens | prompt tokens "
        "(r = 1 → 0.1) | prefill s (r = 1 → 0.1) | SCC s | SCC / saved |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for row in rows:
        stock, cut = row["stock"], row["cut"]
        goal = "" if row["share"] <= 0.05 else " (goal missed)"
        print(
            f"| {row['name']} | {row['grid'][1]} | {row['encode_s_frame']:.2f} | "
            f"{row['per_1k']:.2f} | {stock['length']:,} → {cut['length']:,} | "
            f"{stock['scaled']:.1f} → {cut['scaled']:.2f} | {row['scc_s']:.3f} | "
            f"{100 * row['share']:.2f} %{goal} |"
        )


if __name__ == "__main__":
    main()
