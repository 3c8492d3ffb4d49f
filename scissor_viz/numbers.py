"""How the page writes its numbers, one way everywhere.

Similarities between pixel descriptors (and between many models' tokens) bunch near 1, so a
threshold printed with four decimals can read ``1.0000`` while the count it produced needs the
fifth or sixth digit. ``tau_text`` writes τ with the digits it needs: up to 0.99 as four decimals,
above that as ``1 − d.dd·10⁻ᵏ`` (three significant digits of the gap to 1). The exact value, for
a box a person can type into and get the same count back, is ``repr(float(tau))``.
"""

from __future__ import annotations

import math

import numpy as np

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
GAP_FLOOR = 1e-6  # the smallest 1 - τ the retention curve shows (log axis: similarity 1 sits here)


def tau_text(tau: float | None) -> str:
    """τ for people: ``0.9525``, ``1 − 3.21·10⁻⁴``, ``1`` (nothing joins), ``—`` (none)."""
    if tau is None or not math.isfinite(tau):
        return "—"
    gap = 1.0 - float(tau)
    if gap <= 0:
        return "1"
    if gap >= 0.01:
        return f"{tau:.4f}"
    mantissa, exponent = f"{gap:.2e}".split("e")
    return f"1 − {mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"


def tau_exact(tau: float) -> str:
    """τ as the shortest text that reads back as the same float (for the typed-τ box)."""
    return repr(float(tau))


def tau_short(tau: float) -> str:
    """τ as the shortest decimal that names the same float32 threshold the engine uses (the
    engine rounds every τ to float32): typed back, it gives the same count. ``1`` when nothing
    can join."""
    value = np.float32(tau)
    if value >= 1:
        return "1"
    for digits in range(2, 12):
        text = f"{float(value):.{digits}f}".rstrip("0").rstrip(".")
        if np.float32(float(text)) == value:
            return text
    return repr(float(value))
