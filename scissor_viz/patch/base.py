"""What every model family shares: find each video's placeholders, splice new tokens in their
place, and build the inputs the stock ``forward`` / ``generate`` then run on.

An :class:`Adapter` knows one family: which inputs feed its video encoder, the (frames,
tokens_per_frame, d) grid its language model reads per video, what it appends after a video's
tokens, and (M-RoPE families) its stock position ids. The rest is here and family-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from scissor_viz.scc import Compression

# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SplicedTokens:
    """What the language model reads in place of one video's placeholders."""

    tokens: torch.Tensor  # (K, d) in order
    source: torch.Tensor | None = None  # (K,) grid index whose stock position each token takes
    tail: bool = True  # then the family's own after-video tokens (OneVision: image_newline)
    layers: tuple[torch.Tensor, ...] = ()  # (K, d_l) per DeepStack layer (Qwen3-VL); () none


@dataclass(frozen=True)
class VideoRecord:
    """One video of one prompt, as the patch compressed it."""

    grid: tuple[int, int] | None  # (frames, tokens_per_frame) SCC ran on; None: tokens given
    num_tokens: int  # K, the grid tokens after compression (Qwen2.5-VL frames: temporal pairs)
    tau: float | None  # None when the tokens were given (``video_tokens=``)
    seconds: float  # SCC (tau search + compression + representatives)
    compression: Compression | None
    source: torch.Tensor | None  # (K,) grid index whose position each token took


@dataclass(frozen=True)
class SampleRecord:
    """One prompt of the last call that carried a video."""

    tokens_before: int  # video tokens the stock model reads (placeholders, incl. newlines)
    tokens_after: int  # video tokens the patched model read
    length_before: int  # prompt tokens (attention mask) before
    length_after: int
    videos: tuple[VideoRecord, ...] = ()

    @property
    def tau(self) -> float | None:
        """The first video's tau (see ``videos`` for several); None at retention 1."""
        return self.videos[0].tau if self.videos else None

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.videos)


# ----------------------------------------------------------------------------- adapters


class Adapter:
    """One model family behind the patch. Subclasses set the class attributes and ``grids``."""

    classes: ClassVar[tuple[str, ...]] = ()  # model class names this adapter serves
    video_inputs: ClassVar[tuple[str, ...]] = ("pixel_values_videos",)  # consumed by the encoder
    pixels: ClassVar[str] = "pixel_values_videos"  # the input that carries a video's frames
    mrope: ClassVar[bool] = False  # video tokens carry grid positions (need ``source``)
    frame_runs: ClassVar[bool] = False  # one placeholder run per frame (or group), text between

    def __init__(self, model: Any):
        self.model = model

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    @property
    def needs_source(self) -> bool:
        """Whether spliced tokens need their grid index (positions, or the run of their frame)."""
        return self.mrope or self.frame_runs

    def grids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        """The model's own video features, one (T, P, d) grid per video, in prompt order."""
        raise NotImplementedError

    def encode(self, inputs: dict[str, Any]) -> list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        """Per video its grid and the (T, P, d_l) grids of features the model adds at the video's
        positions inside the language model (Qwen3-VL's DeepStack; () for other families)."""
        return [(grid, ()) for grid in self.grids(inputs)]

    def run_lengths(self, grid: torch.Tensor) -> list[int]:
        """The placeholder runs one video of this (T, P, d) grid fills, in prompt order."""
        frames, per_frame = grid.shape[:2]
        if self.frame_runs:
            return [per_frame] * frames
        return [frames * per_frame + len(self.tail())]

    def given_runs(self, input_ids: torch.Tensor, inputs: dict[str, Any]) -> list[list[Run]]:
        """The placeholder runs of each video when tokens are given (``video_tokens=``): each
        maximal run is one video."""
        return [[run] for run in runs_contiguous(input_ids, self.video_token_id)]

    def finish(self, out: dict[str, Any], videos: list[SplicedTokens], new_ids: torch.Tensor):
        """Last changes to the stock method's inputs (Qwen3-VL: hand the tokens over as encoder
        outputs so the model adds their DeepStack features)."""
        return out

    def tail(self) -> torch.Tensor:
        """(E, d) tokens the model appends after each video's grid tokens."""
        return self.model.get_input_embeddings().weight[:0]

    def stock_positions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor | None:
        """(3, B, L) the stock M-RoPE positions, or None for 1-D positions."""
        return None

    def position_inputs(
        self, positions: torch.Tensor, attention_mask: torch.Tensor, generate: bool
    ) -> dict[str, Any]:
        """Inputs that make the stock model use ``positions`` (3, B, L') for the new prompt."""
        return {}


# ----------------------------------------------------------------------------- placeholders


@dataclass(frozen=True)
class Run:
    """One video's placeholders: positions [start, stop) of prompt ``sample``."""

    sample: int
    start: int
    stop: int


def runs_by_length(
    input_ids: torch.Tensor, token_id: int, lengths: list[list[int]]
) -> list[list[Run]]:
    """Video v takes the next ``sum(lengths[v])`` placeholders in row-major order, as the stock
    models fill them, as runs of ``lengths[v]`` (one, or one per frame); each run must be
    contiguous and all of a video's runs in one prompt."""
    where = (input_ids == token_id).nonzero().tolist()  # [(sample, position)], row-major
    total = sum(map(sum, lengths))
    if len(where) != total:
        raise ValueError(
            f"the prompts hold {len(where)} video placeholders but the videos have "
            f"{total} features ({[sum(n) for n in lengths]}); build the prompt with the model's "
            "processor"
        )
    videos, at = [], 0
    for v, runs_v in enumerate(lengths):
        runs = []
        for n in runs_v:
            (b0, p0), (b1, p1) = where[at], where[at + n - 1]
            if b0 != b1 or p1 - p0 != n - 1 or (runs and runs[0].sample != b0):
                raise ValueError(f"video {v}'s placeholders are not runs of {n} in one prompt")
            runs.append(Run(b0, p0, p1 + 1))
            at += n
        videos.append(runs)
    return videos


def runs_contiguous(input_ids: torch.Tensor, token_id: int) -> list[Run]:
    """Each maximal run of placeholders is one video (row-major order)."""
    runs = []
    for b, row in enumerate((input_ids == token_id).tolist()):
        start = None
        for p, hit in enumerate([*row, False]):
            if hit and start is None:
                start = p
            elif not hit and start is not None:
                runs.append(Run(b, start, p))
                start = None
    return runs


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where each position of the new prompts comes from."""

    index: torch.Tensor  # (B, L') original position whose id, mask and labels it takes
    position: torch.Tensor  # (B, L') original position whose stock position id it takes
    slot: torch.Tensor  # (B, L') bool: a video token
    pad: torch.Tensor  # (B, L') bool: padding the splice added

    def take(self, x: torch.Tensor, fill: float) -> torch.Tensor:
        """(B, L, ...) per original position -> (B, L', ...) per new position."""
        shape = (*self.index.shape, *([1] * (x.dim() - 2)))
        index = self.index.view(shape).expand(-1, -1, *x.shape[2:]).to(x.device)
        return x.gather(1, index).masked_fill(self.pad.view(shape).to(x.device), fill)


def layout(
    input_ids: torch.Tensor,
    runs: list[Run],
    counts: list[int],
    sources: list[torch.Tensor],
    right: bool = False,
) -> Layout:
    """Each run replaced by ``counts[v]`` video tokens, which take the ids, mask and labels of
    the run's first placeholders and the stock positions of ``run.start + sources[v]``; rows
    padded to one length on the left (``right``: on the right)."""
    batch, length = input_ids.shape
    rows = []
    for b in range(batch):
        index, position, slot, cursor = [], [], [], 0
        for run, k, source in zip(runs, counts, sources):
            if run.sample != b:
                continue
            keep = torch.arange(cursor, run.start)
            index += [keep, run.start + torch.arange(k).clamp(max=run.stop - run.start - 1)]
            position += [keep, run.start + source.cpu()]
            slot += [torch.zeros(len(keep), dtype=torch.bool), torch.ones(k, dtype=torch.bool)]
            cursor = run.stop
        rest = torch.arange(cursor, length)
        slot.append(torch.zeros(len(rest), dtype=torch.bool))
        rows.append((torch.cat([*index, rest]), torch.cat([*position, rest]), torch.cat(slot)))
    return _stack(rows, right, input_ids.device)


def _stack(rows: list[tuple[torch.Tensor, ...]], right: bool, device: torch.device) -> Layout:
    width = max(len(row[0]) for row in rows)
    columns: list[list[torch.Tensor]] = [[], [], [], []]
    for index, position, slot in rows:
        n = width - len(index)
        parts = (index, position, slot, torch.zeros(len(index), dtype=torch.bool))
        fills = (torch.zeros(n, dtype=torch.long),) * 2 + (
            torch.zeros(n, dtype=torch.bool),
            torch.ones(n, dtype=torch.bool),
        )
        for column, part, fill in zip(columns, parts, fills):
            column.append(torch.cat([part, fill] if right else [fill, part]))
    return Layout(*(torch.stack(column).to(device) for column in columns))


# ----------------------------------------------------------------------------- splice

SEQUENCE_INPUTS = {"labels": -100, "token_type_ids": 0, "mm_token_type_ids": 0}  # pad values


def pad_token_id(model: Any) -> int:
    """The id the model pads with (generation config, text config, else EOS, else 0)."""
    config = model.config
    for value in (
        getattr(model.generation_config, "pad_token_id", None),
        getattr(getattr(config, "text_config", config), "pad_token_id", None),
        getattr(model.generation_config, "eos_token_id", None),
    ):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


def _pieces(
    video: SplicedTokens, runs: list[Run], tail: int, need_source: bool
) -> list[tuple[int, torch.Tensor]]:
    """Per run of the video: how many of its tokens go there, and for each the index into the
    run of the placeholder whose stock position it takes. With one run, every token (and the
    tail); with a run per frame, each token goes into the run of its source's frame (its
    representative's), in order, so each frame's text still introduces what that frame kept."""
    k, n = len(video.tokens), sum(run.stop - run.start for run in runs)
    if video.source is not None:
        grid = video.source.cpu()
    elif need_source and k != n - tail:
        raise ValueError(
            "this model places video tokens by their grid (positions, or the run of their frame): "
            "give SplicedTokens.source, the grid index of each token's representative "
            "(model.scissor.video_tokens(grid, comp) does)"
        )
    else:
        grid = torch.arange(k)
    if len(runs) == 1:
        tail_at = n - tail + torch.arange(tail if video.tail else 0)
        return [(k + len(tail_at), torch.cat([grid, tail_at]).clamp(0, n - 1))]
    per_run = runs[0].stop - runs[0].start  # frame runs: all one length, no tail
    frame = grid // per_run
    if k and (bool((frame[1:] < frame[:-1]).any()) or int(frame.max()) >= len(runs)):
        raise ValueError("a video's token sources must be grid indices in increasing frame order")
    counts = torch.bincount(frame, minlength=len(runs)).tolist()
    return list(zip(counts, (grid % per_run).split(counts)))


def splice(
    adapter: Adapter,
    inputs: dict[str, Any],
    runs: list[list[Run]],
    videos: list[SplicedTokens],
    generate: bool,
) -> tuple[dict[str, Any], Layout]:
    """The stock inputs with each video's runs replaced by its tokens (+ the family's tail):
    ``inputs_embeds`` and everything aligned with the prompt, for ``forward`` or ``generate``."""
    model, input_ids = adapter.model, inputs["input_ids"]
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(input_ids) if mask is None else mask
    tail = adapter.tail()
    rows = [torch.cat([v.tokens.to(tail), tail]) if v.tail else v.tokens for v in videos]
    flat_runs, counts, sources = [], [], []
    for video, runs_v in zip(videos, runs):
        for run, (count, source) in zip(
            runs_v, _pieces(video, runs_v, len(tail), adapter.needs_source)
        ):
            flat_runs.append(run)
            counts.append(count)
            sources.append(source)
    right = bool((mask[:, -1] == 0).any() and not (mask[:, 0] == 0).any())
    lay = layout(input_ids, flat_runs, counts, sources, right)

    new_ids = lay.take(input_ids, pad_token_id(model))  # video slots keep the placeholder id
    new_mask = lay.take(mask, 0)
    embeds = model.get_input_embeddings()(new_ids)  # (B, L', d)
    video = torch.cat(rows).to(embeds.device, embeds.dtype)  # (sum K, d), row-major order
    embeds = embeds.masked_scatter(lay.slot[..., None].to(embeds.device), video)
    out = {k: v for k, v in inputs.items() if k not in adapter.video_inputs}
    out.update(
        input_ids=new_ids if generate else None, inputs_embeds=embeds, attention_mask=new_mask
    )
    for key, fill in SEQUENCE_INPUTS.items():
        value = inputs.get(key)
        if isinstance(value, torch.Tensor) and value.shape[:2] == input_ids.shape:
            out[key] = lay.take(value, fill)
    stock = adapter.stock_positions(input_ids, mask, inputs)
    if stock is not None:  # (3, B, L) -> (3, B, L'); pads at 0 as the stock rope index has them
        index = lay.position[None].expand(stock.shape[0], -1, -1).to(stock.device)
        positions = stock.gather(2, index).masked_fill(lay.pad[None].to(stock.device), 0)
        out.update(adapter.position_inputs(positions, new_mask, generate))
    elif inputs.get("position_ids") is not None:  # 1-D: recount over the new prompt
        out["position_ids"] = (new_mask.cumsum(-1) - 1).masked_fill(new_mask == 0, 0)
    return adapter.finish(out, videos, new_ids), lay
