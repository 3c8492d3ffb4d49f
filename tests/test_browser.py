"""The page in a real browser, used as a person uses it: Playwright driving Debian's Chromium.

One visit to the app of a machine without weights (its checkpoint cannot load, so it shows
pixel descriptors), tests in the order a person goes: click the example (that alone
compresses it) and see regions, the frame's graph and the answer panel on one screen; drag
Retention with the mouse (the overlays never leave the screen), press the arrow keys, type a
value; type a τ and press Enter; pick a frame; change the colouring; every tab and every
button in it (probe click, Teach's play and scrubber, Compare and its curves, Export with its
three files downloaded and decoded). Any error toast or page error fails the test it appears
in. Controls moved before any video ran stay quiet.

The README's screenshot (assets/screenshot.png) comes from :func:`save_screenshot`; it only
runs with ``SCISSOR_VIZ_SCREENSHOT=1``::

    SCISSOR_VIZ_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_browser.py -k screenshot
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from tests.browser import (
    CHROMIUM,
    SLOW,
    TAU,
    WATCH_OVERLAYS,
    chromium,
    compress_example,
    drag_slider,
    error_toasts,
    first_screen,
    luminance_correlation,
    open_page,
    overlays,
    plot_has_data,
    settle,
    slider_track,
    token_counts,
    wait_for,
)
from tests.serving import serve_app

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "bigbuckbunny.mp4"
SCREENSHOT = ROOT / "assets" / "screenshot.png"
MAX_SCREENSHOT_BYTES = 600_000
FRAMES = 16  # the page's default

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium); CI installs it",
    ),
]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page(browser, pixel_url):
    """One visit: the example clicked and compressed, shared by the tests below in order."""
    page = open_page(browser, pixel_url)
    compress_example(page, FRAMES)
    yield page
    page.close()


@pytest.fixture(autouse=True)
def nothing_went_wrong(request):
    """Every test ends with no error toast and no page error on its page."""
    yield
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        assert not error_toasts(page), error_toasts(page)
        assert not page.crashes, page.crashes


def numbers(page) -> str:
    return page.locator("#numbers").inner_text()


# ----------------------------------------------------------------------------- the visit


def test_quiet_before_any_video(browser, pixel_url):
    """Moving the sliders before a video ran does nothing noisy; the buttons that need a
    video are disabled."""
    page = open_page(browser, pixel_url)
    drag_slider(page, "retention", 0.3, 0.6, steps=4)
    slider_track(page, "frame").focus()
    page.keyboard.press("ArrowRight")
    time.sleep(2.0)
    assert not error_toasts(page), error_toasts(page)
    assert page.locator(".error").count() == 0  # no red badges on the outputs
    assert page.locator("#ask").is_disabled()
    for tab, button in (("Compare", "#compare"), ("Teach", "#play"), ("Export", "#export")):
        page.get_by_role("tab", name=tab).click()
        assert page.locator(button).is_disabled(), button
    assert not page.crashes, page.crashes
    page.close()


def test_one_screen_regions_graph_and_answer(page):
    """After the example: regions, the frame's τ-graph and the answer panel, all visible in
    the first screen at 1440 × 1000; the video shows through the overlays."""
    before, after = token_counts(page)
    assert before == FRAMES * 196 and abs(after - 0.35 * before) <= 3, numbers(page)
    wait_for(lambda: plot_has_data(page, "tau-graph"), SLOW, "the τ-graph")
    wait_for(lambda: "visual token" in page.locator("#answer").inner_text(), SLOW, "answer panel")
    answer = page.locator("#answer").inner_text()
    assert "No answer" in answer and f"of {before:,}" in answer, answer
    for selector, box in first_screen(page).items():
        assert box and box["y"] + 20 < 1000 and box["width"] > 100, (selector, box)
    large = page.locator("#large-frame img").bounding_box()  # the selected frame, readable
    assert large["width"] >= 480 and large["y"] + large["height"] < 1000, large
    assert "bigbuckbunny.mp4" in numbers(page)  # results say which video they belong to
    r = luminance_correlation(page, CLIP, FRAMES)
    assert r > 0.8, f"the overlay hides the video (luminance correlation {r:.2f})"


def test_drag_retention_keeps_the_pictures_up(page):
    """A mouse drag: at every moment at least two overlays are on screen, the numbers follow
    the slider, and the view settles after release."""
    before = numbers(page)
    page.evaluate(WATCH_OVERLAYS)
    value = drag_slider(page, "retention", 0.34, 0.1)
    settled = settle(page, before)
    fewest = page.evaluate("window.__fewest")
    page.evaluate("clearInterval(window.__watch)")
    assert fewest >= 2, f"only {fewest} overlays on screen during the drag"
    total, kept = token_counts(page)
    assert abs(kept - value * total) <= 3, (value, numbers(page))
    print(f"settled {settled:.2f} s after release")


def test_keys_and_typed_retention(page):
    track = slider_track(page, "retention")
    track.focus()
    for _ in range(5):
        track.press("ArrowRight")
    keyed = float(track.input_value())
    wait_for(
        lambda: (c := token_counts(page)) and abs(c[1] - keyed * c[0]) <= 3, SLOW, "arrow keys"
    )
    box = page.locator("#retention input[type=number]")
    box.fill("0.05")
    box.press("Enter")
    wait_for(lambda: (c := token_counts(page)) and abs(c[1] - 0.05 * c[0]) <= 3, SLOW, "typed")


def test_typed_tau_and_enter(page):
    page.get_by_text("Advanced").click()
    field = page.locator("#tau input")
    field.fill("0.995")
    field.press("Enter")
    wait_for(lambda: (m := TAU.search(numbers(page))) and m.group(1) == "0.995", SLOW, "τ")
    assert page.locator("#use-tau input").is_checked()
    page.locator("#use-tau input").uncheck()  # back to Retention
    wait_for(lambda: TAU.search(numbers(page)).group(1) != "0.995", SLOW, "retention again")
    # the τ box holds the τ in use: typed back (Enter), it gives exactly the count shown
    wait_for(lambda: field.input_value() == TAU.search(numbers(page)).group(1), SLOW, "τ box")
    kept = token_counts(page)[1]
    field.press("Enter")
    wait_for(lambda: page.locator("#use-tau input").is_checked(), SLOW, "τ rules")
    time.sleep(1.0)
    assert token_counts(page)[1] == kept, (kept, numbers(page))
    page.locator("#use-tau input").uncheck()
    wait_for(lambda: not page.locator("#use-tau input").is_checked(), SLOW, "retention rules")


def test_colourings_and_frame_choice(page):
    first = overlays(page)
    page.get_by_label("Spatial step").check()
    wait_for(lambda: (o := overlays(page)) != first and len(o) == FRAMES, SLOW, "spatial view")
    spatial = overlays(page)
    page.get_by_label("Fill with mean colour").check()
    wait_for(lambda: (o := overlays(page)) != spatial and len(o) == FRAMES, SLOW, "filled")
    page.get_by_label("Fill with mean colour").uncheck()
    page.get_by_label("Temporal step").check()
    title = page.locator("#tau-graph .gtitle").text_content()
    page.locator("#regions figure").nth(5).click()  # a thumbnail picks the frame
    wait_for(lambda: slider_track(page, "frame").input_value() == "5", 30_000, "frame 5")
    marked = "#regions figure.selected"  # marked in the grid, and drawn large
    wait_for(lambda: page.locator(marked).get_attribute("data-frame") == "5", SLOW, "marked")
    wait_for(lambda: "f5" in page.locator("#large-frame figcaption").inner_text(), SLOW, "large")
    wait_for(lambda: page.locator("#tau-graph .gtitle").text_content() != title, SLOW, "graph")
    title = page.locator("#tau-graph .gtitle").text_content()
    dragged = drag_slider(page, "frame", 0.6, 0.0, steps=4)
    assert dragged == 0, dragged
    wait_for(lambda: page.locator("#tau-graph .gtitle").text_content() != title, SLOW, "graph")


def test_similarity_tab(page):
    page.get_by_role("tab", name="Similarity").click()
    plots = page.locator("[role=tabpanel]:visible .js-plotly-plot")
    wait_for(lambda: plots.count() == 4, 60_000, "4 plots in the Similarity tab")
    for i in range(4):
        assert plots.nth(i).evaluate("el => (el.data || []).length") > 0


def current(page, line: str) -> bool:
    """Whether a tab's line says it was drawn for the count on screen now."""
    counts = token_counts(page)
    return bool(counts) and line.startswith("Drawn for") and f"{counts[1]:,} tokens" in line


def test_open_tab_follows_the_slider_drag_and_keys(page):
    """The open tab is redrawn after a drag and after arrow keys; until then its line says it
    is out of date (seen in 2.4 s: marked, then redrawn)."""
    line = page.locator("#drawn-similarity")
    wait_for(lambda: line.inner_text().startswith("Drawn for"), SLOW, "drawn")
    for move in ("drag", "keys"):
        if move == "drag":
            drag_slider(page, "retention", 0.3, 0.12, steps=6)
        else:
            track = slider_track(page, "retention")
            track.focus()
            for _ in range(3):
                track.press("ArrowRight")
        t0 = time.monotonic()
        wait_for(lambda: current(page, line.inner_text()), SLOW, f"redrawn after {move}")
        print(f"Similarity redrawn {time.monotonic() - t0:.2f} s after the {move}")
        tau = TAU.search(numbers(page)).group(1)
        assert f"τ = {tau}" in line.inner_text(), (line.inner_text(), numbers(page))


def test_probe_click(page):
    page.get_by_role("tab", name="Probe").click()
    image = page.locator("#probe-image img")
    image.wait_for(state="visible")
    image.scroll_into_view_if_needed()  # as a person scrolls to it: the mouse clicks on screen
    box = image.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    wait_for(lambda: "Token" in page.locator("#probe-note").inner_text(), SLOW, "probe note")
    note = page.locator("#probe-note").inner_text()
    assert re.search(r"row [67], column [67]\)", note), note  # the middle of the frame
    lit = lambda: len(overlays(page, "#probe-gallery img")) == FRAMES  # noqa: E731
    wait_for(lit, 30_000, f"the clicked token's region in all {FRAMES} frames")


def test_teach_plays_and_scrubs(page):
    page.get_by_role("tab", name="Teach").click()
    scrub = "#scrub img"
    wait_for(lambda: overlays(page, scrub), SLOW, "the scrubber's picture")
    page.locator("#play").click()
    seen, t0 = set(), time.monotonic()
    while time.monotonic() - t0 < 6:
        seen.update(overlays(page, scrub))
        time.sleep(0.1)
    assert len(seen) >= 3, f"Play showed {len(seen)} pictures in 6 s"
    assert "Pause" in page.locator("#play").inner_text()
    page.locator("#play").click()  # pause
    time.sleep(1.5)
    note = page.locator("#scrub-note").inner_text()
    step = page.locator("#step input[type=number]").input_value()
    assert note.startswith(f"Step {step} of"), (step, note)  # slider and text count alike
    drag_slider(page, "step", 0.0, 0.9, steps=4)
    wait_for(lambda: page.locator("#scrub-note").inner_text() != note, SLOW, "scrubbed")


def test_compare_tab(page):
    page.get_by_role("tab", name="Compare").click()
    assert page.locator("#answers-btn").is_disabled()  # no model: disabled, with the reason
    assert "needs a model" in page.locator("#answers-why").inner_text()
    looks = "el => getComputedStyle(el).opacity"
    assert float(page.locator("#answers-btn").evaluate(looks)) < 0.6  # and looks it
    assert float(page.locator("#compare").evaluate(looks)) == 1
    page.locator("#compare").click()
    wait_for(lambda: len(overlays(page, "#compare-gallery img")) >= 6, SLOW, "method pictures")
    kept = token_counts(page)[1]  # Compare's SCC row: the count on screen
    scc = page.locator("#compare-gallery").get_by_text("LLaVA-Scissor").first.inner_text()
    assert f": {kept} tokens" in scc, (scc, kept)
    page.locator("#curves").click()
    wait_for(lambda: plot_has_data(page, "curves-plot"), SLOW, "the curves")


def test_export_files_download_and_decode(page, tmp_path):
    import av
    from PIL import Image

    from scissor_viz.export import load_partition

    page.get_by_role("tab", name="Export").click()
    page.locator("#export").click()
    links = page.locator("#files a")
    wait_for(lambda: links.count() == 3, SLOW, "three files")
    paths = {}
    for k in range(3):
        with page.expect_download() as info:
            links.nth(k).click()
        name = info.value.suggested_filename
        paths[Path(name).suffix] = tmp_path / name
        info.value.save_as(paths[Path(name).suffix])
    with Image.open(paths[".gif"]) as gif:
        assert gif.n_frames == FRAMES
    with av.open(str(paths[".mp4"])) as mp4:
        assert sum(1 for _ in mp4.decode(video=0)) == FRAMES
    partition = load_partition(paths[".json"])
    assert partition.num_tokens == token_counts(page)[1]
    assert json.loads(paths[".json"].read_text())["num_frames"] == FRAMES


def test_frames_typed_then_compress(page):
    """A new number of frames typed (Enter) and Compress pressed: the video is sampled again
    and every view follows; the question box is a plain text box; Ask stays disabled without
    a model."""
    frames = 6
    box = page.locator("#frames input[type=number]")
    box.scroll_into_view_if_needed()
    box.fill(str(frames))
    box.press("Enter")
    wait_for(lambda: "Press Compress" in page.locator("#pending").inner_text(), SLOW, "the note")
    page.locator("#run").click()
    wait_for(lambda: not page.locator("#pending").inner_text().strip(), SLOW, "note cleared")
    wait_for(lambda: f"{frames} frames × 196" in numbers(page), SLOW, f"{frames} frames")
    wait_for(lambda: len(overlays(page)) == frames, SLOW, f"{frames} overlays")
    assert slider_track(page, "frame").get_attribute("max") == str(frames - 1)
    question = page.locator("#question textarea")
    question.fill("What does the bunny do?")
    assert page.locator("#ask").is_disabled()  # no model: nothing to ask


# ----------------------------------------------------------------------------- the screenshot


def save_screenshot(browser, path: Path = SCREENSHOT, tmp: Path | None = None) -> Path:
    """Serve ``python app.py`` as a machine without weights does (offline; a Hugging Face cache
    without the checkpoint), click the example, and save the first screen at 1440 × 1000 as a
    PNG (palette-reduced when needed to stay under 600 KB)."""
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
        compress_example(page, FRAMES)
        wait_for(lambda: plot_has_data(page, "tau-graph"), SLOW, "the τ-graph")
        wait_for(lambda: "visual token" in page.locator("#answer").inner_text(), SLOW, "answer")
        page.mouse.move(0, 0)
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
