"""Which backend to load, and loading it.

* :class:`CheckpointPolicy`: the operator decides which checkpoints a request may load;
* :func:`load_backend`: a checkpoint (or the weight-free fallback, with the reason);
* :class:`LazyBackend`: one checkpoint loading in a background thread (a UI never waits for it),
  retried after a back-off when the load failed;
* :class:`BackendRegistry`: the backends a server holds, by checkpoint, at most a few at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from scissor_viz.models.base import Backend, BackendLoadError, CheckpointRefused
from scissor_viz.models.llava_onevision import DEFAULT_CHECKPOINT, LlavaOnevisionBackend
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.progress import ProgressFn, report

CHECKPOINT_ENV = "SCISSOR_VIZ_CHECKPOINT"
ALLOW_ANY_ENV = "SCISSOR_VIZ_ALLOW_ANY_CHECKPOINT"  # "1": requests may name any checkpoint
MAX_BACKENDS_ENV = "SCISSOR_VIZ_MAX_BACKENDS"
DEFAULT_MAX_BACKENDS = 2  # loaded backends a registry holds; the least recently used goes first
RETRY_AFTER = 60.0  # seconds after a failed load before a request may start it again
REFUSED = "This checkpoint is not available on this server."  # one message for every refusal
_TRUE = ("1", "true", "yes", "on")


def resolve_checkpoint(checkpoint: str | None = None) -> str:
    """The argument, else ``$SCISSOR_VIZ_CHECKPOINT``, else the default 0.5B checkpoint."""
    return checkpoint or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which checkpoints a request may load: the configured one only, unless the operator allows
    any (``SCISSOR_VIZ_ALLOW_ANY_CHECKPOINT=1``). Remote code is never trusted either way."""

    default: str  # the configured checkpoint: what an empty request gets
    allow_any: bool = False

    @classmethod
    def from_env(cls, checkpoint: str | None = None, allow_any: bool | None = None):
        """``checkpoint`` (else ``$SCISSOR_VIZ_CHECKPOINT``, else the 0.5B default) and
        ``allow_any`` (else ``$SCISSOR_VIZ_ALLOW_ANY_CHECKPOINT``)."""
        if allow_any is None:
            allow_any = os.environ.get(ALLOW_ANY_ENV, "").strip().lower() in _TRUE
        return cls(resolve_checkpoint(checkpoint), bool(allow_any))

    def resolve(self, requested: str | None = None) -> str:
        """The checkpoint to load for a request (empty: the configured one), or
        :class:`CheckpointRefused` with :data:`REFUSED`, whatever the name points to."""
        requested = (requested or "").strip()
        if not requested or requested == self.default:
            return self.default
        if self.allow_any:
            return requested
        raise CheckpointRefused(REFUSED)


def max_backends_from_env() -> int:
    """``$SCISSOR_VIZ_MAX_BACKENDS`` (at least 1), else :data:`DEFAULT_MAX_BACKENDS`."""
    text = os.environ.get(MAX_BACKENDS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BACKENDS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_BACKENDS_ENV}={text!r}: give a whole number of at least 1")
    return int(text)


def load_backend(
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    fallback: bool = True,
    **kwargs,
) -> Backend:
    """Load a LLaVA-OneVision checkpoint (hub id or local folder); on failure, pixel descriptors.

    The returned pixel backend's ``load_error`` (and ``unavailable_reason``) say what was tried
    and how to fix it. With ``fallback=False`` the :class:`BackendLoadError` is raised instead.
    Extra keyword arguments go to ``LlavaOnevisionBackend.from_pretrained``. No policy applies
    here: servers go through :class:`BackendRegistry`.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    try:
        return LlavaOnevisionBackend.from_pretrained(
            checkpoint, device=device, progress=progress, **kwargs
        )
    except BackendLoadError as err:
        if not fallback:
            raise
        report(progress, 1.0, "model not loaded; using pixel descriptors")
        return PixelBackend(load_error=str(err))


class LazyBackend:
    """Loads a backend on first need, or in a background thread after :meth:`start`.

    Building a UI never waits for a model: create this, call ``start()``, and ``get()`` the
    backend when a request needs it (it waits for the load, reporting progress meanwhile).
    A load that failed (an error, or the pixel fallback) is started again by the first
    ``start()``/``get()`` at least ``retry_after`` seconds later: a network blip at start-up
    does not leave a server without its model until a restart.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        device=None,
        *,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        **kwargs,
    ):
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = device
        self.kwargs = kwargs
        self.retry_after = retry_after
        self.clock = clock
        self.fraction = 0.0
        self.message = "not loaded"
        self.attempts = 0
        self._backend: Backend | None = None
        self._error: BaseException | None = None
        self._failed_at: float | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._listeners: list[ProgressFn] = []

    @property
    def loaded(self) -> bool:
        """Whether the current attempt has ended (with a backend, a fallback or an error)."""
        return self._done.is_set()

    @property
    def failed(self) -> bool:
        """Whether the last attempt ended without the model (an error or the pixel fallback)."""
        return self._failed_at is not None

    def retry_in(self) -> float | None:
        """Seconds until a failed load may be retried (0: now), None when it has not failed."""
        if self._failed_at is None:
            return None
        return max(0.0, self._failed_at + self.retry_after - self.clock())

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        for fn in list(self._listeners):
            fn(fraction, message)

    def _load(self, done: threading.Event) -> None:
        try:
            backend = load_backend(
                self.checkpoint, self.device, progress=self._progress, **self.kwargs
            )
            self._backend, self._error = backend, None
            self._failed_at = self.clock() if backend.load_error else None
            self._progress(1.0, f"ready: {backend.name}")
        except BaseException as err:
            self._backend, self._error, self._failed_at = None, err, self.clock()
        finally:
            done.set()

    def start(self) -> LazyBackend:
        """Start loading in the background, unless a load is running or done; a failed load
        is started again once ``retry_after`` seconds have passed."""
        with self._lock:
            due = self.retry_in()
            if self._thread is not None and self._done.is_set() and due == 0.0:
                self._thread, self._done = None, threading.Event()
                self.fraction, self.message = 0.0, "retrying"
            if self._thread is None:
                self.attempts += 1
                self._thread = threading.Thread(
                    target=self._load, args=(self._done,), name="load-backend", daemon=True
                )
                self._thread.start()
        return self

    def get(self, progress: ProgressFn | None = None, timeout: float | None = None) -> Backend:
        """The backend, loading it first if needed; ``progress`` sees the load's progress."""
        self.start()
        done = self._done
        if progress is not None and not done.is_set():
            self._listeners.append(progress)
            report(progress, self.fraction, self.message)
        try:
            if not done.wait(timeout):
                raise TimeoutError(f"backend still loading after {timeout} s: {self.message}")
        finally:
            if progress is not None and progress in self._listeners:
                self._listeners.remove(progress)
        if self._error is not None:
            raise self._error
        assert self._backend is not None
        return self._backend


@dataclass(frozen=True)
class LoadStatus:
    """Where one checkpoint's backend stands, for a status line; reading it loads nothing."""

    checkpoint: str  # as requested
    state: str  # "idle", "loading", "ready", "fallback" (pixels: the model failed), "failed",
    # or "refused" (the policy does not allow it)
    fraction: float = 0.0  # of the load, while loading
    message: str = ""  # the load's last progress message, or why it failed / was refused
    backend: Backend | None = None  # when ready or fallback
    retry_in: float | None = None  # seconds until a failed load may be retried


class BackendRegistry:
    """The backends a server holds: one :class:`LazyBackend` per allowed checkpoint, at most
    ``max_backends`` at once (the least recently used freed first), each checked against the
    :class:`CheckpointPolicy` before anything starts loading.

    ``checkpoint=None`` (or "") everywhere means the configured checkpoint.
    """

    def __init__(
        self,
        policy: CheckpointPolicy | None = None,
        max_backends: int | None = None,
        *,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        **load_kwargs,
    ):
        self.policy = policy or CheckpointPolicy.from_env()
        self.max_backends = max_backends if max_backends is not None else max_backends_from_env()
        if self.max_backends < 1:
            raise ValueError(f"max_backends must be at least 1, got {self.max_backends}")
        self.retry_after = retry_after
        self.clock = clock
        self.load_kwargs = load_kwargs
        self._held: OrderedDict[str, LazyBackend] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def checkpoint(self) -> str:
        """The configured checkpoint."""
        return self.policy.default

    def held(self) -> list[str]:
        """The checkpoints held now, least recently used first."""
        with self._lock:
            return list(self._held)

    def _lazy(self, checkpoint: str | None, create: bool) -> LazyBackend | None:
        name = self.policy.resolve(checkpoint)  # raises CheckpointRefused: nothing is created
        with self._lock:
            lazy = self._held.get(name)
            if lazy is not None:
                self._held.move_to_end(name)
                return lazy
            if not create:
                return None
            lazy = LazyBackend(
                name, retry_after=self.retry_after, clock=self.clock, **self.load_kwargs
            )
            self._held[name] = lazy
            evicted = False
            while len(self._held) > self.max_backends:
                self._held.popitem(last=False)  # sessions still using it keep it alive
                evicted = True
        if evicted and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return lazy

    def start(self, checkpoint: str | None = None) -> None:
        """Begin loading ``checkpoint`` in the background (raises CheckpointRefused)."""
        self._lazy(checkpoint, create=True).start()

    def get(
        self,
        checkpoint: str | None = None,
        progress: ProgressFn | None = None,
        timeout: float | None = None,
    ) -> Backend:
        """The backend for ``checkpoint``, waiting for its load (raises CheckpointRefused)."""
        return self._lazy(checkpoint, create=True).get(progress=progress, timeout=timeout)

    def loading(self, checkpoint: str | None = None) -> bool:
        """Whether ``checkpoint`` is loading now (False when refused or not started)."""
        try:
            lazy = self._lazy(checkpoint, create=False)
        except CheckpointRefused:
            return False
        return lazy is not None and lazy.attempts > 0 and not lazy.loaded

    def status(self, checkpoint: str | None = None) -> LoadStatus:
        """Where ``checkpoint`` stands; never starts a load."""
        requested = (checkpoint or "").strip() or self.policy.default
        try:
            lazy = self._lazy(checkpoint, create=False)
        except CheckpointRefused as err:
            return LoadStatus(requested, "refused", message=str(err))
        if lazy is None or lazy.attempts == 0:
            return LoadStatus(requested, "idle", message="not loaded")
        if not lazy.loaded:
            return LoadStatus(requested, "loading", lazy.fraction, lazy.message)
        if lazy._error is not None:
            return LoadStatus(requested, "failed", 1.0, str(lazy._error), retry_in=lazy.retry_in())
        backend = lazy._backend
        if backend is not None and backend.load_error:
            return LoadStatus(
                requested, "fallback", 1.0, backend.load_error, backend, lazy.retry_in()
            )
        return LoadStatus(requested, "ready", 1.0, lazy.message, backend)
