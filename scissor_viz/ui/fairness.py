"""A fair share of the server for every visitor: one client may not fill the queue, and one
session's large video may not slow everyone's small redraws.

* ``guard_queue(demo)`` checks every event as it joins Gradio's queue (the page's
  ``queue/join`` and the API's ``call/<name>`` both go through ``Queue.push``): a session may
  have at most ``PER_SESSION[group]`` events queued or running in each concurrency group, a
  client address at most ``PER_CLIENT[group]``, and all heavy groups together at most
  ``SHARED``; the light group is outside the shared cap (a flood of heavy calls never turns
  a slider move away). A refused event gets HTTP 503 with a readable reason.
* ``takes_turns`` lets one event at a time work on a video above ``BIG_TOKENS`` in the
  page's quick groups: four sessions looping on 128-frame redraws take one core between them,
  and a small video's slider move runs beside them in its own slot.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import threading

from scissor_viz.pictures.grid import GRID
from scissor_viz.video import DEFAULT_FRAMES

LIGHT_GROUPS = ("light",)  # outside the shared cap
# Each cap is below its group's concurrency limit (layout.py), so a client at its cap leaves
# a slot free for the others: light 16, figures 6, decode 3, heavy 2, model 1 (FIFO after it).
# A page chains several events of a group (each listener: one running, one pending).
PER_SESSION = {"light": 8, "figures": 4, "decode": 1, "heavy": 1, "model": 3}
PER_CLIENT = {"light": 12, "figures": 4, "decode": 2, "heavy": 1, "model": 3}
SHARED = 48  # events queued or running in all heavy groups together
BIG_TOKENS = DEFAULT_FRAMES * GRID * GRID  # videos above the default take turns in quick groups
BUSY = "You already have {n} requests waiting for {what}; wait for one to finish."
FULL = "The server is busy; try again in a minute."

_big = threading.Semaphore(1)


def client_of(request) -> str:
    """The visitor's address: the peer, or behind a local proxy (Spaces, a reverse proxy on
    this machine) the address that proxy appended last to X-Forwarded-For (a client can forge
    the entries before it, not that one)."""
    peer = getattr(getattr(request, "client", None), "host", None) or "unknown"
    forwarded = request.headers.get("x-forwarded-for", "") if request is not None else ""
    with contextlib.suppress(ValueError):
        if forwarded and ipaddress.ip_address(peer).is_private:
            return forwarded.split(",")[-1].strip() or peer
    return peer


def _events(queue) -> list:
    """Every event queued or running."""
    waiting = [e for group in queue.event_queue_per_concurrency_id.values() for e in group.queue]
    return waiting + [e for job in queue.active_jobs if job for e in job]


def refusal(events, group: str, session: str, client: str) -> str | None:
    """Why an event of ``group`` from ``session`` at ``client`` may not join (None: it may).
    ``events``: (group, session, client) of every event queued or running."""
    mine = [e for e in events if e[0] == group]
    what = "the page's redraws" if group in LIGHT_GROUPS else f"the server's {group} work"
    for n, limit in (
        (sum(e[1] == session for e in mine), PER_SESSION.get(group, 1)),
        (sum(e[2] == client for e in mine), PER_CLIENT.get(group, 2)),
    ):
        if n >= limit:
            return BUSY.format(n=n, what=what)
    if group not in LIGHT_GROUPS and sum(e[0] not in LIGHT_GROUPS for e in events) >= SHARED:
        return FULL
    return None


def guard_queue(demo) -> None:
    """Check every event joining ``demo``'s queue against the caps above (after ``queue()``)."""
    queue = demo._queue
    queue.max_size = None  # the caps below replace Gradio's one shared limit
    push = queue.push

    async def fair_push(body, request, username):
        fn = demo.fns.get(body.fn_index)
        if fn is not None:
            events = [
                (e.concurrency_id, e.session_hash, client_of(e.request)) for e in _events(queue)
            ]
            why = refusal(events, fn.concurrency_id, body.session_hash, client_of(request))
            if why:
                return False, why, "queue_full"
        return await push(body, request, username)

    queue.push = fair_push


def takes_turns(fn):
    """For the page's quick events (redraws, figures): work on a video above BIG_TOKENS waits
    for the one big-video turn, so four such sessions take one core between them and a small
    video's event runs beside them in its own slot."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        analysis = getattr(args[0] if args else None, "analysis", None)
        if analysis is None or analysis.num_total <= BIG_TOKENS:
            return fn(*args, **kwargs)
        with _big:
            return fn(*args, **kwargs)

    return wrapper
