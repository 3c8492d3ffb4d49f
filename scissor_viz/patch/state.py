"""``model.scissor``: the patch's settings (checked when set, read once per call), what the
last call did, and the step every patched ``forward`` / ``generate`` runs first: find each
video's placeholders, compress its features with SCC, splice the tokens in."""

from __future__ import annotations

import time
import warnings
from typing import Any, NamedTuple

import torch

from scissor_viz.patch.base import (
    Adapter,
    Layout,
    Run,
    SampleRecord,
    SplicedTokens,
    VideoRecord,
    runs_by_length,
    splice,
)
from scissor_viz.patch.representatives import merge, representatives
from scissor_viz.scc import (
    Compression,
    check_epsilon,
    check_retention,
    check_seed,
    check_tau,
    scissor_compress,
)


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

    def __init__(
        self,
        adapter: Adapter,
        retention: float | None,
        tau: float | None,
        epsilon: float = 0.05,
        seed: int = 0,
    ):
        self.adapter = adapter
        self.epsilon = epsilon
        self.seed = seed
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
        self,
        grid: torch.Tensor,
        setting: Setting | None = None,
        layers: tuple[torch.Tensor, ...] = (),
    ) -> tuple[SplicedTokens, VideoRecord]:
        """SCC on one (T, P, d) grid at ``setting`` (the current one by default): the tokens to
        splice, and a record. ``layers``, grids the model adds at the video's positions (Qwen3-VL's
        DeepStack), are merged with the same partition."""
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
        source = comp.representatives if self.adapter.needs_source else None
        merged = tuple(merge(layer, comp) for layer in layers)
        if grid.is_cuda:
            torch.cuda.synchronize(grid.device)
        seconds = time.perf_counter() - start
        record = VideoRecord(
            tuple(grid.shape[:2]), comp.num_tokens, comp.tau, seconds, comp, source
        )
        return SplicedTokens(tokens, source, layers=merged), record

    def video_tokens(
        self, grid: torch.Tensor, comp: Compression, layers: tuple[torch.Tensor, ...] = ()
    ) -> SplicedTokens:
        """What to pass as ``video_tokens=[...]`` for a compression computed elsewhere on
        ``grid`` (e.g. by the app): its tokens, their representatives (the engine's
        ``comp.representatives``) where the family places tokens by their grid, and ``layers``
        (Qwen3-VL's DeepStack grids of the same video) merged with the same partition."""
        source = representatives(grid, comp) if self.adapter.needs_source else None
        merged = tuple(merge(layer, comp) for layer in layers)
        return SplicedTokens(comp.tokens, source, layers=merged)

    # --- the patched entry points

    def prepare(self, inputs: dict[str, Any], generate: bool) -> dict[str, Any] | None:
        """The inputs for the stock method, or None to run it on ``inputs`` unchanged."""
        setting = self.setting  # once: a change during this call applies to the next one
        given = inputs.pop("video_tokens", None)
        if given is None and inputs.get(self.adapter.pixels) is None:
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
            videos, runs = self._given(input_ids, given, inputs)
            records = [VideoRecord(None, len(v.tokens), None, 0.0, None, v.source) for v in videos]
        else:
            encoded = self.adapter.encode(inputs)
            if not all(torch.isfinite(g).all() for g, _ in encoded):
                warnings.warn(NON_FINITE, RuntimeWarning, stacklevel=4)
                self.last = _stock_records(input_ids, inputs.get("attention_mask"), self.adapter)
                return None
            lengths = [self.adapter.run_lengths(g) for g, _ in encoded]
            runs = runs_by_length(input_ids, self.adapter.video_token_id, lengths)
            pairs = [self.compress(g, setting, layers) for g, layers in encoded]
            videos, records = map(list, zip(*pairs))
        new, lay = splice(self.adapter, inputs, runs, videos, generate)
        self.last = _records(runs, records, lay, inputs.get("attention_mask"), input_ids)
        return new

    def _given(
        self,
        input_ids: torch.Tensor,
        given: list[SplicedTokens | Compression | torch.Tensor],
        inputs: dict[str, Any],
    ) -> tuple[list[SplicedTokens], list[list[Run]]]:
        videos = [_as_video_tokens(v) for v in given]
        runs = self.adapter.given_runs(input_ids, inputs)
        if len(runs) != len(videos):
            raise ValueError(f"{len(videos)} video_tokens for {len(runs)} placeholder runs")
        return videos, runs

    def splice(
        self,
        video_tokens: list[SplicedTokens | Compression | torch.Tensor],
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
        videos, runs = self._given(input_ids, video_tokens, inputs)
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


def _as_video_tokens(value: SplicedTokens | Compression | torch.Tensor) -> SplicedTokens:
    if isinstance(value, SplicedTokens):
        return value
    return SplicedTokens(value.tokens if isinstance(value, Compression) else value)


def _stock_records(
    input_ids: torch.Tensor, mask: torch.Tensor | None, adapter: Adapter
) -> list[SampleRecord]:
    counts = (input_ids == adapter.video_token_id).sum(1).tolist()
    lengths = [input_ids.shape[1]] * len(counts) if mask is None else mask.sum(1).tolist()
    return [SampleRecord(c, c, n, n) for c, n in zip(counts, lengths)]


def _records(
    runs: list[list[Run]],
    videos: list[VideoRecord],
    lay: Layout,
    mask: torch.Tensor | None,
    input_ids: torch.Tensor,
) -> list[SampleRecord]:
    out = []
    for b in range(input_ids.shape[0]):
        own = [i for i, video in enumerate(runs) if video[0].sample == b]
        length = input_ids.shape[1] if mask is None else int(mask[b].sum())
        before = sum(run.stop - run.start for i in own for run in runs[i])
        after = int(lay.slot[b].sum())
        videos_b = tuple(videos[i] for i in own)
        out.append(SampleRecord(before, after, length, length - before + after, videos_b))
    return out
