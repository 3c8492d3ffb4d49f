"""Driving the page in Debian's Chromium as a person does: shared by the browser tests and
``benchmarks/bench_ui.py``. The browser may only reach 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 1000}
SLOW = 180_000  # ms: a compress on a busy 2-core machine
NUMBERS = re.compile(r"([\d,]+) → ([\d,]+) tokens")
STAND_IN = "⏳ Pixel regions for now"  # the numbers line while a model encodes (handlers.py)
TAU = re.compile(r"τ = ([-\d.]+)")
LOADED_IMAGES = (
    "sel => Array.from(document.querySelectorAll(sel))"
    ".filter(e => e.complete && e.naturalWidth > 0).map(e => e.src)"
)
# The same images, each as its src's length and a hash of it: what a poll needs to see a
# picture change, without sending the grid's data URIs (about 600 KB) at every poll.
FINGERPRINTS = """sel => Array.from(document.querySelectorAll(sel))
  .filter(e => e.complete && e.naturalWidth > 0).map(e => {
    const src = e.src;
    let h = 0;
    for (let i = 0; i < src.length; i++) h = (Math.imul(h, 31) + src.charCodeAt(i)) | 0;
    return src.length + ':' + h;
  })"""
# Counts, every 10 ms, the overlays on screen (loaded, in #regions): the least seen is kept.
WATCH_OVERLAYS = """() => {
  window.__fewest = 1e9;
  clearInterval(window.__watch);
  window.__watch = setInterval(() => {
    const n = Array.from(document.querySelectorAll('#regions img'))
      .filter(e => e.complete && e.naturalWidth > 0 && e.offsetParent !== null).length;
    window.__fewest = Math.min(window.__fewest, n);
  }, 10);
}"""


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    """A desktop-sized page that may only talk to the app; it records page errors and toasts."""
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    page.route(
        re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]).*"), lambda route: route.abort()
    )
    page.set_default_timeout(60_000)
    page.crashes = []
    page.on("pageerror", lambda err: page.crashes.append(str(err)))
    page.goto(url)
    page.wait_for_selector("#run")
    return page


def wait_for(condition, timeout_ms: int, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def token_counts(page) -> tuple[int, int] | None:
    """(tokens before, tokens after) from #numbers, or None before the first compression and
    while pixel regions stand in for a model that is still encoding the frames."""
    text = page.locator("#numbers").inner_text()
    m = None if text.startswith(STAND_IN) else NUMBERS.search(text)
    return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None


def overlays(page, selector: str = "#regions img") -> list[str]:
    """The src of every loaded image under ``selector``."""
    return page.evaluate(LOADED_IMAGES, selector)


def fingerprints(page, selector: str = "#regions img") -> list[str]:
    """A fingerprint (FINGERPRINTS) of every loaded image under ``selector``: cheap to poll."""
    return page.evaluate(FINGERPRINTS, selector)


def error_toasts(page) -> list[str]:
    return [t.inner_text() for t in page.locator(".toast-body.error, .toast-body.warning").all()]


def compress_example(page, frames: int = 16) -> tuple[int, int]:
    """Click the example clip (that alone compresses it); wait for the numbers and overlays."""
    page.locator("button.gallery-item").first.click()  # gr.Examples' one sample
    counts = wait_for(lambda: token_counts(page), SLOW, "the numbers after the example")
    wait_for(lambda: len(overlays(page)) == frames, SLOW, f"{frames} overlays in #regions")
    return counts


def compress_upload(page, video: str | Path, frames: int = 16) -> tuple[int, int]:
    """Upload a video (that alone compresses it); wait for the numbers and overlays."""
    page.locator("#video input[type=file]").set_input_files(str(video))
    counts = wait_for(lambda: token_counts(page), SLOW, "the numbers after the upload")
    wait_for(lambda: len(overlays(page)) == frames, SLOW, f"{frames} overlays in #regions")
    return counts


def image_of(page, src: str) -> np.ndarray:
    """The picture an <img> shows (a data URI, or a file the page fetches)."""
    from PIL import Image

    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        data = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def plot_has_data(page, elem_id: str) -> bool:
    plot = page.locator(f"#{elem_id} .js-plotly-plot")
    return plot.count() > 0 and plot.first.evaluate("el => (el.data || []).length") > 0


def first_screen(page) -> dict[str, dict | None]:
    """Where the first overlay, the frame's τ-graph and the answer panel are on the page."""
    selectors = ("#regions img >> nth=0", "#tau-graph .js-plotly-plot", "#answer")
    return {s: page.locator(s).bounding_box() for s in selectors}


def luminance_correlation(page, video: str | Path, frames: int) -> float:
    """How much the first overlay on screen follows its frame's luminance (1: the video shows
    through the regions, about 0: it is hidden)."""
    from PIL import Image

    from scissor_viz.video import load_video

    shown = image_of(page, overlays(page)[0]).astype(float).mean(axis=2)
    frame = load_video(str(video), frames).frames[0].astype(float).mean(axis=2)
    frame = Image.fromarray(frame.astype(np.uint8)).resize(shown.shape[::-1])
    return float(np.corrcoef(np.asarray(frame, float).ravel(), shown.ravel())[0, 1])


def slider_track(page, elem_id: str):
    return page.locator(f"#{elem_id} input[type=range]")


def drag_slider(page, elem_id: str, start: float, stop: float, steps: int = 12) -> float:
    """Drag a slider with the mouse from ``start`` to ``stop`` (fractions of its width);
    returns the value it ended on."""
    track = slider_track(page, elem_id)
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(box["x"] + box["width"] * (start + (stop - start) * k / steps), y)
        time.sleep(0.05)  # a person's drag: about 0.6 s
    page.mouse.up()
    return float(track.input_value())


# What a settle watches, in one call: the numbers line, the overlays' fingerprints, and the
# frame's τ-graph as the page shows it (its title and the line under it).
MAIN_SCREEN = (
    """() => [
  document.querySelector('#numbers').innerText,
  ("""
    + FINGERPRINTS
    + """)('#regions img').join(' '),
  (document.querySelector('#tau-graph .gtitle') || {}).textContent || '',
  (document.querySelector('#drawn-graph') || {}).innerText || '']"""
)


def graph_agrees(numbers: str, title: str, line: str) -> bool:
    """Whether the frame's τ-graph (``title``, ``line`` under it) is drawn for the setting of
    the numbers line: its title names the same τ and its line does not say it is out of date."""
    shown, drawn = TAU.search(numbers), TAU.search(title)
    return bool(shown and drawn) and shown[1] == drawn[1] and "Out of date" not in line


def settle(page, before: str, quiet_s: float = 0.4, timeout_ms: int = SLOW) -> float:
    """Seconds until the main screen is drawn for a new setting and still: #numbers differs
    from ``before``, the frame's τ-graph is drawn for its τ (``graph_agrees``), and none of
    them nor the overlays (all loaded) have changed for ``quiet_s``; the time returned is
    that of the last change seen."""
    t0 = time.monotonic()
    last, seen = t0, [before, *page.evaluate(MAIN_SCREEN)[1:]]
    while time.monotonic() - t0 < timeout_ms / 1000:
        now = page.evaluate(MAIN_SCREEN)
        if now != seen:
            last, seen = time.monotonic(), now
        elif (
            now[0] != before
            and graph_agrees(now[0], *now[2:])
            and time.monotonic() - last >= quiet_s
        ):
            return last - t0
        time.sleep(0.02)
    raise AssertionError("the view never settled")
