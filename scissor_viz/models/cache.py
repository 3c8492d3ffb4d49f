"""Bounded LRU caches (by entries and by bytes) for encoded video tokens and other results,
and the keys tokens are filed under.

Encoding a clip with a real vision tower takes seconds per frame on a CPU; moving a retention
slider or asking a second question must never pay that again. Backends file their ``encode``
output under ``(backend identity, clip key, frame fingerprint)``:

* the clip key is whatever the caller knows the clip by (the video module's string ``key``, any
  hashable); without one, the frames' bytes are hashed (:func:`frames_digest`);
* the frame fingerprint (shape + a hash of a sparse pixel sample, :func:`frames_fingerprint`) is
  always added, so one key reused for another frame selection or size never returns stale tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_MAX_ENTRIES = 8
DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB: 32 frames x 196 x 3584 float32 (a 7B model) is 90 MiB


def frames_digest(frames: np.ndarray) -> str:
    """A content hash of the whole frames array (shape, dtype and every byte)."""
    frames = np.ascontiguousarray(frames)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((frames.shape, frames.dtype.str)).encode())
    h.update(memoryview(frames).cast("B"))
    return h.hexdigest()


def frames_fingerprint(frames: np.ndarray, stride: int = 7) -> str:
    """A cheap fingerprint: shape, dtype and a hash of every ``stride``-th pixel row and column."""
    frames = np.asarray(frames)
    sample = np.ascontiguousarray(frames[:, ::stride, ::stride]) if frames.ndim >= 3 else frames
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((frames.shape, frames.dtype.str)).encode())
    h.update(memoryview(np.ascontiguousarray(sample)).cast("B"))
    return h.hexdigest()


def nbytes(value: object) -> int:
    """Bytes of the tensors and arrays ``value`` holds: itself, or inside dataclasses, tuples,
    lists and dicts (at any depth). A storage shared by several of them counts once, whole
    (a view keeps its whole storage alive)."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = storage.data_ptr() or id(storage)
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(item, np.ndarray):
            base = item if item.base is None else item.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes if isinstance(base, np.ndarray) else item.nbytes
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return total


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class BoundedCache:
    """Thread-safe LRU bounded by entry count and by the bytes of what it holds (:func:`nbytes`).

    Values are returned as stored (no copy): treat them as read-only. A value bigger than
    ``max_bytes`` on its own is not kept.
    """

    def __init__(self, max_entries: int, max_bytes: int):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._data: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.stats.hits += 1
                return self._data[key][0]
            self.stats.misses += 1
            return None

    def put(self, key: Hashable, value: object) -> None:
        size = nbytes(value)
        with self._lock:
            if key in self._data:
                self._bytes -= self._data.pop(key)[1]
            if size > self.max_bytes:  # would evict everything and still not fit: do not keep it
                return
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, old) = self._data.popitem(last=False)
                self._bytes -= old
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


class TokenCache(BoundedCache):
    """The backends' cache of encoded tokens (and vision attention), per clip."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES):
        super().__init__(max_entries, max_bytes)
