"""Sweep every video x method x retention and record the token metrics: CSV, JSON and plots.

Two-line API::

    rows = run_sweep(find_videos("clips/"), "runs/sweep", frames=16)       # real videos
    rows = run_sweep(["a"], "runs/x", tokens_fn=lambda path, frames: MethodInputs(t, "synthetic"))

Command line: ``python -m scissor_viz sweep VIDEO_OR_FOLDER --out DIR``. Writes
``DIR/results.csv`` (one row per run, appended and flushed as it goes), ``DIR/results.json`` (the
same rows with the sweep's settings, which backend produced each video's tokens, and what was
skipped) and ``DIR/plots/<video>.html`` (each metric against retention, one line per method;
PNG beside it only when kaleido is installed). Resumable: a row whose (video, frames, method,
retention) is already in the CSV is not run again, and a video with nothing left to run is not
even decoded.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from scissor_viz import models
from scissor_viz.analysis import MethodInputs, backend_method_inputs, run_method
from scissor_viz.methods import METHODS, runnable_methods
from scissor_viz.pictures.figures import metric_curves_figure
from scissor_viz.scc import check_retention
from scissor_viz.video import DEFAULT_FRAMES, load_video

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif"})
DEFAULT_RETENTIONS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.1, ..., 1.0
FIELDS = (
    "video", "clip", "backend", "frames", "frames_used", "method", "retention",
    "retention_reached", "num_tokens", "tau", "coverage", "redundancy", "seconds", "note",
)  # fmt: skip
_INT_FIELDS = {"frames", "frames_used", "num_tokens"}
_FLOAT_FIELDS = {"retention", "retention_reached", "tau", "coverage", "redundancy", "seconds"}


TokensFn = Callable[[Path, int], MethodInputs]


# ----------------------------------------------------------------------------- inputs


def find_videos(path: str | Path) -> list[Path]:
    """A video file as given, or the video files directly in a folder, sorted by name."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not path.exists():
        raise FileNotFoundError(f"no such video or folder: {path}")
    return [path]


def parse_retentions(text: str) -> tuple[float, ...]:
    """ "0.05,0.1,0.5" -> (0.05, 0.1, 0.5); each must be in (0, 1]."""
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values:
        raise ValueError(f"retentions must be numbers in (0, 1], got {text!r}")
    return _check_retentions(values)


def _check_retentions(values: Iterable[float]) -> tuple[float, ...]:
    try:
        return tuple(check_retention(v) for v in values)
    except ValueError as err:
        raise ValueError(f"retentions must be numbers in (0, 1]: {err}") from None


def backend_tokens(
    checkpoint: str | None = None,
    question: str = "Describe the video.",
    backend: models.Backend | None = None,
) -> TokensFn:
    """Tokens from ``backend``, else ``scissor_viz.models.load_backend(checkpoint)`` (pixel
    descriptors when no model loads), on frames from ``scissor_viz.video.load_video``. The
    backend loads on the first video that needs tokens. With a model, VisionZip ranks tokens by
    the vision tower's attention and FastV by the LLM's attention to ``question``; without one
    VisionZip falls back to token norms and FastV is skipped."""

    def tokens_of(path: Path, frames: int) -> MethodInputs:
        nonlocal backend
        if backend is None:
            backend = models.load_backend(checkpoint)
        clip = load_video(path, frames)
        tokens = backend.encode(clip.frames, key=clip.key)
        return backend_method_inputs(backend, clip, tokens, question)

    return tokens_of


# ----------------------------------------------------------------------------- the CSV


def _key(video: str, frames: int, method: str, retention: float) -> tuple[str, int, str, str]:
    return str(video), int(frames), method, f"{float(retention):g}"


def _parse(row: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = dict(row)
    for name in _INT_FIELDS:
        out[name] = int(row[name])
    for name in _FLOAT_FIELDS:
        out[name] = float(row[name]) if row[name] != "" else None
    return out


def _repair(path: Path) -> None:
    """Cut a last line left unfinished by an interrupted write."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_rows(path: str | Path) -> list[dict[str, object]]:
    """The rows of a sweep's results.csv, typed (tau None where a method has none)."""
    path = Path(path)
    _repair(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path} has other columns than a sweep writes; use another --out")
        return [_parse(row) for row in reader]


# ----------------------------------------------------------------------------- plots


def write_plots(rows: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """One HTML per video under ``out_dir/plots`` (plotly.js written once beside them), and a
    PNG of each when kaleido is installed and works."""
    folder = Path(out_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    png = importlib.util.find_spec("kaleido") is not None
    written, stems = [], set()
    for video in dict.fromkeys(r["video"] for r in rows):
        stem, n = Path(video).stem or "video", 2
        while stem in stems:
            stem, n = f"{Path(video).stem}_{n}", n + 1
        stems.add(stem)
        mine = [r for r in rows if r["video"] == video]
        fig = metric_curves_figure(mine, {k: m.label for k, m in METHODS.items()}, video)
        html = folder / f"{stem}.html"
        fig.write_html(html, include_plotlyjs="directory")
        written.append(html)
        if png:
            try:
                fig.write_image(folder / f"{stem}.png")
                written.append(folder / f"{stem}.png")
            except Exception as err:
                png = False
                print(f"PNG export skipped: {err}", file=sys.stderr)
    return written


# ----------------------------------------------------------------------------- the sweep


def run_sweep(
    videos: Iterable[str | Path],
    out_dir: str | Path,
    *,
    frames: int = DEFAULT_FRAMES,
    retentions: Sequence[float] = DEFAULT_RETENTIONS,
    methods: Sequence[str] | None = None,
    tokens_fn: TokensFn | None = None,
    checkpoint: str | None = None,
    progress: bool = True,
    plots: bool = True,
) -> list[dict[str, object]]:
    """Run every method at every retention on every video; returns all rows (old and new).

    ``tokens_fn(path, frames)`` gives a video's :class:`MethodInputs` (default: the model backend
    for ``checkpoint`` via :func:`backend_tokens`). ``methods`` defaults to every method that
    does not need the LLM; FastV, when asked for, is skipped for videos whose tokens come without
    ``attention_fn`` (and, having no rows, such a video is decoded again on every resume). A
    video that fails to load is reported and skipped. Both are listed in results.json.
    """
    videos = [Path(v) for v in videos]
    if methods is None:  # FastV only when asked for: the default tokens carry no LLM attention
        methods = runnable_methods(llm_attention=False)
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    retentions = list(_check_retentions(retentions))
    tokens_fn = tokens_fn or backend_tokens(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    done = {_key(r["video"], r["frames"], r["method"], r["retention"]) for r in rows}
    todo = {
        v: [(m, r) for m in methods for r in retentions if _key(v, frames, m, r) not in done]
        for v in videos
    }
    total = len(videos) * len(methods) * len(retentions)
    left = sum(map(len, todo.values()))
    skipped: dict[tuple[str, str], str] = {}  # (video, method or "") -> why
    bar = tqdm(total=total, initial=total - left, disable=not progress, unit="run", desc="sweep")
    with csv_path.open("a", newline="") as f, bar:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if f.tell() == 0:
            writer.writeheader()
        for video, runs in todo.items():
            if not runs:
                continue
            bar.set_postfix_str(video.name)
            for row in _sweep_video(video, frames, runs, tokens_fn, bar, skipped):
                writer.writerow(row)
                f.flush()
                rows.append(row)
    _write_json(out / "results.json", rows, frames, retentions, methods, skipped)
    if plots and rows:
        write_plots(rows, out)
    return rows


def _sweep_video(
    video: Path,
    frames: int,
    runs: list[tuple[str, float]],
    tokens_fn: TokensFn,
    bar: tqdm,
    skipped: dict[tuple[str, str], str],
) -> Iterator[dict]:
    """The rows of one video's (method, retention) runs, one at a time; what cannot run goes
    into ``skipped``."""
    try:
        video_tokens = tokens_fn(video, frames)
    except Exception as err:
        skipped[str(video), ""] = f"{type(err).__name__}: {err}"
        bar.write(f"{video}: skipped, {skipped[str(video), '']}")
        bar.update(len(runs))
        return
    for method, retention in runs:
        bar.update()
        if METHODS[method].needs_llm_attention and video_tokens.attention_fn is None:
            skipped[str(video), method] = "needs the LLM's attention (no attention_fn)"
            continue
        row = {
            "video": str(video),
            "clip": video_tokens.clip,
            "backend": video_tokens.backend,
            "frames": int(frames),
            "frames_used": video_tokens.num_frames,
        }
        row.update(run_method(video_tokens, method, retention)[1])
        yield row


def _write_json(path: Path, rows, frames, retentions, methods, skipped) -> None:
    backends = {str(r["video"]): r["backend"] for r in rows}
    skipped = [{"video": v, "method": m, "reason": why} for (v, m), why in skipped.items()]
    data = {
        "frames": frames,
        "retentions": list(retentions),
        "methods": {m: METHODS[m].label for m in methods},
        "backends": backends,
        "skipped": skipped,
        "rows": rows,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
