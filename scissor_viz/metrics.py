"""How well a reduced token set stands for the original, and how far a compressed answer drifts.

Two-line API::

    m = reduction_metrics(tokens, reduce("tome", tokens, 0.1))  # coverage, redundancy, ...
    f = answer_fidelity(full_answer, answer, full_logits=l0, logits=l1, visual_tokens=k)

Token metrics use cosine similarity in float32 through :func:`scissor_viz.scc.nearest` (row
blocks of ``scc.BLOCK_ELEMENTS`` entries: 256 frames x 196 tokens against any output never build
the whole N x K matrix).
"""

from __future__ import annotations

import re
import string
from collections import Counter

import torch

from scissor_viz.scc import nearest

_PUNCTUATION = str.maketrans("", "", string.punctuation)


# ----------------------------------------------------------------------------- tokens


def coverage(original: torch.Tensor, reduced: torch.Tensor) -> float:
    """Mean over original tokens (any shape (..., d)) of the cosine similarity to their closest
    reduced token (K, d). 1 when every original token is among the reduced ones."""
    return nearest(original, reduced)[0].mean().item()


def redundancy(reduced: torch.Tensor) -> float:
    """Mean over reduced tokens (K, d) of the highest cosine similarity to another reduced token.
    A single token has no other to repeat: 0 for K = 1."""
    if reduced.reshape(-1, reduced.shape[-1]).shape[0] < 2:
        return 0.0
    return nearest(reduced, reduced, exclude_self=True)[0].mean().item()


def reduction_metrics(tokens: torch.Tensor, reduction) -> dict[str, float]:
    """Coverage, redundancy, retention and K of a :class:`~scissor_viz.methods.Reduction`."""
    return {
        "coverage": coverage(tokens, reduction.tokens),
        "redundancy": redundancy(reduction.tokens),
        "retention_reached": float(reduction.retention_reached),
        "num_tokens": int(reduction.tokens.shape[0]),
    }


# ----------------------------------------------------------------------------- answers


def normalize_answer(text: str) -> str:
    """SQuAD-style normal form: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the two answers agree after :func:`normalize_answer`, else 0.0."""
    return float(normalize_answer(answer) == normalize_answer(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style F1 of the bags of words of the two normalised answers (both empty: 1.0)."""
    a, b = normalize_answer(answer).split(), normalize_answer(reference).split()
    if not a or not b:
        return float(a == b)
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def first_token_kl(reference: torch.Tensor, other: torch.Tensor, logits: bool = True) -> float:
    """KL(reference || other) in nats between two next-token distributions (vocab,), given as
    logits (default) or as probabilities. The reference is the full-token model's."""
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(other.shape)}")
    p, q = reference.double().flatten(), other.double().flatten()
    if logits:
        log_p, log_q = p.log_softmax(0), q.log_softmax(0)
        return (log_p.exp() * (log_p - log_q)).sum().item()
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum().item()


def answer_fidelity(
    full_answer: str,
    answer: str,
    *,
    full_logits: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    visual_tokens: int | None = None,
    prefill_s: float | None = None,
) -> dict[str, float | int | None]:
    """Agreement of a compressed-token answer with the full-token one: exact match, token F1,
    KL of the first answer token's distribution (when both logit vectors are given), and the
    visual token count and prefill seconds carried through."""
    kl = None
    if full_logits is not None and logits is not None:
        kl = first_token_kl(full_logits, logits)
    return {
        "exact_match": exact_match(answer, full_answer),
        "token_f1": token_f1(answer, full_answer),
        "first_token_kl": kl,
        "visual_tokens": visual_tokens,
        "prefill_s": prefill_s,
    }
