"""Progress callbacks: ``progress(fraction, message)``, shared by the model loaders and analysis.

A callback may be None everywhere one is accepted; :func:`report` then does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    """Call ``progress(fraction, message)`` if there is a callback (fraction clipped to [0, 1])."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: ProgressFn | None, start: float, stop: float) -> ProgressFn | None:
    """A callback that maps [0, 1] of a sub-task onto [start, stop] of ``progress``."""
    if progress is None:
        return None
    return lambda f, msg: report(progress, start + (stop - start) * f, msg)
