"""Prefill time and memory of the SCC-patched LLaVA-OneVision against retention.

    python benchmarks/bench_patch.py                 # 16 and 64 frames, best of 3
    python benchmarks/bench_patch.py --quick         # 16 frames, one run each
    python benchmarks/bench_patch.py --device cuda

The model is randomly initialised with llava-hf/llava-onevision-qwen2-0.5b-ov-hf's shapes
(``bench_model_cpu.build_backend``: SigLIP-so400m 384 px, Qwen2-0.5B): time and memory do not
depend on weight values. Each clip is encoded once with the model's own ``get_video_features``
(the vision tower's cost does not depend on retention). Then, per retention:

* SCC: ``model.scissor.compress`` on a fresh copy of the features (tau search + compression,
  nothing cached), the work the patched ``generate`` adds;
* prefill: the patched ``generate(max_new_tokens=1)`` fed those tokens (``video_tokens=``),
  timed from the first forward call's entry to its exit (the prompt's forward pass);
* peak memory of that call above the memory before it: CUDA's allocator peak, or on the CPU
  the process's resident set sampled every millisecond (after ``malloc_trim``).

Printed beside each retention r: prefill(r) / prefill(1), and SCC's time as a share of the
prefill time it saves. Goal at r = 0.1: prefill <= 0.15x full, SCC <= 5 % of the saving.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model_cpu import build_backend, sync
from scissor_viz import apply_patch
from tests.tiny_llava import random_frames

RETENTIONS = (1.0, 0.5, 0.35, 0.1, 0.05)
QUESTION = "What happens in this video?"


# ----------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory during a ``with`` block above the memory at its start, in MiB."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0.0

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self.rss())
            time.sleep(0.001)

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so it shows again
        except OSError:
            pass
        self._base = self._max = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak = (max(self._max, self.rss()) - self._base) / 2**20


# ----------------------------------------------------------------------------- timing


def encode(backend, frames: int, device: str) -> tuple[torch.Tensor, float]:
    """The clip's (frames, 196, d) grid from the model's own code, and the seconds it took."""
    pixels = backend.preprocess(random_frames(frames, 384, 384, seed=frames))
    pixels = pixels.to(device, backend.dtype)[None]  # (1, F, 3, 384, 384)
    sync(device)
    start = time.perf_counter()
    grid = backend.model.scissor.grids(pixel_values_videos=pixels)[0]
    sync(device)
    return grid, time.perf_counter() - start


def prefill(backend, input_ids: torch.Tensor, tokens, device: str) -> tuple[float, float, int]:
    """Seconds of the patched generate's prompt forward, its peak MiB, and the prompt length."""
    model, stamps = backend.model, []

    def tick(*_args, **_kwargs) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    hooks = [model.register_forward_pre_hook(tick), model.register_forward_hook(tick)]
    try:
        with torch.inference_mode(), PeakMemory(device) as memory:
            model.generate(
                input_ids=input_ids,
                video_tokens=[tokens],
                max_new_tokens=1,
                do_sample=False,
                pad_token_id=backend.tokenizer.pad_token_id,
            )
    finally:
        for hook in hooks:
            hook.remove()
    return stamps[1] - stamps[0], memory.peak, model.scissor.last[0].length_after


def measure(backend, frames: int, repeat: int, device: str) -> list[dict]:
    """One row per retention: K, prompt length, prefill s, peak MiB, SCC s (best of repeat)."""
    grid, seconds = encode(backend, frames, device)
    print(
        f"\n{frames} frames: {grid.shape[0] * grid.shape[1]} video tokens, encoded in "
        f"{seconds:.1f} s (once; the vision tower does not depend on retention)",
        flush=True,
    )
    input_ids = backend.stock_input_ids(QUESTION, frames).to(device)
    rows = []
    for r in RETENTIONS:
        backend.model.scissor.retention = r
        best = {"prefill": math.inf, "scc": math.inf, "peak": 0.0}
        for _ in range(repeat):
            tokens, scc = grid.flatten(0, 1), 0.0  # r = 1: the stock prompt
            if r < 1:
                start = time.perf_counter()
                tokens = backend.model.scissor.compress(grid.clone())[0].tokens  # no cache
                scc = time.perf_counter() - start
            seconds, peak, length = prefill(backend, input_ids, tokens, device)
            best["prefill"], best["scc"] = min(best["prefill"], seconds), min(best["scc"], scc)
            best["peak"] = max(best["peak"], peak)
        rows.append({"frames": frames, "r": r, "K": len(tokens), "length": length, **best})
        print(f"  r={r:<5} K={len(tokens):<6} prefill {best['prefill']:.2f} s", flush=True)
    return rows


# ----------------------------------------------------------------------------- report


def report(rows: list[dict]) -> None:
    full = {row["frames"]: row for row in rows if row["r"] == 1.0}
    print("\nframes  r      K      prompt  prefill s  ×full   peak MiB  SCC s   SCC/saved")
    for row in rows:
        ref = full[row["frames"]]
        ratio = row["prefill"] / ref["prefill"]
        saved = ref["prefill"] - row["prefill"]
        share = f"{100 * row['scc'] / saved:6.1f} %" if row["r"] < 1 and saved > 0 else "      -"
        print(
            f"{row['frames']:<7} {row['r']:<6} {row['K']:<6} {row['length']:<7} "
            f"{row['prefill']:<10.3f} {ratio:<7.3f} {row['peak']:<9.0f} {row['scc']:<7.3f} {share}"
        )
    for row in rows:
        if row["r"] == 0.1:
            ref = full[row["frames"]]
            ratio = row["prefill"] / ref["prefill"]
            share = row["scc"] / max(ref["prefill"] - row["prefill"], 1e-12)
            print(
                f"{row['frames']} frames, r=0.1: prefill {ratio:.3f}x full (goal <= 0.15: "
                f"{'met' if ratio <= 0.15 else 'NOT met'}); SCC {100 * share:.1f} % of the "
                f"saving (goal <= 5 %: {'met' if share <= 0.05 else 'NOT met'})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="16 frames, one run each")
    parser.add_argument("--frames", type=int, nargs="+", default=None)
    parser.add_argument("--repeat", type=int, default=None, help="runs per retention (best)")
    parser.add_argument("--vision-layers", type=int, default=26)
    args = parser.parse_args()
    frames = args.frames or ([16] if args.quick else [16, 64])
    repeat = args.repeat or (1 if args.quick else 3)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    torch.manual_seed(0)
    backend = build_backend(args.device, dtype, args.vision_layers, "sdpa")
    apply_patch(backend.model, retention=1.0)
    print(
        f"LLaVA-OneVision 0.5B shapes, random weights, {args.device}, {dtype}, "
        f"{torch.get_num_threads()} threads; best of {repeat}"
    )
    rows = [row for f in frames for row in measure(backend, f, repeat, args.device)]
    report(rows)


if __name__ == "__main__":
    main()
