"""Which backend to load, and loading it: a checkpoint name resolved, the model or the
weight-free fallback, and :class:`LazyBackend`, which loads in a background thread so that a UI
never waits for a model.
"""

from __future__ import annotations

import os
import threading

import torch

from scissor_viz.models.base import Backend, BackendLoadError
from scissor_viz.models.llava_onevision import DEFAULT_CHECKPOINT, LlavaOnevisionBackend
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.progress import ProgressFn, report

CHECKPOINT_ENV = "SCISSOR_VIZ_CHECKPOINT"


def resolve_checkpoint(checkpoint: str | None = None) -> str:
    """The argument, else ``$SCISSOR_VIZ_CHECKPOINT``, else the default 0.5B checkpoint."""
    return checkpoint or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT


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
    Extra keyword arguments go to ``LlavaOnevisionBackend.from_pretrained``.
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
    """

    def __init__(self, checkpoint: str | None = None, device=None, **kwargs):
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = device
        self.kwargs = kwargs
        self.fraction = 0.0
        self.message = "not loaded"
        self._backend: Backend | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._listeners: list[ProgressFn] = []

    @property
    def loaded(self) -> bool:
        return self._done.is_set()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        for fn in list(self._listeners):
            fn(fraction, message)

    def _load(self) -> None:
        try:
            self._backend = load_backend(
                self.checkpoint, self.device, progress=self._progress, **self.kwargs
            )
            self._progress(1.0, f"ready: {self._backend.name}")
        except BaseException as err:
            self._error = err
        finally:
            self._done.set()

    def start(self) -> LazyBackend:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, name="load-backend", daemon=True)
                self._thread.start()
        return self

    def get(self, progress: ProgressFn | None = None, timeout: float | None = None) -> Backend:
        """The backend, loading it first if needed; ``progress`` sees the load's progress."""
        if progress is not None and not self._done.is_set():
            self._listeners.append(progress)
            report(progress, self.fraction, self.message)
        try:
            self.start()
            if not self._done.wait(timeout):
                raise TimeoutError(f"backend still loading after {timeout} s: {self.message}")
        finally:
            if progress is not None and progress in self._listeners:
                self._listeners.remove(progress)
        if self._error is not None:
            raise self._error
        assert self._backend is not None
        return self._backend
