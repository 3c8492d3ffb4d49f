"""The page on every supported family, in a real browser: the app built with a tiny random
twin of each family (tests/tiny_vlms.py, tests/tiny_llava.py) loads the example and draws the
family's own token grid: the numbers line names it (16 frames × P, "token grid rows × cols",
Qwen's frames in groups of 2), every frame has its overlay, and the τ-graph has one dot per token on
rows × cols; and the family's model answers (every family can: Qwen3-VL with its DeepStack
features), from the K tokens on screen and from every token. Tiny twins answer in a fraction of
a second, so this stays fast."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from tests.browser import (
    CHROMIUM,
    SLOW,
    chromium,
    compress_example,
    error_toasts,
    open_page,
    token_counts,
    wait_for,
)

FRAMES = 16  # the page's default
FAMILIES = ["llava_onevision", "llava_next_video", "qwen2_5_vl", "qwen3_vl", "internvl", "smolvlm"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium); CI installs it",
    ),
]

TOKEN_DOTS = """() => {
  const plot = document.querySelector('#tau-graph .js-plotly-plot');
  const dots = plot && (plot._fullData || []).find(t => t.name === 'tokens');  // decoded
  return dots ? [Array.from(dots.x), Array.from(dots.y)] : null;
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def answered(page) -> str | None:
    """The answer panel's text once it holds the model's answers (compressed and full)."""
    text = page.locator("#answer").inner_text()
    return text if "With every token" in text else None


def family_backend(family: str, tiny_llava_folder):
    if family == "llava_onevision":
        from scissor_viz.models import load_backend

        return load_backend(str(tiny_llava_folder), device="cpu", fallback=False)
    from tests.tiny_vlms import twin_backend

    return twin_backend(family)[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_page_draws_each_familys_grid(family, browser, tiny_llava_folder):
    from scissor_viz.ui import build_demo
    from scissor_viz.video import load_video
    from tests.serving import free_port

    backend = family_backend(family, tiny_llava_folder)
    clip = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"
    grid = backend.grid_for(load_video(str(clip), FRAMES).frames)  # what the page must draw
    demo = build_demo(backend=backend)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        page = open_page(browser, url)
        before, after = compress_example(page, FRAMES)
        numbers = page.locator("#numbers").inner_text()
        p, unit, frames = grid.tokens_per_frame, "frame", f"{FRAMES} frames"
        if grid.frames_per_group > 1:
            unit = "group"
            frames += f" in {grid.groups(FRAMES)} groups of {grid.frames_per_group}"
        assert f"({frames} × {p})" in numbers, numbers
        assert numbers.endswith(f"token grid {grid.rows} × {grid.cols} per {unit}"), numbers
        assert before == grid.groups(FRAMES) * p and 0 < after <= before
        assert backend.family in page.locator("#backend-status").inner_text()
        xs, ys = wait_for(lambda: page.evaluate(TOKEN_DOTS), SLOW, "the τ-graph's tokens")
        assert len(xs) == p and max(xs) == grid.cols - 1 and max(ys) == grid.rows - 1
        captions = page.locator("#regions figcaption").all_inner_texts()
        assert len(captions) == FRAMES
        if grid.frames_per_group > 1:  # a group's counts on its first frame, named by both
            assert captions[0].startswith("f0–1")
            assert re.fullmatch(r"f1 · tokens\s+of f0–1", captions[1])  # (two short lines)
            title = page.locator("#regions figure").nth(1).get_attribute("title") or ""
            assert re.match(r"f1 · .*tokens of f0–1", title), title  # the whole caption
        answers = wait_for(lambda: answered(page), SLOW, "the model's answers")
        total, kept = token_counts(page)  # the model's (the pixel stage's went before)
        assert f"— {kept:,} visual tokens" in answers, answers
        assert f"With every token — {total:,} visual tokens" in answers, answers
        assert not error_toasts(page) and not page.crashes
        page.close()
    finally:
        demo.close()
