"""What one browser session is about, and the guards of the events that need one.

A :class:`Session` holds the page's subject: the analysed video (its name, frames and the
features that encoded it), the setting in use (a retention, or a τ typed directly), the view,
the fill, the selected frame, and the compression drawn from them. Its ``stamp`` changes with
every change of video, frames, features or setting: every view of the page remembers the stamp
it was drawn from (``drawn``), so the page can say which views are out of date.

The page's setting requests (the Retention slider's moves and its release) carry the page's
clock: the session applies them in the order the page sent them (``admit``, ``still_wanted``),
whatever order the server's threads run them in, under the session's ``lock``.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from scissor_viz.analysis import VideoAnalysis
from scissor_viz.numbers import tau_short
from scissor_viz.pictures.grid import TokenGrid
from scissor_viz.pictures.regions import plural
from scissor_viz.scc import Compression

THUMB_WIDTH = 480  # pixels: frames are drawn at most this wide (the large frame is shown ~506)
# The grid's pictures are sent shrunk to this width: shown about 122 px wide at 1440 x 1000
# (twice that stays sharp on a high-density screen), a slider step sends a quarter of the bytes.
GRID_WIDTH = 240
# The slider's tau search stops at a K within this many tokens of its target: half the graphs
# of the exact search (README, "Decisions"), never further off than SCC's own steps in K.
SLIDER_SLACK = 2
NO_VIDEO = "Pick a video first (upload one or click an example), then Compress."
STAMPS = itertools.count(1)  # one sequence for every session: a stamp is never reused


class NoSession(Exception):
    """A live control moved before any video was compressed."""


@dataclass
class Session:
    """One browser session: its analysed video, the setting and the compression on screen."""

    analysis: VideoAnalysis
    video: str = ""  # the video's file name, as the page names it
    asked: tuple[int, str] = (0, "")  # the frames and features asked for when it was loaded
    comp: Compression | None = None  # set by the first refresh after loading
    use_tau: bool = False  # the setting: a typed τ (True) or the slider's retention
    retention: float = 0.35
    view: str = "Temporal step"
    fill: bool = False
    frame: int = 0  # the selected frame
    stamp: int = field(default_factory=lambda: next(STAMPS))
    drawn: dict = field(default_factory=dict)  # view name -> the stamp it was drawn from
    fresh: bool = True  # loaded, its page not yet cleared of the previous video's views
    probed: tuple[int, int] | None = None  # the probe's clicked (frame, token)
    curve: tuple[np.ndarray, np.ndarray] | None = None  # (taus, retention) for the plot
    scrubs: dict = field(default_factory=dict)  # frame -> the τ scrubber's steps
    note: str = ""  # a line over the numbers: pixel regions standing in for the model's, or why
    replaced_by: Session | None = None  # the session that took over the page (the model's)
    clock: float = -math.inf  # the page's time of the newest setting request admitted
    wanted: float | None = None  # ... and the retention it asks for
    # The main screen's last full redraw: what it is drawn for (``screen``; None after a part
    # of it was redrawn for something else), and how many were claimed (the latest is sent).
    shown: tuple | None = None
    claims: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _thumbnails: np.ndarray | None = field(default=None, repr=False)

    @property
    def frames(self) -> int:
        return len(self.analysis.clip.frames)

    @property
    def grid(self) -> TokenGrid:
        """The token grid of the video on the page (the backend's, for its frames)."""
        return self.analysis.grid

    def step(self, frame: int) -> int:
        """The time step (row of the tokens and labels) frame ``frame`` is drawn with: the frame
        itself, or its temporal group (Qwen-VL: one token grid per two frames)."""
        return int(frame) // self.grid.frames_per_group

    def step_stamps(self) -> list[float]:
        """Each time step's timestamp: its (first) frame's."""
        return [float(s) for s in self.analysis.clip.timestamps[:: self.grid.frames_per_group]]

    @property
    def features(self) -> str:
        return self.analysis.backend.name

    def latest(self) -> Session:
        """The session the page is about now: this one, or the one that replaced it (the
        model's features replace the pixel regions drawn while it encoded). Events of the
        page always work on it, whatever session an event was sent with."""
        session = self
        while session.replaced_by is not None:
            session = session.replaced_by
        return session

    def replace(self, successor: Session) -> Session:
        """``successor`` takes over the page from this session: it keeps the selected frame.
        (This one is not released here: an event may still be drawing from it; it goes with
        its last reference.)"""
        successor.frame = self.clamp(self.frame)
        self.replaced_by = successor
        return successor

    def thumbnails(self) -> np.ndarray:
        """The frames fitted to THUMB_WIDTH (made once): the grid is drawn on these, so a redraw
        under the slider costs what the page shows, not the video's resolution."""
        if self._thumbnails is None:
            self._thumbnails = fit_width(self.analysis.clip.frames, THUMB_WIDTH)
        return self._thumbnails

    def release(self) -> None:
        """Free the heavy parts (the analysis's tokens and caches, the pictures' frames)."""
        self.analysis.release()
        self.scrubs.clear()
        self._thumbnails = None

    def compress_at(self, retention: float, use_tau: bool, tau: float) -> Compression:
        """SCC at the slider's retention, or at the advanced panel's tau."""
        if use_tau:
            return self.analysis.compress(tau=float(tau))
        tolerance = min(SLIDER_SLACK / self.analysis.num_total, 0.5)  # below 1 for tiny videos
        return self.analysis.compress(retention=float(retention), tolerance=tolerance)

    def set_setting(
        self, retention: float, use_tau: bool, tau: float, comp: Compression | None = None
    ) -> Compression:
        """Compress at a setting (``comp``: already compressed for it): the session's
        compression and stamp change together (the stamp stays when the compression is the one
        on screen already)."""
        comp = comp or self.compress_at(retention, use_tau, tau)
        if self.comp is None or comp.tau != self.comp.tau:
            self.stamp = next(STAMPS)
        self.comp, self.use_tau, self.retention = comp, bool(use_tau), float(retention)
        return comp

    def admit(self, clock, retention) -> bool:
        """Whether a setting request the page sent at ``clock`` (its own time; None: not the
        page's) for ``retention`` is wanted: not when a newer one came already (the page's
        requests can overtake each other on the server); it is recorded. Under ``lock``."""
        if clock is None:
            return True
        if float(clock) < self.clock:
            return False
        self.clock, self.wanted = float(clock), float(retention)
        return True

    def still_wanted(self, clock, retention) -> bool:
        """Whether an admitted request is still wanted: no newer request for another
        retention came since (a newer one for the same retention wants the same). Under
        ``lock``."""
        return clock is None or self.wanted == float(retention)

    def screen(self) -> tuple:
        """What the main screen shows at this moment's state: setting, colouring, frame."""
        return (self.stamp, self.use_tau, self.view, self.fill, self.frame)

    def redraws(self) -> None:
        """A full redraw of the main screen by an event outside the page's clocked requests
        (a τ typed, the τ box ticked): it takes the screen from any request being drawn."""
        with self.lock:
            self.shown, self.claims = None, self.claims + 1

    def snapshot(self) -> Session:
        """A copy of the setting and colouring to draw the main screen from while newer
        requests change the session; it shares the video, its caches and ``drawn``."""
        self.thumbnails()  # made once, shared
        return copy.copy(self)

    def clamp(self, frame) -> int:
        """A frame index of this video (0 for anything unreadable)."""
        try:
            frame = int(frame or 0)
        except (TypeError, ValueError):
            frame = 0
        return int(np.clip(frame, 0, self.frames - 1))

    def label(self) -> str:
        """What the views of this stamp are drawn for, in a line."""
        comp = self.comp
        setting = f"{plural(comp.num_tokens, 'token')} · τ = {tau_short(comp.tau)}"
        features = f"{self.analysis.backend.source} features"
        return f"`{self.video}` · {plural(self.frames, 'frame')} · {setting} · {features}"

    def mark_drawn(self, *names: str) -> None:
        for name in names:
            self.drawn[name] = (self.stamp, self.label())


def fit_width(frames: np.ndarray, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames at most ``width`` pixels wide: wider ones area-averaged down;
    ones under half of it repeated by a whole factor (nearest), so that the region outlines,
    a pixel or two each, stay thin beside the cells of a small video (176 x 144: 13-pixel
    cells)."""
    h, w = frames.shape[1:3]
    if w <= width:
        k = width // w
        return frames if k < 2 else frames.repeat(k, axis=1).repeat(k, axis=2)
    size = (width, max(1, round(h * width / w)))
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BOX)) for f in frames]
    )


def video_name(path) -> str:
    """The name the page gives a video: its file name."""
    return Path(str(path)).name if path else ""


def need_session(session: Session | None) -> Session:
    """The session, once a video has been compressed; else the message that says what to do."""
    if session is None or session.comp is None:
        raise gr.Error(NO_VIDEO)
    return session


def live_session(session: Session | None, compressed: bool = True) -> Session:
    """The session for a live redraw; NoSession (nothing to redraw, no message) before a video
    was loaded (and, with ``compressed``, compressed)."""
    if session is None or (compressed and session.comp is None):
        raise NoSession
    return session
