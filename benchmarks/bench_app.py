"""Server time of one move of the Retention slider, and proof that it never re-encodes.

    python benchmarks/bench_app.py            # 16 frames, 10 slider moves, in-process and HTTP
    python benchmarks/bench_app.py --quick    # 5 moves, in-process only
    python benchmarks/bench_app.py --frames 32 --moves 20

Moving the slider runs the page's ``refresh`` event: the tau search and SCC from the session's
cached tokens (``VideoAnalysis.compress``), then the redraw: the numbers and one overlay per
frame (``region_images``, sent as an HTML grid of JPEGs). The budget is 0.5 s of server time at
16 frames. The selected frame's τ-graph follows as a second event
(``tau_graph``), timed apart as ``graphs`` (handler + serialisation).
``benchmarks/bench_ui.py`` measures the same from a browser.

Token sets, both on the real clip's frames (assets/bigbuckbunny.mp4):
* ``896-d synthetic``: ``scissor_viz.synthetic.video_tokens(frames, dim=896)``, LLaVA-OneVision
  0.5B's width (the real model is too slow to load here, and SCC's cost depends on the width,
  not on where the numbers came from);
* ``pixels (19-d)``: the pixel backend's own descriptors of the frames.

Sections:
1. in-process: the registered ``refresh`` function of ``build_demo()`` called directly with a
   session, split into compress / overlays / Gradio's postprocess of the outputs. It
   runs in a worker thread, as Gradio runs handlers: on a busy 2-core machine, torch's OpenMP
   threads spin-waiting in the *main* thread made the same SCC calls ~10x slower here (set
   OMP_WAIT_POLICY=PASSIVE to see the main thread match);
2. over HTTP (skipped with --quick): a server on 127.0.0.1, gradio_client ``/load`` once then
   ``/refresh`` per move (the round trip: an upper bound on server time).
Each backend counts its encode calls; a slider move must add none.

The first refresh after Compress also builds the retention curve (once per video): it is shown
apart from the slider moves. The machine's load average is printed: on a shared 2-core machine
other people's work shows up in these numbers.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from scissor_viz import ui
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import Backend
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.scc import ScissorIndex
from scissor_viz.synthetic import video_tokens
from scissor_viz.ui import views
from scissor_viz.video import load_video
from tests.serving import LOAD_SETTING

CLIP = ROOT / "assets" / "bigbuckbunny.mp4"
BUDGET = 0.5  # seconds of server time per slider move at 16 frames
FIRST = 0.35  # the page's default retention: the draw right after Compress
# New targets, as a person drags: down in steps, back up, fine steps near a seen value.
MOVES = [
    0.30,
    0.25,
    0.20,
    0.15,
    0.10,
    0.05,
    0.50,
    0.75,
    0.34,
    0.36,
    0.45,
    0.60,
    0.90,
    0.02,
    0.28,
    0.22,
    0.18,
    0.12,
    0.08,
    0.40,
]


class Counting(Backend):
    """Wraps a backend's encode (or makes 896-d synthetic tokens) and counts the calls."""

    def __init__(self, name: str, inner: Backend | None = None, dim: int = 896):
        super().__init__()
        self.inner, self.dim, self.calls = inner, dim, 0
        self.name = name
        self.description = f"benchmark backend: {name}"
        self.hidden_size = inner.hidden_size if inner else dim

    @property
    def cache_id(self):
        return ("bench", self.name)

    def _encode(self, frames, progress):
        self.calls += 1
        if self.inner is not None:
            return self.inner._encode(frames, progress)
        return video_tokens(len(frames), dim=self.dim, regions=12, seed=0)


def event_fn(demo, name: str):
    for block_fn in demo.fns.values():
        if block_fn.name == name:
            return block_fn
    raise SystemExit(f"build_demo() registers no {name!r} event: has ui.py changed?")


class Timer:
    """Wrap a callable (a module global or a bound method) and add up its wall time."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def postprocess(block_fn, outputs) -> float:
    """Seconds Gradio's components take to turn the outputs into a response (gallery images
    written as image files, plotly figures to JSON, markdown)."""
    t0 = time.perf_counter()
    if len(block_fn.outputs) == 1:
        outputs = (outputs,)  # one output: the handler returns it bare
    for component, value in zip(block_fn.outputs, outputs):
        if component.__class__.__name__ == "State" or isinstance(value, dict):
            continue  # state stays in the server; gr.update dicts are not postprocessed
        component.postprocess(value)
    return time.perf_counter() - t0


def in_process(label: str, clip, backend: Counting, moves: list[float], worker) -> dict:
    demo = ui.build_demo(backend=backend)
    block_fn, figures_fn = event_fn(demo, "refresh"), event_fn(demo, "tau_graph")
    tokens = backend.encode(clip.frames, key=clip.key)
    analysis = VideoAnalysis(clip, backend, tokens, ScissorIndex(tokens))
    session = ui.Session(analysis, analysis.compress(tau=1.0))  # a loaded video
    calls_before = backend.calls

    rows = []
    for i, retention in enumerate([FIRST, *moves]):
        compress, overlays = Timer(), Timer()
        analysis.compress = compress.wrap(VideoAnalysis.compress.__get__(analysis))
        saved = views.region_images
        views.region_images = overlays.wrap(saved)
        evals = len(analysis.index._counts)
        try:
            t0 = time.perf_counter()
            out = worker.submit(block_fn.fn, session, retention, "Temporal step", False).result()
            handler = time.perf_counter() - t0
        finally:
            views.region_images = saved
            del analysis.compress
        serialise = worker.submit(postprocess, block_fn, out).result()
        t0 = time.perf_counter()
        graphs = worker.submit(figures_fn.fn, session, 0).result()
        graphs = time.perf_counter() - t0 + worker.submit(postprocess, figures_fn, graphs).result()
        k = session.comp.num_tokens
        rows.append(
            {
                "move": i,
                "retention": retention,
                "tokens": k,
                "miss": abs(k - retention * analysis.num_total),
                "tau_evals": len(analysis.index._counts) - evals,
                "compress": compress.seconds,
                "overlays": overlays.seconds,
                "graphs": graphs,
                "serialise": serialise,
                "server": handler + serialise,
            }
        )
    demo.close()
    return {
        "label": label,
        "rows": rows,
        "encodes": backend.calls - calls_before,
        "tokens": tuple(tokens.shape),
    }


def over_http(label: str, backend: Counting, frames: int, moves: list[float]) -> dict:
    from gradio_client import Client, handle_file

    demo = ui.build_demo(backend=backend)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    try:
        client = Client(url, verbose=False, download_files=False)
        t0 = time.perf_counter()
        client.predict(
            handle_file(str(CLIP)),
            frames,
            ui.MODEL_CHOICE,
            "",
            0.05,
            *LOAD_SETTING,
            api_name="/load",
        )
        load_s = time.perf_counter() - t0
        calls_after_load = backend.calls
        rows = []
        for i, retention in enumerate([FIRST, *moves]):
            t0 = time.perf_counter()
            client.predict(retention, "Temporal step", False, api_name="/refresh")
            rows.append({"move": i, "retention": retention, "server": time.perf_counter() - t0})
        return {
            "label": label,
            "rows": rows,
            "encodes": backend.calls - calls_after_load,
            "load": load_s,
            "load_encodes": calls_after_load,
        }
    finally:
        demo.close()


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} / {max(values):6.3f}"


def report(result: dict, columns: list[str]) -> list[float]:
    rows = result["rows"]
    first, moves = rows[0], rows[1:]
    print(f"\n### {result['label']}")
    if "tokens" in result:
        print(
            f"tokens {result['tokens']}; encode calls during the slider moves: "
            f"{result['encodes']}; K misses retention x N by at most "
            f"{max(r['miss'] for r in rows):.1f} tokens"
        )
    else:
        print(
            f"/load {result['load']:.2f} s ({result['load_encodes']} encode); encode calls "
            f"during the slider moves: {result['encodes']}"
        )
    print("| part | first draw (s) | slider move: median / max (s) |")
    print("| --- | ---: | ---: |")
    for col in columns:
        if col == "tau_evals":  # K(tau) evaluations the tau search (and the curve) needed
            values = [r[col] for r in moves]
            print(
                f"| τ evaluations (count) | {first[col]} | {statistics.median(values):g} / "
                f"{max(values)} |"
            )
            continue
        print(f"| {col} | {first[col]:.3f} | {stats([r[col] for r in moves])} |")
    return [r["server"] for r in moves]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--moves", type=int, default=10, help=f"at most {len(MOVES)}")
    parser.add_argument("--quick", action="store_true", help="5 moves, in-process only")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    moves = MOVES[: 5 if args.quick else min(args.moves, len(MOVES))]

    print(f"# Retention slider: server time per move ({args.frames} frames, {len(moves)} moves)")
    print(
        f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    clip = load_video(CLIP, args.frames)
    print(f"clip: {CLIP.name}, {clip.num_frames} frames of {clip.size[0]}x{clip.size[1]}")

    parts = ["tau_evals", "compress", "overlays", "serialise", "server", "graphs"]
    verdicts = []
    for label, backend in [
        ("896-d synthetic tokens, in-process", Counting("896-d synthetic")),
        ("pixels (19-d), in-process", Counting("pixels", inner=PixelBackend())),
    ]:
        with ThreadPoolExecutor(1, thread_name_prefix="handler") as worker:
            result = in_process(label, clip, backend, moves, worker)
        verdicts.append((label, report(result, parts), result["encodes"]))
    if not args.quick:
        for label, backend in [
            ("896-d synthetic tokens, HTTP round trip", Counting("896-d synthetic")),
            ("pixels (19-d), HTTP round trip", Counting("pixels", inner=PixelBackend())),
        ]:
            result = over_http(label, backend, args.frames, moves)
            verdicts.append((label, report(result, ["server"]), result["encodes"]))

    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print(
        f"\n## Verdict (budget {BUDGET} s per slider move at 16 frames; "
        "'server' = handler + Gradio postprocess, or the HTTP round trip)"
    )
    for label, times, encodes in verdicts:
        ok = "within" if np.median(times) <= BUDGET else "OVER"
        print(
            f"- {label}: median {np.median(times):.3f} s, max {max(times):.3f} s: {ok} budget; "
            f"re-encodes: {encodes}"
        )
    if any(encodes for _, _, encodes in verdicts):
        raise SystemExit("a slider move re-encoded the video")


if __name__ == "__main__":
    main()
