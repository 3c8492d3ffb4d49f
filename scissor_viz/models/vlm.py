"""A video LLM through transformers, whatever its family: the tokens its LLM reads, and answers
from any (compressed or full) token sequence.

:class:`VideoLLMBackend` is the part every family shares. ``encode`` runs the family's
preprocessing, then the SCC patch's own feature extraction (``model.scissor.adapter.encode``:
the same per-video (groups, P, d) grids that :func:`scissor_viz.apply_patch` compresses, and
the grids a model adds at the video's positions, Qwen3-VL's DeepStack, kept with them), so
what the app shows is exactly what the model's answers are computed from. ``answer`` runs the
patched model's ``generate`` with the tokens (and their DeepStack features,
:func:`reduce_layers`) given as ``video_tokens=``. A family's module
(``llava_onevision``, ``llava_next_video``, ``qwen2_5_vl``, ``qwen3_vl``, ``internvl``,
``smolvlm``) supplies what is its own: the preprocessing (:meth:`pixel_inputs`, by
transformers' processors: models/processors.py), the token grid (:meth:`grid_for`), and for a
model that positions its video tokens on their grid (Qwen's M-RoPE) the stock prompt
(:meth:`video_inputs`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any, ClassVar

import numpy as np
import torch

from scissor_viz.models.attention import check_attention_budget, decoder_of, fastv_scores
from scissor_viz.models.base import Answer, Backend, Encoded
from scissor_viz.models.cache import TokenCache
from scissor_viz.patch import ScissorState, SplicedTokens, apply_patch
from scissor_viz.patch.representatives import merge
from scissor_viz.progress import ProgressFn, report

FALLBACK_TEMPLATE = "<|im_start|>user\n{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"


class VideoLLMBackend(Backend):
    """A transformers video LLM patched by :func:`scissor_viz.apply_patch` (retention 1: stock
    unless tokens are given). Subclasses: one per family."""

    family: ClassVar[str] = "video LLM"  # what visitors read, e.g. "LLaVA-OneVision"
    model_types: ClassVar[tuple[str, ...]] = ()  # config.model_type values the family loads
    model_class: ClassVar[str] = ""  # the transformers class name
    # the family's transformers video processor, used where torchvision runs (models/processors.py)
    video_processor: ClassVar[str] = ""
    features: ClassVar[str] = "vision features"  # one phrase: what encode returns
    can_answer = True
    has_llm_attention = True
    unavailable_reason = None
    layer_levels = 0  # feature grids the language model adds at the video's positions (DeepStack)

    def __init__(
        self,
        model,
        tokenizer,
        preprocessing: Any,
        checkpoint: str | None = None,
        pretrained: bool = True,
        chat_template: str | None = None,
        batch_size: int | None = None,
        cache: TokenCache | None = None,
    ):
        super().__init__(cache)
        if not isinstance(getattr(model, "scissor", None), ScissorState):
            apply_patch(model, retention=1.0)  # stock unless tokens are given (video_tokens=)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.checkpoint = checkpoint
        self.pretrained = pretrained
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        config = model.config
        self.hidden_size = getattr(config, "text_config", config).hidden_size
        self.video_token_id = int(model.scissor.adapter.video_token_id)  # InternVL/SmolVLM: image
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        if tokenizer.convert_tokens_to_ids(self.video_token) != self.video_token_id:
            raise ValueError(f"the tokenizer has no token for id {self.video_token_id}")
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 2)
        self._lock = threading.RLock()
        self.name = f"{self.family} ({checkpoint})" if checkpoint else self.family
        params = sum(p.numel() for p in model.parameters()) / 1e6
        dtype = str(self.dtype).removeprefix("torch.")
        where = f"{self.device.type}, {dtype}, {params:,.1f} M parameters"
        if pretrained:
            self.description = (
                f"{self.name}: {self.features} — the tokens its language model reads; answers "
                f"from its language model ({where})"
            )
        else:
            self.description = (
                f"RANDOMLY INITIALISED {self.family}-shaped model"
                + (f" ({checkpoint})" if checkpoint else "")
                + " — for tests and benchmarks only; its features and answers mean nothing"
                + f" ({where})"
            )

    @property
    def cache_id(self) -> Hashable:
        if self.checkpoint is None:
            return (self.model_class, id(self.model))
        return (self.model_class, self.checkpoint, str(self.device), str(self.dtype))

    @property
    def mrope(self) -> bool:
        """Whether the model positions video tokens on their grid (they need ``source``)."""
        return bool(self.model.scissor.adapter.mrope)

    # -- the family's part ----------------------------------------------------------------------

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """The processor's outputs for one video of (T, H, W, 3) uint8 frames (on the CPU)."""
        raise NotImplementedError

    def video_inputs(
        self, question: str, shape: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        """The prompt as the patched model takes it with ``video_tokens=``: ``input_ids`` (1, L)
        and ``attention_mask`` on the model's device, plus what the family's stock positions
        need. ``shape`` is the (groups, rows, cols) of the video the tokens came from. Here: one
        placeholder (1-D positions are recounted over the spliced prompt)."""
        ids, _ = self.prompt_ids(question)
        ids = ids[None].to(self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    # -- encoding -------------------------------------------------------------------------------

    def _encode(self, frames: np.ndarray, progress: ProgressFn | None) -> Encoded:
        """Batches of whole temporal groups through the family's preprocessing and the patch's
        ``adapter.encode`` (the model's own vision path): the grid, and the levels the model
        adds at the video's positions (Qwen3-VL's DeepStack) from the same pass."""
        step = self.grid_for(frames).frames_per_group
        batch = max(self.batch_size // step, 1) * step
        n, parts = len(frames), []
        report(progress, 0.0, f"encoding {n} frames")
        with self._lock, torch.inference_mode():
            for start in range(0, n, batch):
                stop = min(start + batch, n)
                inputs = {
                    k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                    for k, v in self.pixel_inputs(frames[start:stop]).items()
                }
                ((grid, layers),) = self.model.scissor.adapter.encode(inputs)
                parts.append([x.float().cpu() for x in (grid, *layers)])
                report(progress, stop / n, f"encoded frame {stop}/{n}")
        tokens, *layers = (torch.cat(level) for level in zip(*parts))
        return Encoded(tokens, tuple(layers))

    # -- answering ------------------------------------------------------------------------------

    def build_prompt(self, question: str) -> str:
        """The chat prompt for one video and ``question``, with exactly one video placeholder."""
        question = question.replace(self.video_token, "").strip()
        if self.chat_template:  # a multimodal template, else a text-only one (plain Qwen)
            contents = (  # SmolVLM's templates render images, not videos: its frames are images
                [{"type": "video"}, {"type": "text", "text": question}],
                [{"type": "image"}, {"type": "text", "text": question}],
                f"{self.video_token}\n{question}",
            )
            for content in contents:
                try:
                    text = self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": content}],
                        chat_template=self.chat_template,
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                except Exception:  # a template that takes another form of content: try the next
                    continue
                if text.count(self.video_token) == 1:
                    return text
        return FALLBACK_TEMPLATE.format(video=self.video_token, question=question)

    def prompt_ids(self, question: str) -> tuple[torch.Tensor, int]:
        """Token ids of the prompt (1-D) and the index of its single video placeholder."""
        ids = self.tokenizer(self.build_prompt(question), return_tensors="pt").input_ids[0]
        where = (ids == self.video_token_id).nonzero().flatten()
        if len(where) != 1:
            raise ValueError(f"prompt has {len(where)} video placeholders, expected 1")
        return ids, int(where[0])

    def check_llm_attention(self, question: str, num_tokens: int) -> None:
        """Refuse (ValueError) before any work a :meth:`llm_attention` over ``num_tokens``
        tokens whose eager attention would not fit the budget."""
        ids, _ = self.prompt_ids(question)
        heads = decoder_of(self.model).config.num_attention_heads
        check_attention_budget("FastV", heads, len(ids) + num_tokens)

    def llm_attention(self, question: str, tokens: torch.Tensor, layer: int = 2) -> torch.Tensor:
        """FastV's ranking of ``tokens`` ((T, P, d) or (K, d)): the attention each receives from
        the prompt's last token in decoder layer ``layer``, averaged over heads -> (K,) float32
        on the CPU, on the language model's input that :meth:`answer` prefills."""
        flat = tokens.reshape(-1, tokens.shape[-1])
        with self._lock, torch.inference_mode():
            inputs, rows = self.model.scissor.splice([flat], **self.video_inputs(question, None))
            where = rows[0][:, 1]  # one prompt: the K tokens' positions
            embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
            scores = fastv_scores(self.model, embeds, mask, where, layer=layer)
        return scores.float().cpu()

    def generation_kwargs(self, max_new_tokens: int, min_new_tokens: int = 0) -> dict:
        """Greedy decoding, returning raw per-step logits (the same for stock comparisons)."""
        gen = self.model.generation_config
        pad = gen.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id
        if pad is None:
            eos = gen.eos_token_id
            pad = eos[0] if isinstance(eos, (list, tuple)) else eos
        return {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": pad,
            "return_dict_in_generate": True,
            "output_logits": True,
        }

    def _timed_generate(self, inputs: dict, max_new_tokens: int, min_new_tokens: int, **kwargs):
        """Greedy ``generate`` of the patched model: (output, prefill seconds, total seconds);
        the prefill is the first forward pass (the prompt's), timed by hooks on the model."""
        stamps: list[float] = []

        def tick(*_args, **_kwargs):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            stamps.append(time.perf_counter())

        pre = self.model.register_forward_pre_hook(tick)
        post = self.model.register_forward_hook(tick)
        try:
            started = time.perf_counter()
            out = self.model.generate(
                **inputs, **kwargs, **self.generation_kwargs(max_new_tokens, min_new_tokens)
            )
            tick()
            total = stamps[-1] - started
        finally:
            pre.remove()
            post.remove()
        return out, (stamps[1] - stamps[0] if len(stamps) >= 2 else total), total

    def answer(
        self,
        question: str,
        tokens: torch.Tensor,
        max_new_tokens: int = 64,
        *,
        min_new_tokens: int = 0,
        newline: bool = True,
        source: torch.Tensor | None = None,
        shape: tuple[int, int, int] | None = None,
        layers: tuple[torch.Tensor, ...] = (),
        progress: ProgressFn | None = None,
    ) -> Answer:
        """Greedy answer to ``question`` from visual ``tokens`` ((K, d), or (G, P, d) = full).

        The patched model's own ``generate(input_ids, attention_mask, video_tokens=[...])``
        -- what a researcher using :func:`scissor_viz.apply_patch` runs: the LLM receives
        exactly these K embeddings where the prompt's video was, followed (``newline=True``)
        by the family's tail (OneVision's image_newline). Grid-positioned models (Qwen) also
        need the video's ``shape`` (groups, rows, cols) and, for K below the full count, each
        token's ``source``: the flat grid index whose stock position it takes. A model that
        adds features of its own at the video's positions (``layer_levels``: Qwen3-VL's
        DeepStack) needs them as ``layers``: per level, these K tokens' features ((K, d_l),
        :func:`reduce_layers`; with full tokens the :meth:`encoded` grids as they are)."""
        if tokens.ndim == 3:
            shape = shape or (tokens.shape[0], *self.grid_shape(tokens.shape[1]))
            tokens = tokens.reshape(-1, tokens.shape[-1])
        if tokens.ndim != 2 or tokens.shape[1] != self.hidden_size or tokens.shape[0] == 0:
            raise ValueError(
                f"tokens must be (K, {self.hidden_size}) with K >= 1, got {tuple(tokens.shape)}"
            )
        layers = tuple(x.reshape(-1, x.shape[-1]) for x in layers)
        if len(layers) != self.layer_levels or any(len(x) != len(tokens) for x in layers):
            raise ValueError(
                f"{self.family} adds {self.layer_levels} level(s) of features at the video's "
                f"positions (DeepStack): give layers=, one ({len(tokens)}, d) tensor per level "
                f"for these tokens (reduce_layers), got {[tuple(x.shape) for x in layers]}"
            )
        report(progress, 0.0, f"answering from {tokens.shape[0]} visual tokens")
        if self.mrope:
            if shape is None:
                raise ValueError(f"{self.family} needs the video's shape= (groups, rows, cols)")
            full = shape[0] * shape[1] * shape[2]
            if source is None and tokens.shape[0] != full:
                raise ValueError(
                    f"{self.family} positions each token on its grid: give source= (the grid "
                    "index whose position each token takes)"
                )
        if source is not None:
            source = torch.as_tensor(source).cpu()
            if self.model.scissor.adapter.frame_runs and shape is not None:
                # a run per frame (group): each token goes into its source's run, so the tokens
                # are taken in frame order (stable: a frame's keep the method's order; SCC's
                # are in that order already, VisionZip's dominant-first are not)
                order = (source // (shape[1] * shape[2])).argsort(stable=True)
                tokens, source = tokens[order], source[order]
                layers = tuple(x[order] for x in layers)
        layers = tuple(x.to(self.device, self.dtype) for x in layers)
        video = SplicedTokens(tokens, source, newline, layers)
        with self._lock, torch.inference_mode():
            inputs = self.video_inputs(question, shape)
            out, prefill, total = self._timed_generate(
                inputs, max_new_tokens, min_new_tokens, video_tokens=[video]
            )
            prompt_tokens = self.model.scissor.last[0].length_after
        ids = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        first = out.logits[0][0].float().cpu()
        probs = first.softmax(-1)
        top = probs.topk(min(5, probs.numel()))
        report(progress, 1.0, "answered")
        return Answer(
            text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            visual_tokens=int(tokens.shape[0]),
            prefill_seconds=prefill,
            generate_seconds=total,
            new_tokens=len(ids),
            token_ids=ids,
            first_logits=first,
            first_probs=probs,
            first_top=[
                (self.tokenizer.decode([i]), float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist())
            ],
            newline=newline and len(self.model.scissor.adapter.tail()) > 0,
            prompt_tokens=prompt_tokens,
            backend=self.name,
            pretrained=self.pretrained,
        )

    def grid_shape(self, tokens_per_frame: int) -> tuple[int, int]:
        """(rows, cols) of a grid of ``tokens_per_frame`` this backend produced."""
        grid = self.grid
        if grid.tokens_per_frame != tokens_per_frame:
            raise ValueError(
                f"{tokens_per_frame} tokens per frame is not this backend's {grid} grid; "
                "pass shape="
            )
        return grid.shape


def reduce_layers(
    layers: tuple[torch.Tensor, ...],
    *,
    num_tokens: int,
    assignment: torch.Tensor,
    compression: Any = None,
    kept_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Per level of ``layers`` ((G, P, d_l) grids on the tokens' grid, :meth:`Backend.encoded`:
    Qwen3-VL's DeepStack), the (K, d_l) features of a reduction's ``num_tokens`` tokens, each
    token carrying the features of what it stands for:

    * with SCC's ``compression`` (the engine's ``Compression`` of these tokens): the level
      merged with SCC's very partition, the patch's own rule inside ``generate``
      (:func:`scissor_viz.patch.representatives.merge`);
    * otherwise output token k is the mean of the tokens ``assignment`` ((G, P) in 0..K-1)
      gives it, except the first ``len(kept_index)`` outputs: tokens passed through unchanged
      (a selection's, VisionZip's dominant ones; ``kept_index`` their flat grid indices), which
      keep their own features.
    """
    if compression is not None:
        return tuple(merge(layer, compression) for layer in layers)
    owner = assignment.flatten()
    count = torch.bincount(owner, minlength=num_tokens).clamp(min=1)[:, None]
    out = []
    for layer in layers:
        flat = layer.reshape(-1, layer.shape[-1])
        mean = flat.new_zeros(num_tokens, flat.shape[1]).index_add_(0, owner, flat) / count
        if kept_index is not None:
            mean[: len(kept_index)] = flat[kept_index]
        out.append(mean)
    return tuple(out)
