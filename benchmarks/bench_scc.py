"""Speed and memory of the SCC engine, each number beside its floor and their ratio.

    python benchmarks/bench_scc.py            # all sections (a few minutes on 2 cores)
    python benchmarks/bench_scc.py --quick    # 16 frames only
    python benchmarks/bench_scc.py --device cuda

Tokens are structured stand-ins (scissor_viz.synthetic) of LLaVA-OneVision-0.5B's shape:
frames x 196 x 896. Sections:
1. cold (one-shot) scissor_compress at the tau of 35 % and 10 % retention vs its floor
   (normalise + per-frame similarity matmuls + the representatives' similarities + the final
   assignment matmul, see matmul_floor), and scissor_compress(retention=) (search + compression
   in one call) against the fixed-tau call;
2. the one-shot call against a plain Python union-find of the same algorithm (the paper's code:
   a loop per edge);
3. tau_for_retention + scissor_compress for new targets on an already-seen 16-frame video;
4. peak extra memory at 256 frames (a fresh subprocess; RSS, or CUDA's peak allocation).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scissor_viz import scc
from scissor_viz.scc import ScissorIndex
from scissor_viz.synthetic import video_tokens

DIM = 896


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_of(fn, repeat: int, device: str) -> float:
    """Least wall time of ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def tokens_for(frames: int, device: str, static: bool = False) -> torch.Tensor:
    if static:
        x = video_tokens(frames, dim=DIM, regions=1, field=0.0, noise=0.05, motion=0.0, seed=1)
    else:
        x = video_tokens(frames, dim=DIM, regions=12, seed=0)
    return x.to(device)


# ----------------------------------------------------------------------------- floors


def matmul_floor(tokens: torch.Tensor, comp: scc.Compression, device: str) -> float:
    """Time of the floor of a one-shot compression, done alone: normalise the tokens, the
    per-frame similarity matmuls, the spatial representatives' similarities (the upper blocks
    the engine reads) and the final assignment matmul (every token against the K finals)."""
    frames, per_frame, dim = tokens.shape
    flat = tokens.reshape(-1, dim).float()
    num_reps = int(comp.spatial_counts.sum())
    reps = flat[:num_reps]  # stand-ins of the right shape: the matmuls' cost is shape-only
    finals = flat[: comp.num_tokens]
    step = max(1, scc.BLOCK_ELEMENTS // num_reps)

    def work():
        xn = torch.nn.functional.normalize(tokens.float(), dim=-1)
        torch.matmul(xn, xn.mT)  # per-frame similarities
        rn = torch.nn.functional.normalize(reps, dim=-1)
        for r0 in range(0, num_reps, step):
            rn[r0 : r0 + step] @ rn[r0:].T  # representatives' similarities, upper blocks
        fn = torch.nn.functional.normalize(finals, dim=-1)
        xn2 = xn.reshape(-1, dim)
        for r0 in range(0, len(xn2), max(1, scc.BLOCK_ELEMENTS // len(finals))):
            xn2[r0 : r0 + scc.BLOCK_ELEMENTS // len(finals)] @ fn.T  # final assignment

    return best_of(work, 3, device)


# ----------------------------------------------------------------------------- the paper's way


def union_find_components(sim: torch.Tensor, tau: float) -> np.ndarray:
    """Components by a Python union-find over every edge of the adjacency, as the paper's code
    does (both directions of each edge, the diagonal included; path halving, Python ints)."""
    n = len(sim)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in torch.nonzero(sim > tau).tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[rj] = ri
    roots = np.array([find(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


def python_scissor(tokens: torch.Tensor, tau: float) -> torch.Tensor:
    """The same algorithm with a per-edge Python loop for the components."""
    x = tokens.float().cpu()
    reps = []
    for frame in x:
        xn = torch.nn.functional.normalize(frame, dim=-1)
        labels = torch.from_numpy(union_find_components(xn @ xn.T, tau))
        reps.append(scc.segment_mean(frame, labels, int(labels.max()) + 1))
    reps = torch.cat(reps)
    rn = torch.nn.functional.normalize(reps, dim=-1)
    labels = torch.from_numpy(union_find_components(rn @ rn.T, tau))
    finals = scc.segment_mean(reps, labels, int(labels.max()) + 1)
    flat = x.reshape(-1, x.shape[-1])
    assign = (
        torch.nn.functional.normalize(flat, dim=-1)
        @ torch.nn.functional.normalize(finals, dim=-1).T
    ).argmax(1)
    merged = finals.clone().index_add_(0, assign, flat)
    return merged / (1 + torch.bincount(assign, minlength=len(finals)))[:, None]


# ----------------------------------------------------------------------------- sections


def section_cold(frames_list: list[int], device: str) -> list[dict]:
    """One-shot calls (nothing cached): at the tau of a retention, and with retention= (the
    search and the compression in one call), each beside the fixed-tau call's floor."""
    rows = []
    for frames in frames_list:
        tokens = tokens_for(frames, device)
        for retention in (0.35, 0.10):
            comp = scc.scissor_compress(tokens, retention=retention)
            tau = comp.tau
            total = best_of(lambda: scc.scissor_compress(tokens, tau), 3, device)
            search = best_of(lambda: scc.scissor_compress(tokens, retention=retention), 1, device)
            floor = matmul_floor(tokens, comp, device)
            rows.append(
                dict(
                    frames=frames,
                    target=retention,
                    retention=round(comp.retention_reached, 4),
                    tau=round(tau, 5),
                    seconds=round(total, 4),
                    floor_seconds=round(floor, 4),
                    ratio=round(total / floor, 2),
                    retention_call_seconds=round(search, 4),
                    retention_call_vs_fixed=round(search / total, 2),
                )
            )
            print(
                f"cold  {frames:3d} frames  r={comp.retention_reached:.3f}  fixed tau {total:.3f} s"
                f"  floor {floor:.3f} s  ratio {total / floor:.2f} (target <= 1.3)"
                f"  | retention= call {search:.3f} s = {search / total:.2f}x the fixed-tau call",
                flush=True,
            )
    return rows


def section_python(device: str) -> list[dict]:
    rows = []
    for name, static in (("16 frames, 35 %", False), ("near-static, 1 component/frame", True)):
        tokens = tokens_for(16, device, static)
        index = ScissorIndex(tokens)
        tau = index.tau_for_retention(0.35) if not static else 0.5
        comp = index.compress(tau)
        if static:
            assert int(comp.spatial_counts.max()) == 1, comp.spatial_counts
        ref = python_scissor(tokens, tau)
        assert ref.shape == comp.tokens.shape, (ref.shape, comp.tokens.shape)
        # the paper's code compresses one video once: against it, the one-shot call
        ours = best_of(lambda: scc.scissor_compress(tokens, tau), 3, device)
        paper = best_of(lambda: python_scissor(tokens, tau), 1, device)
        rows.append(
            dict(
                case=name,
                tokens_after=comp.num_tokens,
                seconds=round(ours, 4),
                python_union_find_seconds=round(paper, 4),
                speedup=round(paper / ours, 1),
            )
        )
        target = 20 if static else 2
        print(
            f"union-find  {name:32s} ours {ours:.3f} s  python {paper:.3f} s"
            f"  speed-up {paper / ours:.1f}x (target >= {target}x)"
        )
    return rows


def section_warm(device: str) -> list[dict]:
    tokens = tokens_for(16, device)
    index = scc.scissor_index(tokens)
    scc.scissor_compress(tokens, scc.tau_for_retention(tokens, 0.35))  # the video is now seen
    rows = []
    for retention in (0.10, 0.20, 0.50, 0.05, 0.30, 0.42, 0.15, 0.65):
        before = len(index._counts)
        sync(device)
        t0 = time.perf_counter()
        comp = scc.scissor_compress(tokens, scc.tau_for_retention(tokens, retention))
        sync(device)
        seconds = time.perf_counter() - t0
        rows.append(
            dict(
                target=retention,
                retention=round(comp.retention_reached, 4),
                evaluations=len(index._counts) - before,
                seconds=round(seconds, 4),
            )
        )
        print(
            f"warm  16 frames  target {retention:.2f}  reached {comp.retention_reached:.4f}"
            f"  {rows[-1]['evaluations']:2d} evaluations  {seconds:.3f} s (target < 0.3 s)"
        )
    return rows


def _memory_child(frames: int, device: str) -> None:
    tokens = tokens_for(frames, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss()
    tau = ScissorIndex(tokens[:16]).tau_for_retention(0.35)  # about 35 % on the whole video
    t0 = time.perf_counter()
    comp = ScissorIndex(tokens).compress(tau)
    seconds = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(
        json.dumps(
            dict(
                frames=frames,
                tokens_after=comp.num_tokens,
                exact=comp.exact,
                retention=round(comp.retention_reached, 4),
                seconds=round(seconds, 2),
                input_mib=round(tokens.numel() * 4 / 2**20),
                peak_extra_mib=round(peak / 2**20),
            )
        )
    )


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def section_memory(frames: int, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(frames), "--device", device],
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"memory  {frames} frames  peak extra {row['peak_extra_mib']} MiB (target < 1024)"
        f"  [{row['seconds']} s, K={row['tokens_after']}, exact={row['exact']}]"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return _memory_child(args.memory_child, args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    results = dict(
        cold=section_cold([16] if args.quick else [16, 64], args.device),
        python=section_python(args.device),
        warm=section_warm(args.device),
    )
    if not args.quick:
        results["memory"] = section_memory(256, args.device)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
