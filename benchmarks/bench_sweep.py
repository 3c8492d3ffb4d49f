"""Sweep the example clips in assets/ with every method and print a markdown table for the README.

    python benchmarks/bench_sweep.py [--frames 16] [--retentions 0.05,0.1,0.35,0.5]
                                     [--checkpoint ID_OR_FOLDER] [--out DIR]

Each cell is "coverage / redundancy" (mean over the clips) at the retention asked; SCC, its
ablations and pooling reach a retention near it (see results.csv for the exact one). Tokens come
from the model backend (pixel descriptors when no model loads: the table says which). Without
clips in assets/ the sweep runs on synthetic tokens and says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scissor_viz.analysis import MethodInputs
from scissor_viz.methods import METHODS
from scissor_viz.sweep import find_videos, parse_retentions, run_sweep
from scissor_viz.synthetic import video_tokens

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def synthetic(path: Path, frames: int) -> MethodInputs:
    return MethodInputs(
        video_tokens(frames=frames, dim=64), "synthetic tokens (no clips in assets/)"
    )


def table(rows: list[dict], retentions: list[float]) -> str:
    """Markdown: method x retention -> mean coverage / mean redundancy, and mean seconds."""
    head = "| method | " + " | ".join(f"r = {r:g}" for r in retentions) + " | s / run |"
    lines = [head, "|" + " --- |" * (len(retentions) + 2)]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = []
        for ret in retentions:
            at = [r for r in mine if abs(r["retention"] - ret) < 1e-9]
            if not at:
                cells.append("")
                continue
            cov = statistics.fmean(r["coverage"] for r in at)
            redundancy = statistics.fmean(r["redundancy"] for r in at)
            cells.append(f"{cov:.3f} / {redundancy:.3f}")
        seconds = statistics.fmean(r["seconds"] for r in mine)
        lines.append(f"| {METHODS[method].label} | " + " | ".join(cells) + f" | {seconds:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--retentions", type=parse_retentions, default=(0.05, 0.1, 0.35, 0.5))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=None, help="keep results here (default: a temp folder)")
    args = parser.parse_args(argv)
    videos = find_videos(ASSETS) if ASSETS.is_dir() else []
    tokens_fn = None if videos else synthetic
    if not videos:
        videos = [Path("synthetic")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        rows = run_sweep(
            videos, out, frames=args.frames, retentions=args.retentions,
            tokens_fn=tokens_fn, checkpoint=args.checkpoint, plots=args.out is not None,
        )  # fmt: skip
    backends = sorted({r["backend"] for r in rows})
    names = ", ".join(Path(v).name for v in dict.fromkeys(r["video"] for r in rows))
    print(
        f"\nCoverage / redundancy, {args.frames} frames, clips: {names}; tokens: "
        f"{'; '.join(backends)}\n"
    )
    print(table(rows, list(args.retentions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
