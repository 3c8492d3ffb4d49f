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


# ----------------------------------------------------------------------------- FastV's budget


def hwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


@pytest.fixture(scope="module")
def tiny(tiny_llava_folder):
    from scissor_viz.models import load_backend

    return load_backend(str(tiny_llava_folder), device="cpu", fallback=False)


def test_fastv_budget_counts_every_copy_eager_attention_makes(tiny):
    """The peak resident memory of one FastV ranking (16 frames) stays within what the budget
    counts for it, and is more than one map: the copies are real."""
    import torch

    from scissor_viz.models.attention import attention_bytes, decoder_of

    tokens = torch.randn(16, 196, tiny.hidden_size)
    tiny.llm_attention("What is happening?", tokens)  # warm: first-call allocations
    heads = decoder_of(tiny.model).config.num_attention_heads
    length = len(tiny.prompt_ids("What is happening?")[0]) + tokens.shape[0] * 196
    return_free_memory()
    base = rss()
    with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to now
        f.write("5")
    tiny.llm_attention("What is happening?", tokens)
    peak, one_map = hwm() - base, heads * length**2 * 4
    print(f"peak {peak / MIB:.0f} MiB = {peak / one_map:.2f} maps")
    assert 1.5 * one_map < peak <= attention_bytes(heads, length)


def test_a_comparison_that_cannot_fit_fastv_runs_nothing(tiny, monkeypatch):
    """FastV over budget is refused before the methods before it run."""
    import gradio as gr

    from scissor_viz.analysis import VideoAnalysis
    from scissor_viz.models.attention import ATTENTION_BUDGET_ENV
    from scissor_viz.ui import handlers as on
    from scissor_viz.ui.views import Session
    from scissor_viz.video import example_videos

    session = Session(VideoAnalysis.open(str(example_videos()[0]), tiny, 4))
    session.comp = session.analysis.compress(retention=0.35)
    ran = []
    monkeypatch.setattr(session.analysis, "reduce", lambda *a, **k: ran.append(a))
    monkeypatch.setenv(ATTENTION_BUDGET_ENV, "1")
    for call in (
        lambda: on.compare(session, ["random", "fastv"], 0, "What?"),
        lambda: on.curves(session, ["random", "fastv"], "What?", lambda *a, **k: None),
    ):
        with pytest.raises(gr.Error, match="FastV needs"):
            call()
    assert ran == []


# ----------------------------------------------------------------------------- all sessions


class FakeAnalysis:
    def __init__(self, mib: int):
        self.size, self.released = mib * MIB, False

    def nbytes(self) -> dict:
        return {"total": self.size}

    def release(self) -> None:
        self.released = True


class FakeSession:
    def __init__(self, mib: int):
        self.analysis, self.comp, self.curve, self._thumbnails = FakeAnalysis(mib), 1, None, None

    def release(self) -> None:
        self.analysis.release()


def test_the_budget_releases_the_least_recently_used_idle_session():
    from scissor_viz.ui.memory import RELEASED, Released, SessionBudget

    budget = SessionBudget(250 * MIB)
    a, b, c = FakeSession(100), FakeSession(100), FakeSession(100)
    b_analysis = b.analysis
    for s in (a, b):
        with budget.use(s):
            pass
    with budget.use(a):  # a is used again: b is now the least recently used
        with budget.use(c):  # 300 MiB > 250: b goes, a is busy anyway
            pass
    assert b.analysis is None and a.analysis is not None and c.analysis is not None
    assert b_analysis.released and not a.analysis.released
    assert budget.held() == 200 * MIB
    with pytest.raises(Released, match=RELEASED), budget.use(b):
        pass
    d = FakeSession(300)  # alone over the budget: the others go, it stays
    with budget.use(d):
        pass
    assert a.analysis is None and c.analysis is None and budget.held() == 300 * MIB
