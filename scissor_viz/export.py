"""Take the pictures and the partition home: animated GIF, MP4 (H.264) and JSON.

Two-line API::

    save_mp4(view_overlays(frames, comp, "temporal"), "regions.mp4", fps=4)
    save_partition("partition.json", comp, frame_indices=clip.indices, timestamps=times)

``load_partition`` gives back a :class:`Partition` whose ``spatial_labels``, ``temporal_labels``,
``assignment`` and ``tau`` are what the views and figures read, so a saved run can be drawn
again without the model. ``save_partition`` takes the frames as ``num_frames`` (a count, which
must match the labels) and/or ``frame_indices`` (each sampled frame's number in the video).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCHEMA = "scissor-viz/partition@2"
OLD_SCHEMAS = ("scissor-viz/partition@1",)  # read too: "frames" held the frame indices


# ----------------------------------------------------------------------------- animations


def _images(images: Sequence[Any]) -> list[np.ndarray]:
    """The images as uint8 (H, W, 3) arrays of one size."""
    out = [np.asarray(im) for im in images]
    if not out:
        raise ValueError("no images to write")
    for im in out:
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"images must be uint8 (H, W, 3), got {im.dtype} {im.shape}")
        if im.shape != out[0].shape:
            raise ValueError(f"images differ in size: {out[0].shape[:2]} and {im.shape[:2]}")
    return out


def save_gif(images: Sequence[Any], path: str | Path, fps: float = 4.0, loop: int = 0) -> Path:
    """An animated GIF of uint8 (H, W, 3) images (same size), ``loop=0`` repeating forever.

    GIF stores 256 colours per frame (adaptive palette), and Pillow folds a frame identical to
    the one before into it (its duration added), so such a GIF has fewer frames than images.
    """
    frames = [Image.fromarray(im) for im in _images(images)]
    path = Path(path)
    frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=max(20, round(1000 / fps)),
        loop=loop,
    )
    return path


def _even(image: np.ndarray) -> np.ndarray:
    """Pad the bottom row / right column by repetition to even sizes (yuv420p needs them)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def save_mp4(images: Sequence[Any], path: str | Path, fps: float = 4.0, crf: int = 18) -> Path:
    """An H.264 MP4 (libx264, yuv420p, faststart) of uint8 (H, W, 3) images (same size); an odd
    height or width is padded by one repeated row or column."""
    import av  # only this function needs PyAV

    frames = [_even(im) for im in _images(images)]
    h, w = frames[0].shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for k, im in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(im, format="rgb24")
            frame.pts = k
            frame.time_base = 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return Path(path)


# ----------------------------------------------------------------------------- partition JSON


def _labels(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64)


def _frame_indices(indices: Any, frames: int) -> list[int] | None:
    """``indices`` as a list of ``frames`` ints (None stays None); a ValueError that says what
    to pass otherwise (a count, say, belongs in ``num_frames``)."""
    if indices is None:
        return None
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__"):
        raise ValueError(
            f"frame_indices must be a sequence of frame numbers, got {indices!r} "
            "(pass a count of frames as num_frames)"
        )
    out = [int(i) for i in np.asarray(indices).ravel()]
    if len(out) != frames:
        raise ValueError(f"{len(out)} frame indices for {frames} frames of labels")
    return out


@dataclass
class Partition:
    """A compression's partition of a video's tokens, as saved in JSON (labels are (T, P))."""

    spatial_labels: np.ndarray  # component of each token within its frame
    temporal_labels: np.ndarray  # final token of each token's component
    assignment: np.ndarray  # final token the merge step assigns each token to
    tau: float
    retention_reached: float  # K / N ("retention" in the JSON)
    frame_indices: list[int] | None = None  # each sampled frame's number in the video
    timestamps: list[float] | None = None  # seconds
    method: str = "llava-scissor"
    backend: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # anything else JSON can hold

    def __post_init__(self) -> None:
        for name in ("spatial_labels", "temporal_labels", "assignment"):
            setattr(self, name, _labels(getattr(self, name)))
        shape = self.spatial_labels.shape
        if len(shape) != 2:
            raise ValueError(f"labels must be (frames, tokens_per_frame), got shape {shape}")
        for name in ("temporal_labels", "assignment"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        self.frame_indices = _frame_indices(self.frame_indices, shape[0])
        if self.timestamps is not None:
            self.timestamps = [float(t) for t in np.asarray(self.timestamps).ravel()]
            if len(self.timestamps) != shape[0]:
                raise ValueError(f"{len(self.timestamps)} timestamps for {shape[0]} frames")

    @property
    def num_frames(self) -> int:
        return int(self.spatial_labels.shape[0])

    @property
    def num_tokens(self) -> int:
        """K: the number of tokens kept."""
        return int(self.temporal_labels.max()) + 1

    @property
    def spatial_counts(self) -> np.ndarray:
        """(T,) tokens each frame keeps after the spatial step."""
        return self.spatial_labels.max(axis=1) + 1

    @classmethod
    def from_compression(
        cls,
        comp: Any,
        *,
        num_frames: int | None = None,
        frame_indices: Sequence[int] | None = None,
        timestamps: Sequence[float] | None = None,
        method: str = "llava-scissor",
        backend: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Partition:
        """From a ``Compression`` (or anything with its label fields, tau and retention).
        ``num_frames``, if given, must be the labels' number of frames (a check: it is what
        ``VideoAnalysis.summary`` calls ``frames``)."""
        spatial = _labels(comp.spatial_labels)
        if num_frames is not None and int(num_frames) != spatial.shape[0]:
            raise ValueError(f"num_frames is {num_frames} but the labels have {len(spatial)}")
        return cls(
            spatial_labels=spatial,
            temporal_labels=comp.temporal_labels,
            assignment=comp.assignment,
            tau=float(comp.tau),
            retention_reached=float(comp.retention_reached),
            frame_indices=frame_indices,
            timestamps=timestamps,
            method=method,
            backend=backend,
            meta=dict(meta or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (labels as nested lists)."""
        return {
            "schema": SCHEMA,
            "method": self.method,
            "backend": self.backend,
            "tau": self.tau,
            "retention": self.retention_reached,
            "num_tokens": self.num_tokens,
            "num_frames": self.num_frames,
            "frame_indices": self.frame_indices,
            "timestamps": self.timestamps,
            "tokens_per_frame": self.spatial_counts.tolist(),
            "spatial_labels": self.spatial_labels.tolist(),
            "temporal_labels": self.temporal_labels.tolist(),
            "assignment": self.assignment.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        """Inverse of :meth:`to_dict` (also reads partition@1 files); checks the schema and
        the derived fields."""
        schema = data.get("schema")
        if schema != SCHEMA and schema not in OLD_SCHEMAS:
            raise ValueError(f"not a scissor-viz partition (schema {schema!r})")
        indices = data.get("frame_indices") if schema == SCHEMA else data.get("frames")
        part = cls(
            spatial_labels=np.array(data["spatial_labels"], dtype=np.int64),
            temporal_labels=np.array(data["temporal_labels"], dtype=np.int64),
            assignment=np.array(data["assignment"], dtype=np.int64),
            tau=float(data["tau"]),
            retention_reached=float(data["retention"]),
            frame_indices=indices,
            timestamps=data.get("timestamps"),
            method=data.get("method", "llava-scissor"),
            backend=data.get("backend"),
            meta=data.get("meta") or {},
        )
        if data.get("tokens_per_frame") != part.spatial_counts.tolist():
            raise ValueError("tokens_per_frame does not match spatial_labels")
        if schema == SCHEMA and data.get("num_frames") != part.num_frames:
            raise ValueError("num_frames does not match the labels")
        return part


def save_partition(
    path: str | Path,
    comp: Any,
    *,
    num_frames: int | None = None,
    frame_indices: Sequence[int] | None = None,
    timestamps: Sequence[float] | None = None,
    method: str | None = None,
    backend: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a Compression or :class:`Partition` as JSON. ``num_frames``: a count, checked
    against the labels; ``frame_indices``: each sampled frame's number in the video;
    ``timestamps``: seconds. With a Partition, the fields given replace its own."""
    info = {
        "frame_indices": frame_indices,
        "timestamps": timestamps,
        "method": method,
        "backend": backend,
        "meta": meta,
    }
    info = {k: v for k, v in info.items() if v is not None}
    if isinstance(comp, Partition):
        if num_frames is not None and int(num_frames) != comp.num_frames:
            raise ValueError(f"num_frames is {num_frames} but the labels have {comp.num_frames}")
        part = replace(comp, **info)
    else:
        part = Partition.from_compression(comp, num_frames=num_frames, **info)
    path = Path(path)
    path.write_text(json.dumps(part.to_dict(), separators=(",", ":")))
    return path


def load_partition(path: str | Path) -> Partition:
    """Read a partition written by :func:`save_partition`."""
    return Partition.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------- a server's folders

_swept: set[Path] = set()
_swept_lock = threading.Lock()


def sweep_folders(root: Path, keep_s: float) -> None:
    """Delete the folders in ``root`` last changed more than ``keep_s`` seconds ago."""
    for old in Path(root).iterdir() if Path(root).is_dir() else ():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > keep_s:
                shutil.rmtree(old, ignore_errors=True)


def sweep_on_timer(root: Path, keep_s: float) -> None:
    """Sweep ``root`` every ``keep_s / 2`` seconds (at most a minute) from now on, and delete it
    when the process exits (once per root, however often it is called)."""
    root = Path(root)
    with _swept_lock:
        if root in _swept:
            return
        _swept.add(root)
    every = max(min(keep_s / 2, 60.0), 0.5)

    def sweep() -> None:
        while True:
            time.sleep(every)
            sweep_folders(root, keep_s)

    threading.Thread(target=sweep, name="sweep-exports", daemon=True).start()
    atexit.register(shutil.rmtree, root, ignore_errors=True)
