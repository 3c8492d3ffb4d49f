"""Which backend to load, and loading it.

* the settings: device (``$SCISSOR_VIZ_DEVICE``), dtype (``$SCISSOR_VIZ_DTYPE``), the default
  checkpoint for the hardware (:func:`default_checkpoint`), the Hub (reachable? cached?);
* :func:`load_model`: any checkpoint of a supported family (hub id or local folder), through
  the family's backend class (:data:`FAMILIES`, by the config's ``model_type``);
* :class:`CheckpointPolicy`: the operator decides which checkpoints a request may load;
* :func:`load_backend`: a checkpoint (or the weight-free fallback, with the reason);
* :class:`LazyBackend`: one checkpoint loading in a background thread (a UI never waits for it),
  retried after a back-off when the load failed;
* :class:`BackendRegistry`: the backends a server holds, by checkpoint, at most a few at once.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from scissor_viz.models.base import (
    RANDOM_WEIGHTS_FLAG,
    Backend,
    BackendLoadError,
    CheckpointRefused,
)
from scissor_viz.models.cache import TokenCache
from scissor_viz.models.internvl import InternVLBackend
from scissor_viz.models.llava_next_video import LlavaNextVideoBackend
from scissor_viz.models.llava_onevision import LlavaOnevisionBackend
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.models.qwen2_5_vl import Qwen2_5_VLBackend
from scissor_viz.models.qwen3_vl import Qwen3VLBackend
from scissor_viz.models.smolvlm import SmolVLMBackend
from scissor_viz.models.vlm import VideoLLMBackend
from scissor_viz.progress import ProgressFn, report

CHECKPOINT_ENV = "SCISSOR_VIZ_CHECKPOINT"
ALLOW_ANY_ENV = "SCISSOR_VIZ_ALLOW_ANY_CHECKPOINT"  # "1": requests may name any checkpoint
MAX_BACKENDS_ENV = "SCISSOR_VIZ_MAX_BACKENDS"
DEFAULT_MAX_BACKENDS = 2  # loaded backends a registry holds; the least recently used goes first
RETRY_AFTER = 60.0  # seconds after a failed load before a request may start it again
REFUSED = "This checkpoint is not available on this server."  # one message for every refusal
_TRUE = ("1", "true", "yes", "on")
DEVICE_ENV = "SCISSOR_VIZ_DEVICE"
DTYPE_ENV = "SCISSOR_VIZ_DTYPE"
# The default checkpoint, by hardware: the fastest reasonable model on a CPU (benchmarks/
# bench_model_cpu.py --families measures each family's smallest shape), the 0.5B OneVision on a GPU.
GPU_CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
CPU_CHECKPOINT = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"  # 16 frames answered ~3x sooner
DEFAULT_CHECKPOINT = GPU_CHECKPOINT  # what the README's examples name
FAMILIES: list[type[VideoLLMBackend]] = [
    LlavaOnevisionBackend,
    LlavaNextVideoBackend,
    Qwen2_5_VLBackend,
    Qwen3VLBackend,
    InternVLBackend,
    SmolVLMBackend,
]
PREPROCESSING_FILES = (
    "video_preprocessor_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)
_FIX_HINT = (
    "How to fix: connect to the internet once so the checkpoint can be downloaded into the "
    "Hugging Face cache; or set HF_HOME to a cache that already holds it; or pass a local folder "
    "(one written by save_pretrained or `hf download`) as the checkpoint, or put that folder or "
    "another supported checkpoint's id in the SCISSOR_VIZ_CHECKPOINT environment variable."
)


def default_checkpoint(device: str | torch.device | None = None) -> str:
    """The checkpoint a server loads when none is configured: :data:`GPU_CHECKPOINT` on CUDA,
    :data:`CPU_CHECKPOINT` elsewhere (``device`` as :func:`resolve_device` resolves it)."""
    return GPU_CHECKPOINT if resolve_device(device).type == "cuda" else CPU_CHECKPOINT


def resolve_checkpoint(checkpoint: str | None = None) -> str:
    """The argument, else ``$SCISSOR_VIZ_CHECKPOINT``, else :func:`default_checkpoint`."""
    return checkpoint or os.environ.get(CHECKPOINT_ENV) or default_checkpoint()


def family_of(model_type: str) -> type[VideoLLMBackend] | None:
    """The backend class of a config's ``model_type`` (None: no supported family)."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def supported_families() -> str:
    return ", ".join(f"{f.family} ({'/'.join(f.model_types)})" for f in FAMILIES)


# ----------------------------------------------------------------------------- device, dtype


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The argument, else ``$SCISSOR_VIZ_DEVICE``, else CUDA when present, else CPU."""
    device = device or os.environ.get(DEVICE_ENV)
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_dtype(device: torch.device) -> torch.dtype:
    """``$SCISSOR_VIZ_DTYPE`` if set, else bf16 on CUDA when supported (else fp16), float32 on
    CPU. (bf16 on a CPU with AVX-512 BF16 encodes ~2-3x faster, but its tokens differ from
    float32's by ~1e-2 relative: opt in with SCISSOR_VIZ_DTYPE=bfloat16.)"""
    name = os.environ.get(DTYPE_ENV, "").strip().lower()
    if name:
        if name not in _DTYPES:
            raise ValueError(f"{DTYPE_ENV}={name!r}: use one of {', '.join(_DTYPES)}")
        return _DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ----------------------------------------------------------------------------- files, Hub


def _read_json(path: str | None) -> dict | None:
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _resolve_file(checkpoint: str, name: str, local_files_only: bool) -> str | None:
    if os.path.isdir(checkpoint):
        path = os.path.join(checkpoint, name)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    return cached_file(
        checkpoint,
        name,
        local_files_only=local_files_only,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def preprocessing_config(checkpoint: str, local_files_only: bool = True) -> tuple[dict, str]:
    """The checkpoint's own preprocessing settings (video config, else image config, else the
    processor config's nested one) and the file they came from. Never a processor class's
    defaults: raises ValueError if there are none."""
    for name in PREPROCESSING_FILES:
        cfg = _read_json(_resolve_file(checkpoint, name, local_files_only))
        if cfg is None:
            continue
        if name == "processor_config.json":
            cfg = cfg.get("video_processor") or cfg.get("image_processor")
            if not isinstance(cfg, dict):
                continue
        return cfg, f"{checkpoint}/{name}"
    raise ValueError(
        f"{checkpoint} has no preprocessing config ({', '.join(PREPROCESSING_FILES)}); "
        "refusing to guess the normalisation"
    )


def _load_chat_template(checkpoint: str, tokenizer, local_files_only: bool) -> str | None:
    """The processor's chat template (chat_template.json / .jinja), else the tokenizer's."""
    data = _read_json(_resolve_file(checkpoint, "chat_template.json", local_files_only))
    if data and isinstance(data.get("chat_template"), str):
        return data["chat_template"]
    path = _resolve_file(checkpoint, "chat_template.jinja", local_files_only)
    if path and os.path.isfile(path):
        return Path(path).read_text(encoding="utf-8")
    return getattr(tokenizer, "chat_template", None)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (never
    hangs: DNS and connect run in a daemon thread). False when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=constants.HF_HUB_CACHE)
        return isinstance(found, str)
    except Exception:
        return False


def _looks_like_path(checkpoint: str) -> bool:
    return (
        os.path.isabs(checkpoint)
        or checkpoint.startswith((".", "~"))
        or "\\" in checkpoint
        or checkpoint.count("/") != 1
    )


def _locate(
    checkpoint: str, hub_timeout: float, progress: ProgressFn | None
) -> tuple[str, bool, str, bool]:
    """Where to load ``checkpoint`` from: (source, local files only, what is tried, whether it
    is a Hub id). Raises :class:`BackendLoadError` for a missing folder or an unreachable Hub."""
    if os.path.isdir(os.path.expanduser(checkpoint)):
        source = os.path.expanduser(checkpoint)
        return source, True, f"the local folder {source}", False
    if _looks_like_path(checkpoint):
        raise BackendLoadError(
            f"Could not load the model: the folder {checkpoint!r} does not exist (and "
            "it is not a Hub id of the form owner/name).\n" + _FIX_HINT,
            tried=f"the local folder {checkpoint}",
            hint=_FIX_HINT,
        )
    if _in_hub_cache(checkpoint):
        return checkpoint, True, f"{checkpoint} from the Hugging Face cache", True
    if hub_reachable(hub_timeout):
        report(progress, 0.02, f"downloading {checkpoint} (first use; this can take minutes)")
        return checkpoint, False, f"downloading {checkpoint} from the Hugging Face Hub", True
    raise BackendLoadError(
        f"Could not load {checkpoint!r}: it is not in the Hugging Face "
        "cache and the Hub is unreachable (offline, or HF_HUB_OFFLINE is set).\n" + _FIX_HINT,
        tried="the Hugging Face cache, then the Hub (unreachable)",
        hint=_FIX_HINT,
    )


# ----------------------------------------------------------------------------- loading


def load_model(
    checkpoint: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
    attn_implementation: str | None = None,
    batch_size: int | None = None,
    cache: TokenCache | None = None,
    hub_timeout: float = 3.0,
) -> VideoLLMBackend:
    """Load a hub id or a local folder of any supported family (:data:`FAMILIES`, chosen by
    the config's ``model_type``). Raises :class:`BackendLoadError` (plain words: what
    was tried, how to fix it) when it cannot; never hangs on an unreachable Hub.

    ``attn_implementation`` defaults to ``"sdpa"``, except bf16/fp16 on a CPU: there
    PyTorch's CPU flash-attention kernel is ~3x slower than plain matmuls, so ``"eager"``
    (benchmarks/bench_model_cpu.py measures both)."""
    device = resolve_device(device)
    try:
        dtype = dtype or default_dtype(device)
    except ValueError as err:
        raise BackendLoadError(str(err), tried=checkpoint) from err
    if attn_implementation is None:
        low_cpu = device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)
        attn_implementation = "eager" if low_cpu else "sdpa"
    report(progress, 0.0, f"locating {checkpoint}")
    source, local_only, tried, hub = _locate(checkpoint, hub_timeout, progress)
    args = (device, dtype, attn_implementation, batch_size, cache, progress)
    try:
        try:
            return _load(source, checkpoint, local_only, *args)
        except (OSError, ValueError):
            # only part of a hub checkpoint in the cache (an interrupted download): fetch it
            if not (hub and local_only) or not hub_reachable(hub_timeout):
                raise
            tried += ", then downloading the missing files from the Hub"
            report(progress, 0.02, f"downloading the rest of {checkpoint}")
            return _load(source, checkpoint, False, *args)
    except BackendLoadError:
        raise
    except Exception as err:
        raise BackendLoadError(
            f"Could not load {checkpoint!r} (tried {tried}): "
            f"{type(err).__name__}: {err}\n" + _FIX_HINT,
            tried=tried,
            hint=_FIX_HINT,
        ) from err


def _load(source, checkpoint, local_only, device, dtype, attn, batch_size, cache, progress):
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    no_remote_code = {"local_files_only": local_only, "trust_remote_code": False}  # never
    config = AutoConfig.from_pretrained(source, **no_remote_code)
    family = family_of(config.model_type)
    if family is None:
        raise BackendLoadError(
            f"{checkpoint!r} is a {config.model_type!r} checkpoint, not a supported video LLM. "
            f"Supported: {supported_families()}; e.g. {DEFAULT_CHECKPOINT}.",
            tried=checkpoint,
        )
    report(progress, 0.05, "reading tokenizer and preprocessing config")
    tokenizer = AutoTokenizer.from_pretrained(source, **no_remote_code)
    cfg, where = preprocessing_config(source, local_files_only=local_only)
    preprocessing = family.preprocessing_from_config(cfg, where)
    chat_template = _load_chat_template(source, tokenizer, local_only)
    report(progress, 0.1, f"loading weights of {checkpoint} (a large model takes a while)")
    model, info = getattr(transformers, family.model_class).from_pretrained(
        source,
        dtype=dtype,
        attn_implementation=attn,
        output_loading_info=True,
        **no_remote_code,
    )
    missing = list(info.get("missing_keys") or [])
    report(progress, 0.9, f"moving the model to {device}")
    model = model.to(device).eval()
    pretrained = not getattr(model.config, RANDOM_WEIGHTS_FLAG, False) and not missing
    backend = family(
        model,
        tokenizer,
        preprocessing,
        checkpoint=checkpoint,
        pretrained=pretrained,
        chat_template=chat_template,
        batch_size=batch_size,
        cache=cache,
    )
    if missing:
        backend.description += f" — {len(missing)} weights were missing from the checkpoint"
    report(progress, 1.0, f"loaded {checkpoint} on {device}")
    return backend


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
    """Load a checkpoint of a supported family (hub id or local folder); on failure, pixel
    descriptors.

    The returned pixel backend's ``load_error`` (and ``unavailable_reason``) say what was tried
    and how to fix it. With ``fallback=False`` the :class:`BackendLoadError` is raised instead.
    Extra keyword arguments go to :func:`load_model`. No policy applies
    here: servers go through :class:`BackendRegistry`.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    try:
        return load_model(checkpoint, device=device, progress=progress, **kwargs)
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
