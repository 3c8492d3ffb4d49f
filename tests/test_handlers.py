"""The page's handlers as plain functions (no server, no browser): what each returns for a
session, quiet no-ops before a video, the open tab alone drawn, a session's release."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import PixelBackend
from scissor_viz.ui import handlers as on
from scissor_viz.ui.session import GRID_WIDTH, THUMB_WIDTH, Session, fit_width
from scissor_viz.video import VideoError

CLIP = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"
SKIP = gr.skip()


def skipped(x) -> bool:
    return isinstance(x, dict) and x == SKIP


@pytest.fixture(scope="module")
def session() -> Session:
    analysis = VideoAnalysis.open(str(CLIP), PixelBackend(), num_frames=6)
    s = Session(analysis, video="bigbuckbunny.mp4", asked=(6, "pixels"))
    s.set_setting(0.35, False, 0.0)
    return s


def test_live_controls_before_a_video_do_nothing():
    assert on.refresh(None, 0.3, "Temporal step", False) == SKIP
    assert on.tau_graph(None, 0) == SKIP
    assert on.tab_views(None, 0, "Temporal step", "Similarity") == SKIP
    assert on.recolour(None, "Spatial step", True) == SKIP


def test_every_event_returns_only_the_outputs_it_declares(session):
    session.fresh = True
    """Outputs by name: what an event returns is a subset of what it declares (the layout
    wires exactly the declared ones)."""
    for fn, args in (
        (on.refresh, (session, 0.3, "Temporal step", False)),
        (on.apply_tau, (session, 0.99, "Temporal step", False)),
        (on.tab_views, (session, 1, "Temporal step", "Teach")),
        (on.tab_views, (session, 1, "Temporal step", "Similarity")),
        (on.after_load, (session,)),  # the session's first: the page is cleared
        (on.select_frame, (session, 2)),
        (on.recolour, (session, "Spatial step", True)),
    ):
        out = fn(*args)
        assert set(out) <= set(fn.outputs), (fn.__name__, set(out) - set(fn.outputs))


def test_refresh_redraws_every_frame(session):
    out = on.refresh(session, 0.2, "Temporal step", False)
    assert out["state"] is session and out["use_tau"] is False and out["stamp"] == session.stamp
    assert out["regions"].count("<figure") == 6 and "→" in out["numbers"] and out["view_caption"]
    assert "bigbuckbunny.mp4" in out["numbers"] and 'class="large"' in out["large"]
    assert abs(session.comp.num_tokens - 0.2 * 6 * 196) <= 3
    # the answer panel says what the model sees at this setting, at once
    assert f"{session.comp.num_tokens:,} visual tokens" in out["answer_md"], out["answer_md"]


def test_tau_graph_of_a_superseded_setting_is_skipped(session):
    """The frame's τ-graph asked for a setting the slider has already left is not drawn (the
    newer setting's graph follows); for the setting on screen, or unstamped, it is."""
    asked = on.refresh(session, 0.3, "Temporal step", False)["stamp"]
    assert "τ = " in on.tau_graph(session, 0, asked)["tau_graph"].layout.title.text
    on.refresh(session, 0.1, "Temporal step", False)
    assert session.stamp != asked and skipped(on.tau_graph(session, 0, asked))
    assert not skipped(on.tau_graph(session, 0, session.stamp))
    assert not skipped(on.tau_graph(session, 0))


def test_grid_captions_are_short_and_their_tooltips_whole(session):
    """Each frame of the grid: two short lines (about 20 characters each fit under a ~120-pixel
    thumbnail) whose tokens add up to the count, the whole caption in its tooltip; the large
    frame says the selected frame's whole caption."""
    out = on.refresh(session, 0.3, "Temporal step", False)
    figures = re.findall(
        r'<figure[^>]* title="([^"]+)">.*?<figcaption>(.*?)</figcaption>', out["regions"]
    )
    assert len(figures) == 6
    tokens = 0
    for t, (title, caption) in enumerate(figures):
        lines = caption.split("<br>")
        assert len(lines) == 2 and all(len(line) <= 21 for line in lines), caption
        assert lines[0].startswith(f"f{t} · ") and title.startswith(f"f{t} · ")
        tokens += int(re.search(r"([\d,]+) tokens?", lines[0])[1].replace(",", ""))
        merged = re.search(r"(\d+) cells? merged", lines[1])
        assert f"as {lines[0].split(' · ')[1]}" in title  # the same tokens, in whole words
        assert (merged is None) == ("merged" not in title), (caption, title)
        if merged:
            assert f"{merged[1]} merged into earlier frames" in title
    assert tokens == session.comp.num_tokens
    large = re.search(r"<figcaption>Selected: (.*?)</figcaption>", out["large"])[1]
    assert large == figures[session.frame][0]


def test_the_tau_shown_gives_the_count_shown(session):
    """The τ box gets the τ in use as the short decimal the numbers line shows; typed back
    (Enter), it gives exactly the same count."""
    for retention in (0.05, 0.2, 0.35, 0.8):
        out = on.refresh(session, retention, "Temporal step", False)
        kept = session.comp.num_tokens
        shown = re.search(r"τ = \*\*([-\d.]+)", out["numbers"]).group(1)
        assert float(shown) == out["tau"]
        again = on.apply_tau(session, out["tau"], "Temporal step", False)
        assert session.comp.num_tokens == kept and f"→ {kept:,} tokens" in again["numbers"]


def test_a_new_setting_marks_drawn_tabs_out_of_date(session):
    """A tab drawn at one setting says so; after a new setting its line says out of date
    until it is drawn again; a redraw asked for an older setting skips itself."""
    on.refresh(session, 0.3, "Temporal step", False)
    drawn = on.tab_views(session, 0, "Temporal step", "Similarity")
    assert drawn["drawn_similarity"].startswith("Drawn for") and "τ = " in drawn["drawn_similarity"]
    old = session.stamp
    out = on.refresh(session, 0.5, "Temporal step", False)
    assert out["drawn_similarity"].startswith("⚠️ **Out of date**"), out["drawn_similarity"]
    assert skipped(on.tab_views(session, 0, "Temporal step", "Similarity", old))
    again = on.tab_views(session, 0, "Temporal step", "Similarity", session.stamp)
    assert again["drawn_similarity"].startswith("Drawn for")


def test_a_tab_drawn_while_the_setting_changed_is_not_sent(session, monkeypatch):
    """The slider moved while a tab was being drawn (its views could mix two compressions):
    the redraw sends nothing and the tab's line stays as it was (out of date), for the new
    setting's own redraw to follow."""
    on.refresh(session, 0.3, "Temporal step", False)
    on.tab_views(session, 0, "Temporal step", "Similarity")
    before = session.drawn["Similarity"]
    matrix = on.views.matrix_figure

    def moved_meanwhile(s, frame):
        figure = matrix(s, frame)
        on.refresh(s, 0.6, "Temporal step", False)  # another event, in another thread
        return figure

    monkeypatch.setattr(on.views, "matrix_figure", moved_meanwhile)
    assert skipped(on.tab_views(session, 0, "Temporal step", "Similarity", session.stamp))
    assert session.drawn["Similarity"] == before
    assert on.views.banner(session, "Similarity").startswith("⚠️ **Out of date**")


def test_only_the_open_tab_is_drawn(session):
    similarity = on.tab_views(session, 2, "Temporal step", "Similarity")
    assert {"matrix", "temporal", "curve", "per_frame"} <= set(similarity)
    assert not {"probe_image", "scrub_image"} & set(similarity)
    teach = on.tab_views(session, 2, "Temporal step", "Teach")
    assert not {"matrix", "probe_image"} & set(teach)
    assert teach["scrub_image"].shape[2] == 3 and "τ" in teach["scrub_note"]
    assert skipped(on.tab_views(session, 2, "Temporal step", "Export"))


def test_teach_slider_and_text_count_steps_alike(session):
    """Teach's slider and its text both count from 1; the step marked "in use" names the τ
    the numbers line shows."""
    teach = on.tab_views(session, 0, "Temporal step", "Teach")
    step = teach["step"]["value"]
    assert (
        teach["step"]["minimum"] == 1
        and f"Step {step} of {teach['step']['maximum']}" in (teach["scrub_note"])
    )
    assert f"τ = {on.tau_short(session.comp.tau)}" in teach["scrub_note"]
    out = on.scrub_to(session, 0, 3)
    assert out["scrub_note"].startswith("Step 3 of")


def test_play_toggles_and_scrubbing_wraps(session):
    out = on.toggle_play(False)
    assert out["playing"] and out["player"].active and "Pause" in out["play"]["value"]
    steps = on.tab_views(session, 0, "Temporal step", "Teach")["step"]["maximum"]
    out = on.scrub_next(session, 0, steps)
    assert out["step"] == 1 and f"Step 1 of {steps}" in out["scrub_note"]
    assert on.scrub_next(session, 0, 1)["step"] == 2


def test_grid_is_drawn_on_thumbnails_and_exports_at_full_size(session, tmp_path, monkeypatch):
    """The pictures are drawn on THUMB_WIDTH-wide frames (cheap under the slider): the large
    frame is sent at that width, the grid's shrunk to GRID_WIDTH (a quarter of the bytes); the
    exported GIF keeps the video's resolution."""
    out = on.refresh(session, 0.3, "Spatial step", False)
    height, width = session.analysis.clip.frames.shape[1:3]
    for html, size in ((out["regions"], GRID_WIDTH), (out["large"], THUMB_WIDTH)):
        first = re.search(r'src="data:image/jpeg;base64,([^"]+)"', html).group(1)
        picture = Image.open(io.BytesIO(base64.b64decode(first)))
        assert width > size and picture.size == (size, round(height * size / width))
    monkeypatch.setattr(on, "export_folder", lambda: tmp_path)
    out = on.export_files.__wrapped__(session, "Spatial step", False, progress=lambda *a, **k: None)
    gif = out["files"][0]
    assert Path(gif).name == "bigbuckbunny-scissor-regions.gif"
    assert out["drawn_export"].startswith("Drawn for `bigbuckbunny.mp4`")
    assert Image.open(gif).size == (width, height)


def test_small_frames_are_enlarged_by_a_whole_factor_for_the_grid():
    """A 176 x 144 video is drawn on frames repeated 2x (thin outlines beside 13-pixel cells);
    frames within a factor of 2 of the width stay as they are, wider ones are shrunk."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 144, 176, 3), dtype=np.uint8)
    big = fit_width(small, 480)
    assert big.shape == (2, 288, 352, 3) and (big[:, ::2, ::2] == small).all()
    assert (big[:, 1::2, 1::2] == small).all()
    middle = small[:, :, :170].repeat(2, axis=2)  # 340 wide
    assert fit_width(middle, 480) is middle
    assert fit_width(big, 176).shape == (2, 144, 176, 3)


def test_release_session_frees_the_heavy_parts(session):
    on.tab_views(session, 0, "Temporal step", "Teach")
    before = session.analysis.nbytes()["total"]
    on.release_session(session)
    assert session.analysis.nbytes()["total"] <= before and not session.scrubs
    assert session._thumbnails is None
    on.release_session(None)  # an empty session's expiry is harmless
    assert on.refresh(session, 0.5, "Spatial step", False)["regions"].count("<figure") == 6


def test_errors_hide_server_paths_and_are_logged(caplog):
    """Whatever a handler raises, the message shown names no server folder, and errors that
    are not the video's or the model's own are logged with their traceback."""

    @on.user_errors
    def failing(err):
        raise err

    for err, name in (
        (ValueError("bad value in /srv/app/secret/config.json"), "config.json"),
        (KeyError("/root/.cache/huggingface/hub/models--x"), "models--x"),
        (VideoError("Could not decode /tmp/gradio/ab12/clip.mp4"), "clip.mp4"),
    ):
        caplog.clear()
        with pytest.raises(gr.Error) as shown:
            failing(err)
        message = shown.value.message
        assert "/" not in message and name in message, message
        logged = [r for r in caplog.records if r.name == on.log.name and r.exc_info]
        assert bool(logged) == (not isinstance(err, VideoError)), (err, caplog.records)


def test_ask_and_compare_answers_wake_up_only_with_a_model(session, monkeypatch):
    """After a load the buttons that need a video wake up; Ask and Compare answers only when
    the backend can answer (else the page says why beside them)."""
    session.fresh = True
    out = on.after_load(session)
    assert not out["ask"]["interactive"] and not out["answers_btn"]["interactive"]
    assert "needs a model" in out["answers_why"]
    for button in ("play", "compare_btn", "curves_btn", "export_btn"):
        assert out[button]["interactive"], button
    monkeypatch.setattr(type(session.analysis.backend), "can_answer", True)
    session.fresh = True
    out = on.after_load(session)
    assert out["ask"]["interactive"] and out["answers_btn"]["interactive"]
    assert out["answers_why"] == ""


def test_a_new_video_clears_what_the_old_one_drew(session):
    """After a load every view drawn from the previous video is cleared at once; the player
    cleared later (no new video) clears nothing."""
    session.fresh = True
    out = on.after_load(session)
    for name in ("probe_gallery", "probe_note", "compare_gallery", "compare_table", "files"):
        assert name in out and not out[name], name
    assert all(out[name] == "" for name in on.views.BANNERS.values())
    assert on.after_load(session) == {}


def test_compare_reports_the_k_on_screen(session):
    """Compare's SCC row is the compression on screen: the same K as the numbers line."""
    on.refresh(session, 0.27, "Temporal step", False)
    out = on.views.compare_views(session, ["scc", "random"], 0, "What?")
    rows = {row[0]: row for row in out["compare_table"]}
    k = session.comp.num_tokens
    assert rows["LLaVA-Scissor (SCC)"][1] == k and rows["Random selection"][1] == k, rows
    assert out["drawn_compare"].startswith("Drawn for")


def test_frames_changed_says_press_compress(session):
    assert on.pending(session, 6, "pixels")["pending"] == ""
    assert "Press Compress" in on.pending(session, 8, "pixels")["pending"]
    assert on.pending(None, 8, "pixels")["pending"] == ""


def test_an_event_that_changes_nothing_skips_all_its_outputs():
    """Gradio reads an empty dict as one value for many outputs (after_load failed so when
    the player was cleared): ``wire`` turns it into a skip of every output."""
    from types import SimpleNamespace

    import gradio as gr

    from scissor_viz.ui.handlers import outputs
    from scissor_viz.ui.layout import wire

    @outputs("a", "b")
    def nothing():
        return {}

    @outputs("a", "b")
    def one():
        return {"a": 1}

    with gr.Blocks():
        c = SimpleNamespace(a=gr.Textbox(), b=gr.Textbox())
    listen = lambda fn, inputs, outputs, **options: fn  # noqa: E731
    assert wire(c, listen, nothing)() == gr.skip()
    assert wire(c, listen, one)() == {c.a: 1}


def test_a_one_frame_video_has_no_frame_slider_and_says_1_frame():
    """Issue 15, 8: one sampled frame: no Frame slider, "1 frame", a one-bar frame axis."""
    analysis = VideoAnalysis.open(str(CLIP), PixelBackend(), num_frames=1)
    one = Session(analysis, video="bigbuckbunny.mp4", asked=(1, "pixels"))
    out = on.after_load(one)
    assert out["frame"]["visible"] is False
    out = on.refresh(one, 0.35, "Temporal step", False)
    assert "(1 frame × 196)" in out["numbers"] and out["regions"].count("<figure") == 1
    assert " · 1 frame · " in one.label()
    figure = on.views.video_figures(one)["per_frame"]
    assert tuple(figure.layout.xaxis.range) == (-0.5, 0.5)


def test_a_refused_video_says_why_on_the_page_and_clears_the_old_views(tmp_path):
    """Issue 15, 7: after a refused upload its reason stays on the page (the toast fades),
    naming the file, and everything drawn from the previous video is cleared."""
    from types import SimpleNamespace

    from scissor_viz.ui.backends import Backends

    served = on.Served(Backends(PixelBackend(), None, False))
    request = SimpleNamespace(session_hash="refused-test", headers={}, client=None)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video\n" * 100)
    with pytest.raises(gr.Error) as err:
        list(served.load({"path": str(bad)}, 6, "pixels", "", 0.0, request, lambda *a, **k: None))
    out = served.load_failed(request)
    assert out["numbers"].startswith("⚠️ **Could not open `broken.mp4`**: ")
    assert str(err.value.message) in out["numbers"]
    assert out["state"] is None and out["regions"] == "" and out["large"] == ""
    for name in ("probe_gallery", "compare_gallery", "compare_table", "files", "answers_table"):
        assert not out[name], name
    assert all(out[name] == "" for name in on.views.BANNERS.values())
    assert out["export_btn"]["interactive"] is False


def test_one_heavy_job_of_a_page_at_a_time(session):
    """Compare, Curves and Export wait for a running one (the server refuses a page's second
    heavy job, and the page would show Gradio's bare "busy" toast): asleep while it runs,
    awake after it while a video is in."""
    assert set(on.heavy_started()) == set(on.HEAVY_BUTTONS)
    assert all(u["interactive"] is False for u in on.heavy_started().values())
    assert all(u["interactive"] is True for u in on.heavy_done(session).values())
    assert all(u["interactive"] is False for u in on.heavy_done(None).values())


def test_the_graph_waits_for_the_slider_to_rest_and_says_so(session):
    """A slider step redraws the main screen and marks the frame's τ-graph out of date (a
    redraw per step would slow every step); the release draws the graph, and its line clears."""
    rested = on.rest(session, 0.3, "Temporal step", False, 0)
    assert rested["drawn_graph"] == "" and "τ = " in rested["tau_graph"].layout.title.text
    moved = on.refresh(session, 0.15, "Temporal step", False)
    assert "tau_graph" not in moved
    assert moved["drawn_graph"].startswith("⚠️ **Out of date**: drawn for"), moved["drawn_graph"]
    rested = on.rest(session, 0.15, "Temporal step", False, 0)
    title = rested["tau_graph"].layout.title.text
    assert f"τ = {on.tau_short(session.comp.tau)} ·" in title and rested["drawn_graph"] == ""
    assert on.views.graph_banner(session) == ""


def test_the_pages_slider_requests_apply_in_the_order_sent(session):
    """Requests carry the page's clock: one older than a request admitted changes nothing;
    one for the screen the page shows already sends nothing (an empty dict: the layout sends
    no update); the release sends the graph it lacks and the stamp for the tab that follows."""
    first = on.refresh(session, 0.25, "Temporal step", False, 1e9)
    assert "numbers" in first
    stamp = session.stamp
    assert on.refresh(session, 0.6, "Temporal step", False, 1e9 - 1) == {}  # sent before
    assert session.stamp == stamp and abs(session.comp.num_tokens - 0.25 * 6 * 196) <= 3
    assert on.refresh(session, 0.25, "Temporal step", False, 1e9 + 1) == {}  # shown
    rested = on.rest(session, 0.25, "Temporal step", False, 0, 1e9 + 2)
    assert set(rested) == {"stamp", "tau_graph", "drawn_graph"} and rested["stamp"] == stamp
    assert set(on.rest(session, 0.25, "Temporal step", False, 0, 1e9 + 3)) == {"stamp"}
    session.clock = -float("inf")  # (the module's other tests send no clock)
