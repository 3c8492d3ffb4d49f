"""Which feature backend serves a request: the configured model (loaded in the background,
through the checkpoint policy), an injected one (tests), or the weight-free pixel descriptors.
Every event that names a checkpoint goes through :class:`Backends`, so the server, not the
widget, decides what may load."""

from __future__ import annotations

from scissor_viz.models import (
    REFUSED,
    Backend,
    BackendRegistry,
    CheckpointPolicy,
    PixelBackend,
)

MODEL_CHOICE, PIXEL_CHOICE = "LLaVA-OneVision", "Pixel descriptors (no model)"

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
        return self.registry.get(name, progress=progress)

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
        if status.state == "refused":
            return f"⚠️ {REFUSED}"
        if status.state in ("idle", "loading"):
            what = f"{status.message} ({status.fraction:.0%})" if status.message else "starting"
            return f"⏳ Loading `{status.checkpoint}`: {what}"
        if status.state == "failed":
            later = f" It is tried again in {status.retry_in:.0f} s." if status.retry_in else ""
            return f"⚠️ Could not load `{status.checkpoint}`: {status.message}{later}"
        return describe(status.backend)


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
