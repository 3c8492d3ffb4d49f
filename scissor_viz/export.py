"""Take the pictures and the partition home: animated GIF, MP4 (H.264) and JSON.

Two-line API::

    save_mp4(overlay_video(frames, comp.temporal_labels), "regions.mp4", fps=4)
    save_partition("partition.json", comp, frames=indices, timestamps=times, backend="pixels")

``load_partition`` gives back a :class:`Partition` whose ``spatial_labels``, ``temporal_labels``,
``assignment`` and ``tau`` are what the figures in :mod:`scissor_viz.figures` read, so a saved run
can be drawn again without the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCHEMA = "scissor-viz/partition@1"


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


@dataclass
class Partition:
    """A compression's partition of a video's tokens, as saved in JSON (labels are (T, P))."""

    spatial_labels: np.ndarray  # component of each token within its frame
    temporal_labels: np.ndarray  # final token of each token's component
    assignment: np.ndarray  # final token the merge step assigns each token to
    tau: float
    retention: float
    frames: list[int]  # index of each sampled frame in the video
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
        if len(self.frames) != shape[0]:
            raise ValueError(f"{len(self.frames)} frame indices for {shape[0]} frames of labels")
        if self.timestamps is not None and len(self.timestamps) != shape[0]:
            raise ValueError(f"{len(self.timestamps)} timestamps for {shape[0]} frames")

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
        frames: Sequence[int] | None = None,
        timestamps: Sequence[float] | None = None,
        method: str = "llava-scissor",
        backend: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Partition:
        """From a ``Compression`` (or anything with its label fields, tau and retention)."""
        spatial = _labels(comp.spatial_labels)
        return cls(
            spatial_labels=spatial,
            temporal_labels=comp.temporal_labels,
            assignment=comp.assignment,
            tau=float(comp.tau),
            retention=float(comp.retention),
            frames=[int(f) for f in (range(len(spatial)) if frames is None else frames)],
            timestamps=None if timestamps is None else [float(t) for t in timestamps],
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
            "retention": self.retention,
            "num_tokens": self.num_tokens,
            "frames": list(self.frames),
            "timestamps": self.timestamps,
            "tokens_per_frame": self.spatial_counts.tolist(),
            "spatial_labels": self.spatial_labels.tolist(),
            "temporal_labels": self.temporal_labels.tolist(),
            "assignment": self.assignment.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        """Inverse of :meth:`to_dict`; checks the schema and the derived fields."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a scissor-viz partition (schema {data.get('schema')!r})")
        part = cls(
            spatial_labels=np.array(data["spatial_labels"], dtype=np.int64),
            temporal_labels=np.array(data["temporal_labels"], dtype=np.int64),
            assignment=np.array(data["assignment"], dtype=np.int64),
            tau=float(data["tau"]),
            retention=float(data["retention"]),
            frames=[int(f) for f in data["frames"]],
            timestamps=data.get("timestamps"),
            method=data.get("method", "llava-scissor"),
            backend=data.get("backend"),
            meta=data.get("meta") or {},
        )
        if data.get("tokens_per_frame") != part.spatial_counts.tolist():
            raise ValueError("tokens_per_frame does not match spatial_labels")
        return part


def save_partition(path: str | Path, comp: Any, **info: Any) -> Path:
    """Write a Compression or :class:`Partition` as JSON; ``info`` (frames, timestamps, method,
    backend, meta) goes to :meth:`Partition.from_compression` or replaces a Partition's fields."""
    if isinstance(comp, Partition):
        part = replace(comp, **info)
    else:
        part = Partition.from_compression(comp, **info)
    path = Path(path)
    path.write_text(json.dumps(part.to_dict(), separators=(",", ":")))
    return path


def load_partition(path: str | Path) -> Partition:
    """Read a partition written by :func:`save_partition`."""
    return Partition.from_dict(json.loads(Path(path).read_text()))
