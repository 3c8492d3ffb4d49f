"""Freed memory goes back to the system after heavy events (ui/memory.py)."""

from __future__ import annotations

import pytest

from scissor_viz.ui.memory import _libc, frees_memory, return_free_memory

MIB = 2**20


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(_libc() is None, reason="needs glibc's malloc_trim")
def test_return_free_memory_gives_back_fragmented_pages():
    """Freed 8 KiB blocks between survivors stay resident (glibc trims only the heap's top)
    until return_free_memory asks for them."""
    blocks = [bytearray(8192) for _ in range(40_000)]  # ~320 MiB, touched
    keep = blocks[::64]
    del blocks
    before = rss()
    assert return_free_memory()
    after = rss()
    assert before - after > 150 * MIB, (before / MIB, after / MIB)
    assert len(keep) == 625


def test_frees_memory_runs_after_success_and_failure(monkeypatch):
    calls = []
    monkeypatch.setattr("scissor_viz.ui.memory.return_free_memory", lambda: calls.append(1))

    @frees_memory
    def ok(x, *, y=1):
        return x + y

    @frees_memory
    def fails():
        raise ValueError("bad")

    assert ok(1, y=2) == 3 and calls == [1]
    with pytest.raises(ValueError):
        fails()
    assert calls == [1, 1] and ok.__name__ == "ok"
