"""Video loading: sampling, sizes, containers and codecs, rotation, bad input, the real asset.

Every generated frame carries its own index (tests/video_fixtures.py), so the tests check *which*
frames came back, not only how many.
"""

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scissor_viz.video import (
    MAX_FRAMES,
    VideoError,
    example_videos,
    fingerprint,
    load_video,
    output_size,
    probe_video,
    sample_indices,
    worker,
)
from scissor_viz.video import clips as video_clips
from tests.video_fixtures import (
    CODECS,
    code_frame,
    frame_index,
    inflate_frame_count,
    scramble_payload,
    truncate,
    write_audio_only,
    write_clip,
    write_image,
    write_no_frames,
)

ROOT = Path(__file__).resolve().parents[1]
FPS = 12


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Every clip the tests read, written once (about a second in all)."""
    d = tmp_path_factory.mktemp("clips")
    c = {  # every codec this PyAV build can encode
        kind: write_clip(d / f"{kind}{suffix}", kind)
        for kind, (suffix, encoder, *_) in CODECS.items()
        if encoder in av.codecs_available
    }
    c["bframes-long"] = write_clip(d / "bframes-long.mp4", "mp4-h264-bframes", frames=60)
    c["big"] = write_clip(d / "big.mp4", width=3840, height=2160, frames=2)
    c["portrait"] = write_clip(d / "portrait.mp4", width=360, height=640, frames=8)
    c["narrow"] = write_clip(d / "narrow.mp4", width=48, height=96, frames=8)
    c["panorama"] = write_clip(d / "panorama.mp4", width=1600, height=200, frames=4)
    c["rotated"] = write_clip(d / "rotated.mp4", width=96, height=64, frames=6, rotation=90)
    c["short"] = write_clip(d / "short.mp4", frames=5)
    c["red"] = write_clip(d / "red.mp4", frames=2, color=(255, 0, 0))
    c["long"] = write_clip(d / "long.mp4", width=64, height=64, frames=1200, fps=2)
    c["faststart"] = write_clip(d / "faststart.mp4", frames=48, faststart=True, gop=12)
    # bad input
    c["missing"] = d / "missing.mp4"
    c["folder"] = d / "folder.mp4"
    c["folder"].mkdir()
    c["empty"] = d / "empty.mp4"
    c["empty"].write_bytes(b"")
    c["text"] = d / "notes.mp4"
    c["text"].write_text("not a video\n" * 20)
    c["html"] = d / "download.mp4"
    c["html"].write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    c["noise"] = d / "noise.mp4"
    c["noise"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    c["png"] = write_image(d / "png.mp4", "PNG")
    c["jpeg"] = write_image(d / "jpeg.mp4", "JPEG")
    c["gif"] = write_image(d / "still.gif", "GIF")
    c["aac"] = write_audio_only(d / "song.mp4")
    c["wav"] = write_audio_only(d / "wav.mp4", fmt="wav")
    c["cut-index"] = truncate(c["mp4-h264"], d / "cut-index.mp4", 0.5)  # moov is at the end
    c["cut-data"] = truncate(c["faststart"], d / "cut-data.mp4", 0.8)  # index first, data cut
    c["no-frames-mp4"] = write_no_frames(d / "no-frames.mp4")
    c["no-frames-mkv"] = write_no_frames(d / "no-frames.mkv", "mkv-h264")
    c["no-frames-avi"] = write_no_frames(d / "no-frames.avi", "avi-mjpeg")
    c["garbage"] = scramble_payload(c["faststart"], d / "garbage.mp4")
    c["garbage-tail"] = scramble_payload(c["faststart"], d / "garbage-tail.mp4", keep=0.5)
    c["abort"] = inflate_frame_count(c["faststart"], d / "inflated.mp4")
    return c


def codes(frames: np.ndarray) -> list[int]:
    return [frame_index(f) for f in frames]


# ----------------------------------------------------------------------------- sampling


def test_sample_indices_examples():
    assert sample_indices(24, 16).tolist() == [
        0,
        2,
        3,
        5,
        6,
        8,
        9,
        11,
        12,
        14,
        15,
        17,
        18,
        20,
        21,
        23,
    ]
    assert sample_indices(1200, 4).tolist() == [0, 400, 799, 1199]
    assert sample_indices(5, 16).tolist() == [0, 1, 2, 3, 4]  # never repeats a frame
    assert sample_indices(100, 1).tolist() == [0]
    assert sample_indices(1, 1).tolist() == [0]


@given(total=st.integers(1, 10**7), n=st.integers(1, MAX_FRAMES))
def test_sample_indices_uniform(total, n):
    idx = sample_indices(total, n)
    assert idx.dtype == np.int64 and len(idx) == min(n, total)
    assert idx[0] == 0 and idx[-1] == (total - 1 if n > 1 else 0)
    assert np.all(np.diff(idx) > 0)
    if len(idx) > 2:  # evenly spread: gaps differ by at most one frame
        assert np.ptp(np.diff(idx)) <= 1
    llava = np.linspace(0, total - 1, len(idx), dtype=int)  # the demo's truncating version
    assert np.abs(idx - llava).max() <= 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "16", None, float("nan")])
def test_sample_indices_rejects(bad):
    with pytest.raises(VideoError, match="whole number"):
        sample_indices(10, bad)


@given(w=st.integers(1, 20000), h=st.integers(1, 20000), side=st.integers(16, 2048))
def test_output_size_keeps_aspect(w, h, side):
    ow, oh = output_size(w, h, side)
    assert max(ow, oh) <= max(side, 1) or (ow, oh) == (w, h)
    assert (ow, oh) == (w, h) or max(ow, oh) == side
    assert ow <= w and oh <= h
    # aspect kept up to rounding one pixel
    assert abs(ow * h - oh * w) <= max(w, h)


def test_output_size_examples():
    assert output_size(3840, 2160) == (768, 432)
    assert output_size(1080, 1920) == (432, 768)
    assert output_size(640, 360) == (640, 360)
    assert output_size(3840, 2160, None) == (3840, 2160)


# ----------------------------------------------------------------------------- containers, codecs


@pytest.mark.parametrize("kind", [k for k in CODECS if k != "mp4-h264-bframes"])
def test_each_container_and_codec_loads(clips, kind):
    if kind not in clips:
        pytest.skip(f"this PyAV cannot encode {CODECS[kind][1]}")
    clip = load_video(clips[kind], num_frames=16)
    want = sample_indices(24, 16)
    assert clip.frames.shape == (16, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.indices.tolist() == want.tolist()
    assert codes(clip.frames) == want.tolist()  # the right frames, in order
    np.testing.assert_allclose(clip.timestamps, want / FPS, atol=2e-3)
    assert clip.info.num_frames == 24 and clip.info.fps == FPS
    assert clip.info.duration == pytest.approx(2.0, abs=0.1)
    assert clip.timestamps[-1] < clip.info.duration
    assert clip.backend == "pyav"  # the decoder that checks every frame goes first


@pytest.mark.parametrize("kind", ["bframes-long", "webm-vp9", "faststart", "avi-mjpeg", "mkv-h264"])
def test_backends_agree(clips, kind):
    """PyAV's seek-and-decode picks the same frames as decord (B-frames, several GOPs)."""
    a = load_video(clips[kind], num_frames=7, backend="decord")
    b = load_video(clips[kind], num_frames=7, backend="pyav")
    assert (a.backend, b.backend) == ("decord", "pyav")
    assert a.indices.tolist() == b.indices.tolist() == codes(a.frames) == codes(b.frames)
    np.testing.assert_allclose(a.timestamps, b.timestamps, atol=1e-4)
    assert a.info.num_frames == b.info.num_frames
    assert np.abs(a.frames.astype(int) - b.frames).mean() < 8  # only the scalers differ


def test_clip_is_read_only(clips):
    clip = load_video(clips["mp4-h264"], num_frames=2)
    with pytest.raises(ValueError):
        clip.frames[0, 0, 0] = 0


def test_frames_are_rgb(clips):
    frames = load_video(clips["red"], num_frames=2).frames.astype(int)
    assert frames[..., 0].min() > 200 and frames[..., 1:].max() < 60


def test_probe_without_frame_count(clips):
    info = probe_video(clips["mkv-h264"])  # Matroska keeps no frame count: duration x fps
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (
        24,
        12,
        64,
        48,
        "h264",
    )
    assert info.duration == pytest.approx(2.0, abs=0.1)


# ----------------------------------------------------------------------------- sizes, rotation


def test_large_video_is_decoded_small(clips):
    clip = load_video(clips["big"], num_frames=16)
    assert clip.frames.shape == (2, 432, 768, 3)  # only 2 frames there; long side capped
    assert (clip.info.width, clip.info.height) == (3840, 2160)
    assert codes(clip.frames) == [0, 1]
    assert load_video(clips["big"], max_side=256).frames.shape == (2, 144, 256, 3)


@pytest.mark.parametrize(
    "name, max_side, shape",
    [
        ("portrait", 320, (8, 320, 180, 3)),
        ("portrait", 768, (8, 640, 360, 3)),  # small enough: untouched
        ("narrow", 768, (8, 96, 48, 3)),  # 48 px wide trips decord's stride bug: PyAV decodes
        ("panorama", 400, (4, 50, 400, 3)),
    ],
)
def test_aspect_ratio_is_kept(clips, name, max_side, shape):
    clip = load_video(clips[name], num_frames=8, max_side=max_side)
    assert clip.frames.shape == shape
    assert clip.size[0] / clip.size[1] == pytest.approx(
        clip.info.width / clip.info.height, rel=0.02
    )
    assert codes(clip.frames) == clip.indices.tolist()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_rotated_phone_video_comes_out_upright(clips, backend):
    clip = load_video(clips["rotated"], num_frames=3, backend=backend)
    assert (clip.info.rotation, clip.info.width, clip.info.height) == (90, 64, 96)
    assert clip.frames.shape == (3, 96, 64, 3)
    for frame, i in zip(clip.frames, clip.indices):
        upright = np.rot90(code_frame(int(i), 96, 64), 1)  # turned 90 degrees counter-clockwise
        assert np.abs(frame.astype(int) - upright).mean() < 10


# ----------------------------------------------------------------------------- lengths


def test_short_video_gives_all_its_frames(clips):
    clip = load_video(clips["short"], num_frames=16)
    assert clip.num_frames == 5 and clip.indices.tolist() == codes(clip.frames) == [0, 1, 2, 3, 4]


def test_long_video(clips):
    t = time.perf_counter()
    clip = load_video(clips["long"], num_frames=16)
    print(f"\n16 frames of a 10-minute video in {time.perf_counter() - t:.2f} s")
    want = sample_indices(1200, 16)
    assert clip.info.duration == pytest.approx(600.0) and clip.info.num_frames == 1200
    assert clip.indices.tolist() == codes(clip.frames) == want.tolist()
    np.testing.assert_allclose(clip.timestamps, want / 2, atol=1e-3)


def test_one_and_max_frames(clips):
    assert load_video(clips["long"], num_frames=1).indices.tolist() == [0]
    clip = load_video(clips["long"], num_frames=MAX_FRAMES, max_side=32)
    assert clip.frames.shape == (MAX_FRAMES, 32, 32, 3)
    assert codes(clip.frames) == sample_indices(1200, MAX_FRAMES).tolist()


# ----------------------------------------------------------------------------- cache key


def test_key_follows_content_not_name(clips, tmp_path):
    src = clips["faststart"]
    copy = tmp_path / "renamed.webm"
    copy.write_bytes(src.read_bytes())
    a = load_video(src, num_frames=8)
    assert load_video(copy, num_frames=8).key == a.key
    assert load_video(src, num_frames=9).key != a.key
    assert load_video(src, num_frames=8, max_side=32).key != a.key
    changed = bytearray(src.read_bytes())
    changed[-1] ^= 1
    copy.write_bytes(bytes(changed))
    assert fingerprint(copy) != fingerprint(src)
    assert fingerprint(src) == fingerprint(src) and len(a.key) == 32


# ----------------------------------------------------------------------------- bad input

BAD = {  # clip -> words the message must contain
    "missing": "No file",
    "folder": "folder",
    "empty": "empty",
    "text": "text, not video",
    "html": "web page",
    "noise": "not a video format",
    "png": "still image (PNG)",
    "jpeg": "still image (JPEG)",
    "gif": "still image (GIF)",
    "aac": "only audio (aac)",
    "wav": "only audio (pcm_s16le)",
    "cut-index": "incomplete",
    "cut-data": "damaged or incomplete",
    "no-frames-mp4": "no video track",
    "no-frames-mkv": "incomplete",
    "no-frames-avi": "without any frames",
    "garbage": "damaged",
    "garbage-tail": "damaged",
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_raises_video_error(clips, name):
    with pytest.raises(VideoError, match=re.escape(BAD[name])) as info:
        load_video(clips[name])
    assert isinstance(info.value, ValueError)
    assert str(clips[name].parent) not in str(info.value)  # the file's name, not its folder
    if name not in ("garbage-tail", "cut-data"):  # found by the probe, before any decoding
        with pytest.raises(VideoError, match=re.escape(BAD[name])):
            probe_video(clips[name])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": MAX_FRAMES + 1}, "num_frames"),
        ({"num_frames": -3}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"num_frames": True}, "num_frames"),
        ({"num_frames": "16"}, "num_frames"),
        ({"num_frames": None}, "num_frames"),
        ({"max_side": 0}, "max_side"),
        ({"max_side": "big"}, "max_side"),
        ({"backend": "opencv"}, "backend"),
    ],
)
def test_bad_arguments(clips, kwargs, words):
    with pytest.raises(VideoError, match=words):
        load_video(clips["mp4-h264"], **kwargs)


def test_whole_floats_are_fine(clips):  # sliders send 16.0
    assert load_video(clips["mp4-h264"], num_frames=8.0, max_side=np.int64(32)).num_frames == 8


def test_path_must_be_a_path():
    with pytest.raises(VideoError, match="path"):
        load_video(12)


def test_absurd_size_is_refused_before_decoding(clips, monkeypatch):
    monkeypatch.setattr(video_clips, "MAX_PIXELS", 64 * 47)  # as if the 64x48 clip were 20000x20000
    with pytest.raises(VideoError, match="64x48 pixels"):
        load_video(clips["mp4-h264"])


def test_decoder_crash_is_contained(clips):
    """decord aborts on an inflated sample table; the child dies, this process goes on."""
    with pytest.raises(VideoError, match="crashed.*SIGABRT"):
        load_video(clips["abort"], backend="decord")
    clip = load_video(clips["abort"])  # PyAV reads it fine
    assert clip.backend == "pyav" and clip.info.num_frames == 48
    assert codes(clip.frames) == clip.indices.tolist() == sample_indices(48, 16).tolist()


def test_decord_takes_over_when_pyav_fails(clips, monkeypatch):
    """A file PyAV opens but cannot decode goes to decord (in the same child), unless the
    probe distrusted its header."""
    monkeypatch.setattr(video_clips, "_child_command", _failing_pyav_child)
    clip = load_video(clips["faststart"], num_frames=4)
    assert clip.backend == "decord" and codes(clip.frames) == [0, 16, 31, 47]
    with pytest.raises(VideoError, match="Could not decode.*pyav: no luck"):
        load_video(clips["abort"], num_frames=4)  # distrusted: decord never sees it


def _failing_pyav_child(job: dict) -> list[str]:
    """A child in which PyAV's decoding raises (as on a damaged file)."""
    fail = "m._decode_pyav = lambda *a: (_ for _ in ()).throw(OSError('no luck')); "
    boot = video_clips._BOOT.replace("m.main(", fail + "m.main(")
    return [sys.executable, "-c", boot, worker.__file__, json.dumps(job)]


def test_timeout(clips):
    with pytest.raises(VideoError, match="longer than"):
        load_video(clips["mp4-h264"], timeout=0.001)


def test_probe_timeout(clips):
    with pytest.raises(VideoError, match="longer than"):
        probe_video(clips["mp4-h264"], timeout=0.001)


def test_decoded_frame_size_is_checked_too(clips, monkeypatch):
    """A header may say 0x0 (or anything): the first decoded frame is held to the same cap."""

    class Huge:
        width, height, rotation = 20000, 20000, 0

    monkeypatch.setattr(worker, "_first_frame", lambda *args: Huge())
    with pytest.raises(worker.VideoError, match="20000x20000 pixels"):
        worker._probe_file(clips["mp4-h264"])


def test_paths_are_cut_to_their_last_part():
    text = "Error reading /tmp/gradio/ab12/clip.mp4; cache '/root/.cache/hub' at 1/2"
    assert video_clips.without_paths(text) == "Error reading clip.mp4; cache 'hub' at 1/2"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return any(line.startswith("State:") and line.split()[1] in "ZX" for line in state.splitlines())


@pytest.mark.slow  # a parent interpreter of its own
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_child_dies_with_its_parent(tmp_path):
    """A server killed mid-decode leaves no decoder behind: here a child blocked on a pipe."""
    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)
    script = (
        "import os, subprocess, sys, time\n"
        "import scissor_viz.video.clips as v\n"
        "job = {'kind': 'probe', 'path': sys.argv[1], 'max_pixels': 1, 'out': sys.argv[2],\n"
        "       'parent': os.getpid(), 'memory': v.CHILD_MEMORY}\n"
        "print(subprocess.Popen(v._child_command(job)).pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(fifo), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    writer = None
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while writer is None:  # a writer can open the pipe once the child is reading it
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline and not _gone(child), "child never started"
                time.sleep(0.05)
        assert not _gone(child)  # stuck reading the pipe, with its parent alive
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        parent.kill()
        if writer is not None:
            os.close(writer)


def test_stale_work_folders_are_removed(clips, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(video_clips, "_last_cleaning", [-math.inf])
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    folders = {
        "dead": tmp_path / f"{video_clips.TEMP_PREFIX}{int(ended.stdout)}-x1",
        "mine": tmp_path / f"{video_clips.TEMP_PREFIX}{os.getpid()}-x2",
        "old": tmp_path / f"{video_clips.TEMP_PREFIX}x3",
        "new": tmp_path / f"{video_clips.TEMP_PREFIX}x4",
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "frames.npy").write_bytes(b"left behind")
    old = time.time() - 2 * video_clips.STALE_AFTER
    os.utime(folders["old"], (old, old))
    probe_video(clips["mp4-h264"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        folders[k].name for k in ("mine", "new")
    )


@pytest.mark.slow  # a fresh interpreter
def test_bad_input_never_kills_the_interpreter(clips):
    """Every bad file, decord forced where it can crash, in a fresh interpreter that must exit
    normally having seen a VideoError for each."""
    names = [*BAD, "abort"]
    script = (
        "import json, sys\n"
        "import scissor_viz.video as v\n"
        "seen = []\n"
        "for path in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        v.load_video(path, backend='decord')\n"
        "        seen.append('loaded')\n"
        "    except v.VideoError:\n"
        "        seen.append('VideoError')\n"
        "print(json.dumps(seen))\n"
    )
    paths = json.dumps([str(clips[n]) for n in names])
    proc = subprocess.run(
        [sys.executable, "-c", script, paths],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["VideoError"] * len(names)


# ----------------------------------------------------------------------------- the real clip


def test_real_example_clip():
    paths = example_videos()
    assert [p.name for p in paths] == ["bigbuckbunny.mp4"]
    path = paths[0]
    assert path.stat().st_size <= 2 * 2**20
    attribution = (path.parent / "ATTRIBUTION.md").read_text()
    for words in ("Big Buck Bunny", "Blender Foundation", "CC BY 3.0", "peach.blender.org"):
        assert words in attribution
    info = probe_video(path)
    assert (info.codec, info.width, info.height, info.num_frames, info.fps) == (
        "h264",
        1280,
        720,
        132,
        25,
    )
    clip = load_video(path, num_frames=16)
    assert clip.frames.shape == (16, 432, 768, 3)
    np.testing.assert_allclose(clip.timestamps, sample_indices(132, 16) / 25, atol=1e-3)
    assert all(f.std() > 10 for f in clip.frames)  # real pictures, not blank frames
    assert len({f.tobytes() for f in clip.frames}) == 16
