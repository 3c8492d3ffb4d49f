"""Serving the app for tests: a free loopback port, a demo launched in this process or `python
app.py` as a subprocess, and raw HTTP calls (hand-written JSON, the event stream read by hand)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# What the page sends to /load after the video, frames, features, checkpoint and ε: the
# slider's retention, the view and the fill (the pixel stage is drawn at them).
LOAD_SETTING = (0.35, "Temporal step", False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(demo) -> str:
    """Serve ``demo`` on a free loopback port (in this process); returns its URL."""
    for attempt in range(3):
        try:
            _, url, _ = demo.launch(
                server_name="127.0.0.1",
                server_port=free_port(),
                prevent_thread_lock=True,
                quiet=True,
            )
            return url
        except OSError:  # the port was taken between free_port() and launch()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def upload(http: httpx.Client, path: Path) -> dict:
    """Upload ``path`` to the server ``http`` points at; the FileData JSON an event takes."""
    with path.open("rb") as f:
        served = http.post("gradio_api/upload", files={"files": f}).json()[0]
    return {"path": served, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def call(url: str, api: str, body: str) -> tuple[str | None, object]:
    """POST the JSON text ``body`` (``{"data": [...]}``, written by hand so that it may hold what
    gradio_client refuses to send, e.g. ``NaN``) to the endpoint ``api`` and read its event
    stream. Returns (the last event's name, its data)."""
    with httpx.Client(base_url=url, timeout=120) as http:
        posted = http.post(
            f"gradio_api/call/{api}", content=body, headers={"content-type": "application/json"}
        )
        posted.raise_for_status()
        event, data = None, None
        with http.stream("GET", f"gradio_api/call/{api}/{posted.json()['event_id']}") as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1])
        return event, data


@contextlib.contextmanager
def serve_app(log_path: Path, timeout: float = 180, **env: str | None) -> Iterator[str]:
    """Run `python app.py` on a free loopback port with ``env`` set in its environment (None
    unsets a variable); yield its URL once it answers, and stop it afterwards. Its output goes
    to ``log_path``."""
    port = free_port()
    env = dict(
        os.environ,
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        **env,
    )
    env = {k: v for k, v in env.items() if v is not None}
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert proc.poll() is None, log_path.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=5).status_code == 200:
                        break
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
