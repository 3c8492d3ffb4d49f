"""What the server checks of every request, whatever the page's widgets suggest: a public
Space lets anyone call every event with any arguments."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from scissor_viz.video import example_videos

MAX_UPLOAD_BYTES = 500 * 2**20  # also the upload limit the server sets (launch's max_file_size)
MAX_QUESTION_CHARS = 500
NOT_AN_UPLOAD = "Send the video as a file upload; paths on the server are not accepted."


def uploaded_video(video) -> str:
    """The path of a video this server received as an upload (or cached from an example).

    Anything else -- a plain path string to a file elsewhere, a folder, a missing file -- is
    refused with one message that says nothing about what is there."""
    path = video.get("path") if isinstance(video, dict) else getattr(video, "path", video)
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise gr.Error(NOT_AN_UPLOAD)
    real = Path(os.path.realpath(path))
    uploads = Path(os.path.realpath(get_upload_folder()))
    if uploads not in real.parents or not real.is_file():
        raise gr.Error(NOT_AN_UPLOAD)
    if real.stat().st_size > MAX_UPLOAD_BYTES:
        raise gr.Error(f"The video is larger than {MAX_UPLOAD_BYTES >> 20} MB.")
    return str(real)


@functools.cache
def _examples() -> frozenset[tuple[int, str]]:
    return frozenset(_fingerprint(p) for p in example_videos())


def _fingerprint(path) -> tuple[int, str]:
    data = Path(path).read_bytes()
    return len(data), hashlib.blake2b(data, digest_size=16).hexdigest()


def is_example(path: str) -> bool:
    """Whether an upload is one of the page's examples (public: anyone may know it was seen)."""
    size = Path(path).stat().st_size
    return any(size == n for n, _ in _examples()) and _fingerprint(path) in _examples()


def question_text(question) -> str:
    """The question, stripped; refused when empty or longer than MAX_QUESTION_CHARS."""
    text = str(question or "").strip()
    if not text:
        raise gr.Error("Ask a question about the video.")
    if len(text) > MAX_QUESTION_CHARS:
        raise gr.Error(f"Ask in at most {MAX_QUESTION_CHARS} characters.")
    return text


MAX_ECHO_CHARS = 80  # what an error message repeats of one word a visitor sent
MAX_MESSAGE_CHARS = 400


def brief(message: str) -> str:
    """An error message with every long run of text (a visitor's argument echoed back) cut to
    MAX_ECHO_CHARS, and the whole to MAX_MESSAGE_CHARS."""
    cut = re.sub(
        rf"\S{{{MAX_ECHO_CHARS + 1},}}", lambda m: m.group(0)[:MAX_ECHO_CHARS] + "…", message
    )
    return cut if len(cut) <= MAX_MESSAGE_CHARS else cut[:MAX_MESSAGE_CHARS] + "…"


def click_at(index, height: int, width: int) -> tuple[int, int]:
    """The (y, x) pixel a select event's ``index`` ([x, y]) names on a height x width picture;
    anything else is refused with a message."""
    try:
        x, y = (int(v) for v in index)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error("Click a point on the picture.") from None
    if not (0 <= y < height and 0 <= x < width):
        raise gr.Error(f"Click inside the picture ({width} × {height} pixels).")
    return y, x
