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
from scissor_viz.ui.views import THUMB_WIDTH, Session, fit_width
from scissor_viz.video import VideoError

CLIP = Path(__file__).resolve().parents[1] / "assets" / "bigbuckbunny.mp4"
SKIP = gr.skip()


def skipped(x) -> bool:
    return isinstance(x, dict) and x == SKIP


@pytest.fixture(scope="module")
def session() -> Session:
    analysis = VideoAnalysis.open(str(CLIP), PixelBackend(), num_frames=6)
    s = Session(analysis)
    s.comp = analysis.compress(retention=0.35)
    return s


def test_live_controls_before_a_video_do_nothing():
    assert on.refresh(None, 0.3, "Temporal step", False) == SKIP
    assert on.tau_graph(None, 0) == SKIP
    assert on.tab_views(None, 0, "Temporal step", "Similarity") == SKIP
    assert on.recolour(None, "Spatial step", True) == SKIP


def test_refresh_redraws_every_frame(session):
    state, numbers, html, caption, tau, use_tau = on.refresh(session, 0.2, "Temporal step", False)
    assert state is session and use_tau is False and tau == round(session.comp.tau, 4)
    assert html.count("<figure") == 6 and "→" in numbers and caption
    assert abs(session.comp.num_tokens - 0.2 * 6 * 196) <= 3


def test_only_the_open_tab_is_drawn(session):
    similarity = on.tab_views(session, 2, "Temporal step", "Similarity")
    assert not any(map(skipped, similarity[:4])) and all(map(skipped, similarity[4:]))
    teach = on.tab_views(session, 2, "Temporal step", "Teach")
    assert all(map(skipped, teach[:5])) and teach[6].shape[2] == 3 and "τ" in teach[7]
    assert all(map(skipped, on.tab_views(session, 2, "Temporal step", "Export")))


def test_play_toggles_and_scrubbing_wraps(session):
    playing, timer, button = on.toggle_play(False)
    assert playing and timer.active and "Pause" in button["value"]
    steps = on.tab_views(session, 0, "Temporal step", "Teach")[5]["maximum"] + 1
    step, image, note = on.scrub_next(session, 0, steps - 1)
    assert step == 0 and f"Step 1 of {steps}" in note


def test_grid_is_drawn_on_thumbnails_and_exports_at_full_size(session, tmp_path, monkeypatch):
    """The grid's pictures are made from THUMB_WIDTH-wide frames (cheap under the slider);
    the exported GIF keeps the video's resolution."""
    html = on.refresh(session, 0.3, "Spatial step", False)[2]
    first = re.search(r'src="data:image/jpeg;base64,([^"]+)"', html).group(1)
    thumb = Image.open(io.BytesIO(base64.b64decode(first)))
    height, width = session.analysis.clip.frames.shape[1:3]
    assert width > THUMB_WIDTH and thumb.size == (THUMB_WIDTH, round(height * THUMB_WIDTH / width))
    monkeypatch.setattr(on, "export_folder", lambda: tmp_path)
    gif, _, _ = on.export_files.__wrapped__(
        session, "Spatial step", False, progress=lambda *a, **k: None
    )
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
    assert on.refresh(session, 0.5, "Spatial step", False)[2].count("<figure") == 6  # usable


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
    out = on.after_load(session)
    ask, play, compare, curves, export, answers, why = out[1:8]
    assert not ask["interactive"] and not answers["interactive"] and "needs a model" in why
    assert play["interactive"] and compare["interactive"] and curves["interactive"]
    assert export["interactive"]
    monkeypatch.setattr(type(session.analysis.backend), "can_answer", True)
    out = on.after_load(session)
    assert out[1]["interactive"] and out[6]["interactive"] and out[7] == ""
