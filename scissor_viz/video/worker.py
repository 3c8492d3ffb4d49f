"""The child process's side of video reading: probe or decode one file and write the result
to a work folder. Imports nothing of the package: the parent (clips.py) starts a fresh
interpreter that loads this file by path, so the child never imports torch. Also the home of
what both sides share: :class:`VideoError`, the pixel cap, the frame sampling, the messages.
"""

from __future__ import annotations

import bisect
import ctypes
import json
import math
import numbers
import os
import signal
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np

MAX_PIXELS = 8192 * 8192  # larger sources are refused before decoding (8K UHD is 33 Mpx)
MAX_SOURCE_FRAMES = 10_000_000  # a header claiming more is not trusted to decord (46 h at 60 fps)
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


class VideoError(ValueError):
    """A video that cannot be used, with a message that says why and what to do."""


def sample_indices(num_frames_in_video: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly over ``[0, num_frames_in_video - 1]``, both ends
    included, rounded half up (LLaVA-OneVision's demo truncates instead: at most one frame
    apart). All frames when the video has no more than ``n``."""
    total, n = _check_count(num_frames_in_video, "num_frames_in_video"), _check_count(n, "n")
    if n >= total:
        return np.arange(total, dtype=np.int64)
    return np.floor(np.linspace(0, total - 1, n) + 0.5).astype(np.int64)


def _is_whole(x) -> bool:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    return math.isfinite(x) and float(x).is_integer()


def _check_count(x, what: str) -> int:
    if not _is_whole(x) or x < 1:
        raise VideoError(f"{what} must be a whole number of at least 1, got {x!r}.")
    return int(x)


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


def _probe_file(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[dict, bool]:
    """The probe itself: (the VideoInfo fields but the path, whether decord may be trusted with
    the header), the header then the first decoded frame checked against ``max_pixels`` (a
    header may say 0x0)."""
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
    info = dict(
        num_frames=num_frames,
        fps=fps,
        duration=duration,
        width=width,
        height=height,
        codec=cc.name,
        rotation=rotation,
    )
    return info, trusted


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


def main(job_json: str) -> None:
    """Run one job (a probe: result.json; a decode: frames.npy too) in this child process."""
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
    return {"info": info, "trusted": trusted}


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
