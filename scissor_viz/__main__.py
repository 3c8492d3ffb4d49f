"""``python -m scissor_viz sweep VIDEO_OR_FOLDER --out DIR [...]``: batch runs from the shell."""

from __future__ import annotations

import argparse
import sys

from scissor_viz.methods import METHODS
from scissor_viz.sweep import DEFAULT_RETENTIONS, find_videos, parse_retentions, run_sweep
from scissor_viz.video import DEFAULT_FRAMES


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown methods {unknown}; choose from {', '.join(METHODS)}"
        )
    return names


def _retentions(text: str) -> tuple[float, ...]:
    try:
        return parse_retentions(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scissor_viz", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser(
        "sweep",
        help="every video x method x retention -> coverage, redundancy (CSV, JSON, plots)",
        description="Compress each video's tokens with every method at every retention and "
        "record the token metrics. Resumable: rows already in DIR/results.csv are skipped.",
    )
    sweep.add_argument("videos", metavar="VIDEO_OR_FOLDER")
    sweep.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sweep.add_argument(
        "--frames", type=int, default=DEFAULT_FRAMES, help="frames sampled per video (%(default)s)"
    )
    sweep.add_argument(
        "--retentions", type=_retentions, default=DEFAULT_RETENTIONS,
        help="comma-separated retention ratios in (0, 1] (default 0.05,0.1,...,1.0)",
    )  # fmt: skip
    sweep.add_argument(
        "--methods", type=_methods, default=None,
        help=f"comma-separated subset of {','.join(METHODS)} (default: all but fastv, which "
        "needs the LLM's attention)",
    )  # fmt: skip
    sweep.add_argument(
        "--checkpoint", default=None,
        help="LLaVA-OneVision checkpoint (hub id or folder); pixel descriptors if none loads",
    )  # fmt: skip
    sweep.add_argument("--no-plots", action="store_true", help="skip the plotly HTML")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sweep":
        try:
            videos = find_videos(args.videos)
        except FileNotFoundError as err:
            print(err, file=sys.stderr)
            return 2
        if not videos:
            print(f"no videos in {args.videos}", file=sys.stderr)
            return 2
        rows = run_sweep(
            videos, args.out, frames=args.frames, retentions=args.retentions,
            methods=args.methods, checkpoint=args.checkpoint, progress=not args.quiet,
            plots=not args.no_plots,
        )  # fmt: skip
        print(f"{len(rows)} rows in {args.out}/results.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
