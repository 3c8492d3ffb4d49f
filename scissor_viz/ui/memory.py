"""Handing freed memory back to the system after heavy events.

glibc keeps the pages of freed large tensors and arrays in its arenas, so after a comparison,
an export or an expired session the server's resident memory stays at its peak although Python
holds nothing. ``return_free_memory`` collects garbage and asks glibc to trim; ``frees_memory``
does it after an event handler (the page's light events do not: they run often and allocate
little)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import threading
import weakref
from collections import OrderedDict

import gradio as gr


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


# ----------------------------------------------------------------------------- all sessions

MEMORY_BUDGET_MIB = 3072  # all sessions' videos together ($SCISSOR_VIZ_MEMORY_BUDGET_MIB)
RELEASED = (
    "This video was released to free memory for other visitors; press Compress to load it again."
)


class Released(Exception):
    """The session's video was released to keep all sessions within the memory budget."""


def session_bytes(session) -> int:
    """Bytes a page session holds: its analysis (frames, tokens, index, caches) and the
    pictures made from it."""
    analysis = getattr(session, "analysis", None)
    if analysis is None:
        return 0
    pictures = getattr(session, "_thumbnails", None)
    return analysis.nbytes()["total"] + (pictures.nbytes if pictures is not None else 0)


def budget_from_env() -> int:
    mib = os.environ.get("SCISSOR_VIZ_MEMORY_BUDGET_MIB", "").strip()
    return (int(mib) if mib else MEMORY_BUDGET_MIB) << 20


class SessionBudget:
    """One budget in bytes for every session's video: when the sessions together hold more,
    the least recently used ones are released (their frames, tokens and caches dropped; the
    next event of that page says so, and Compress loads the video again)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lru: OrderedDict[int, weakref.ref] = OrderedDict()
        self._busy: dict[int, int] = {}  # events running on each session
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, session):
        """While an event works on ``session`` (raises Released if its video was released):
        it is the most recently used, and never released under the event's feet; the least
        recently used idle others are released until all fit."""
        if getattr(session, "analysis", None) is None:
            raise Released(RELEASED)
        with self._lock:
            self._lru[id(session)] = weakref.ref(session)
            self._lru.move_to_end(id(session))
            self._busy[id(session)] = self._busy.get(id(session), 0) + 1
            released = [detach(victim) for victim in self._over_budget()]
        for analysis in released:  # no event can reach these any more
            analysis.release()
        if released:
            return_free_memory()
        try:
            yield session
        finally:
            with self._lock:
                left = self._busy.pop(id(session)) - 1
                if left:
                    self._busy[id(session)] = left

    def forget(self, session) -> None:
        with self._lock:
            self._lru.pop(id(session), None)

    def sessions(self) -> list:
        """The live sessions, least recently used first."""
        alive = [(key, ref()) for key, ref in self._lru.items()]
        for key, session in alive:
            if session is None or getattr(session, "analysis", None) is None:
                self._lru.pop(key, None)
        return [s for _, s in alive if s is not None and s.analysis is not None]

    def held(self) -> int:
        with self._lock:
            return sum(map(session_bytes, self.sessions()))

    def _over_budget(self) -> list:
        live = self.sessions()
        sizes = [session_bytes(s) for s in live]
        total, victims = sum(sizes), []
        for session, size in zip(live, sizes, strict=True):
            if total <= self.limit:
                break
            if self._busy.get(id(session)):
                continue
            victims.append(session)
            self._lru.pop(id(session), None)
            total -= size
        return victims


def detach(session):
    """Take a session's video from it (its page is told on its next event); the analysis, to
    release."""
    analysis = session.analysis
    session.analysis = session.comp = session.curve = session._thumbnails = None
    session.scrubs = {}
    return analysis


SESSIONS = SessionBudget(budget_from_env())


def release_closed_pages(demo, ttl: float) -> None:
    """A closed page's state goes ``ttl`` seconds after its last change, as an open one does
    (Gradio keeps a closed page's state an hour: STATE_TTL_WHEN_CLOSED). Call inside Blocks."""

    def closed(request: gr.Request) -> None:
        state = demo.state_holder.session_data.get(request.session_hash)
        if state is not None:
            state.STATE_TTL_WHEN_CLOSED = ttl

    demo.unload(closed)
