"""Handing freed memory back to the system after heavy events.

glibc keeps the pages of freed large tensors and arrays in its arenas, so after a comparison,
an export or an expired session the server's resident memory stays at its peak although Python
holds nothing. ``return_free_memory`` collects garbage and asks glibc to trim; ``frees_memory``
does it after an event handler (the page's light events do not: they run often and allocate
little)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def return_free_memory() -> bool:
    """Collect garbage, then return the allocator's free pages to the system (glibc only).
    True when memory was returned."""
    gc.collect()
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def frees_memory(fn):
    """Run ``return_free_memory`` after ``fn``, however it ends."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            return_free_memory()

    return wrapper
