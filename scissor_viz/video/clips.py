"""Opening, probing and sampling videos (the parent's side); :class:`VideoError` is the one
error users see.

Three calls::

    info = probe_video("clip.mp4")                 # size, fps, duration, codec (one frame decoded)
    clip = load_video("clip.mp4", num_frames=16)   # clip.frames: (16, H, W, 3) uint8 RGB
    clip.timestamps, clip.indices, clip.key        # seconds, source frame numbers, cache key

Frames are spread evenly over the video, first and last included (:func:`sample_indices`),
never repeated, with the source's aspect ratio and display rotation, decoded straight to at most
``max_side`` pixels. Probing and decoding (PyAV, else decord) run in child processes
(worker.py) with time and memory limits that die with this one, so a damaged file's crash or
hang costs a child, never the app; this process never imports decord. Only plain single-file
containers are opened (:data:`~scissor_viz.video.worker.VIDEO_FORMATS`, by the demuxer FFmpeg
picks, not the file's name): playlists and lists that name other files are refused before
anything they name is read. Every decoded frame is held to :data:`MAX_PIXELS`. Messages name a
file by its base name only. How decord fails on bad input, and why it is isolated like this:
docs/decoding.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scissor_viz.video import worker
from scissor_viz.video.worker import (
    MAX_PIXELS,
    REENCODE,
    VideoError,
    _is_whole,
)

MAX_FRAMES = 128  # most frames one clip may ask for
DEFAULT_FRAMES = 16  # the paper's demo
DEFAULT_MAX_SIDE = 768  # frames are decoded with their long side at most this many pixels
DECODE_TIMEOUT = 300.0  # seconds the decoding child may take
PROBE_TIMEOUT = 30.0  # seconds the probing child may take (open the file, decode one frame)
TEMP_PREFIX = "scissor-viz-video-"  # child work folders: TEMP_PREFIX + "<server pid>-<random>"
STALE_AFTER = 2 * DECODE_TIMEOUT  # a work folder this old belongs to no running child
ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Address space (RLIMIT_AS) a probe or decode child may map: an 8192 x 8192 H.264 clip peaks at
# 1.1 GiB on 2 cores (frame threads add frames); beyond it a hostile file fails, not the server.
CHILD_MEMORY = 4 << 30


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. Sizes are as displayed (after rotation), in pixels."""

    path: Path
    num_frames: int  # from the container (duration x fps where it keeps no count); exact in a clip
    fps: float
    duration: float  # seconds
    width: int
    height: int
    codec: str
    rotation: int = 0  # degrees counter-clockwise the stored frames are turned for display


@dataclass(frozen=True, eq=False)
class VideoClip:
    """Frames sampled from a video, with where they came from. The arrays are read-only (clips
    are shared through caches): copy before drawing on them."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (T,) float64 seconds from the start of the video
    indices: np.ndarray  # (T,) int64 frame numbers in the video
    info: VideoInfo  # info.num_frames is the decoder's exact count
    key: str  # content fingerprint of (file bytes, sampled frames, frame size)
    backend: str = "decord"  # the decoder that produced the frames: "decord" or "pyav"

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames as returned."""
        return self.frames.shape[2], self.frames.shape[1]


def output_size(
    width: int, height: int, max_side: int | None = DEFAULT_MAX_SIDE
) -> tuple[int, int]:
    """(width, height) scaled down uniformly so the long side is at most ``max_side``."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def fingerprint(path: str | os.PathLike) -> str:
    """A cheap content hash of a file: its size, its first and last MiB and 14 slices of 64 KiB
    spread between them. Copies of a file share it, whatever their names."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(f"scissor-viz-video-1:{size}".encode(), digest_size=16)
    mib, piece = 1 << 20, 1 << 16
    offsets = [0, max(0, size - mib)] + [int(f * size) for f in np.linspace(0, 1, 16)[1:-1]]
    with path.open("rb") as f:
        for offset, length in zip(offsets, [mib, mib] + [piece] * 14):
            f.seek(offset)
            digest.update(f.read(length))
    return digest.hexdigest()


def example_videos() -> list[Path]:
    """The example clips shipped in ``assets/``."""
    return sorted(ASSETS.glob("*.mp4")) if ASSETS.is_dir() else []


def probe_video(path: str | os.PathLike, timeout: float = PROBE_TIMEOUT) -> VideoInfo:
    """Read a video's size, rate, length and codec with PyAV, decoding only its first frame
    (in a child process stopped after ``timeout`` seconds).

    Raises :class:`VideoError` for anything that is not a usable video."""
    return _probe(path, timeout)[0]


def _probe(path: str | os.PathLike, timeout: float = PROBE_TIMEOUT) -> tuple[VideoInfo, bool]:
    """(info, whether decord may be trusted with the file's header), probed in a child."""
    path = _check_path(path)
    job = {"kind": "probe", "path": str(path.resolve()), "max_pixels": MAX_PIXELS}
    result = _run_child(job, timeout)
    if "info" not in result:
        raise VideoError(_probe_message(path.name, result))
    return VideoInfo(path, **result["info"]), bool(result["trusted"])


def _probe_message(name: str, result: dict) -> str:
    if result.get("error") == "video":  # the child's VideoError, already in words
        return result["message"]
    if result.get("timeout"):
        return (
            f"Reading {name!r} took longer than {result['timeout']:g} s and was stopped: the "
            f"file is probably damaged. Re-encode it, e.g. `{REENCODE}`, or try another file."
        )
    if result.get("error") == "start":
        return f"Could not start the video reader: {result['message']} (a server problem)."
    return (
        f"Cannot read {name!r} as a video ({without_paths(result.get('message', ''))}). If it "
        f"came from a download, it may be incomplete; otherwise re-encode it, e.g. `{REENCODE}`."
    )


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise VideoError(f"Expected a video file path, got {type(path).__name__}.")
    path = Path(path)
    if not path.exists():
        raise VideoError(f"No file {path.name!r}. Check the path (or upload the video again).")
    if path.is_dir():
        raise VideoError(f"{path.name!r} is a folder, not a video file.")
    if not path.is_file():
        raise VideoError(f"{path.name!r} is not a regular file (a device or a pipe?).")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as e:
        raise VideoError(f"Cannot read {path.name!r}: {e.strerror or e}.") from None
    if size == 0:
        raise VideoError(
            f"{path.name!r} is empty (0 bytes): the upload or download did not "
            "finish. Try again with the complete file."
        )
    return path


def load_video(
    path: str | os.PathLike,
    num_frames: int = DEFAULT_FRAMES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    *,
    backend: str = "auto",
    timeout: float = DECODE_TIMEOUT,
) -> VideoClip:
    """Sample ``num_frames`` RGB frames evenly over a video, the long side at most ``max_side``.

    ``backend``: "auto" (PyAV, then decord if PyAV fails on a file it does not refuse), "pyav"
    or "decord". Decoding runs in a child process killed after ``timeout`` seconds. Raises
    :class:`VideoError`."""
    n = _check_num_frames(num_frames)
    if max_side is not None and not (_is_whole(max_side) and 16 <= max_side <= 16384):
        raise VideoError(
            f"max_side must be a whole number of pixels from 16 to 16384 (or None), "
            f"got {max_side!r}."
        )
    if backend not in ("auto", "decord", "pyav"):
        raise VideoError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}.")
    info, trusted = _probe(path)
    width, height = output_size(
        info.width, info.height, None if max_side is None else int(max_side)
    )
    if backend == "auto" and not trusted:
        backend = "pyav"
    result = _decode_isolated(info, n, width, height, backend, timeout)
    if "error" in result:
        raise VideoError(_decode_message(info.path.name, result))
    frames, indices = result["frames"], np.asarray(result["indices"], dtype=np.int64)
    timestamps = np.asarray(result["timestamps"], dtype=np.float64)
    if frames.shape != (len(indices), height, width, 3) or frames.dtype != np.uint8:
        raise VideoError(
            f"{info.path.name!r}: the decoder returned frames of shape "
            f"{frames.shape}, expected {(len(indices), height, width, 3)}."
        )
    info = replace(info, num_frames=int(result["total"]))
    key = _clip_key(info.path, indices, width, height)
    for array in (frames, timestamps, indices):
        array.flags.writeable = False
    return VideoClip(frames, timestamps, indices, info, key, result["backend"])


def _check_num_frames(num_frames) -> int:
    if not (_is_whole(num_frames) and 1 <= num_frames <= MAX_FRAMES):
        raise VideoError(
            f"num_frames must be a whole number from 1 to {MAX_FRAMES}, got {num_frames!r}."
        )
    return int(num_frames)


def _clip_key(path: Path, indices: np.ndarray, width: int, height: int) -> str:
    digest = hashlib.blake2b(fingerprint(path).encode(), digest_size=16)
    digest.update(f"{width}x{height}:".encode())
    digest.update(np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return digest.hexdigest()


def _decode_message(name: str, result: dict) -> str:
    if result.get("error") == "video":  # refused by the child (a format, a frame's size)
        return result["message"]
    if result.get("timeout"):
        return (
            f"Decoding {name!r} took longer than {result['timeout']:g} s and was stopped. "
            f"Try fewer frames, or a shorter or smaller video (e.g. `{REENCODE}`)."
        )
    if result.get("error") == "start":
        return f"Could not start the video decoder: {result['message']} (a server problem)."
    detail = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", result.get("message", ""))
    detail = without_paths(detail).strip()
    detail = f" (details: {detail[:300]})" if detail else ""
    what = (
        "The video decoder crashed on"
        if result.get("crashed")
        else "Could not decode the frames of"
    )
    return (
        f"{what} {name!r}: the file is probably damaged or incomplete. Re-encode it, e.g. "
        f"`{REENCODE}`, or try another file.{detail}"
    )


# Loads worker.py as a plain module (not through the package, which would import torch) in a
# fresh interpreter, with the working directory off sys.path.
_BOOT = (
    "import sys, importlib.util as u; del sys.path[0]; "
    "s = u.spec_from_file_location('_scissor_viz_video_worker', sys.argv[1]); "
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m); "
    "m.main(sys.argv[2])"
)


def _decode_isolated(
    info: VideoInfo, n: int, width: int, height: int, backend: str, timeout: float
) -> dict:
    """Decode in a child process; a dict with frames/indices/timestamps/total/backend, or with
    "error" (and "crashed" or "timeout" when the child died)."""
    job = {
        "kind": "decode",
        "path": str(info.path.resolve()),
        "n": n,
        "width": width,
        "height": height,
        "backend": backend,
        "max_pixels": MAX_PIXELS,
    }
    return _run_child(job, timeout)


def _child_command(job: dict) -> list[str]:
    return [sys.executable, "-c", _BOOT, str(Path(worker.__file__).resolve()), json.dumps(job)]


def _run_child(job: dict, timeout: float) -> dict:
    """Run ``job`` in a child process (which dies with this one) in its own work folder; its
    result dict (with "frames" loaded for a decode), or one with "error" (and "crashed" or
    "timeout" when the child died or was stopped)."""
    _clean_stale_folders()
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
        job = dict(job, out=tmp, parent=os.getpid(), memory=CHILD_MEMORY)
        log = Path(tmp) / "stderr.txt"
        try:
            with log.open("wb") as stderr:
                proc = subprocess.run(
                    _child_command(job),
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    timeout=timeout,
                )
        except subprocess.TimeoutExpired:
            return {"error": "timeout", "timeout": timeout}
        except OSError as e:  # no interpreter to start (sys.executable unset, out of processes)
            return {"error": "start", "message": str(e)}
        try:
            result = json.loads((Path(tmp) / "result.json").read_text())
            if job["kind"] == "decode" and "error" not in result:
                result["frames"] = np.load(Path(tmp) / "frames.npy")
            return result
        except (OSError, ValueError):  # no (complete) result: the child died
            return {"error": "crash", "crashed": True, "message": _death(proc.returncode, log)}


_last_cleaning = [-math.inf]


def _clean_stale_folders(every: float = 600.0) -> None:
    """Remove work folders left by children of servers that were killed mid-decode: those of
    processes that no longer run (and unnamed ones older than ``STALE_AFTER``), at most every
    ``every`` seconds."""
    now = time.monotonic()
    if now - _last_cleaning[0] < every:
        return
    _last_cleaning[0] = now
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            owner = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
            if owner.isdigit():
                stale = not _running(int(owner))
            else:  # no server pid in the name: judged by its age
                stale = time.time() - folder.stat().st_mtime > STALE_AFTER
            if stale and folder.is_dir() and folder.stat().st_uid == os.getuid():
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def without_paths(text: str) -> str:
    """``text`` with every absolute file path shortened to its last part (error messages
    must not show the server's folders)."""
    path = r"(?<![\w.])(?:/[^\s'\"/:,;()]+)+"
    return re.sub(path, lambda m: m.group(0).rsplit("/", 1)[-1], text)


def _death(code: int, log: Path) -> str:
    """How a child process ended, with the last line it wrote to stderr."""
    why = f"exit status {code}"
    if code < 0:
        try:
            why = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            why = f"killed by signal {-code}"
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return f"{why}; {lines[-1] if lines else 'no message'}"
