"""The page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium).

One visit, as a person would make it, on the app of a machine without weights (its checkpoint
cannot load, so it shows pixel descriptors): click the example, press Compress, wait for the
overlays and the numbers; move Retention (type a value, leave the field: the slider's release
event) and see the token count and the overlays change; open the Similarity tab and see its five
plots drawn; read that no model is loaded. The browser may only reach 127.0.0.1.

The README's screenshot (assets/screenshot.png) comes from :func:`save_screenshot`, which serves
``python app.py`` offline with an empty Hugging Face cache (exactly what a machine without
weights shows); it only runs with ``SCISSOR_VIZ_SCREENSHOT=1``::

    SCISSOR_VIZ_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_browser.py -k screenshot
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from tests.serving import free_port, serve_app

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "assets" / "screenshot.png"
MAX_SCREENSHOT_BYTES = 600_000
FRAMES = 16  # the page's default
SLOW = 180_000  # ms: a compress on a busy 2-core machine
NUMBERS = re.compile(r"([\d,]+) → ([\d,]+) tokens")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium); CI installs it",
    ),
]


# ----------------------------------------------------------------------------- helpers


def open_page(browser, url: str):
    """A desktop-sized page that may only talk to the app (no fonts or CDNs from outside)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route(
        re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]).*"),
        lambda route: route.abort(),
    )
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#run")
    return page


def token_counts(page) -> tuple[int, int] | None:
    """(tokens before, tokens after) from #numbers, or None before the first compression."""
    m = NUMBERS.search(page.locator("#numbers").inner_text())
    return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None


def wait_for(condition, timeout_ms: int, what: str):
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def overlays(page) -> list[str]:
    """The src of every overlay in #regions, once all of them have loaded."""
    images = page.locator("#regions img")
    return images.evaluate_all(
        "els => els.every(e => e.complete && e.naturalWidth > 0) ? els.map(e => e.src) : []"
    )


def compress_example(page) -> tuple[int, int]:
    """Click the example clip, press Compress, wait for the numbers and all the overlays."""
    page.locator("button.gallery-item").first.click()  # gr.Examples' one sample
    page.wait_for_selector("#video video")
    page.locator("#run").click()
    counts = wait_for(lambda: token_counts(page), SLOW, "the numbers after Compress")
    wait_for(lambda: len(overlays(page)) == FRAMES, SLOW, f"{FRAMES} overlays in #regions")
    return counts


def image_digest(page, src: str) -> str:
    return hashlib.sha256(page.request.get(src).body()).hexdigest()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """The app with a checkpoint that cannot load: the weight-free fallback (pixels)."""
    from scissor_viz.ui import build_demo

    demo = build_demo(checkpoint=str(tmp_path_factory.mktemp("weights") / "no-checkpoint"))
    _, local_url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    yield local_url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


# ----------------------------------------------------------------------------- the test


def test_compress_example_move_retention_and_see_the_plots(browser, url):
    page = open_page(browser, url)
    crashes: list[str] = []
    page.on("pageerror", lambda err: crashes.append(str(err)))

    # 1. the example, Compress: numbers at the default 35 % and one overlay per frame
    before, after = compress_example(page)
    assert before == FRAMES * 196
    assert abs(after - 0.35 * before) <= 3, page.locator("#numbers").inner_text()
    first = overlays(page)
    assert len(first) == FRAMES

    # 2. Retention to 0.10: type it, leave the field (the slider's release event fires)
    number = page.locator("#retention input[type=number]")
    number.fill("0.1")
    number.press("Tab")
    moved = wait_for(
        lambda: (c := token_counts(page)) and c[1] != after and c, SLOW, "new token counts"
    )
    assert moved[0] == before
    assert abs(moved[1] - 0.10 * before) <= 3, page.locator("#numbers").inner_text()
    assert page.locator("#retention input[type=range]").input_value() == "0.1"
    second = wait_for(
        lambda: (s := overlays(page)) and s != first and len(s) == FRAMES and s,
        SLOW,
        "new overlays",
    )
    assert image_digest(page, second[0]) != image_digest(page, first[0])  # other regions drawn

    # 3. drag the slider with the mouse to about 60 % (pointerup: the release event)
    track = page.locator("#retention input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    dragged = float(track.input_value())
    assert 0.4 < dragged < 0.8, dragged
    # every change redraws (the latest waiting while one runs), so the numbers settle on the
    # value the drag ended at
    wait_for(
        lambda: (c := token_counts(page)) and abs(c[1] - dragged * before) <= 3 and c,
        SLOW,
        f"counts to settle at {dragged} after the drag",
    )
    third = wait_for(
        lambda: (s := overlays(page)) != second and len(s) == FRAMES and s, SLOW, "overlays"
    )

    # 4. the keyboard: arrow keys on the slider move the numbers too
    track.focus()
    for _ in range(10):
        track.press("ArrowLeft")
    keyed = float(track.input_value())
    assert keyed < dragged, (keyed, dragged)
    wait_for(
        lambda: (c := token_counts(page)) and abs(c[1] - keyed * before) <= 3 and c,
        SLOW,
        f"counts to settle at {keyed} after the arrow keys",
    )
    wait_for(lambda: (s := overlays(page)) != third and len(s) == FRAMES, SLOW, "overlays")

    # 5. the Similarity tab: five plotly figures, drawn, each with data
    page.get_by_role("tab", name="Similarity").click()
    plots = page.locator(".js-plotly-plot")
    wait_for(lambda: plots.count() == 5, 60_000, "5 plots in the Similarity tab")
    for i in range(5):
        plot = plots.nth(i)
        plot.locator(".main-svg").first.wait_for(state="visible")
        box = plot.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150, box
        assert plot.evaluate("el => (el.data || []).length") > 0

    # 6. no model: the page says so, and nothing went wrong along the way
    status = page.locator("#backend-status").inner_text()
    assert "No model loaded" in status and "pixel descriptors" in status, status
    assert page.locator(".toast-body.error").count() == 0
    assert not crashes, crashes
    page.close()


# ----------------------------------------------------------------------------- the screenshot


def save_screenshot(
    browser, path: Path = SCREENSHOT, tmp: Path | None = None, retention: float | None = None
) -> Path:
    """Serve ``python app.py`` as a machine without weights does (offline; a Hugging Face cache
    without the checkpoint), compress the example at the default retention (or move Retention
    to ``retention`` afterwards), and save the Regions tab at desktop width as a PNG
    (palette-reduced when needed to stay under 600 KB)."""
    from huggingface_hub import try_to_load_from_cache
    from PIL import Image

    from scissor_viz.models import DEFAULT_CHECKPOINT

    tmp = Path(tmp or tempfile.mkdtemp(prefix="scissor-viz-screenshot-"))
    hidden = None  # this machine may have the weights in its cache: hide them
    if isinstance(try_to_load_from_cache(DEFAULT_CHECKPOINT, "config.json"), str):
        hidden = str(tmp / "hf-home")
    home = hidden or os.environ.get("HF_HOME")
    with serve_app(
        tmp / "app.log", HF_HUB_OFFLINE="1", SCISSOR_VIZ_CHECKPOINT=None, HF_HOME=home
    ) as url:
        page = open_page(browser, url)
        page.set_viewport_size({"width": 1400, "height": 1200})
        counts = compress_example(page)
        if retention is not None:
            old = overlays(page)
            number = page.locator("#retention input[type=number]")
            number.fill(str(retention))
            number.press("Tab")
            wait_for(lambda: (c := token_counts(page)) and c != counts, SLOW, "new numbers")
            wait_for(
                lambda: (o := overlays(page)) != old and len(o) == FRAMES, SLOW, "the new overlays"
            )
        wait_for(
            lambda: "No model loaded" in page.locator("#backend-status").inner_text(),
            60_000,
            "the backend status",
        )
        page.mouse.move(0, 0)
        page.evaluate("window.scrollTo(0, 0)")
        time.sleep(1.0)  # let the video poster and the gallery settle
        png = page.screenshot(full_page=False)
        page.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    if out.tell() > MAX_SCREENSHOT_BYTES:
        out = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out, format="PNG", optimize=True
        )
    assert out.tell() <= MAX_SCREENSHOT_BYTES, out.tell()
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.skipif(
    os.environ.get("SCISSOR_VIZ_SCREENSHOT") != "1",
    reason="rewrites assets/screenshot.png only when SCISSOR_VIZ_SCREENSHOT=1",
)
def test_screenshot(browser, tmp_path):
    path = save_screenshot(browser, tmp=tmp_path)
    assert 0 < path.stat().st_size <= MAX_SCREENSHOT_BYTES
