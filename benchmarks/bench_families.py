"""Each video-LLM family's smallest checkpoint SHAPE on this machine: what a visitor waits for.

    python benchmarks/bench_families.py                 # all seven shapes, CPU
    python benchmarks/bench_families.py --only smolvlm_256m --device cuda

Timing does not depend on weight values, so each model is randomly initialised with its real
checkpoint's shapes (``family_shapes.py``'s table, shared with ``bench_patch_families.py``),
fed frames of the size its processor makes of a 640 x 360 clip. The vision tower is complete;
the language model is built with ``--text-layers`` of its layers and its prefill time scaled
by real layers / built layers (a decoder layer's cost does not depend on its depth; embeddings
and the head are outside the scaled part and small). Measured:

* encode s/frame: the model's own video (or per-frame image) features, ``--frames`` frames
  (even: Qwen encodes pairs), through the SCC patch's ``grids`` as the app's backends do;
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
from benchmarks.family_shapes import FAMILIES, Family, pixel_inputs, towers
from scissor_viz import apply_patch
from tests.tiny_llava import build_tokenizer


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


def encoder(model, fam: Family):
    """Seconds-free encode of n frames: the patch's ``grids`` of the processor's outputs."""

    def encode(n: int) -> torch.Tensor:
        inputs = {k: v.to(DEVICE) for k, v in pixel_inputs(fam, model, n).items()}
        if fam.kind == "internvl":  # its features are split per prompt by the placeholders
            ids = (n * model.config.image_seq_length,), model.config.image_token_id
            inputs["input_ids"] = torch.full(*ids, device=DEVICE)[None]
        return model.scissor.grids(**inputs)[0]

    return encode


def measure(name: str, frames: int, text_layers: int, repeat: int) -> dict:
    fam = FAMILIES[name]
    torch.manual_seed(0)
    start = time.perf_counter()
    model, real_layers = fam.build(build_tokenizer(), text_layers, fam.vision_depth)
    model = model.to(DEVICE).eval()
    built = time.perf_counter() - start
    apply_patch(model, retention=1.0)
    lm = towers(model, fam.kind)[1]
    d = lm.config.hidden_size
    encode = encoder(model, fam)
    with torch.inference_mode():
        grid = encode(2)  # warm-up
        per_step = grid.shape[1]
        per_frame = per_step / (2 if fam.kind.startswith("qwen") else 1)  # Qwen: per pair
        enc = best_of(lambda: encode(frames), repeat) / frames
        embeds = torch.randn(1, 1000, d, device=DEVICE)
        lm(inputs_embeds=embeds)  # warm-up
        prefill = best_of(lambda: lm(inputs_embeds=embeds), repeat) * real_layers / text_layers
    tokens16 = 16 * per_frame + 30
    overlays = 16 * enc
    scc = scc_seconds(int(16 * per_frame), int(per_step), d, repeat)
    saved = prefill * 0.9 * 16 * per_frame / 1000  # the prefill retention 0.1 saves
    return dict(name=name, checkpoint=fam.checkpoint, per_frame=per_frame, build=built,
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
    parser.add_argument("--frames", type=int, default=2, help="frames per timed encode (even)")
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
