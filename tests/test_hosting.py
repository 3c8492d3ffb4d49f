"""The app as a public Space meets it: anonymous clients calling every event with any
arguments (gradio_client and raw HTTP against a server on 127.0.0.1).

* the API takes uploads only: a server path (a real video elsewhere on disk, a text file, a
  folder, a missing path; as a string or as ``{"path": ...}``) is refused with one message
  that says nothing about what is there, and uploads still work;
* with default settings no event loads a checkpoint the operator did not configure: a local
  folder (a real, loadable one), a missing folder and an unknown hub id are refused alike by
  ``/load``, ``/status`` and ``/poll_status``, and nothing starts loading;
* an operator who allows any checkpoint gets them (never with remote code);
* questions are bounded; exports do not pile up on disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from scissor_viz.models import REFUSED
from scissor_viz.ui import MODEL_CHOICE, build_demo
from scissor_viz.ui.checks import MAX_QUESTION_CHARS, NOT_AN_UPLOAD
from scissor_viz.ui.handlers import export_folder
from tests.serving import LOAD_SETTING, call, launch

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "bigbuckbunny.mp4"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Default settings: the configured checkpoint cannot load here (pixels stand in)."""
    demo = build_demo(checkpoint=str(tmp_path_factory.mktemp("w") / "configured"))
    url = launch(demo)
    yield demo, url
    demo.close()


def raw(url: str, api: str, *args) -> tuple[str, object]:
    """POST hand-made JSON arguments to an endpoint; (last event, its data)."""
    return call(url, api, json.dumps({"data": list(args)}))


@pytest.fixture(scope="module")
def server_paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("server-files")
    (d / "secret.txt").write_text("not for visitors\n")
    copy = d / "elsewhere.mp4"
    copy.write_bytes(CLIP.read_bytes())
    return [str(copy), str(CLIP), str(d / "secret.txt"), str(d), str(d / "missing.mp4"), "/etc"]


@pytest.mark.slow
@pytest.mark.parametrize("api", ["compress", "answer"])
def test_server_paths_are_refused_alike(app, server_paths, api):
    _, url = app
    questions = ["What happens?"] if api == "answer" else []
    forms = {  # the request's shape -> the messages its paths got
        "string": lambda p: p,
        "dict": lambda p: {"path": p},
        "FileData": lambda p: {"path": p, "meta": {"_type": "gradio.FileData"}},
    }
    for form, wrap in forms.items():
        messages = set()
        for path in server_paths:
            event, data = raw(url, api, wrap(path), *questions, 0.35, 4)
            assert event == "error", (form, path, event, data)  # refused, never decoded
            messages.add(json.dumps(data))
        assert len(messages) == 1, (form, messages)  # one message, whatever the path is
        message = messages.pop()
        assert not any(Path(path).name in message for path in server_paths), message
    # our own check answers the plain forms (Gradio's file check, with no text, the FileData)
    assert raw(url, api, server_paths[0], *questions, 0.35, 4)[1]["error"] == NOT_AN_UPLOAD


@pytest.mark.slow
def test_the_refusal_says_so_and_uploads_still_work(app):
    _, url = app
    c = Client(url, verbose=False, download_files=False)
    with pytest.raises(AppError) as info:
        c.predict(str(CLIP), 0.35, 4, api_name="/compress")
    assert NOT_AN_UPLOAD in str(info.value) or "upload" in str(info.value).lower()
    r = c.predict(handle_file(str(CLIP)), 0.35, 4, api_name="/compress")
    assert r["frames"] == 4 and r["backend"] == "pixels"


@pytest.mark.slow
def test_no_event_loads_an_unconfigured_checkpoint(app, tiny_llava_folder, tmp_path):
    demo, url = app
    registry = demo.backends.registry
    held = registry.held()
    c = Client(url, verbose=False, download_files=False)
    answers = []
    for ckpt in (str(tiny_llava_folder), str(tmp_path / "nothing-here"), "someone/unknown-7b"):
        with pytest.raises(AppError) as info:
            c.predict(
                handle_file(str(CLIP)), 4, MODEL_CHOICE, ckpt, 0.05, *LOAD_SETTING, api_name="/load"
            )
        answers.append(str(info.value).replace(ckpt, "<ckpt>"))
        answers.append(c.predict(MODEL_CHOICE, ckpt, api_name="/status"))
        answers.append(c.predict(MODEL_CHOICE, ckpt, api_name="/poll_status")[0])
    assert all(REFUSED in a for a in answers), answers
    assert len(set(answers[0::3])) == len(set(answers[1::3])) == 1  # refused alike
    assert registry.held() == held  # nothing started loading
    time.sleep(0.5)
    assert registry.held() == held


def test_an_operator_may_allow_any_checkpoint(tiny_llava_folder, tmp_path):
    demo = build_demo(checkpoint=str(tmp_path / "configured"), allow_any_checkpoint=True)
    try:
        backend = demo.backends.get(MODEL_CHOICE, str(tiny_llava_folder))
        assert not backend.pretrained and backend.can_answer
        assert str(tiny_llava_folder) in demo.backends.registry.held()
    finally:
        demo.close()


@pytest.mark.slow
def test_questions_are_bounded(app):
    _, url = app
    c = Client(url, verbose=False, download_files=False)
    with pytest.raises(AppError) as info:
        c.predict(handle_file(str(CLIP)), "why? " * MAX_QUESTION_CHARS, 0.35, 4, api_name="/answer")
    assert f"at most {MAX_QUESTION_CHARS} characters" in str(info.value)


def test_old_exports_are_deleted(tmp_path):
    old = export_folder(tmp_path, keep_s=600)
    (old / "a.gif").write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    new = export_folder(tmp_path, keep_s=600)
    assert not old.exists() and new.exists()


@pytest.mark.slow
def test_whoever_launches_gets_the_upload_cap_and_stylesheet(app):
    demo, url = app
    from scissor_viz.ui.checks import MAX_UPLOAD_BYTES

    assert demo.max_file_size == MAX_UPLOAD_BYTES
    config = httpx.get(url + "config").json()
    assert config["max_file_size"] == MAX_UPLOAD_BYTES and "frames-grid" in config["css"]


def test_the_queue_caps_each_session_and_address_below_each_group(monkeypatch):
    from types import SimpleNamespace

    from scissor_viz.ui import fairness

    def ask(events, group="decode", session="s1", client="a"):
        return fairness.refusal(events, group, session, client)

    mine = [("decode", "s1", "a")]
    assert ask([]) is None and ask(mine, session="s2") is None  # a second session, same address
    assert "wait for one to finish" in ask(mine)  # one decode per session
    two = [("decode", "s1", "a"), ("decode", "s2", "a")]
    assert "wait for one to finish" in ask(two, session="s3")  # two per address
    assert ask(two, session="s3", client="b") is None  # another visitor gets the third slot
    monkeypatch.setattr(fairness, "SHARED", 3)
    crowd = [("heavy", f"s{k}", f"c{k}") for k in range(3)]
    assert ask(crowd, client="new") == fairness.FULL
    assert ask(crowd, "light", client="new") is None  # redraws are outside the shared cap
    from scissor_viz.ui import layout

    groups = (layout.LIGHT, layout.FIGURES, layout.DECODE, layout.HEAVY, layout.MODEL)
    width = {g["concurrency_id"]: g["concurrency_limit"] for g in groups}
    assert set(width) == set(fairness.PER_CLIENT) == set(fairness.PER_SESSION)
    for group, limit in fairness.PER_CLIENT.items():  # one address never takes every slot
        assert limit < width[group] or width[group] == 1, group

    def request(peer, forwarded=""):
        return SimpleNamespace(
            client=SimpleNamespace(host=peer), headers={"x-forwarded-for": forwarded}
        )

    assert fairness.client_of(request("127.0.0.1", "6.6.6.6, 10.0.0.7")) == "10.0.0.7"
    assert fairness.client_of(request("8.8.8.8", "10.0.0.7")) == "8.8.8.8"  # not our proxy
    assert fairness.client_of(request("127.0.0.1")) == "127.0.0.1"
