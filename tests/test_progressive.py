"""Pixels first, then the model's (issue 16, 3): while a model encodes the frames, the page
shows the pixel descriptors' regions at once, on the model's own grid, saying so; when its
features arrive they replace the pixel stage everywhere. Without a model nothing changes; a
model that fails keeps the pixel pictures and says why.

The two stages as the load event yields them (no server), then the page in Chromium with a
tiny LLaVA-OneVision made slow (its encode waits a few seconds, with progress)."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from gradio.utils import get_upload_folder

from scissor_viz.models import PixelBackend, TokenCache
from scissor_viz.progress import report
from scissor_viz.ui import handlers as on
from scissor_viz.ui.backends import MODEL_CHOICE, PIXEL_CHOICE, Backends
from scissor_viz.ui.views import BANNERS

CLIP = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"
FRAMES = 4
STAND_IN = "⏳ **Pixel regions for now: LLaVA-OneVision is encoding the frames.**"
MODEL_FEATURES = "LLaVA-OneVision features, token grid 14 × 14 per frame"
PIXEL_FEATURES = "pixel features, token grid 14 × 14 per frame"
LOADING = dict(retention=0.35, view="Temporal step", fill=False)


@pytest.fixture
def model(tiny_backend, monkeypatch):
    """The session's tiny model with an empty token cache (nothing encoded yet)."""
    monkeypatch.setattr(tiny_backend, "cache", TokenCache())
    return tiny_backend


@pytest.fixture
def upload() -> dict:
    """The example clip as the server receives an upload."""
    folder = Path(get_upload_folder()) / f"progressive-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    path = shutil.copy(CLIP, folder / CLIP.name)
    yield {"path": str(path)}
    shutil.rmtree(folder, ignore_errors=True)


def loading(backend, upload, choice=MODEL_CHOICE):
    """The page's load event: a generator of its updates."""
    served = on.Served(Backends(backend, None, False))
    request = SimpleNamespace(session_hash=uuid.uuid4().hex, headers={}, client=None)
    quiet = lambda *a, **k: None  # noqa: E731
    return served.load(upload, FRAMES, choice, "", 0.0, request, quiet, **LOADING)


def load(backend, upload, choice=MODEL_CHOICE) -> list[dict]:
    """Every update the page's load event yields."""
    return list(loading(backend, upload, choice))


def test_pixel_regions_on_the_models_grid_first_then_the_models_features(model, upload):
    first, final = load(model, upload)
    pixels = first["state"]
    assert isinstance(pixels.analysis.backend, PixelBackend)
    assert pixels.grid == model.grid_for(pixels.analysis.clip.frames)  # the model's grid
    assert first["numbers"].startswith(STAND_IN) and first["numbers"].endswith(PIXEL_FEATURES)
    assert first["regions"].count("<figure") == FRAMES and 'class="large"' in first["large"]
    assert f"τ = {on.tau_short(pixels.comp.tau)}" in first["tau_graph"].layout.title.text
    assert "Answers come once LLaVA-OneVision's features are in" in first["answer_md"]
    assert first["ask"]["interactive"] is False and first["tau"] == pytest.approx(
        pixels.comp.tau, abs=1e-6
    )
    assert all(first[name] == "" for name in BANNERS.values())

    session = final["state"]
    assert session.analysis.backend is model and session.comp is None and session.fresh
    assert set(final) == {"state", "status"}  # the events after the load draw it
    assert pixels.latest() is session
    # what the events after the load draw: every derived view cleared, then the model's
    cleared = on.after_load(session)
    assert cleared["ask"]["interactive"] is True
    assert all(cleared[name] is None for name in ("matrix", "scrub_image", "compare_table"))
    assert all(cleared[name] == "" for name in BANNERS.values())
    drawn = on.refresh(session, 0.35, "Temporal step", False)
    assert drawn["numbers"].startswith("`bigbuckbunny.mp4`: ")
    assert drawn["numbers"].endswith(MODEL_FEATURES) and "⏳" not in drawn["numbers"]
    tab = on.tab_views(session, 0, "Temporal step", "Similarity")
    assert tab["drawn_similarity"].endswith("· LLaVA-OneVision features.")
    assert "pixel" not in " ".join(tab[name] for name in BANNERS.values())


def test_an_event_sent_with_the_pixel_session_works_on_the_models(model, upload):
    """A slider moved while the model encoded may arrive with the pixel session: it redraws
    the model's session (and hands it back as the page's state), never the pixel one."""
    first, final = load(model, upload)
    pixels, session = first["state"], final["state"]
    on.after_load(session)
    out = on.refresh(pixels, 0.2, "Temporal step", False)
    assert out["state"] is session and out["numbers"].endswith(MODEL_FEATURES)
    assert session.comp is not None and pixels.comp.tau != session.comp.tau
    graph = on.tau_graph(pixels, 0)["tau_graph"]
    assert f"τ = {on.tau_short(session.comp.tau)}" in graph.layout.title.text


def test_the_frame_picked_during_the_pixel_stage_stays_picked(model, upload):
    updates = loading(model, upload)
    pixels = next(updates)["state"]
    on.select_frame(pixels, 2)  # a click on the third frame while the model encodes
    session = next(updates)["state"]
    assert session.frame == 2 and on.after_load(session)["frame"]["value"] == 2
    assert 'data-frame="2"' in on.refresh(session, 0.35, "Temporal step", False)["large"]


def test_tokens_the_model_has_are_shown_at_once(model, upload):
    load(model, upload)
    (only,) = load(model, upload)  # the model's tokens of this clip are in its cache now
    assert only["state"].analysis.backend is model and set(only) == {"state", "status"}


def test_without_a_model_nothing_changes(upload):
    for backend, choice in ((PixelBackend(), MODEL_CHOICE), (None, PIXEL_CHOICE)):
        (only,) = load(backend, upload, choice)
        assert isinstance(only["state"].analysis.backend, PixelBackend)
        assert only["state"].note == "" and set(only) == {"state", "status"}


def test_a_model_that_fails_keeps_the_pixel_regions_and_says_why(model, upload, monkeypatch):
    def fails(frames, progress):
        raise RuntimeError("the vision tower ran out of patience")

    monkeypatch.setattr(model, "_encode", fails)
    first, last = load(model, upload)
    pixels = first["state"]
    assert "state" not in last  # the pixel session stays the page's
    why = "⚠️ **LLaVA-OneVision could not encode the frames** (Something went wrong "
    assert last["numbers"].startswith(why) and "ran out of patience" in last["numbers"]
    assert last["numbers"].endswith(PIXEL_FEATURES)
    assert "could not encode the frames" in last["answer_md"]
    again = on.refresh(pixels, 0.2, "Temporal step", False)  # the note stays on the page
    assert again["numbers"].startswith(why) and again["state"] is pixels


# ----------------------------------------------------------------------------- in Chromium

SLOW_ENCODE_S = 6.0  # the tiny model made slow: the pixel stage stays up this long
NUMBERS = re.compile(r"([\d,]+) → ([\d,]+) tokens")


@pytest.mark.browser
def test_the_page_shows_pixels_first_and_ends_on_the_models_features(model, monkeypatch):
    from tests.browser import CHROMIUM, SLOW, chromium, error_toasts, open_page, wait_for
    from tests.serving import launch

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI installs it")
    from scissor_viz.ui import build_demo

    encode = model._encode

    def slow(frames, progress):  # a slow vision tower, reporting as it goes
        for t in range(len(frames)):
            time.sleep(SLOW_ENCODE_S / len(frames))
            report(progress, (t + 1) / len(frames), f"frame {t + 1}/{len(frames)}")
        return encode(frames, None)

    monkeypatch.setattr(model, "_encode", slow)
    demo = build_demo(backend=model)
    url = launch(demo)
    text = lambda page, sel: page.locator(sel).inner_text()  # noqa: E731
    try:
        with chromium() as browser:
            page = open_page(browser, url)
            page.locator("button.gallery-item").first.click()
            # the pixel stage: at once, on the model's grid, saying so, with progress
            first = wait_for(
                lambda: (t := text(page, "#numbers")).startswith("⏳ Pixel regions") and t,
                SLOW,
                "the pixel stage",
            )
            assert "LLaVA-OneVision is encoding the frames" in first
            assert first.endswith(PIXEL_FEATURES), first
            shown = page.evaluate("() => document.querySelectorAll('#regions img').length")
            assert shown == 16
            assert "Answers come once LLaVA-OneVision" in text(page, "#answer")
            tau = re.search(r"τ = ([-\d.]+)", first).group(1)  # the τ-graph: the pixels' τ
            title = "() => document.querySelector('#tau-graph .gtitle')?.textContent || ''"
            wait_for(lambda: f"τ = {tau}" in page.evaluate(title), 3000, "the τ-graph")
            progress = page.locator("#backend-status .progress-text, #backend-status .meta-text")
            wait_for(lambda: progress.count() > 0, 10_000, "the encoding's progress")
            shoot(page, "progressive-1-pixels.png")
            # the model's stage: every view from its features, nothing of the pixel stage
            final = wait_for(
                lambda: (t := text(page, "#numbers")).endswith(MODEL_FEATURES) and t,
                SLOW,
                "the model's features",
            )
            assert not final.startswith("⏳")
            wait_for(lambda: "Answers about" in text(page, "#answer"), SLOW, "the answers")
            page.get_by_role("tab", name="Similarity").click()
            banner = wait_for(
                lambda: (t := text(page, "#drawn-similarity").strip()).startswith("Drawn") and t,
                SLOW,
                "the tab's line",
            )
            final = text(page, "#numbers")
            tokens = NUMBERS.search(final).group(2)
            tau = re.search(r"τ = ([-\d.]+)", final).group(1)
            assert banner.startswith("Drawn for bigbuckbunny.mp4 · 16 frames · ")
            assert f"{tokens} tokens · τ = {tau}" in banner, (banner, final)
            assert banner.endswith("LLaVA-OneVision features."), banner
            assert f"τ = {tau}" in page.locator("#tau-graph .gtitle").text_content()
            assert f"{tokens} visual tokens" in text(page, "#answer")
            every = " ".join([final, banner, text(page, "#answer")])
            assert "pixel" not in every.lower(), every
            shoot(page, "progressive-2-model.png")
            assert not error_toasts(page) and not page.crashes
    finally:
        demo.close()


def shoot(page, name: str) -> None:
    """A screenshot to look at, where $SCISSOR_VIZ_SCREENSHOTS names a folder."""
    folder = os.environ.get("SCISSOR_VIZ_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name))
