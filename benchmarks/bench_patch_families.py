"""Per family: tokens per frame, encode and prefill speed, and SCC's share of the prefill it saves.

    python benchmarks/bench_patch_families.py                    # all families, 16 frames (~10 min)
    python benchmarks/bench_patch_families.py --families smolvlm_256m qwen3_vl --frames 8

Each family's smallest video checkpoint, randomly initialised with its real shapes (timing does
not depend on the weights; the shapes and frame sizes are ``family_shapes.py``'s table, shared
with ``bench_families.py``), float32 as the project runs on a CPU (``--dtype`` to change), sdpa
attention, inference mode.

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
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.family_shapes import FAMILIES, Family, pixel_inputs, pixel_rows, towers
from scissor_viz import apply_patch
from scissor_viz.patch import SplicedTokens
from tests.tiny_llava import build_tokenizer
from tests.tiny_vlms import Twin

QUESTION = "What happens in this video?"


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


def prefill(model, fam: Family, ids, extra: dict, video: SplicedTokens, real: int) -> dict:
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
    full = SplicedTokens(flat, source, layers=tuple(g.flatten(0, 1) for g in layers))

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
        "kept": record.num_tokens,
        "tau": record.tau,
        "per_1k": 1000 * stock["scaled"] / stock["length"],
        "scc_s": scc_s,
        "saved_s": saved,
        "share": scc_s / saved if saved > 0 else math.inf,
    }
    del model, grid, layers, video, full
    gc.collect()
    return row


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
