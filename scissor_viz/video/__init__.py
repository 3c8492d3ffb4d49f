"""Probing and sampling videos: clips.py (this process) and worker.py (the child process that
decodes, which imports nothing of the package)."""

from scissor_viz.video.clips import (
    DEFAULT_FRAMES,
    DEFAULT_MAX_SIDE,
    MAX_FRAMES,
    VideoClip,
    VideoInfo,
    example_videos,
    fingerprint,
    load_video,
    output_size,
    probe_video,
    without_paths,
)
from scissor_viz.video.worker import MAX_PIXELS, VideoError, sample_indices

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_MAX_SIDE",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "VideoClip",
    "VideoError",
    "VideoInfo",
    "example_videos",
    "fingerprint",
    "load_video",
    "output_size",
    "probe_video",
    "sample_indices",
    "without_paths",
]
