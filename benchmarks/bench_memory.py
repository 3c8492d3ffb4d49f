"""The app's memory per visitor, and the bytes one analysed video holds.

    python benchmarks/bench_memory.py                   # one visitor: 128 frames, retention 1
    python benchmarks/bench_memory.py --visitors 4      # then 4 at once, 16 frames each
    python benchmarks/bench_memory.py --held [--frames 16 128]   # VideoAnalysis.nbytes()

The app (``python app.py``) is served as a subprocess with $SCISSOR_VIZ_CHECKPOINT pointing at
a missing folder, so it runs on the weight-free pixel descriptors, and driven with
``gradio_client`` the way the page drives it: ``/load`` (assets/bigbuckbunny.mp4), then the
events the page fires after a load, and every tab (frames, views, scrubber, comparison of
every method, their curves, export). The server's process tree is sampled every 50 ms; the
table gives, per event, its seconds, the peak during it and the memory after it, in MiB over
the idle server (started, page served, nothing loaded). The issue's target: one visitor at
the page's largest settings (128 frames, retention 1, every tab) raises the peak by at most
1.5 GiB, and the server answers afterwards.

``--held``: a session's work done on a ``VideoAnalysis`` directly (SCC at 35 % and 10 %, the
retention curve, every method at both), its ``nbytes()`` by part, and the same after
``release()``; the pixel backend and stand-in tokens of LLaVA-OneVision-0.5B's width (896).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIP = ROOT / "assets" / "bigbuckbunny.mp4"
MIB = 2**20
TARGET = 1.5 * 2**30  # the bound on one visitor at the largest settings
QUESTION = "What is happening in this video?"
VIEW = "Temporal step"

# ----------------------------------------------------------------------------- the server's RSS


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the video probe's children too)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _rss(p)
        stack += _children(p)
    return total


def vm_hwm(pid: int) -> int:
    """The process's own peak resident bytes (VmHWM), since it started."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Samples the server's tree RSS every ``interval`` seconds in a thread; ``peak()`` is the
    highest since the last ``reset()``, ``overall()`` since the start."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self._peak = self._overall = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.pid)
            with self._lock:
                self._peak = max(self._peak, rss)
                self._overall = max(self._overall, rss)
            self._stop.wait(self.interval)

    def reset(self) -> None:
        with self._lock:
            self._peak = tree_rss(self.pid)

    def peak(self) -> int:
        with self._lock:
            return max(self._peak, tree_rss(self.pid))

    def overall(self) -> int:
        with self._lock:
            return max(self._overall, tree_rss(self.pid))


# ----------------------------------------------------------------------------- one visitor


def page_events(frames: int, retention: float, methods: list[str], choice: str, handle_file):
    """(api name, arguments) of what a visitor does: load, what the page fires after a load,
    then every tab (what opening it draws, then its buttons). Session state is kept by the
    client between calls."""
    last, mid = frames - 1, frames // 2
    return [
        ("/load", (handle_file(str(CLIP)), frames, choice, "", 0.05)),
        ("/after_load", ()),
        ("/refresh", (retention, VIEW, False)),
        ("/tau_graph", (0,)),
        ("/show_answers", (QUESTION, retention, False, 0.9)),
        ("/tau_graph", (last,)),
        ("/recolour", ("Spatial step", True)),
        ("/recolour", ("Merge assignment", False)),
        ("/tab_views", (0, VIEW, "Similarity")),
        ("/tab_views", (last, VIEW, "Similarity")),
        ("/tab_views", (mid, VIEW, "Probe")),
        ("/tab_views", (mid, VIEW, "Teach")),
        ("/scrub_to", (mid, 2)),
        ("/compare", (methods, retention, mid, QUESTION)),
        ("/curves", (methods, QUESTION)),
        ("/tab_views", (mid, VIEW, "Export")),
        ("/export_files", (VIEW, True)),
    ]


def light_events(frames: int, retention: float, methods, choice: str, handle_file):
    """What a visitor who only looks does: load, the slider, the Similarity tab."""
    return page_events(frames, retention, methods, choice, handle_file)[:4] + [
        ("/tab_views", (0, VIEW, "Similarity"))
    ]


def visit(
    url: str,
    frames: int,
    retention: float,
    methods: list[str],
    choice: str,
    on_event,
    k=0,
    light=False,
):
    """Run a visitor's events on a fresh client; ``on_event(name, seconds)`` after each.
    Visitor ``k`` comes from its own address (the server caps each address's share)."""
    from gradio_client import Client, handle_file

    client = Client(
        url, verbose=False, headers={"X-Forwarded-For": f"10.9.{k // 250}.{k % 250 + 1}"}
    )
    events = light_events if light else page_events
    for name, args in events(frames, retention, methods, choice, handle_file):
        start = time.perf_counter()
        client.predict(*args, api_name=name)
        on_event(name, time.perf_counter() - start)
    return client


def serve(log: Path, checkpoint: str | None = None, **env: str):
    from tests.serving import serve_app

    missing = Path(tempfile.gettempdir()) / "scissor-viz-bench-no-checkpoint"
    assert not missing.exists(), f"{missing} must not exist (the app must fall back to pixels)"
    return serve_app(log, SCISSOR_VIZ_CHECKPOINT=checkpoint or str(missing), **env)


def server_pid(url: str) -> int:
    """The pid of the `python app.py` listening on ``url``'s port (this process's child)."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    for pid in _children(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"app.py") for c in cmd) and f"GRADIO_SERVER_PORT={port}".encode() in env:
            return pid
    raise RuntimeError("the app's process was not found")


def settle(pid: int, seconds: float = 3.0) -> int:
    """The tree's RSS once it stops moving (the background model load has given up)."""
    last = tree_rss(pid)
    for _ in range(20):
        time.sleep(seconds)
        now = tree_rss(pid)
        if abs(now - last) < 4 * MIB:
            return now
        last = now
    return last


def still_answers(url: str, choice: str) -> bool:
    from gradio_client import Client

    status = Client(url, verbose=False).predict(choice, "", api_name="/status")
    return bool(status)


def mib(n: float) -> str:
    return f"{n / MIB:,.0f}"


def one_visitor(args, methods: list[str], checkpoint: str | None = None) -> int:
    print(f"## One visitor: {args.frames} frames, retention {args.retention}, every tab\n")
    with serve(Path(args.log), checkpoint) as url:
        pid = server_pid(url)
        idle = settle(pid)
        print(f"idle server (tree RSS): {mib(idle)} MiB\n")
        print("| event | s | peak during (MiB over idle) | after (MiB over idle) |")
        print("| --- | --- | --- | --- |")
        with Sampler(pid) as sampler:
            sampler.reset()

            def on_event(name: str, seconds: float) -> None:
                peak, now = sampler.peak() - idle, tree_rss(pid) - idle
                print(f"| {name} | {seconds:.1f} | {mib(peak)} | {mib(now)} |", flush=True)
                sampler.reset()

            whole = time.perf_counter()
            visit(url, args.frames, args.retention, methods, args.choice, on_event)
            peak = sampler.overall()
            seconds = time.perf_counter() - whole
        after = tree_rss(pid)
        answers = still_answers(url, args.choice)
        hwm = vm_hwm(pid)
    rise = peak - idle
    verdict = "within" if rise <= TARGET else "OVER"
    print(
        f"\nidle {mib(idle)} MiB · peak {mib(peak)} MiB (+{mib(rise)}, {verdict} the 1.5 GiB "
        f"target) · after {mib(after)} MiB (+{mib(after - idle)}) · server VmHWM {mib(hwm)} MiB "
        f"· answers afterwards: {'yes' if answers else 'NO'} · {seconds:.0f} s"
    )
    return 0 if rise <= TARGET and answers else 1


def many_visitors(args, methods: list[str]) -> int:
    n, frames = args.visitors, args.visitor_frames
    what = "load, slider, Similarity tab" if args.light else "every tab"
    print(f"\n## {n} visitors at once: {frames} frames each, retention {args.retention}, {what}")
    budget = {"SCISSOR_VIZ_MEMORY_BUDGET_MIB": str(args.budget)} if args.budget else {}
    print(f"sessions' memory budget: {args.budget or 'default'} MiB\n")
    with serve(Path(args.log), **budget) as url:
        pid = server_pid(url)
        idle = settle(pid)
        with Sampler(pid) as sampler:
            sampler.reset()
            start = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                jobs = [
                    pool.submit(
                        visit,
                        url,
                        frames,
                        args.retention,
                        methods,
                        args.choice,
                        lambda *a: None,
                        k,
                        args.light,
                    )
                    for k in range(n)
                ]
                for job in jobs:
                    job.result()
            seconds = time.perf_counter() - start
            peak = sampler.overall()
        after = tree_rss(pid)
        answers = still_answers(url, args.choice)
    print("| visitors | frames | idle | peak | after | peak per visitor | after per visitor | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {n} | {frames} | {mib(idle)} | {mib(peak)} | {mib(after)} | "
        f"{mib((peak - idle) / n)} | {mib((after - idle) / n)} | {seconds:.0f} |"
    )
    print(f"\nMiB (tree RSS); answers afterwards: {'yes' if answers else 'NO'}")
    return 0 if answers else 1


def fastv_visitor(args, methods: list[str]) -> int:
    """One visitor at the most frames FastV's budget allows, with FastV among the methods, on
    the tiny random LLaVA-OneVision (4 heads): the budget bounds heads x tokens^2 whatever the
    model, so the peak is what a real model's FastV may take at its own largest frames."""
    from scissor_viz.models import load_backend
    from tests.tiny_llava import build_tiny_llava_folder

    folder = build_tiny_llava_folder(Path(tempfile.mkdtemp(prefix="bench-fastv-")) / "tiny")
    backend = load_backend(str(folder), fallback=False)
    frames = 128
    while frames > 1:  # the largest number of frames FastV is not refused at
        try:
            backend.check_llm_attention(QUESTION, frames * 196)
            break
        except ValueError:
            frames -= 1
    print(f"FastV's largest frames under its budget (tiny model): {frames}")
    args.frames = frames
    return one_visitor(args, methods + ["fastv"], str(folder))


# ----------------------------------------------------------------------------- --held


def held(frame_counts: list[int], methods: list[str]) -> int:
    from scissor_viz.analysis import VideoAnalysis
    from scissor_viz.models import Backend, PixelBackend
    from scissor_viz.synthetic import video_tokens
    from scissor_viz.video import load_video

    class StandIn(Backend):
        """LLaVA-OneVision-0.5B-shaped tokens (896 wide) without the model."""

        name = "896-d stand-in"
        hidden_size = 896

        def _encode(self, frames, progress):
            return video_tokens(frames=len(frames), dim=self.hidden_size, seed=0)

    keys = ("frames", "tokens", "index", "answers", "reductions", "total")
    print("## Bytes one analysis holds (MiB), and after release()\n")
    print("| frames | tokens from | " + " | ".join(keys) + " | s |")
    print("|" + " --- |" * (len(keys) + 3))
    for count in frame_counts:
        clip = load_video(CLIP, count)
        for backend in (PixelBackend(), StandIn()):
            start = time.perf_counter()
            analysis = VideoAnalysis.from_clip(clip, backend)
            for retention in (0.35, 0.1):
                analysis.compress(retention=retention)
            analysis.retention_curve()
            for method in methods:
                for retention in (0.35, 0.1):
                    analysis.reduce(method, retention)
            before = analysis.nbytes()
            analysis.release()
            after = analysis.nbytes()
            parts = " | ".join(f"{mib(before[k])} → {mib(after[k])}" for k in keys)
            seconds = time.perf_counter() - start
            print(f"| {count} | {backend.name} | {parts} | {seconds:.0f} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from scissor_viz.methods import runnable_methods
    from scissor_viz.ui.backends import MODEL_CHOICE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="frames (128)")
    parser.add_argument("--retention", type=float, default=1.0)
    parser.add_argument("--visitors", type=int, default=0, help="then N visitors at once")
    parser.add_argument("--visitor-frames", type=int, default=16)
    parser.add_argument("--skip-one", action="store_true", help="only the --visitors run")
    parser.add_argument("--choice", default=MODEL_CHOICE, help="the page's backend choice")
    parser.add_argument("--methods", default=",".join(runnable_methods(llm_attention=False)))
    parser.add_argument("--held", action="store_true", help="VideoAnalysis.nbytes() instead")
    parser.add_argument("--light", action="store_true", help="visitors only load and look")
    parser.add_argument("--budget", type=int, default=0, help="sessions' budget, MiB")
    parser.add_argument(
        "--fastv",
        action="store_true",
        help="one visitor with FastV (tiny model) at the most frames",
    )
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "bench_memory.log"))
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    if args.held:
        return held(args.frames or [16, 128], methods)
    if args.fastv:
        return fastv_visitor(args, methods)
    args.frames = (args.frames or [128])[0]
    code = 0 if args.skip_one else one_visitor(args, methods)
    if args.visitors:
        code |= many_visitors(args, methods)
    return code


if __name__ == "__main__":
    sys.exit(main())
