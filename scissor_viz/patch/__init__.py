"""LLaVA-Scissor as a two-line drop-in for transformers video LLMs::

    scissor_viz.apply_patch(model, retention=0.1)        # or tau=0.9; returns the model
    out = model.generate(**inputs, max_new_tokens=64)    # video tokens compressed by SCC

The patched model computes each video's features with its own code, compresses them with
:func:`~scissor_viz.scc.scissor_compress`, splices the K tokens where the video's placeholders
were (the run shrinks; text and images are untouched) and runs the stock ``forward`` /
``generate`` on the result. ``model.scissor`` holds the settings (checked when set, read once
at the start of each call) and the last call's statistics; :func:`remove_patch` restores the
stock model, and a patched model pickles (and copies) as one. One small adapter per model family
(:mod:`.llava_onevision`, :mod:`.llava_next_video`, :mod:`.qwen2_5_vl`).
"""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from typing import Any, NamedTuple

import torch

from scissor_viz.patch.base import (
    Adapter,
    Layout,
    Run,
    SampleRecord,
    VideoRecord,
    VideoTokens,
    runs_by_length,
    runs_contiguous,
    splice,
)
from scissor_viz.patch.llava_next_video import LlavaNextVideoAdapter
from scissor_viz.patch.llava_onevision import LlavaOnevisionAdapter
from scissor_viz.patch.qwen2_5_vl import Qwen2_5_VLAdapter
from scissor_viz.patch.representatives import merge, representatives
from scissor_viz.scc import (
    Compression,
    check_epsilon,
    check_retention,
    check_seed,
    check_tau,
    scissor_compress,
)

ADAPTERS: list[type[Adapter]] = [LlavaOnevisionAdapter, LlavaNextVideoAdapter, Qwen2_5_VLAdapter]

__all__ = [
    "ADAPTERS",
    "Adapter",
    "SampleRecord",
    "ScissorState",
    "VideoRecord",
    "VideoTokens",
    "apply_patch",
    "register_adapter",
    "remove_patch",
    "representatives",
    "supported_classes",
]


def supported_classes() -> list[str]:
    return [name for adapter in ADAPTERS for name in adapter.classes]


def register_adapter(adapter: type[Adapter]) -> type[Adapter]:
    """Add a model family (usable as a class decorator); later registrations take precedence."""
    ADAPTERS.insert(0, adapter)
    return adapter


def adapter_for(model: Any) -> Adapter:
    """The adapter of the model's class (or of the nearest base class one serves)."""
    for cls in type(model).__mro__:
        for adapter in ADAPTERS:
            if cls.__name__ in adapter.classes:
                return adapter(model)
    raise TypeError(
        f"scissor_viz.apply_patch does not support {type(model).__name__}; supported: "
        f"{', '.join(supported_classes())} (or register an Adapter: see docs/patch.md)"
    )


# ----------------------------------------------------------------------------- state


class Setting(NamedTuple):
    """The settings one call runs with, read once at its start (another thread may change
    ``model.scissor`` meanwhile: that changes the next call)."""

    retention: float | None
    tau: float | None
    epsilon: float
    seed: int

    @property
    def identity(self) -> bool:
        """Whether videos pass through unchanged (retention 1)."""
        return self.tau is None and self.retention == 1.0


class ScissorState:
    """``model.scissor``: how much to keep, and what the last call with a video did.

    Set ``retention`` (a ratio in (0, 1]; each video keeps the K closest to retention * N) or
    ``tau`` (a fixed similarity threshold); setting one clears the other. Retention 1 runs the
    stock model unchanged. Each setting is checked with the engine's own rules when it is set.
    ``last`` is one :class:`SampleRecord` per prompt of the last call that carried a video.

    A video whose features hold NaN or infinity is passed through uncompressed, with a
    warning, as the stock model would take it (SCC's similarities are undefined there).
    """

    def __init__(self, adapter: Adapter, retention: float | None, tau: float | None, **scc: Any):
        self.adapter = adapter
        self.epsilon = scc.get("epsilon", 0.05)
        self.seed = scc.get("seed", 0)
        self.last: list[SampleRecord] = []
        self.configure(retention, tau)

    def configure(self, retention: float | None = None, tau: float | None = None) -> None:
        if (retention is None) == (tau is None):
            raise ValueError("give exactly one of retention= (a ratio in (0, 1]) or tau=")
        if tau is None:
            self.retention = retention
        else:
            self.tau = tau

    @property
    def retention(self) -> float | None:
        return self._retention

    @retention.setter
    def retention(self, value: float) -> None:
        self._retention, self._tau = check_retention(value), None

    @property
    def tau(self) -> float | None:
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        check_tau(value)  # the engine's rule (it rounds to float32 itself: keep the caller's)
        self._tau, self._retention = float(value), None

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._epsilon = check_epsilon(value)

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = check_seed(value)

    @property
    def setting(self) -> Setting:
        """The current settings, as one value."""
        return Setting(self._retention, self._tau, self._epsilon, self._seed)

    @property
    def identity(self) -> bool:
        """Whether videos pass through unchanged (retention 1)."""
        return self.setting.identity

    def __repr__(self) -> str:
        what = f"tau={self._tau}" if self._tau is not None else f"retention={self._retention}"
        return f"ScissorState({type(self.adapter).__name__}, {what})"

    # --- compression

    def grids(self, **inputs: Any) -> list[torch.Tensor]:
        """The model's own video features for these processor outputs: one (T, P, d) grid per
        video, the tokens SCC runs on (OneVision: without its image_newline)."""
        with torch.no_grad():
            return self.adapter.grids(inputs)

    def compress(
        self, grid: torch.Tensor, setting: Setting | None = None
    ) -> tuple[VideoTokens, VideoRecord]:
        """SCC on one (T, P, d) grid at ``setting`` (the current one by default): the tokens to
        splice, and a record."""
        setting = setting or self.setting
        start = time.perf_counter()
        # one call: the engine's one-shot path (the search shares its work with the compression)
        comp = scissor_compress(
            grid.detach(),
            setting.tau,
            setting.epsilon,
            setting.seed,
            retention=None if setting.tau is not None else setting.retention,
        )
        tokens = merge(grid, comp) if grid.requires_grad else comp.tokens  # gradients flow
        source = comp.representatives if self.adapter.mrope else None
        if grid.is_cuda:
            torch.cuda.synchronize(grid.device)
        seconds = time.perf_counter() - start
        record = VideoRecord(
            tuple(grid.shape[:2]), comp.num_tokens, comp.tau, seconds, comp, source
        )
        return VideoTokens(tokens, source), record

    def video_tokens(self, grid: torch.Tensor, comp: Compression) -> VideoTokens:
        """What to pass as ``video_tokens=[...]`` for a compression computed elsewhere on
        ``grid`` (e.g. by the app): its tokens, and for M-RoPE models their representatives."""
        source = representatives(grid, comp) if self.adapter.mrope else None
        return VideoTokens(comp.tokens, source)

    # --- the patched entry points

    def prepare(self, inputs: dict[str, Any], generate: bool) -> dict[str, Any] | None:
        """The inputs for the stock method, or None to run it on ``inputs`` unchanged."""
        setting = self.setting  # once: a change during this call applies to the next one
        given = inputs.pop("video_tokens", None)
        if given is None and inputs.get("pixel_values_videos") is None:
            return None
        cache = inputs.get("cache", inputs.get("past_key_values"))
        if cache is not None and getattr(cache, "get_seq_length", lambda: 1)() > 0:
            if given is not None:
                raise ValueError("video_tokens= starts a prompt; it cannot continue a cache")
            return None  # a continued cache: its videos were spliced, or not, before
        input_ids = inputs.get("input_ids")
        if input_ids is None:
            raise ValueError("the SCC patch finds videos by their placeholders: pass input_ids")
        if given is None and setting.identity:
            self.last = _stock_records(input_ids, inputs.get("attention_mask"), self.adapter)
            return None
        if given is not None:
            videos, runs = self._given(input_ids, given)
            records = [VideoRecord(None, len(v.tokens), None, 0.0, None, v.source) for v in videos]
        else:
            grids = self.adapter.grids(inputs)
            if not all(torch.isfinite(g).all() for g in grids):
                warnings.warn(NON_FINITE, RuntimeWarning, stacklevel=4)
                self.last = _stock_records(input_ids, inputs.get("attention_mask"), self.adapter)
                return None
            tail = len(self.adapter.tail())
            lengths = [g.shape[0] * g.shape[1] + tail for g in grids]
            runs = runs_by_length(input_ids, self.adapter.video_token_id, lengths)
            videos, records = map(list, zip(*(self.compress(g, setting) for g in grids)))
        new, lay = splice(self.adapter, inputs, runs, videos, generate)
        self.last = _records(runs, records, lay, inputs.get("attention_mask"), input_ids)
        return new

    def _given(
        self, input_ids: torch.Tensor, given: list[VideoTokens | Compression | torch.Tensor]
    ) -> tuple[list[VideoTokens], list[Run]]:
        videos = [_as_video_tokens(v) for v in given]
        runs = runs_contiguous(input_ids, self.adapter.video_token_id)
        if len(runs) != len(videos):
            raise ValueError(f"{len(videos)} video_tokens for {len(runs)} placeholder runs")
        return videos, runs

    def splice(
        self,
        video_tokens: list[VideoTokens | Compression | torch.Tensor],
        generate: bool = False,
        **inputs: Any,
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """What ``forward`` / ``generate`` do with ``video_tokens=`` before the stock method
        runs, without running it: the inputs the stock method then gets (``inputs_embeds``,
        ``attention_mask``, ...) and, per video in prompt order, the (sample, position) rows
        of its K given tokens in them (its tail, e.g. OneVision's newline, excluded). For
        callers that need the language model's input itself, e.g. to read its attention
        (FastV). ``last`` is left as it is."""
        input_ids = inputs.get("input_ids")
        if input_ids is None:
            raise ValueError("the SCC patch finds videos by their placeholders: pass input_ids")
        videos, runs = self._given(input_ids, video_tokens)
        new, lay = splice(self.adapter, inputs, runs, videos, generate)
        where, rows = lay.slot.nonzero().cpu(), []
        for video in videos:  # row-major, as the slots were filled
            rows.append(where[: len(video.tokens)])
            where = where[len(video.tokens) + (len(self.adapter.tail()) if video.tail else 0) :]
        return new, rows


NON_FINITE = (
    "a video's features contain NaN or infinite values: SCC cannot compare them, so this call "
    "runs the stock model on the uncompressed video (check the pixel values)"
)


def _as_video_tokens(value: VideoTokens | Compression | torch.Tensor) -> VideoTokens:
    if isinstance(value, VideoTokens):
        return value
    return VideoTokens(value.tokens if isinstance(value, Compression) else value)


def _stock_records(
    input_ids: torch.Tensor, mask: torch.Tensor | None, adapter: Adapter
) -> list[SampleRecord]:
    counts = (input_ids == adapter.video_token_id).sum(1).tolist()
    lengths = [input_ids.shape[1]] * len(counts) if mask is None else mask.sum(1).tolist()
    return [SampleRecord(c, c, n, n) for c, n in zip(counts, lengths)]


def _records(
    runs: list[Run],
    videos: list[VideoRecord],
    lay: Layout,
    mask: torch.Tensor | None,
    input_ids: torch.Tensor,
) -> list[SampleRecord]:
    out = []
    for b in range(input_ids.shape[0]):
        own = [i for i, run in enumerate(runs) if run.sample == b]
        length = input_ids.shape[1] if mask is None else int(mask[b].sum())
        before, after = sum(runs[i].stop - runs[i].start for i in own), int(lay.slot[b].sum())
        videos_b = tuple(videos[i] for i in own)
        out.append(SampleRecord(before, after, length, length - before + after, videos_b))
    return out


# ----------------------------------------------------------------------------- patching

_PATCHED: dict[type, type] = {}


def _restore_prompt(out: Any, input_ids: torch.Tensor, new_length: int) -> Any:
    """generate's sequences with the caller's prompt ids in front of the new tokens, as stock."""
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    factor = sequences.shape[0] // input_ids.shape[0]  # beams / num_return_sequences
    prompt = input_ids.repeat_interleave(factor, 0).to(sequences.device)
    full = torch.cat([prompt, sequences[:, new_length:]], dim=1)
    if isinstance(out, torch.Tensor):
        return full
    out.sequences = full
    return out


def _patched_class(base: type) -> type:
    """``base`` with ``forward`` and ``generate`` that splice SCC's tokens first (same name,
    so configs, saving and the loss type see the stock class)."""
    if base in _PATCHED:
        return _PATCHED[base]
    forward_names = list(inspect.signature(base.forward).parameters)[1:]
    generate_names = list(inspect.signature(base.generate).parameters)[1:]

    @functools.wraps(base.forward)
    def forward(self, *args, **kwargs):
        kwargs.update(zip(forward_names, args))
        new = self.scissor.prepare(kwargs, generate=False)
        return base.forward(self, **(kwargs if new is None else new))

    @functools.wraps(base.generate)
    def generate(self, *args, **kwargs):
        kwargs.update(zip(generate_names, args))
        if isinstance(kwargs.get("inputs"), torch.Tensor) and "input_ids" not in kwargs:
            kwargs["input_ids"] = kwargs.pop("inputs")
        with torch.no_grad():
            new = self.scissor.prepare(kwargs, generate=True)
        if new is None:
            return base.generate(self, **kwargs)
        out = base.generate(self, **new)
        return _restore_prompt(out, kwargs["input_ids"], new["input_ids"].shape[1])

    def __reduce_ex__(self, protocol):
        """Pickle (and copy) as the stock model plus the settings, patched again on load."""
        stock = base.__new__(base)
        stock.__dict__.update(self.__dict__)
        del stock.__dict__["scissor"]  # it refers to the model through its adapter
        return _repatch, (stock, self.scissor.setting)

    namespace = {
        "forward": forward,
        "generate": generate,
        "__reduce_ex__": __reduce_ex__,
        "_scissor_base": base,
    }
    namespace.update(__module__=base.__module__, __qualname__=base.__qualname__)
    _PATCHED[base] = type(base.__name__, (base,), namespace)
    return _PATCHED[base]


def _repatch(model: Any, setting: Setting) -> Any:
    """Unpickling a patched model: the stock model, patched with the same settings."""
    return apply_patch(
        model, setting.retention, tau=setting.tau, epsilon=setting.epsilon, seed=setting.seed
    )


def apply_patch(
    model: Any,
    retention: float | None = None,
    *,
    tau: float | None = None,
    epsilon: float = 0.05,
    seed: int = 0,
) -> Any:
    """Make ``model`` compress its video tokens with SCC; returns the model (patched in place).

    Give ``retention`` (a ratio in (0, 1]) or ``tau`` (a finite number); ``epsilon`` (in
    [0, 1)) and ``seed`` (a whole number in [0, 2**63)) go to the engine. Each is checked
    here, with the engine's rules: a ValueError leaves the model as it was. Patching a patched
    model only changes its settings.
    """
    epsilon, seed = check_epsilon(epsilon), check_seed(seed)
    state = getattr(model, "scissor", None)
    if isinstance(state, ScissorState):
        state.configure(retention, tau)
        state.epsilon, state.seed = epsilon, seed
        return model
    adapter = adapter_for(model)
    state = ScissorState(adapter, retention, tau, epsilon=epsilon, seed=seed)
    model.__class__ = _patched_class(type(model))
    model.scissor = state
    return model


def remove_patch(model: Any) -> Any:
    """Undo :func:`apply_patch` (a no-op on an unpatched model); returns the model."""
    base = type(model).__dict__.get("_scissor_base")
    if base is not None:
        model.__class__ = base
    if isinstance(getattr(model, "scissor", None), ScissorState):
        del model.scissor
    return model
