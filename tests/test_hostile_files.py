"""Hostile video files (issue 18, findings 1, 2 and 7): uploads that name other files, and
frames that grow after the first.

* an HLS playlist (.m3u8) whose segment is a real clip elsewhere on the server, a concat list,
  a live playlist (no ``#EXT-X-ENDLIST``) pointing at an upload and a playlist naming a missing
  segment are refused by the demuxer allow-list before anything they name is opened: quickly
  (a probe child's start, never a time limit), with one readable message;
* an MJPEG AVI whose frame 0 is 64 x 64 and whose later frames are 16000 x 16000 is refused
  when the first large frame is met (FFmpeg is told the maximum), never handed to decord;
* the same through the running app's ``/compress`` (gradio_client), and a normal ``/compress``
  right after them is not delayed.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from scissor_viz.video import VideoError, load_video, probe_video
from scissor_viz.video import clips as video_clips
from tests.video_fixtures import (
    write_clip,
    write_concat_list,
    write_mixed_size_mjpeg,
    write_playlist,
)

FAST = 15.0  # seconds a refusal may take: a child's start (about 1 s alone), not a time limit
PLAYLIST, CONCAT = "an HLS playlist", "a concat list"
TOO_BIG = "larger than 67 megapixels"
REFUSED = {  # file -> words its refusal must contain
    "playlist": PLAYLIST,
    "playlist-ts": PLAYLIST,
    "playlist-fifo": PLAYLIST,
    "playlist-named-mp4": PLAYLIST,
    "live": PLAYLIST,
    "missing-segment": PLAYLIST,
    "concat": CONCAT,
    "concat-named-mp4": CONCAT,
    "mixed-size": TOO_BIG,
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """The hostile files, in one folder; the files they name live in another ("the server")."""
    server = tmp_path_factory.mktemp("server-disk")
    secret = write_clip(server / "secret.mp4", frames=24)
    secret_ts = write_clip(server / "secret.ts", frames=24)  # MPEG-TS, as in the finding
    fifo = server / "never-read.ts"
    os.mkfifo(fifo)  # whoever opens it for reading waits for a writer: none comes
    d = tmp_path_factory.mktemp("uploads")
    upload = write_clip(d / "upload.mp4", frames=24)
    return {
        "playlist": write_playlist(d / "playlist.m3u8", [str(secret)]),
        "playlist-ts": write_playlist(d / "ts.m3u8", [str(secret_ts)]),
        "playlist-fifo": write_playlist(d / "fifo.m3u8", [str(fifo)]),
        "playlist-named-mp4": write_playlist(d / "holiday.mp4", [str(secret)]),
        "live": write_playlist(d / "live.m3u8", [str(upload)], live=True),
        "missing-segment": write_playlist(d / "missing.m3u8", [str(d / "gone.ts")]),
        "concat": write_concat_list(d / "list.ffconcat", [str(secret), str(secret)]),
        "concat-named-mp4": write_concat_list(d / "list.mp4", [str(fifo)]),
        "mixed-size": write_mixed_size_mjpeg(d / "mixed.avi"),
        "upload": upload,
    }


def refusal(call, *args, **kwargs) -> tuple[str, float]:
    """The VideoError message of ``call(*args)``, and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(VideoError) as info:
        call(*args, **kwargs)
    return str(info.value), time.perf_counter() - start


# ----------------------------------------------------------------------------- library


@pytest.mark.parametrize("name", REFUSED)
def test_the_library_refuses_quickly(hostile, name):
    message, seconds = refusal(load_video, hostile[name], 8)
    assert REFUSED[name] in message and seconds < FAST, (message, seconds)
    assert str(hostile[name].parent) not in message and "secret" not in message
    if name != "mixed-size":  # the probe opens the container; only decoding meets frame 1
        message, seconds = refusal(probe_video, hostile[name])
        assert REFUSED[name] in message and seconds < FAST, (message, seconds)
        assert re.search(r"only video files are accepted \(MP4, .*\)", message)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_no_decoder_gets_a_refused_file(hostile, backend):
    """decord cannot be told the maximum: asked for by name, it still gets the file only after
    PyAV has decoded it within the cap."""
    message, seconds = refusal(load_video, hostile["mixed-size"], 8, backend=backend)
    assert TOO_BIG in message and "decord" not in message and seconds < FAST, message


def test_the_named_files_are_never_opened(hostile):
    """A FIFO named by a playlist or a concat list blocks whoever opens it to read: the
    refusals came well inside the probe's time limit, so nothing opened it."""
    for name in ("playlist-fifo", "concat-named-mp4"):
        _, seconds = refusal(probe_video, hostile[name], timeout=video_clips.PROBE_TIMEOUT)
        assert seconds < min(FAST, video_clips.PROBE_TIMEOUT / 2)


def test_formats_are_judged_by_content_not_name(hostile, tmp_path):
    mp4_named_m3u8 = tmp_path / "clip.m3u8"
    mp4_named_m3u8.write_bytes(hostile["upload"].read_bytes())
    assert load_video(mp4_named_m3u8, 4).num_frames == 4
    ts = write_clip(tmp_path / "camera.ts", frames=24)  # MPEG-TS is on the allow-list
    assert probe_video(ts).codec == "h264" and load_video(ts, 4).num_frames == 4


@pytest.mark.slow  # three decodes in child processes
def test_each_frame_is_held_to_the_pixel_cap(tmp_path, monkeypatch):
    """The cap is passed to the children: a small mixed-size clip under a small cap is refused
    by every decoder path at its first larger frame, never decoded by decord instead."""
    mixed = write_mixed_size_mjpeg(tmp_path / "grows.avi", small=64, large=256, frames=6)
    assert load_video(mixed, 6).num_frames == 6  # within the real cap: fine
    monkeypatch.setattr(video_clips, "MAX_PIXELS", 64 * 64)
    assert probe_video(mixed).width == 64  # header and frame 0 are within the cap
    for backend in ("auto", "pyav"):
        message, _ = refusal(load_video, mixed, 6, backend=backend)
        assert "has a frame larger than" in message and "decord" not in message, message


@pytest.mark.slow  # a child process that runs out of memory
def test_children_have_a_memory_limit(tmp_path, monkeypatch):
    """With the pixel cap lifted, a 16000 x 16000 frame (256 MB of grey) does not fit a child
    capped at 512 MiB of address space: refused with the limit in words, the server unharmed."""
    mixed = write_mixed_size_mjpeg(tmp_path / "huge.avi", frames=2)
    monkeypatch.setattr(video_clips, "MAX_PIXELS", 20000 * 20000)
    monkeypatch.setattr(video_clips, "CHILD_MEMORY", 512 << 20)
    message, _ = refusal(load_video, mixed, 2, backend="pyav")
    assert "needed more than the 0.5 GiB of memory" in message, message


# ----------------------------------------------------------------------------- the app


def compress(
    url: str, path: Path, frames: int = 4, address: str | None = None
) -> tuple[object, float]:
    """/compress on an upload of ``path``: (its result, or the AppError), and the seconds;
    ``address``: the visitor's address as a proxy on this machine passes it (X-Forwarded-For),
    so that visitors at once are told apart by the queue's per-address caps."""
    headers = {"X-Forwarded-For": address} if address else None
    client = Client(url, verbose=False, download_files=False, headers=headers)
    start = time.perf_counter()
    try:
        result = client.predict(handle_file(str(path)), 0.35, frames, api_name="/compress")
    except AppError as e:
        result = e
    return result, time.perf_counter() - start


@pytest.mark.slow
def test_the_app_refuses_quickly_and_stays_responsive(pixel_url, hostile, tmp_path):
    """Every hostile file through /compress, two live playlists at once among them: each
    refused quickly with the library's message; a normal /compress right after takes no longer
    than one before them (different clips of one size: the server caches analyses)."""
    before, after = (
        write_clip(tmp_path / f"{n}.mp4", frames=24, color=c)
        for n, c in (("before", (200, 30, 30)), ("after", (30, 200, 30)))
    )
    alone, alone_s = compress(pixel_url, before)
    assert isinstance(alone, dict) and alone["frames"] == 4, alone
    names = [*REFUSED, "live"]  # the live playlist twice, concurrently, each its own visitor
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(
            pool.map(
                lambda i, n: compress(pixel_url, hostile[n], address=f"10.0.0.{i + 1}"),
                range(len(names)),
                names,
            )
        )
    for name, (answer, seconds) in zip(names, answers):
        assert isinstance(answer, AppError), (name, answer)
        assert REFUSED[name] in str(answer) and seconds < 2 * FAST, (name, str(answer), seconds)
        assert "secret" not in str(answer) and str(hostile[name].parent) not in str(answer)
    normal, normal_s = compress(pixel_url, after)
    assert isinstance(normal, dict) and normal["frames"] == 4, normal
    assert normal_s < 3 * alone_s + 2, (normal_s, alone_s)
