"""Opening, probing and sampling videos; :class:`VideoError` is the one error users see.

Three calls::

    info = probe_video("clip.mp4")                 # size, fps, duration, codec (one frame decoded)
    clip = load_video("clip.mp4", num_frames=16)   # clip.frames: (16, H, W, 3) uint8 RGB
    clip.timestamps, clip.indices, clip.key        # seconds, source frame numbers, cache key

Frames are spread evenly over the video, first and last included (:func:`sample_indices`),
never repeated, with the source's aspect ratio and display rotation, decoded straight to at most
``max_side`` pixels. Probing and decoding (PyAV, else decord) run in child processes with time
and memory limits that die with this one, so a damaged file's crash or hang costs a child, never
the app; this process never imports decord. Only plain single-file containers are opened
(:data:`VIDEO_FORMATS`, by the demuxer FFmpeg picks, not the file's name): playlists and lists
that name other files are refused before anything they name is read. Every decoded frame is held
to :data:`MAX_PIXELS`. Messages name a file by its base name only. How decord fails on bad
input, and why it is isolated like this: docs/decoding.md.
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

MAX_FRAMES = 128  # most frames one clip may ask for
DEFAULT_FRAMES = 16  # the paper's demo
DEFAULT_MAX_SIDE = 768  # frames are decoded with their long side at most this many pixels
MAX_PIXELS = 8192 * 8192  # larger sources are refused before decoding (8K UHD is 33 Mpx)
MAX_SOURCE_FRAMES = 10_000_000  # a header claiming more is not trusted to decord (46 h at 60 fps)
DECODE_TIMEOUT = 300.0  # seconds the decoding child may take
PROBE_TIMEOUT = 30.0  # seconds the probing child may take (open the file, decode one frame)
TEMP_PREFIX = "scissor-viz-video-"  # child work folders: TEMP_PREFIX + "<server pid>-<random>"
STALE_AFTER = 2 * DECODE_TIMEOUT  # a work folder this old belongs to no running child
ASSETS = Path(__file__).resolve().parent.parent / "assets"
REENCODE = "ffmpeg -i input -c:v libx264 -pix_fmt yuv420p output.mp4"
PR_SET_PDEATHSIG = 1  # prctl option (Linux): the signal a process gets when its parent dies
# Demuxers whose files are decoded: single-file containers that never open another file or URL
# (mov's external references stay off, FFmpeg's default). HLS playlists, concat lists, image
# sequences and every other demuxer are refused by FFmpeg before it reads their header.
VIDEO_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "gif")
# Single-file formats FFmpeg may also open, only to tell the visitor what the file holds.
NAMED_FORMATS = ("png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "wav", "mp3")
ACCEPTED = "MP4, MOV, MKV, WebM, AVI, MPEG-TS or animated GIF"
OPEN_OPTIONS = {
    "format_whitelist": ",".join(VIDEO_FORMATS + NAMED_FORMATS),
    "protocol_whitelist": "file",
}
# Address space (RLIMIT_AS) a probe or decode child may map: an 8192 x 8192 H.264 clip peaks at
# 1.1 GiB on 2 cores (frame threads add frames); beyond it a hostile file fails, not the server.
CHILD_MEMORY = 4 << 30


class VideoError(ValueError):
    """A video that cannot be used, with a message that says why and what to do."""


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

    def cell_bounds(self, grid: int = 14) -> tuple[np.ndarray, np.ndarray]:
        """Pixel edges of the model's ``grid`` x ``grid`` token grid on these frames: cell (r, c)
        covers rows ``ys[r]:ys[r + 1]`` and columns ``xs[c]:xs[c + 1]``, the pixels whose centres
        lie in [r H / grid, (r + 1) H / grid) x [c W / grid, (c + 1) W / grid)."""
        h, w = self.frames.shape[1:3]
        k = np.arange(grid + 1, dtype=np.int64)
        return -((grid - 2 * k * h) // (2 * grid)), -((grid - 2 * k * w) // (2 * grid))


# ----------------------------------------------------------------------------- public helpers


def sample_indices(num_frames_in_video: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly over ``[0, num_frames_in_video - 1]``, both ends
    included, rounded half up (LLaVA-OneVision's demo truncates instead: at most one frame
    apart). All frames when the video has no more than ``n``."""
    total, n = _check_count(num_frames_in_video, "num_frames_in_video"), _check_count(n, "n")
    if n >= total:
        return np.arange(total, dtype=np.int64)
    return np.floor(np.linspace(0, total - 1, n) + 0.5).astype(np.int64)


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


# ----------------------------------------------------------------------------- probe


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


def _memory_message(name: str, limit: int) -> str:
    return (
        f"Reading {name!r} needed more than the {limit / 2**30:g} GiB of memory a video may "
        f"use, and was stopped. Try a smaller or shorter video (e.g. `{REENCODE}`)."
    )


def _check_pixels(name: str, width: int, height: int, max_pixels: int, what: str = "") -> None:
    if width * height > max_pixels:
        raise VideoError(_pixels_message(name, width, height, what))


def _pixels_message(name: str, width: int, height: int, what: str = "") -> str:
    return (
        f"{name!r}{what} is {width}x{height} pixels; frames up to "
        f"{MAX_PIXELS // 10**6} megapixels (e.g. 8192x8192) are supported. "
        "Scale it down first, e.g. `ffmpeg -i input -vf scale=1920:-2 output.mp4`."
    )


def _open_container(path: Path) -> av.container.InputContainer:
    """The file opened by PyAV with one of the allowed demuxers, or a :class:`VideoError` that
    says why it cannot be. A refused demuxer (an HLS playlist, say) fails before its header is
    read, so nothing it names is opened."""
    name = path.name
    try:
        return av.open(str(path), metadata_errors="replace", options=dict(OPEN_OPTIONS))
    except av.error.InvalidDataError:
        raise VideoError(_unreadable_message(path)) from None
    except av.error.ArgumentError:  # FFmpeg recognised a format that is not on the allow-list
        raise VideoError(_refused_message(name, _head(path))) from None
    except EOFError:  # matroska/webm header with nothing after it
        raise VideoError(
            f"{name!r} ends before any video data: it is incomplete (a cut-off "
            "download or recording?). Download or export it again."
        ) from None
    except (av.FFmpegError, OSError) as e:
        raise VideoError(
            f"Cannot open {name!r} ({e.strerror or type(e).__name__}): it is damaged or not a "
            f"video. Re-encode it, e.g. `{REENCODE}`, or try another file."
        ) from None


def _moving_picture_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    """The container's video stream, or a :class:`VideoError` for still images, audio-only
    files and codecs without a decoder."""
    fmt = container.format.name
    stream = _video_stream(container)
    if (
        fmt == "image2"
        or fmt.endswith("_pipe")
        or (fmt == "gif" and stream is not None and stream.frames <= 1)
    ):
        kind = fmt.removesuffix("_pipe").upper() if fmt != "image2" else "image sequence"
        raise VideoError(
            f"{name!r} is a still image ({kind}), not a video. Upload a video ({ACCEPTED})."
        )
    if stream is None:
        audio = [s.codec_context.name for s in container.streams.audio if s.codec_context]
        what = f"only audio ({', '.join(audio)})" if audio else "no video track"
        raise VideoError(
            f"{name!r} has {what}: there are no pictures to look at. Upload a "
            "video file; if this was a download, it may be incomplete."
        )
    if not _is_video_format(fmt):  # an MP3's cover picture, say
        raise VideoError(_refused_message(name, b""))
    if stream.codec_context is None:
        raise VideoError(
            f"{name!r} uses a video codec this app cannot decode. Re-encode it "
            f"to H.264, e.g. `{REENCODE}`."
        )
    return stream


def _is_video_format(name: str) -> bool:
    """Whether FFmpeg's demuxer ``name`` (e.g. "mov,mp4,m4a,3gp,3g2,mj2") is one we decode."""
    return not set(name.split(",")).isdisjoint(VIDEO_FORMATS)


def _head(path: Path, size: int = 512) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def _refused_message(name: str, head: bytes) -> str:
    """Why a file FFmpeg could open in a format that is not accepted is refused."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"#EXTM3U"):
        what = "an HLS playlist, which names other files or addresses to read"
    elif text.startswith(b"ffconcat"):
        what = "a concat list, which names other files to read"
    else:
        what = "not a video format this app accepts"
    return (
        f"{name!r} is {what}: only video files are accepted ({ACCEPTED}). Upload the video "
        f"file itself, or re-encode it, e.g. `{REENCODE}`."
    )


def _probe_file(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[VideoInfo, bool]:
    """The probe itself (run in the child): the header, then the first decoded frame, both
    checked against ``max_pixels`` (a header may say 0x0)."""
    name = path.name
    with _open_container(path) as container:
        stream = _moving_picture_stream(container, name)
        cc = stream.codec_context
        width, height = cc.width, cc.height
        _check_pixels(name, width, height, max_pixels)  # before decoding anything
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        first = _first_frame(container, stream, name, max_pixels)
        _check_pixels(name, first.width, first.height, max_pixels)
        if width * height == 0:
            width, height = first.width, first.height
        rotation = _rotation(first)
        if rotation in (90, 270):
            width, height = height, width
        if not duration and fps:  # a still-like stream with one timestamp
            duration = 1.0 / fps
        # decord sizes its frame index by the header's frame count (or fps x duration) and
        # aborts when that allocation fails: keep implausible headers away from it
        estimate = round(duration * fps)
        header = max(0, stream.frames)
        plausible = not (header and estimate and header > 4 * estimate + 100)
        num_frames = header if header and plausible else max(1, estimate)
        decord_guess = header or fps * (container.duration or 0) / av.time_base
        trusted = plausible and decord_guess <= MAX_SOURCE_FRAMES
    info = VideoInfo(path, num_frames, fps, duration, width, height, cc.name, rotation)
    return info, trusted


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


def _unreadable_message(path: Path) -> str:
    """Why FFmpeg found no known format, guessed from the first bytes."""
    name = path.name
    head = _head(path)
    if head.lstrip().startswith((b"#EXTM3U", b"ffconcat")):  # a list FFmpeg did not recognise
        return _refused_message(name, head)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return (
            f"{name!r} is a web page (HTML), not a video: the download probably failed or "
            "saved a link's page. Download the video itself."
        )
    if head[4:8] == b"ftyp":
        return (
            f"{name!r} is an MP4/MOV file whose index (the 'moov' box) is missing or cut "
            "short: it is incomplete (a cut-off download, or a recording that was not stopped "
            "properly). Download or export it again."
        )
    try:
        head.decode("utf-8")
        is_text = all(c >= 32 or c in b"\t\r\n" for c in head)
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return f"{name!r} contains text, not video. Upload a video file ({ACCEPTED})."
    return (
        f"{name!r} is not a video format this app can read, or it is damaged. Re-encode it "
        f"to MP4 (H.264), e.g. `{REENCODE}`."
    )


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    if not container.streams.video:
        return None
    try:
        return container.streams.best("video") or container.streams.video[0]
    except (av.FFmpegError, ValueError):
        return container.streams.video[0]


def _first_frame(container, stream, name: str, max_pixels: int = MAX_PIXELS) -> av.VideoFrame:
    """Decode the first frame, proving the stream holds pictures this FFmpeg can decode."""
    try:
        decoded = container.decode(_limit(stream, max_pixels))
        for frame in _checked_frames(decoded, name, max_pixels):
            return frame
    except av.error.DecoderNotFoundError:
        raise VideoError(
            f"{name!r} uses a video codec ({stream.codec_context.name}) this app cannot decode. "
            f"Re-encode it to H.264, e.g. `{REENCODE}`."
        ) from None
    except av.FFmpegError as e:
        raise VideoError(
            f"{name!r} is damaged: its first frame cannot be decoded ({e.strerror}). "
            f"If it came from a download, it may be incomplete; otherwise re-encode "
            f"it, e.g. `{REENCODE}`."
        ) from None
    raise VideoError(
        f"{name!r} has a video track without any frames. Export or download the video again."
    )


def _limit(stream: av.VideoStream, max_pixels: int) -> av.VideoStream:
    """``stream`` with its decoder told the largest picture it may allocate (FFmpeg refuses a
    bigger one before allocating it; a stream may change size at any frame)."""
    stream.codec_context.options = dict(stream.codec_context.options, max_pixels=str(max_pixels))
    return stream


def _checked_frames(decoded, name: str, max_pixels: int):
    """The frames of ``decoded`` (from a :func:`_limit`-ed decoder), each held to
    ``max_pixels``: a :class:`VideoError` at the first larger one, found by FFmpeg or here."""
    try:
        for frame in decoded:
            _check_pixels(name, frame.width, frame.height, max_pixels, ": a frame")
            yield frame
    except av.error.ArgumentError:  # EINVAL: a picture size refused (damage is INVALIDDATA)
        raise VideoError(
            f"{name!r} has a frame larger than {MAX_PIXELS // 10**6} megapixels (or of an "
            "invalid size): frames up to 8192x8192 are supported. Re-encode it "
            "at one size, e.g. `ffmpeg -i input -vf scale=1920:-2 output.mp4`."
        ) from None


def _rotation(frame: av.VideoFrame) -> int:
    rotation = round(getattr(frame, "rotation", 0) or 0) % 360
    return rotation if rotation in (0, 90, 180, 270) else 0


# ----------------------------------------------------------------------------- load


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


def _is_whole(x) -> bool:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    return math.isfinite(x) and float(x).is_integer()


def _check_count(x, what: str) -> int:
    if not _is_whole(x) or x < 1:
        raise VideoError(f"{what} must be a whole number of at least 1, got {x!r}.")
    return int(x)


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


# ----------------------------------------------------------------------------- child process

# Runs this file as a plain module (not through the package, which would import torch) in a
# fresh interpreter, with the working directory off sys.path.
_BOOT = (
    "import sys, importlib.util as u; del sys.path[0]; "
    "s = u.spec_from_file_location('_scissor_viz_video_worker', sys.argv[1]); "
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m); "
    "m._worker(sys.argv[2])"
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
    return [sys.executable, "-c", _BOOT, str(Path(__file__).resolve()), json.dumps(job)]


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
            else:  # named before folders carried their server's pid
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


def _worker(job_json: str) -> None:
    """Child side of :func:`_run_child`: probe (result.json) or decode (frames.npy too)."""
    job = json.loads(job_json)
    _die_with_parent(job["parent"])
    _limit_memory(job["memory"])
    out = Path(job["out"])
    if job["kind"] == "probe":
        result = _probe_job(job)
    else:
        result = _decode_job(job, out)
    (out / "result.tmp").write_text(json.dumps(result))
    (out / "result.tmp").rename(out / "result.json")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: decoder threads have nothing left to say


def _limit_memory(limit: int) -> None:
    """Cap this child's address space at ``limit`` bytes (where the OS allows it): a hostile
    file then fails an allocation here instead of taking the server's memory."""
    try:
        import resource
    except ImportError:  # not Unix
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )


def _die_with_parent(parent: int) -> None:
    """End this child when the process that started it ends (killed mid-decode, say): the
    kernel's parent-death signal on Linux, else a thread that watches the parent's pid."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):  # not Linux
        armed = False
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def _probe_job(job: dict) -> dict:
    try:
        info, trusted = _probe_file(Path(job["path"]), job["max_pixels"])
    except VideoError as e:
        return {"error": "video", "message": str(e)}
    except MemoryError:  # FFmpeg's ENOMEM too: past the child's CHILD_MEMORY
        return {"error": "video", "message": _memory_message(Path(job["path"]).name, job["memory"])}
    except Exception as e:  # a damaged file may trip anything in PyAV
        return {"error": "probe", "message": f"{type(e).__name__}: {e}"}
    fields = {k: v for k, v in vars(info).items() if k != "path"}
    return {"info": fields, "trusted": trusted}


def _decode_job(job: dict, out: Path) -> dict:
    """PyAV first, always: it opens allowed containers only and holds every frame to the cap,
    so decord (which cannot be told either) only gets files PyAV did not refuse, when PyAV
    failed on them ("auto") or as the decoder asked for by name ("decord")."""
    path, wanted = Path(job["path"]), job["backend"]
    args = job["path"], job["n"], job["width"], job["height"], job["max_pixels"]
    errors = []
    for backend in ("pyav",) if wanted == "pyav" else ("pyav", "decord"):
        try:
            if backend == "decord":  # decord opens what PyAV accepts, only
                with _open_container(path) as container:
                    _moving_picture_stream(container, path.name)
            decode = _decode_decord if backend == "decord" else _decode_pyav
            frames, indices, timestamps, total = decode(*args)
        except VideoError as e:  # refused: no other decoder may try
            return {"error": "video", "message": str(e)}
        except MemoryError:  # FFmpeg's ENOMEM too: past the child's CHILD_MEMORY
            return {"error": "video", "message": _memory_message(path.name, job["memory"])}
        except Exception as e:
            message = str(e).strip().splitlines()
            errors.append(f"{backend}: {message[-1] if message else type(e).__name__}")
            continue
        if backend != wanted != "auto":  # PyAV's pass was decord's check
            continue
        np.save(out / "frames.npy", np.ascontiguousarray(frames, dtype=np.uint8))
        return {
            "indices": [int(i) for i in indices],
            "total": int(total),
            "backend": backend,
            "timestamps": [float(t) for t in timestamps],
            "errors": errors,
        }
    return {"error": "decode", "message": "; ".join(errors)}


def _decode_decord(path: str, n: int, width: int, height: int, max_pixels: int = MAX_PIXELS):
    """decord's sampling (it cannot be told ``max_pixels``: PyAV has decoded the file first)."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height)
    total = len(reader)
    indices = sample_indices(total, n)
    frames = reader.get_batch(indices).asnumpy()
    timestamps = reader.get_frame_timestamp(indices)[:, 0].astype(np.float64)
    return frames, indices, timestamps, total


def _decode_pyav(path: str, n: int, width: int, height: int, max_pixels: int = MAX_PIXELS):
    """The same sampling with PyAV: index the packets, then seek to the keyframe before each
    wanted frame (or keep decoding when it lies ahead in the same group of pictures). Every
    decoded frame is held to ``max_pixels``."""
    name = Path(path).name
    with _open_container(Path(path)) as container:
        stream = _limit(_video_stream(container), max_pixels)
        stream.thread_type = "AUTO"
        pts, keys = [], []
        for packet in container.demux(stream):
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None or packet.size == 0:
                continue
            pts.append(t)
            if packet.is_keyframe:
                keys.append(t)
        if not pts:
            raise RuntimeError("no video packets")
        pts.sort()
        keys = sorted(keys) or pts[:1]
        indices = sample_indices(len(pts), n)
        start = stream.start_time if stream.start_time is not None else pts[0]
        frames, timestamps = [], []
        decoded, last = None, None
        for target in (pts[i] for i in indices):
            key = keys[max(0, bisect.bisect_right(keys, target) - 1)]
            if decoded is None or last is None or last >= target or key > last:
                decoded, last = _seek(container, stream, key, name, max_pixels), None
            frame = _decode_until(decoded, target)
            if frame is not None and frame.pts > target and last is None and key > pts[0]:
                decoded = _seek(container, stream, pts[0], name, max_pixels)  # overshot: again
                frame = _decode_until(decoded, target)
            if frame is None:
                raise RuntimeError(f"frame at pts {target} could not be decoded")
            last = frame.pts
            k = _rotation(frame) // 90
            w, h = (height, width) if k % 2 else (width, height)
            image = frame.to_ndarray(format="rgb24", width=w, height=h)
            frames.append(np.rot90(image, k) if k else image)
            timestamps.append(float((frame.pts - start) * stream.time_base))
        return np.stack(frames), indices, np.array(timestamps), len(pts)


def _seek(container, stream, pts: int, name: str, max_pixels: int):
    container.seek(pts, stream=stream, backward=True)
    return _checked_frames(container.decode(stream), name, max_pixels)


def _decode_until(decoded, target: int):
    """The first frame at or after ``target`` (pts), or None when the stream ends first."""
    for frame in decoded:
        if frame.pts is not None and frame.pts >= target:
            return frame
    return None
