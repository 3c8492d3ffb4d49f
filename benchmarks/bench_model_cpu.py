"""Speed of the LLaVA-OneVision backend, each number beside its floor.

    python benchmarks/bench_model_cpu.py              # headline + sweep (~8 min on 2 busy cores)
    python benchmarks/bench_model_cpu.py --quick      # 1 frame, 500-token prefill, no sweep
    python benchmarks/bench_model_cpu.py --device cuda
    python benchmarks/bench_model_cpu.py --profile    # + where one frame's encode spends its time

Timing does not depend on weight values, so the model is randomly initialised with the real
llava-hf/llava-onevision-qwen2-0.5b-ov-hf shapes: SigLIP-so400m at 384 px (hidden 1152, 16 heads,
intermediate 4304, patch 14; 26 layers, as the llava-hf config and transformers'
LlavaOnevisionConfig defaults have it -- LLaVA-OneVision drops so400m's 27th layer; --vision-layers
27 to change) and Qwen2-0.5B (hidden 896, 24 layers, 14 heads, 2 kv heads, intermediate 4864,
vocab 151,936, tied embeddings).

Measured, through the backend's own code paths (``encode``, ``answer``):
* seconds per encoded frame (SigLIP -> projector -> pooling), and
* prefill seconds per 1,000 visual tokens (the prompt's forward pass in ``generate``),
each beside its floor = the model's matmul FLOPs / the matmul throughput measured in this run
(fp32 on CPU; the model dtype on CUDA). The sweep varies one setting at a time -- attention
implementation, autograd, threads, frames per batch, bf16 -- and prints how far each variant's
tokens / first-token logits are from the reference (fp32, sdpa, inference mode).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scissor_viz.models.llava_onevision import (
    RANDOM_WEIGHTS_FLAG,
    LlavaOnevisionBackend,
    VideoPreprocessing,
)
from tests.tiny_llava import build_tokenizer, random_frames

VISION = {"hidden": 1152, "heads": 16, "intermediate": 4304, "patch": 14, "image": 384}
TEXT = {
    "hidden": 896,
    "layers": 24,
    "heads": 14,
    "kv_heads": 2,
    "intermediate": 4864,
    "vocab": 151_936,
}


# ----------------------------------------------------------------------------- model


def build_backend(device: str, dtype: torch.dtype, vision_layers: int, attn: str):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = build_tokenizer()
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=VISION["hidden"],
            intermediate_size=VISION["intermediate"],
            num_hidden_layers=vision_layers,
            num_attention_heads=VISION["heads"],
            image_size=VISION["image"],
            patch_size=VISION["patch"],
            vision_use_head=False,
        ),
        text_config=Qwen2Config(
            vocab_size=TEXT["vocab"],
            hidden_size=TEXT["hidden"],
            intermediate_size=TEXT["intermediate"],
            num_hidden_layers=TEXT["layers"],
            num_attention_heads=TEXT["heads"],
            num_key_value_heads=TEXT["kv_heads"],
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    config._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaOnevisionForConditionalGeneration(config).to(dtype).eval()
    preprocessing = VideoPreprocessing(384, 384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return LlavaOnevisionBackend(model, tokenizer, preprocessing, pretrained=False)


def set_attention(backend, attn: str) -> None:
    """Switch every sub-model's attention implementation (sdpa / eager)."""
    for module in backend.model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = attn


# ----------------------------------------------------------------------------- FLOPs


def vision_flops_per_frame(layers: int) -> float:
    """Matmul FLOPs of one frame: patch conv + per layer q,k,v,o + attention + MLP, projector."""
    d, f, p = VISION["hidden"], VISION["intermediate"], VISION["patch"]
    n = (VISION["image"] // p) ** 2  # 729
    conv = 2 * n * (3 * p * p) * d
    per_layer = 2 * n * 4 * d * d + 2 * 2 * n * n * d + 2 * n * 2 * d * f
    projector = 2 * n * (d * TEXT["hidden"] + TEXT["hidden"] ** 2)
    return conv + layers * per_layer + projector


def llm_prefill_flops(length: int) -> float:
    """Matmul FLOPs of a causal prefill of ``length`` tokens (+ the last token's lm_head)."""
    d, f, h = TEXT["hidden"], TEXT["intermediate"], TEXT["heads"]
    kv = TEXT["kv_heads"] * d // h
    linear = 2 * length * (2 * d * d + 2 * d * kv + 3 * d * f)
    attention = 2 * 2 * d * length * (length + 1) / 2  # QK^T and AV, causal half
    return TEXT["layers"] * (linear + attention) + 2 * d * TEXT["vocab"]


# ----------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class MatmulRate:
    """Matmul throughput of the model's own big GEMM shapes, sampled several times in a run.

    On a shared machine the throughput swings with other processes' load; the floor uses the
    best sample (what the hardware can do), and the spread of samples is printed beside it."""

    SHAPES = (
        (2 * 729, 1152, 4304),
        (2 * 729, 4304, 1152),
        (2 * 729, 1152, 1152),
        (1024, 896, 4864),
    )

    def __init__(self, device: str, dtype: torch.dtype):
        self.device, self.dtype, self.samples = device, dtype, []
        self.mats = [
            (
                torch.randn(m, k, device=device, dtype=dtype),
                torch.randn(k, n, device=device, dtype=dtype),
            )
            for m, k, n in self.SHAPES
        ]

    def sample(self, reps: int = 3) -> float:
        best = 0.0
        for a, b in self.mats:
            a @ b
            for _ in range(reps):
                sync(self.device)
                t0 = time.perf_counter()
                a @ b
                sync(self.device)
                best = max(
                    best, 2 * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - t0)
                )
        self.samples.append(best)
        return best

    @property
    def best(self) -> float:
        return max(self.samples)


def time_encode(
    backend, frames, device: str, grad: bool = False
) -> tuple[float, torch.Tensor, float]:
    """Mean seconds per frame over the whole encode, the tokens, and the best batch's s/frame."""
    backend.cache.clear()
    stamps = []
    ctx = torch.enable_grad() if grad else contextlib.nullcontext()
    sync(device)
    t0 = time.perf_counter()
    if grad:  # what a caller without inference_mode/no_grad gets
        with ctx:
            pixels = backend.preprocess(frames).to(backend.device, backend.dtype)
            out = [
                backend.video_tokens(pixels[s : s + backend.batch_size]).detach().float().cpu()
                for s in range(0, len(frames), backend.batch_size)
            ]
            tokens = torch.cat(out)
    else:
        tokens = backend.encode(
            frames, progress=lambda f, m: stamps.append((time.perf_counter(), f))
        )
    sync(device)
    total = time.perf_counter() - t0
    best = total / len(frames)
    for (t_a, f_a), (t_b, f_b) in itertools.pairwise(stamps):
        if f_b > f_a:
            best = min(best, (t_b - t_a) / ((f_b - f_a) * len(frames)))
    return total / len(frames), tokens, best


def time_prefill(backend, tokens: torch.Tensor, repeat: int) -> tuple[float, torch.Tensor, int]:
    best, logits, length = math.inf, None, 0
    for _ in range(repeat):
        ans = backend.answer("What happens in this video?", tokens, max_new_tokens=1)
        best = min(best, ans.prefill_seconds)
        logits, length = ans.first_logits, ans.prompt_tokens
    return best, logits, length


def deviation(x: torch.Tensor, ref: torch.Tensor) -> str:
    x, ref = x.float().flatten(0, -2) if x.ndim > 1 else x[None], ref.float()
    ref = ref.flatten(0, -2) if ref.ndim > 1 else ref[None]
    rel = float((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
    cos = float(torch.nn.functional.cosine_similarity(x, ref, dim=-1).min())
    return f"max|Δ|/max|ref| {rel:.1e}, min cos {cos:.6f}"


# ----------------------------------------------------------------------------- main


def main() -> None:
    # Long on purpose: a benchmark script read top to bottom, one section after another, each
    # printing its numbers as it goes; splitting it would scatter the shared model and timings.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="1 frame, 500-token prefill, no sweep")
    parser.add_argument("--frames", type=int, default=None, help="frames for the headline encode")
    parser.add_argument("--sweep-frames", type=int, default=4, help="frames per sweep encode")
    parser.add_argument("--repeat", type=int, default=2, help="sweep runs per variant (best kept)")
    parser.add_argument("--prefill-tokens", type=int, default=None)
    parser.add_argument("--vision-layers", type=int, default=26)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile one frame's encode")
    args = parser.parse_args()

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    frames_n = args.frames or (1 if quick else (32 if device == "cuda" else 8))
    prefill_n = args.prefill_tokens or (500 if quick else 1000)
    sweep = not (quick or args.no_sweep)
    dtype = (
        torch.float32
        if device == "cpu"
        else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    )

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    where = torch.cuda.get_device_name() if device == "cuda" else cpu
    print(
        f"torch {torch.__version__}, {device} ({where}), {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cpus, load average at start {_load()}"
    )

    rates = MatmulRate(device, dtype)
    print(
        f"matmul throughput ({str(dtype)[6:]}), first sample: {rates.sample() / 1e9:,.0f} GFLOP/s"
    )

    t0 = time.perf_counter()
    backend = build_backend(device, dtype, args.vision_layers, "sdpa")
    params = sum(p.numel() for p in backend.model.parameters())
    print(
        f"built a random {params / 1e6:,.0f} M-parameter model in {time.perf_counter() - t0:.1f} s"
        f" (vision layers {args.vision_layers}, dtype {str(dtype)[6:]})\n",
        flush=True,
    )

    video = random_frames(max(frames_n, args.sweep_frames), 360, 640, seed=0)
    backend.encode(video[:1])  # warm-up (first-call allocations, thread pools)

    results: list[tuple[str, float, float, str]] = []  # what, seconds, FLOPs per unit, unit
    notes: list[tuple[str, str]] = []
    vf = vision_flops_per_frame(args.vision_layers)

    rates.sample()
    per_frame, ref_tokens, best_batch = time_encode(backend, video[:frames_n], device)
    rates.sample()
    results.append(
        (
            f"encode {frames_n} frames, batch {backend.batch_size} (the backend)",
            per_frame,
            vf,
            "s/frame",
        )
    )
    results.append(("  the same run's fastest batch", best_batch, vf, "s/frame"))

    flat = ref_tokens.reshape(-1, ref_tokens.shape[-1])
    pick = torch.randint(0, flat.shape[0], (prefill_n,), generator=torch.Generator().manual_seed(0))
    prefill_tokens = flat[pick]
    scale = 1000 / prefill_n
    pf, ref_logits, length = time_prefill(backend, prefill_tokens, repeat=1 if quick else 2)
    rates.sample()
    results.append(
        (
            f"prefill {prefill_n} visual tokens ({length} in all)",
            pf * scale,
            llm_prefill_flops(length) * scale,
            "s/1k tok",
        )
    )

    if not quick:
        pf_full, _, length_full = time_prefill(backend, flat, repeat=1)
        k = 1000 / flat.shape[0]
        results.append(
            (
                f"prefill all {flat.shape[0]} tokens of {frames_n} frames ({length_full} in all)",
                pf_full * k,
                llm_prefill_flops(length_full) * k,
                "s/1k tok",
            )
        )
        rates.sample()

    if sweep:
        sub = video[: args.sweep_frames]
        ref_sub = (
            time_encode(backend, sub, device)[1] if len(sub) > frames_n else ref_tokens[: len(sub)]
        )
        n_sub = len(sub)

        def encode_row(label: str, grad: bool = False) -> None:
            runs = [time_encode(backend, sub, device, grad=grad) for _ in range(args.repeat)]
            rates.sample()
            results.append(
                (f"  encode {n_sub} frames, {label}", min(r[0] for r in runs), vf, "s/frame")
            )
            notes.append((f"encode, {label}", deviation(runs[0][1], ref_sub)))

        def prefill_row(label: str) -> None:
            s, logits, n = time_prefill(backend, prefill_tokens, repeat=args.repeat)
            rates.sample()
            results.append(
                (
                    f"  prefill {prefill_n}, {label}",
                    s * scale,
                    llm_prefill_flops(n) * scale,
                    "s/1k tok",
                )
            )
            notes.append((f"prefill, {label}", deviation(logits, ref_logits)))

        print("sweep: one setting changed at a time; best of", args.repeat, "runs each", flush=True)
        encode_row("reference settings")
        encode_row("autograd on (no inference_mode)", grad=True)
        set_attention(backend, "eager")
        encode_row("eager attention")
        prefill_row("eager attention")
        set_attention(backend, "sdpa")
        default_batch = backend.batch_size
        for bs in sorted({1, 2, 4, 8} - {default_batch}):
            if bs <= n_sub:
                backend.batch_size = bs
                encode_row(f"batch {bs}")
        backend.batch_size = default_batch
        if device == "cpu":
            threads = torch.get_num_threads()
            if threads > 1:
                torch.set_num_threads(1)
                encode_row("1 thread")
                prefill_row("1 thread")
                torch.set_num_threads(threads)
        if dtype != torch.bfloat16:
            # bf16 last: it converts the weights in place
            backend.model.to(torch.bfloat16)
            backend.dtype = torch.bfloat16
            backend.encode(video[:1])
            encode_row("bf16 weights, sdpa (NOT equal)")
            prefill_row("bf16 weights, sdpa (NOT equal)")
            set_attention(backend, "eager")
            encode_row("bf16 weights, eager (NOT equal)")
            prefill_row("bf16 weights, eager (NOT equal)")
            set_attention(backend, "sdpa")
            backend.model.to(dtype)
            backend.dtype = dtype

    rate = rates.best
    width = max(len(r[0]) for r in results)
    print(f"\n{'what':<{width}}  {'measured':>16}  {'floor':>7}  {'÷ floor':>7}")
    for what, seconds, flops, unit in results:
        floor = flops / rate
        print(
            f"{what:<{width}}  {seconds:>7.3f} {unit:<8}  {floor:>7.3f}  {seconds / floor:>6.2f}×"
        )
    spread = ", ".join(f"{r / 1e9:.0f}" for r in rates.samples)
    print(
        f"\nfloor = matmul FLOPs / the best {str(dtype)[6:]} matmul throughput sampled in this "
        f"run, "
        f"{rate / 1e9:,.0f} GFLOP/s (all samples: {spread});\n{vf / 1e9:,.0f} GFLOP per frame, "
        f"{llm_prefill_flops(1000) / 1e9:,.0f} GFLOP per 1,000-token prefill. "
        "bf16 rows use the same "
        f"{str(dtype)[6:]} floor."
    )
    if notes:
        print(
            "\nhow far each variant's output is from the reference (encode: tokens; prefill: "
            "first-token logits):"
        )
        w = max(len(n[0]) for n in notes)
        for what, dev in notes:
            print(f"  {what:<{w}}  {dev}")
    print(f"\nload average at end {_load()}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        for label, fn in [
            ("encode 1 frame", lambda: (backend.cache.clear(), backend.encode(video[:1]))),
            (
                f"prefill {prefill_n}",
                lambda: backend.answer("What?", prefill_tokens, max_new_tokens=1),
            ),
        ]:
            with profile(activities=acts) as prof:
                fn()
            key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
            print(f"\nprofile: {label}")
            try:
                table = prof.key_averages().table(
                    sort_by=key, row_limit=10, max_name_column_width=50
                )
            except (KeyError, AttributeError, ValueError):
                table = prof.key_averages().table(row_limit=10, max_name_column_width=50)
            print(table)


def _load():
    return tuple(round(x, 1) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None


if __name__ == "__main__":
    main()
