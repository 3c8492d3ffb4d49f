"""The app over HTTP, as its users reach it: gradio_client against a server on 127.0.0.1.

* ``/compress`` and ``/answer`` with the tiny random LLaVA-OneVision injected
  (``build_demo(backend=tiny_backend)``, conftest's fixture): real numbers (tokens_after is the
  retention target within a few tokens, frames as asked, the library's own result), the answer's
  visual token count is the compressed count, and it says its weights are random;
* the weight-free fallback (a checkpoint that cannot load): compression works, ``/answer`` and
  the page say plainly that no model is loaded;
* bad input -- a text file, an empty file and an image named .mp4, a truncated video, retention
  0 / 1.5 / NaN, frames 0 / 1000, an empty question -- gives a readable Gradio error, and the next
  good call works;
* the page's own events: per-session state (two sessions, two videos, no crosstalk), the slider's
  refresh never re-encodes, the random-weights warning beside the answers;
* many users at once (separate clients in threads): corrupt uploads and a 4K clip next to normal
  ones; every normal call gets correct numbers, every bad one a readable error;
* ``python app.py`` serves on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.

No timing assertions: the machine is shared.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from scissor_viz.ui import MODEL_CHOICE, build_demo
from scissor_viz.ui.backends import NOT_LOADED
from tests import video_fixtures as vf
from tests.serving import LOAD_SETTING, call, launch, serve_app, upload

pytestmark = pytest.mark.slow  # every test here serves the app

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "bigbuckbunny.mp4"  # 1280x720, 132 frames
PER_FRAME = 196
QUESTION = "What is happening in this video?"
SUMMARY_KEYS = {"frames", "tokens_before", "tokens_after", "retention", "tau", "backend"}
ANSWER_KEYS = {"answer", "visual_tokens", "prefill_seconds", "pretrained"}
FEW = 3  # tokens_after may miss retention * tokens_before by this many (SCC's K moves in steps)


# ----------------------------------------------------------------------------- helpers


def client(url: str, address: str | None = None) -> Client:
    """A new client: a new Gradio session (its own gr.State); ``address``: the visitor's address
    as a proxy on this machine would pass it (X-Forwarded-For), for visitors told apart."""
    headers = {"X-Forwarded-For": address} if address else None
    return Client(url, verbose=False, download_files=False, headers=headers)


def compress(c: Client, video: Path, retention, frames) -> dict:
    return c.predict(handle_file(str(video)), retention, frames, api_name="/compress")


def answer(c: Client, video: Path, question: str, retention, frames) -> dict:
    return c.predict(handle_file(str(video)), question, retention, frames, api_name="/answer")


def check_summary(r: dict, retention: float, frames: int, backend: str | None = None) -> None:
    """The /compress payload holds real numbers for this request."""
    assert SUMMARY_KEYS <= set(r), r.keys()
    assert r["frames"] == frames
    assert r["tokens_before"] == frames * PER_FRAME
    target = retention * r["tokens_before"]
    assert abs(r["tokens_after"] - target) <= FEW, (r["tokens_after"], target)
    assert 1 <= r["tokens_after"] <= r["tokens_before"]
    assert r["retention"] == pytest.approx(r["tokens_after"] / r["tokens_before"])
    assert abs(r["retention"] - retention) <= FEW / r["tokens_before"]
    assert math.isfinite(r["tau"]) and -1.0 <= r["tau"] <= 1.0
    assert len(r["spatial_tokens_per_frame"]) == frames
    if backend is not None:
        assert r["backend"] == backend


def good_call(c: Client, backend: str | None = None) -> None:
    """The server still answers a normal request correctly."""
    check_summary(compress(c, CLIP, 0.5, 4), 0.5, 4, backend)


def check_readable(err: Exception, pattern: str) -> str:
    """A Gradio error a person can read: the expected words, no traceback, no catch-all."""
    message = str(err)
    assert isinstance(err, AppError), f"{type(err).__name__}: {message}"
    assert re.search(pattern, message, re.IGNORECASE), message
    for noise in ("Traceback", "Something went wrong", "verbose error reporting"):
        assert noise not in message, message
    assert len(message) < 1000, message
    return message


def raw_call(url: str, api: str, video: Path, *args_json: str) -> tuple[str, object]:
    """Call an endpoint with ``video`` uploaded and hand-written JSON arguments (e.g. ``NaN``,
    which gradio_client refuses to send). Returns (last event name, its data)."""
    with httpx.Client(base_url=url, timeout=120) as http:
        file_json = json.dumps(upload(http, video))
    return call(url, api, '{"data": [' + ", ".join([file_json, *args_json]) + "]}")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_url(tiny_backend):
    demo = build_demo(backend=tiny_backend)
    url = launch(demo)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def mc(model_url) -> Client:
    return client(model_url)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Files a person might upload by mistake, all named .mp4."""
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.mp4").write_text("this is a shopping list, not a video\n" * 20)
    (d / "empty.mp4").write_bytes(b"")
    return {
        "text": d / "notes.mp4",
        "empty": d / "empty.mp4",
        "image": vf.write_image(d / "photo.mp4"),
        "truncated": vf.truncate(CLIP, d / "cut.mp4", 0.5),  # index intact, media cut off
    }


@pytest.fixture(scope="module")
def clip_4k(tmp_path_factory) -> Path:
    """A 3840x2160 H.264 clip of 3 frames (a few KB): big frames, tiny file."""
    path = tmp_path_factory.mktemp("uhd") / "uhd.mp4"
    return vf.write_clip(path, width=3840, height=2160, frames=3, fps=12)


# ----------------------------------------------------------------------------- the API


def test_api_lists_compress_and_answer(mc):
    api = mc.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/compress", "/answer"} <= set(api)
    assert [p["parameter_name"] for p in api["/compress"]["parameters"]] == [
        "video",
        "retention",
        "frames",
    ]
    assert [p["parameter_name"] for p in api["/answer"]["parameters"]] == [
        "video",
        "question",
        "retention",
        "frames",
    ]


@pytest.mark.parametrize("retention, frames", [(0.35, 16), (0.1, 8), (1.0, 4)])
def test_compress_with_tiny_model(mc, tiny_backend, retention, frames):
    r = compress(mc, CLIP, retention, frames)
    check_summary(r, retention, frames, backend=tiny_backend.name)
    assert r["tokens_per_frame"] == PER_FRAME
    if retention == 1.0:
        assert r["tokens_after"] == r["tokens_before"]


def test_compress_matches_the_library(mc, tiny_backend):
    """The endpoint returns what VideoAnalysis computes on the same file (and, with the same
    backend, the tokens come from its cache)."""
    from scissor_viz.analysis import VideoAnalysis

    r = compress(mc, CLIP, 0.2, 6)
    analysis = VideoAnalysis.open(str(CLIP), tiny_backend, 6)
    expected = analysis.summary(analysis.compress(retention=0.2))
    for key in ("frames", "tokens_before", "tokens_after", "timestamps", "exact"):
        assert r[key] == expected[key], key
    assert r["retention"] == pytest.approx(expected["retention"])
    assert r["tau"] == pytest.approx(expected["tau"])


def test_answer_with_tiny_model(mc, tiny_backend):
    r = answer(mc, CLIP, QUESTION, 0.25, 8)
    assert ANSWER_KEYS <= set(r), r.keys()
    compressed = compress(mc, CLIP, 0.25, 8)
    assert r["visual_tokens"] == compressed["tokens_after"]  # the compressed count, not 8 x 196
    assert r["visual_tokens"] < 8 * PER_FRAME
    assert r["retention"] == pytest.approx(compressed["retention"])
    assert r["prefill_seconds"] > 0
    assert isinstance(r["answer"], str)
    assert r["pretrained"] is False  # random weights: never presented as a real answer
    assert r["backend"] == tiny_backend.name


# ----------------------------------------------------------------------------- bad input


BAD_COMPRESS = {
    "text file named .mp4": ("text", 0.35, 8, r"text, not video"),
    "empty file": ("empty", 0.35, 8, r"empty \(0 bytes\)"),
    "image named .mp4": ("image", 0.35, 8, r"still image"),
    "truncated video": ("truncated", 0.35, 8, r"damaged or incomplete"),
    "retention 0": (None, 0, 8, r"retention must be a ratio in \(0, 1\]"),
    "retention 1.5": (None, 1.5, 8, r"retention must be a ratio in \(0, 1\]"),
    "frames 0": (None, 0.35, 0, r"num_frames must be a whole number from 1 to 128"),
    "frames 1000": (None, 0.35, 1000, r"num_frames must be a whole number from 1 to 128"),
}


@pytest.mark.parametrize("case", list(BAD_COMPRESS))
def test_compress_bad_input(mc, bad, tiny_backend, case):
    kind, retention, frames, pattern = BAD_COMPRESS[case]
    with pytest.raises(AppError) as info:
        compress(mc, bad[kind] if kind else CLIP, retention, frames)
    check_readable(info.value, pattern)
    good_call(mc, tiny_backend.name)


def test_compress_fractional_frames_is_refused(mc):
    """Not silently rounded down to 2 frames: the endpoint hands frames to load_video as sent."""
    with pytest.raises(AppError) as info:
        compress(mc, CLIP, 0.35, 2.5)
    check_readable(info.value, r"whole number")


@pytest.mark.parametrize("api", ["compress", "answer"])
def test_nan_retention(model_url, mc, tiny_backend, api):
    """NaN cannot go through gradio_client (strict JSON), but a raw request can carry it."""
    args = ["NaN", "4"] if api == "compress" else [json.dumps(QUESTION), "NaN", "4"]
    event, data = raw_call(model_url, api, CLIP, *args)
    assert event == "error", (event, data)
    assert re.search(r"retention must be a ratio in \(0, 1\], got nan", data["error"]), data
    good_call(mc, tiny_backend.name)


BAD_ANSWER = {
    "text file": ("text", QUESTION, 0.35, r"text, not video"),
    "truncated video": ("truncated", QUESTION, 0.35, r"damaged or incomplete"),
    "retention 0": (None, QUESTION, 0, r"retention must be a ratio"),
    "empty question": (None, "   ", 0.35, r"ask a question"),
}


@pytest.mark.parametrize("case", list(BAD_ANSWER))
def test_answer_bad_input(mc, bad, tiny_backend, case):
    kind, question, retention, pattern = BAD_ANSWER[case]
    with pytest.raises(AppError) as info:
        answer(mc, bad[kind] if kind else CLIP, question, retention, 4)
    check_readable(info.value, pattern)
    r = answer(mc, CLIP, QUESTION, 0.5, 4)
    assert r["visual_tokens"] == compress(mc, CLIP, 0.5, 4)["tokens_after"]


# ----------------------------------------------------------------------------- no model


def test_without_weights_compress_works_and_answer_says_why(pixel_url):
    c = client(pixel_url)
    r = compress(c, CLIP, 0.35, 8)
    check_summary(r, 0.35, 8, backend="pixels")
    assert "no model loaded" in r["backend_description"]
    with pytest.raises(AppError) as info:
        answer(c, CLIP, QUESTION, 0.35, 8)
    message = check_readable(info.value, r"No model is loaded, so there is no answer")
    # why the checkpoint did not load is the operator's to read (the log), not the visitor's
    assert NOT_LOADED in message and "does not exist" not in message and "/" not in message
    good_call(c, "pixels")


def test_a_cleared_player_starts_nothing():
    """A video is compressed when it is picked (an upload, an example put in the player), never
    on the player's change: clearing it fired the load chain, which redrew the old video over the
    next file's load or refusal (the random walk's seed 15 caught it, now and then)."""
    config = build_demo().get_config_file()
    (video,) = [c["id"] for c in config["components"] if c["props"].get("elem_id") == "video"]
    deps = config["dependencies"]
    on_video = {event for d in deps for i, event in d["targets"] if i == video and d["backend_fn"]}
    assert on_video == {"upload"}
    example = next(d["id"] for d in deps if d["api_name"] == "load_example")
    loads = [d for d in deps if re.fullmatch(r"load(_\d+)?", d["api_name"] or "")]
    assert sorted(str(d["trigger_after"]) for d in loads) == sorted(["None", "None", str(example)])
    assert {event for d in loads for _, event in d["targets"]} == {"click", "upload", "then"}


def test_without_weights_the_page_says_no_model(pixel_url):
    c = client(pixel_url)
    status = c.predict(
        handle_file(str(CLIP)), 4, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load"
    )[0]
    assert "No model loaded" in status and NOT_LOADED in status
    assert "does not exist" not in status and "/tmp" not in status
    refresh(c, 0.35)  # the page's chain after Compress: load, refresh, answers
    text = c.predict(QUESTION, None, api_name="/show_answers")
    assert text.startswith("**No answer:") and "no model is loaded" in text
    assert "visual tokens** of 784" in text  # what the model would have seen


# ----------------------------------------------------------------------------- the page's events


def refresh(c: Client, retention: float) -> tuple:
    """The slider's event: (numbers, grid, large frame, caption, the tabs' lines, tau, use_tau,
    stamp) for this session."""
    return c.predict(retention, "Temporal step", False, api_name="/refresh")


def numbers_of(markdown: str) -> tuple[int, int, int]:
    """(tokens_before, tokens_after, frames) from the numbers line."""
    m = re.search(r"([\d,]+) → ([\d,]+) tokens\*\* \((\d+) frames", markdown)
    assert m, markdown
    return tuple(int(g.replace(",", "")) for g in m.groups())


def test_sessions_are_separate_and_the_slider_never_reencodes(model_url, tiny_backend, monkeypatch):
    calls = []
    encode = tiny_backend._encode
    monkeypatch.setattr(tiny_backend, "_encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    a, b, stranger = client(model_url), client(model_url), client(model_url)

    status = a.predict(
        handle_file(str(CLIP)), 12, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load"
    )[0]
    assert "Random weights" in status
    assert len(calls) == 1  # 12 (and 7) frames: not encoded by any other test
    b.predict(handle_file(str(CLIP)), 7, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load")
    assert len(calls) == 2

    for retention in (0.3, 0.12, 0.61, 0.3):
        before, after, frames = numbers_of(refresh(a, retention)[0])
        assert (before, frames) == (12 * PER_FRAME, 12)
        assert abs(after - retention * before) <= FEW
        out = refresh(b, retention)
        before, after, frames = numbers_of(out[0])
        assert (before, frames) == (7 * PER_FRAME, 7)
        assert abs(after - retention * before) <= FEW
        assert out[1].count("<figure") == 7  # one overlay per frame
    assert len(calls) == 2  # moving the slider never re-encodes

    numbers = refresh(stranger, 0.3)[0]  # a session that loaded nothing sees nothing
    assert "→" not in str(numbers) and "tokens" not in str(numbers), numbers

    text = a.predict(QUESTION, None, api_name="/show_answers")  # the slider's values
    assert text.startswith("⚠️ **Random weights (test model): this text is not a real answer.**")
    before, after, _ = numbers_of(refresh(a, 0.3)[0])
    assert f"{after:,} visual tokens" in text and f"{before:,} visual tokens" in text


# ----------------------------------------------------------------------------- many users


def test_many_users_at_once(model_url, tiny_backend, bad, clip_4k):
    """Normal users beside a 4K upload and corrupt ones, each with its own client (session),
    all released at once: the normal ones get correct numbers, the bad ones readable errors.
    Each is a different person (address): one address may hold only two decodes at once."""
    results: dict[str, object] = {}
    addresses: dict[str, str] = {}

    def visitor(name: str) -> Client:
        return client(model_url, addresses.setdefault(name, f"10.1.0.{len(addresses) + 1}"))

    def api_user(name, video, retention, frames):
        r = compress(visitor(name), video, retention, frames)
        check_summary(r, retention, frames, tiny_backend.name)
        return r

    def session_user(name, frames, retention):
        c = visitor(name)
        c.predict(
            handle_file(str(CLIP)), frames, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load"
        )
        before, after, got = numbers_of(refresh(c, retention)[0])
        assert (before, got) == (frames * PER_FRAME, frames)
        assert abs(after - retention * before) <= FEW
        return after

    def uhd_user(name):
        r = compress(visitor(name), clip_4k, 0.3, 16)  # a 3-frame clip gives 3 frames
        check_summary(r, 0.3, 3, tiny_backend.name)
        return r

    def bad_user(name, kind, pattern):
        c = visitor(name)
        with pytest.raises(AppError) as info:
            compress(c, bad[kind], 0.3, 8)
        return check_readable(info.value, pattern)

    def answer_user(name):
        r = answer(visitor(name), CLIP, QUESTION, 0.2, 4)
        assert r["pretrained"] is False and r["prefill_seconds"] > 0
        assert abs(r["visual_tokens"] - 0.2 * 4 * PER_FRAME) <= FEW
        return r

    users = [
        (api_user, "api-16", CLIP, 0.35, 16),
        (api_user, "api-8", CLIP, 0.15, 8),
        (session_user, "session-10", 10, 0.4),
        (session_user, "session-5", 5, 0.2),
        (uhd_user, "uhd"),
        (bad_user, "truncated", "truncated", r"damaged or incomplete"),
        (bad_user, "text", "text", r"text, not video"),
        (bad_user, "image", "image", r"still image"),
        (answer_user, "answer"),
    ]
    start = threading.Barrier(len(users))

    def run(fn, name, *args):
        try:
            start.wait(timeout=60)
            t0 = time.perf_counter()
            results[name] = fn(name, *args)
            results[name + ":s"] = time.perf_counter() - t0
        except BaseException as err:
            results[name] = err

    threads = [threading.Thread(target=run, args=u, daemon=True) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a user never got an answer"
    failures = {k: v for k, v in results.items() if isinstance(v, BaseException)}
    assert not failures, failures
    print({k: round(v, 1) for k, v in results.items() if k.endswith(":s")})

    good_call(client(model_url), tiny_backend.name)  # and it still serves
    assert len(tiny_backend.cache) <= tiny_backend.cache.max_entries  # bounded


# ----------------------------------------------------------------------------- the launcher


def test_app_py_serves_on_gradio_server_port(tmp_path):
    no_weights = str(tmp_path / "no-weights-here")
    with serve_app(tmp_path / "app.log", SCISSOR_VIZ_CHECKPOINT=no_weights) as url:
        assert url.startswith("http://127.0.0.1:")
        c = client(url)
        check_summary(compress(c, CLIP, 0.35, 4), 0.35, 4, backend="pixels")
        with pytest.raises(AppError) as info:
            answer(c, CLIP, QUESTION, 0.35, 4)
        check_readable(info.value, r"No model is loaded")


# ----------------------------------------------------------------------------- compare


def test_compare_methods_and_their_answers(model_url, pixel_url):
    """The Compare tab: every method's regions and numbers at one retention; with a model,
    each method's answer against the full-token one (labelled: random weights)."""
    c = client(model_url)
    c.predict(handle_file(str(CLIP)), 4, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load")
    refresh(c, 0.2)
    methods = ["scc", "pool", "random", "tome", "visionzip", "fastv"]
    gallery, table, drawn = c.predict(methods, 0, QUESTION, api_name="/compare")
    assert len(gallery) == len(methods)  # FastV too: the model is loaded
    rows = {row[0]: row for row in table["data"]}
    budget = rows["LLaVA-Scissor (SCC)"][1]  # the compression on screen: every method's budget
    assert abs(budget - 0.2 * 4 * PER_FRAME) <= FEW and drawn.startswith("Drawn for")
    assert rows["Random selection"][1] == budget and rows["FastV (LLM attention)"][1] == budget
    for row in rows.values():
        assert 0 < row[3] <= 1  # coverage
    assert rows["VisionZip"][6] == "importance from vision-tower attention"  # with the model
    answers, note, _ = c.predict(methods, QUESTION, api_name="/compare_answers")
    assert note.startswith("⚠️ **Random weights (test model)")
    by_method = {row[0]: row for row in answers["data"]}
    assert set(by_method) == {r for r in rows}
    assert by_method["Random selection"][1] == budget  # visual tokens handed to the model
    for row in by_method.values():
        assert row[2] in (0, 1) and 0 <= row[3] <= 1 and row[4] >= 0  # EM, F1, KL

    p = client(pixel_url)  # no model: FastV is skipped, answers are refused with the reason
    p.predict(handle_file(str(CLIP)), 4, MODEL_CHOICE, "", 0.05, *LOAD_SETTING, api_name="/load")
    refresh(p, 0.2)
    gallery, table, _ = p.predict(methods, 0, QUESTION, api_name="/compare")
    assert len(gallery) == len(methods) - 1
    assert {row[0]: row[6] for row in table["data"]}["VisionZip"].startswith(
        "importance from token norms"
    )
    with pytest.raises(AppError) as info:
        p.predict(methods, QUESTION, api_name="/compare_answers")
    check_readable(info.value, r"needs a model")
