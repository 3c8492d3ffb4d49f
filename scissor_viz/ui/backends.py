"""Which feature backend serves a request: the configured model (loaded lazily, in the
background), an injected one (tests), or the weight-free pixel descriptors."""

from __future__ import annotations

import threading

from scissor_viz.models import Backend, LazyBackend, resolve_checkpoint
from scissor_viz.models.pixels import PixelBackend

MODEL_CHOICE, PIXEL_CHOICE = "LLaVA-OneVision", "Pixel descriptors (no model)"

try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)


class Backends:
    """The app's feature backends: one lazily loaded model per checkpoint, and pixels."""

    def __init__(self, injected: Backend | None = None, checkpoint: str | None = None):
        self.injected = injected
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.pixels = PixelBackend()
        self._lazy: dict[str, LazyBackend] = {}
        self._lock = threading.Lock()

    def lazy(self, checkpoint: str) -> LazyBackend:
        with self._lock:
            if checkpoint not in self._lazy:
                self._lazy[checkpoint] = LazyBackend(checkpoint)
            return self._lazy[checkpoint]

    def start(self) -> None:
        """Begin loading the default model in the background (the page does not wait)."""
        if self.injected is None:
            self.lazy(self.checkpoint).start()

    def get(self, choice: str, checkpoint: str | None, progress=None) -> Backend:
        if choice == PIXEL_CHOICE:
            return self.pixels
        if self.injected is not None and not checkpoint:
            return self.injected
        return self.lazy(checkpoint or self.checkpoint).get(progress=progress)

    def loading(self, choice: str, checkpoint: str | None) -> bool:
        """Whether the chosen model is still loading."""
        if choice == PIXEL_CHOICE or (self.injected is not None and not checkpoint):
            return False
        return not self.lazy(checkpoint or self.checkpoint).loaded

    def status(self, choice: str, checkpoint: str | None) -> str:
        """One line saying which backend is active, and why answers may be unavailable."""
        if choice == PIXEL_CHOICE:
            return describe(self.pixels)
        if self.injected is not None and not checkpoint:
            return describe(self.injected)
        lazy = self.lazy(checkpoint or self.checkpoint)
        if not lazy.loaded:
            return f"⏳ Loading `{lazy.checkpoint}`: {lazy.message} ({lazy.fraction:.0%})"
        try:
            return describe(lazy.get())
        except Exception as err:  # shown to the person
            return f"⚠️ Could not load `{lazy.checkpoint}`: {err}"


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
