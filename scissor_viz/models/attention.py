"""Attention maps read out of a transformers model: one context manager for both users.

* FastV ranks visual tokens by the attention they receive in an early decoder layer of the LLM
  (:func:`fastv_scores`);
* VisionZip ranks patches by the attention they receive in the vision tower's last layer
  (``LlavaOnevisionBackend.vision_attention``).

Both go through :func:`capture_attention`: it hooks one attention module, switches its model to
eager attention (the only implementation that returns weights) and restores everything after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the wanted attention map is captured."""


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
