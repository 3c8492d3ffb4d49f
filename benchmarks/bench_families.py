"""Each video-LLM family's smallest checkpoint SHAPE on this machine: what a visitor waits for.

    python benchmarks/bench_families.py                 # all families, CPU (~6 min on 2 cores)
    python benchmarks/bench_families.py --only smolvlm2-256m --device cuda

Timing does not depend on weight values, so each model is randomly initialised with its real
checkpoint's shapes, written here by hand from the checkpoints' config.json (no Hub). The vision
tower is complete; the language model is built with ``--text-layers`` of its layers and its
prefill time scaled by real layers / built layers (a decoder layer's cost does not depend on its
depth; embeddings and the head are outside the scaled part and small). Measured:

* encode s/frame: the model's own video (or per-frame image) features, ``--frames`` frames;
* prefill s/1000 tokens: one forward of the language model over 1000 embeddings;
* at 16 frames: first overlays = 16 x encode (SCC itself is milliseconds), first answer =
  overlays + the prefill of 16 frames' tokens (+ 30 of text) at the measured rate (linear: at
  these lengths attention is a small part of a layer) -- decoding the answer's tokens not
  included.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIGLIP_512 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, image_size=512, patch_size=16)  # fmt: skip
SMOL_TEXT_256M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, vocab_size=49280)  # fmt: skip
SMOL_TEXT_500M = dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                      num_attention_heads=15, num_key_value_heads=5, vocab_size=49280)  # fmt: skip
QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936)  # fmt: skip


def smolvlm(text: dict, layers: int):
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    config = SmolVLMConfig(
        vision_config=SIGLIP_512,
        text_config={**text, "num_hidden_layers": layers, "model_type": "llama"},
        scale_factor=4,
    )
    model = SmolVLMForConditionalGeneration(config).eval()

    def encode(n):  # SmolVLM2's video: each frame one 512 px image, pixel-shuffled by 4
        pixels = torch.randn(1, n, 3, 512, 512)
        return model.model.get_image_features(pixels).pooler_output

    return model, encode, 64  # 8 x 8 tokens per frame


def onevision(layers: int):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=26,
            num_attention_heads=16,
            image_size=384,
            patch_size=14,
            vision_use_head=False,
        ),  # fmt: skip
        text_config={**QWEN2_05B, "num_hidden_layers": layers, "model_type": "qwen2"},
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    model = LlavaOnevisionForConditionalGeneration(config).eval()

    def encode(n):
        return model.model.get_video_features(torch.randn(1, n, 3, 384, 384)).pooler_output

    return model, encode, 196


def qwen2_5_vl(layers: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            out_hidden_size=2048,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),  # fmt: skip
        text_config=dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=layers,
            num_attention_heads=16,
            num_key_value_heads=2,
            vocab_size=151936,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [16, 24, 24],
                "rope_theta": 1e6,
            },
        ),  # fmt: skip
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()

    def encode(n):  # 448 x 616 frames in pairs: 32 x 44 patches, 16 x 22 tokens per pair
        t = max(n // 2, 1)
        thw = torch.tensor([[t, 32, 44]])
        pixels = torch.randn(t * 32 * 44, 3 * 2 * 14 * 14)
        return model.model.get_video_features(pixels, thw).pooler_output

    return model, encode, 352 / 2  # tokens per frame (352 per pair)


def next_video(layers: int):
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    config = LlavaNextVideoConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=1024,
                           intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=336, patch_size=14, projection_dim=768),  # fmt: skip
        text_config=dict(model_type="llama", hidden_size=4096, intermediate_size=11008,
                         num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32064),  # fmt: skip
    )
    model = LlavaNextVideoForConditionalGeneration(config).eval()

    def encode(n):
        pixels = torch.randn(1, n, 3, 336, 336)
        return model.model.get_video_features(pixel_values_videos=pixels).pooler_output

    return model, encode, 144


FAMILIES = {  # name: (checkpoint it stands for, builder, real text layers)
    "smolvlm2-256m": (
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        lambda k: smolvlm(SMOL_TEXT_256M, k),
        30,
    ),  # fmt: skip
    "smolvlm2-500m": (
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        lambda k: smolvlm(SMOL_TEXT_500M, k),
        32,
    ),  # fmt: skip
    "llava-onevision-0.5b": ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", onevision, 24),
    "qwen2.5-vl-3b": ("Qwen/Qwen2.5-VL-3B-Instruct", qwen2_5_vl, 36),
    "llava-next-video-7b": ("llava-hf/LLaVA-NeXT-Video-7B-hf", next_video, 32),
}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available() and DEVICE == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


DEVICE = "cpu"


def measure(name: str, frames: int, text_layers: int, repeat: int) -> dict:
    checkpoint, build, real_layers = FAMILIES[name]
    torch.manual_seed(0)
    start = time.perf_counter()
    model, encode, per_frame = build(text_layers)
    model = model.to(DEVICE)
    built = time.perf_counter() - start
    lm = getattr(model.model, "language_model", None) or model.model.text_model
    d = lm.config.hidden_size
    with torch.inference_mode():
        encode(1)  # warm-up
        enc = best_of(lambda: encode(frames), repeat) / frames
        embeds = torch.randn(1, 1000, d, device=DEVICE)
        lm(inputs_embeds=embeds)  # warm-up
        prefill = best_of(lambda: lm(inputs_embeds=embeds), repeat) * real_layers / text_layers
    tokens16 = 16 * per_frame + 30
    overlays = 16 * enc
    per_step = 2 * per_frame if name.startswith("qwen") else per_frame  # Qwen: per pair
    scc = scc_seconds(16 * per_frame, int(per_step), d, repeat)
    saved = prefill * 0.9 * 16 * per_frame / 1000  # the prefill retention 0.1 saves
    return dict(name=name, checkpoint=checkpoint, per_frame=per_frame, build=built,
                encode=enc, prefill=prefill, overlays=overlays,
                answer=overlays + prefill * tokens16 / 1000,
                scc=scc, share=scc / saved)  # fmt: skip


def scc_seconds(total: int, per_step: int, d: int, repeat: int) -> float:
    """SCC at retention 0.1 (τ searched) on 16 frames' worth of structured stand-in tokens of
    the family's shape (scissor_viz.synthetic; a Qwen pair's tokens count once per pair)."""
    from scissor_viz.scc import scissor_compress
    from scissor_viz.synthetic import video_tokens

    side = round(per_step**0.5)  # a square stand-in of about the step's tokens
    steps = round(total / (side * side))
    tokens = video_tokens(frames=steps, side=side, dim=d)
    scissor_compress(tokens, retention=0.1)  # warm-up
    return best_of(lambda: scissor_compress(tokens, retention=0.1), max(repeat, 3))


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--frames", type=int, default=2, help="frames per timed encode")
    parser.add_argument("--text-layers", type=int, default=2, help="decoder layers built")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs (best kept)")
    args = parser.parse_args()
    DEVICE = args.device
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {DEVICE}")
    print("| family (checkpoint shape) | tokens / frame | encode s/frame | prefill s/1000 tok "
          "| first overlays @16 f | first answer @16 f | SCC @0.1 "
          "| SCC / prefill saved |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.only:
        r = measure(name, args.frames, args.text_layers, args.repeat)
        row = (r["checkpoint"], f"{r['per_frame']:g}", f"{r['encode']:.2f}",
               f"{r['prefill']:.2f}", f"{r['overlays']:.0f} s", f"{r['answer']:.0f} s",
               f"{r['scc']:.2f} s", f"{r['share']:.1%}")  # fmt: skip
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
