"""Small video files for the video tests, written with PyAV, and a few ways to break them.

Every generated frame carries its own index as a 4x4 grid of black/white blocks (16 bits, row-major,
most significant bit first), so a test can read back *which* frame a decoder returned, at any
size and through any lossy codec: see :func:`frame_index`.
"""

from __future__ import annotations

import contextlib
import fractions
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

GRID = 4  # the index code is a GRID x GRID block pattern: 16 bits
DARK, LIGHT = 16, 235

# name -> (container file suffix, encoder, pixel format, encoder options)
CODECS = {
    "mp4-h264": (".mp4", "libx264", "yuv420p", {"preset": "ultrafast"}),
    "mp4-h264-bframes": (
        ".mp4",
        "libx264",
        "yuv420p",
        {"preset": "veryfast", "x264-params": "bframes=3:keyint=12:min-keyint=12:scenecut=0"},
    ),
    "webm-vp9": (".webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
    "mkv-h264": (".mkv", "libx264", "yuv420p", {"preset": "ultrafast"}),
    "avi-mjpeg": (".avi", "mjpeg", "yuvj420p", {}),
    "mov-h264": (".mov", "libx264", "yuv420p", {"preset": "ultrafast"}),
    "mov-hevc": (
        ".mov",
        "libx265",
        "yuv420p",
        {"preset": "ultrafast", "x265-params": "log-level=error"},
    ),
    "webm-vp8": (".webm", "libvpx", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
    "mp4-av1": (".mp4", "libsvtav1", "yuv420p", {"preset": "12"}),
}


def code_frame(
    index: int, width: int, height: int, color: tuple[int, int, int] | None = None
) -> np.ndarray:
    """An RGB frame whose 4x4 block pattern spells ``index`` (mod 2**16) in binary."""
    bits = [(index >> (GRID * GRID - 1 - k)) & 1 for k in range(GRID * GRID)]
    cells = np.where(np.array(bits).reshape(GRID, GRID), LIGHT, DARK).astype(np.uint8)
    rows = (np.arange(height) * GRID) // height
    cols = (np.arange(width) * GRID) // width
    frame = np.repeat(cells[rows][:, cols][..., None], 3, axis=2)
    if color is not None:
        frame[:] = np.array(color, dtype=np.uint8)
    return np.ascontiguousarray(frame)


def frame_index(frame: np.ndarray) -> int:
    """Read back the index that :func:`code_frame` drew, sampling each block at its centre."""
    h, w = frame.shape[:2]
    centres = (np.arange(GRID) + 0.5) / GRID
    ys, xs = (centres * h).astype(int), (centres * w).astype(int)
    gray = frame[np.ix_(ys, xs)].astype(np.int32).mean(axis=-1)
    bits = (gray > (DARK + LIGHT) / 2).ravel()
    return int(sum(int(b) << (GRID * GRID - 1 - k) for k, b in enumerate(bits)))


@contextlib.contextmanager
def ordinary_scheduling() -> Iterator[None]:
    """Put this thread's scheduling policy back after encoding: SVT-AV1 (``libsvtav1``) run as
    root leaves the thread that opened it SCHED_FIFO at priority 99, and every process started
    from it afterwards inherits that (the walk's app.py, Playwright's driver and Chromium: two
    of them busy at real-time priority on two cores starve the threads they wait for, and the
    page froze)."""
    if not hasattr(os, "sched_getscheduler"):  # not Linux
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def write_clip(
    path: Path,
    kind: str = "mp4-h264",
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 24,
    fps: int = 12,
    gop: int | None = None,
    audio: bool = False,
    color: tuple[int, int, int] | None = None,
    faststart: bool = False,
    rotation: int = 0,
) -> Path:
    """Write a clip whose frame i shows :func:`code_frame` (i); returns ``path``.

    ``rotation``: degrees counter-clockwise a player turns the stored frames (phone videos)."""
    _, encoder, pix_fmt, options = CODECS[kind]
    options = dict(options)
    if gop is not None and encoder in ("libx264", "libx265"):
        options["g"] = str(gop)
    container_options = {"movflags": "+faststart"} if faststart else {}
    with ordinary_scheduling(), av.open(str(path), "w", options=container_options) as out:
        stream = out.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        if gop is not None and encoder not in ("libx264", "libx265"):
            stream.codec_context.gop_size = gop
        astream = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            image = code_frame(i, width, height, color)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if astream is not None:
            _write_tone(out, astream, seconds=frames / fps)
    return path


def write_audio_only(path: Path, fmt: str | None = None, seconds: float = 1.0) -> Path:
    """An audio-only file (AAC in mp4 by default; ``fmt="wav"`` for PCM in a WAV container)."""
    codec = "pcm_s16le" if fmt == "wav" else "aac"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=16000)
        _write_tone(out, stream, seconds)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate, chunk = 16000, 1024
    total = int(rate * seconds)
    for start in range(0, total, chunk):
        t = (np.arange(start, min(start + chunk, total)) / rate).astype(np.float32)
        samples = (0.1 * np.sin(2 * np.pi * 440 * t))[None]
        fmt = "fltp" if stream.codec_context.name == "aac" else "flt"
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32), format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def write_no_frames(path: Path, kind: str = "mp4-h264") -> Path:
    """A container that declares a video stream but holds no frames at all."""
    _, encoder, pix_fmt, options = CODECS[kind]
    with ordinary_scheduling(), av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=12, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        out.start_encoding()  # write the header even though no packet follows
    return path


def write_image(path: Path, fmt: str = "PNG") -> Path:
    """A still image (PNG/JPEG/GIF) written to ``path``, whatever its suffix says."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(code_frame(5, 64, 48)).save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst``, like a cut-off download."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def scramble_payload(src: Path, dst: Path, keep: float = 0.0, seed: int = 0) -> Path:
    """Copy a faststart mp4 (index first, then media data) with random bytes over all but the
    first ``keep`` fraction of its media data: the index still lists every frame, but the frames
    after that point cannot be decoded."""
    data = bytearray(src.read_bytes())
    mdat = data.find(b"mdat")
    assert mdat > 0, "not an mp4 with an mdat box"
    start = mdat + 4 + int((len(data) - mdat - 4) * keep)
    rng = np.random.default_rng(seed)
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def inflate_frame_count(src: Path, dst: Path, count: int = 2**31 - 1) -> Path:
    """Copy an mp4 with its sample table ('stts') claiming ``count`` frames in the first entry:
    a damaged header that makes decord 0.6.0 abort (std::bad_alloc)."""
    data = bytearray(src.read_bytes())
    stts = data.find(b"stts")
    assert stts > 0, "no stts box"
    data[stts + 12 : stts + 16] = struct.pack(">I", count)  # entry 0: sample_count
    dst.write_bytes(bytes(data))
    return dst


# ----------------------------------------------------------------------------- hostile files


def write_playlist(path: Path, segments: list[str], *, live: bool = False) -> Path:
    """An HLS playlist (.m3u8) naming ``segments`` (paths or URLs); without its end tag when
    ``live`` (a player, or FFmpeg, then waits for more segments)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10", "#EXT-X-MEDIA-SEQUENCE:0"]
    for segment in segments:
        lines += ["#EXTINF:10.0,", segment]
    if not live:
        lines.append("#EXT-X-ENDLIST")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_concat_list(path: Path, files: list[str]) -> Path:
    """An FFmpeg concat list ("ffconcat version 1.0") naming ``files``."""
    path.write_text("ffconcat version 1.0\n" + "".join(f"file '{f}'\n" for f in files))
    return path


def write_mixed_size_mjpeg(
    path: Path, small: int = 64, large: int = 16000, frames: int = 4, fps: int = 12
) -> Path:
    """An MJPEG AVI whose header and frame 0 are ``small`` x ``small`` pixels and whose later
    frames are ``large`` x ``large`` (grey: a few MB as JPEG, ``large``**2 bytes in memory)."""
    from PIL import Image

    def jpeg(side: int, mode: str) -> bytes:
        buf = io.BytesIO()
        Image.new(mode, (side, side), 128).save(buf, format="JPEG", quality=50)
        return buf.getvalue()

    first, later = jpeg(small, "RGB"), jpeg(large, "L")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = small, small, "yuvj420p"
        for i in range(frames):
            packet = av.Packet(first if i == 0 else later)
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.time_base = fractions.Fraction(1, fps)
            packet.is_keyframe = True
            out.mux(packet)
    return path
