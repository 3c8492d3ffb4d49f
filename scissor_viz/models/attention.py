"""Attention maps read out of a transformers model: one context manager for both users.

* FastV ranks visual tokens by the attention they receive in an early decoder layer of the LLM
  (:func:`fastv_scores`);
* VisionZip ranks patches by the attention they receive in the vision tower's last layer
  (``LlavaOnevisionBackend.vision_attention``).

Both go through :func:`capture_attention`: it hooks one attention module, switches its model to
eager attention (the only implementation that returns weights) and restores everything after.
Eager attention holds heads x queries x keys weights per layer, several times over (the
scores, the masked scores, the softmax), so both check what that costs against a budget first
(:func:`check_attention_budget`) and refuse, in words, above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

ATTENTION_BUDGET_ENV = "SCISSOR_VIZ_ATTENTION_BUDGET_MB"
DEFAULT_ATTENTION_BUDGET = 1 << 30  # bytes one layer's eager attention may take (1 GiB)
WEIGHT_BYTES = 4  # eager attention's softmax runs in float32, whatever the model's dtype
# Maps of heads x L^2 x WEIGHT_BYTES alive at once in one eager layer: measured 2.2-2.4 (peak
# RSS over the map's size, float32, 8-24 frames, tests/test_memory.py checks it stays below).
EAGER_COPIES = 3


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the wanted attention map is captured."""


def attention_budget() -> int:
    """Bytes one layer's eager attention (all its copies) may take:
    ``$SCISSOR_VIZ_ATTENTION_BUDGET_MB`` (MiB), else :data:`DEFAULT_ATTENTION_BUDGET`."""
    text = os.environ.get(ATTENTION_BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_ATTENTION_BUDGET
    try:
        mib = float(text)
    except ValueError:
        mib = -1.0
    if not mib > 0:
        raise ValueError(f"{ATTENTION_BUDGET_ENV}={text!r}: give a positive number of MiB")
    return int(mib * 2**20)


def attention_bytes(heads: int, length: int, batch: int = 1) -> int:
    """Bytes eager attention takes at its peak for ``batch`` sequences of ``length`` tokens:
    EAGER_COPIES maps of heads x length^2 weights each."""
    return EAGER_COPIES * batch * heads * length * length * WEIGHT_BYTES


def check_attention_budget(
    what: str, heads: int, length: int, batch: int = 1, budget: int | None = None
) -> None:
    """A ValueError that says why, when ``what`` would need more eager attention memory
    (EAGER_COPIES x heads x length^2 x 4 bytes per sequence) than the budget allows."""
    budget = attention_budget() if budget is None else budget
    need = attention_bytes(heads, length, batch)
    if need > budget:
        fits = int((budget / attention_bytes(heads, 1, batch)) ** 0.5)
        raise ValueError(
            f"{what} needs the attention map over {length:,} tokens: {EAGER_COPIES} copies of "
            f"{heads} heads x {length:,}^2 x {WEIGHT_BYTES} bytes = {need / 2**30:.2f} GiB at "
            "once, over this server's "
            f"budget of {budget / 2**30:.2f} GiB (about {fits:,} tokens; {ATTENTION_BUDGET_ENV} "
            "sets it). Use fewer frames."
        )


def batch_within_budget(what: str, heads: int, length: int, batch: int) -> int:
    """The largest batch up to ``batch`` whose eager attention fits the budget (at least 1,
    else the ValueError of :func:`check_attention_budget`)."""
    check_attention_budget(what, heads, length)
    return max(1, min(batch, attention_budget() // attention_bytes(heads, length)))


@contextmanager
def capture_attention(
    owner: torch.nn.Module,
    attention: torch.nn.Module,
    *,
    stop: bool = False,
    keep: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Collect the attention weights ``attention`` (one layer's attention module of ``owner``)
    computes inside the block: a list that gets ``keep(weights)`` per forward pass (weights
    (batch, heads, queries, keys); ``keep`` defaults to the weights as they are).

    ``owner`` (a decoder or a vision tower, anything with ``set_attn_implementation``) runs with
    eager attention inside the block and gets its previous implementation back after. With
    ``stop=True`` the forward pass ends right after the layer (the rest is not computed); the
    block then ends quietly at that point."""
    captured: list[torch.Tensor] = []

    def grab(_module, _inputs, output) -> None:
        weights = output[1]
        if weights is None:
            raise RuntimeError("the attention layer returned no weights")
        captured.append(weights if keep is None else keep(weights))
        if stop:
            raise _Stop

    handle = attention.register_forward_hook(grab)
    previous = owner.config._attn_implementation
    owner.set_attn_implementation("eager")
    try:
        yield captured
    except _Stop:
        pass
    finally:
        handle.remove()
        owner.set_attn_implementation(previous)


def decoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The text decoder (the module holding ``.layers``) of a transformers (V)LM."""
    if hasattr(model, "layers"):
        return model
    if hasattr(model, "get_decoder"):
        decoder = model.get_decoder()
        if decoder is not model and hasattr(decoder, "layers"):
            return decoder
    for name in ("language_model", "model"):
        if hasattr(model, name):
            return decoder_of(getattr(model, name))
    raise ValueError(f"no decoder layers found in {type(model).__name__}")


@torch.no_grad()
def fastv_scores(
    model: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    visual_positions: torch.Tensor | slice,
    layer: int = 2,
    query: str = "last",
) -> torch.Tensor:
    """FastV's ranking of the visual tokens: the attention they receive in the text decoder's
    ``layer``-th layer (FastV's K = 2: the map of layer index K - 1, after which it prunes),
    averaged over heads.

    ``query="last"`` takes the row of the last (unpadded) prompt token, as FastV's released code
    does; ``query="all"`` the column mean over all rows, the paper's "average attention received
    from all other tokens" (causal zeros included). The decoder stops after that layer.

    model: a transformers LLaVA-OneVision (or any decoder-only) model; inputs_embeds (1, L, D)
    with the visual tokens spliced in; attention_mask (1, L) or None; visual_positions (N,) or
    a slice: their positions in the sequence. Returns (N,) float32 scores.
    """
    if query not in ("last", "all"):
        raise ValueError(f"query must be 'last' or 'all', got {query!r}")
    decoder = decoder_of(model)
    if not 1 <= layer <= len(decoder.layers):
        raise ValueError(f"layer must be in 1..{len(decoder.layers)}, got {layer}")
    heads = decoder.config.num_attention_heads
    check_attention_budget("FastV", heads, inputs_embeds.shape[1], len(inputs_embeds))
    with capture_attention(decoder, decoder.layers[layer - 1].self_attn, stop=True) as maps:
        decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
    if not maps:
        raise RuntimeError("the attention layer returned no weights")
    attention = maps[0][0].float().mean(0)  # (L, L), mean over heads
    if query == "last":
        last = len(attention) - 1
        if attention_mask is not None:
            last = int(attention_mask[0].nonzero().max())
        row = attention[last]
    else:
        row = attention.mean(0)
    if isinstance(visual_positions, torch.Tensor):
        visual_positions = visual_positions.to(row.device)
    return row[visual_positions]


def last_vision_attention(tower: torch.nn.Module) -> torch.nn.Module:
    """The attention module of a (SigLIP) vision tower's last encoder layer."""
    return getattr(tower, "vision_model", tower).encoder.layers[-1].self_attn  # 5.x layouts
