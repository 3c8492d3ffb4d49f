"""Which feature backend serves a request: the configured model (loaded in the background,
through the checkpoint policy), an injected one (tests), or the weight-free pixel descriptors.
Every event that names a checkpoint goes through :class:`Backends`, so the server, not the
widget, decides what may load."""

from __future__ import annotations

import logging
import os
import re

from scissor_viz.models import (
    REFUSED,
    Backend,
    BackendLoadError,
    BackendRegistry,
    CheckpointPolicy,
    CheckpointRefused,
    PixelBackend,
)

log = logging.getLogger(__name__)
MODEL_CHOICE, PIXEL_CHOICE = "LLaVA-OneVision", "Pixel descriptors (no model)"
# What visitors read when the model did not load (the server's log has the path and the error).
NOT_LOADED = "The configured model could not be loaded; the server's log says why."
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def public_name(checkpoint: str | None) -> str:
    """The checkpoint as visitors may read it: a hub id as it is; a folder on this server (or
    anything else) as "the configured model"."""
    name = (checkpoint or "").strip()
    if HUB_ID.fullmatch(name) and not name.startswith(".") and not os.path.exists(name):
        return name
    return "the configured model"


try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)


class Backends:
    """The app's feature backends: the registry's models (the configured checkpoint; others
    only where the operator allows any), an injected backend, and pixels."""

    def __init__(
        self,
        injected: Backend | None = None,
        checkpoint: str | None = None,
        allow_any: bool | None = None,
    ):
        self.injected = injected
        self.registry = BackendRegistry(CheckpointPolicy.from_env(checkpoint, allow_any))
        self.pixels = PixelBackend()

    @property
    def checkpoint(self) -> str:
        return self.registry.checkpoint

    @property
    def allow_any(self) -> bool:
        return self.registry.policy.allow_any

    def _model(self, choice: str, checkpoint: str | None) -> str | None:
        """The checkpoint a request names (None: pixels or the injected backend)."""
        checkpoint = (checkpoint or "").strip()
        if choice == PIXEL_CHOICE or (self.injected is not None and not checkpoint):
            return None
        return checkpoint

    def start(self) -> None:
        """Begin loading the configured model in the background (the page does not wait)."""
        if self.injected is None:
            self.registry.start()

    def get(self, choice: str, checkpoint: str | None, progress=None) -> Backend:
        """The backend for a request (raises CheckpointRefused for one the policy refuses)."""
        name = self._model(choice, checkpoint)
        if name is None:
            return self.pixels if choice == PIXEL_CHOICE else self.injected
        try:
            return self._public(self.registry.get(name, progress=progress))
        except CheckpointRefused:
            raise
        except BackendLoadError as err:
            log.error("the model %s did not load: %s", name, err)
            raise BackendLoadError(NOT_LOADED) from err

    def _public(self, backend: Backend) -> Backend:
        """The backend as visitors see it: a fallback's reason and a folder's path stay in the
        server's log (the fallback is replaced by pixels that say only NOT_LOADED)."""
        if backend.load_error and backend.load_error != NOT_LOADED:
            if getattr(backend, "shown", None) is None:
                log.error("the model did not load, pixels stand in: %s", backend.load_error)
                backend.shown = PixelBackend(load_error=NOT_LOADED, cache=backend.cache)
            return backend.shown
        private = backend.checkpoint or ""
        if private and public_name(private) != private and private in backend.name:
            shown = public_name(private)
            backend.name = backend.name.replace(private, shown)
            backend.description = backend.description.replace(private, shown)
        return backend

    def loading(self, choice: str, checkpoint: str | None) -> bool:
        """Whether the chosen model is loading now."""
        name = self._model(choice, checkpoint)
        return name is not None and self.registry.loading(name)

    def status(self, choice: str, checkpoint: str | None) -> str:
        """One line saying which backend is active, and why answers may be unavailable."""
        name = self._model(choice, checkpoint)
        if name is None:
            return describe(self.pixels if choice == PIXEL_CHOICE else self.injected)
        status = self.registry.status(name)
        shown = public_name(status.checkpoint)
        if status.state == "refused":
            return f"⚠️ {REFUSED}"
        if status.state in ("idle", "loading"):
            return f"⏳ Loading `{shown}`: {status.fraction:.0%}"  # messages may name files
        if status.state == "failed":
            later = f" It is tried again in {status.retry_in:.0f} s." if status.retry_in else ""
            return f"⚠️ {NOT_LOADED}{later}"
        return describe(self._public(status.backend))


def describe(backend: Backend) -> str:
    """The backend in one line, and why answers are unavailable or not real (details folded)."""
    name = f"**Features:** {backend.name}"
    if backend.load_error:  # the reason answers are unavailable too
        return (
            f"{name} · ⚠️ **No model loaded, so no answers.** "
            f"<details><summary>Why, and how to fix it</summary>\n\n{backend.load_error}\n\n"
            f"{backend.description}</details>"
        )
    if not backend.can_answer:
        reason = backend.unavailable_reason or "no language model"
        return f"{name} — {backend.description} · **Answers unavailable:** {reason}"
    if not backend.pretrained:
        warning = "⚠️ **Random weights** (a test model): its text is not a real answer."
        return f"{name} — {backend.description} · {warning}"
    return f"{name} — {backend.description}"
