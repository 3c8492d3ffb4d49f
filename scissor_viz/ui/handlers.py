"""One function per event of the page. Each takes what it needs (the session, the widgets'
values, the backends where a model is involved), asks the views for what to show, and turns
every error a person can cause into a readable ``gr.Error``."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import gradio as gr

from scissor_viz import export
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import AnswerUnavailable, BackendLoadError, PixelBackend
from scissor_viz.numbers import tau_short
from scissor_viz.pictures import figures, grid, scrub
from scissor_viz.scc import check_retention
from scissor_viz.ui import checks, fairness, views
from scissor_viz.ui.backends import MODEL_CHOICE, Backends, gpu
from scissor_viz.ui.memory import RELEASED, SESSIONS, Released, frees_memory
from scissor_viz.ui.session import NoSession, Session, live_session, need_session, video_name
from scissor_viz.video import DEFAULT_FRAMES, VideoError, load_video, without_paths

log = logging.getLogger(__name__)
# This server's exports (deleted on a timer and at exit; Gradio serves its own copies).
EXPORTS = Path(tempfile.gettempdir()) / f"scissor-viz-exports-{os.getpid()}"
EXPORT_KEEP_S = float(os.environ.get("SCISSOR_VIZ_EXPORT_KEEP_S", 600))  # seconds one is kept

# The model's work, wrapped once at import (ZeroGPU registers functions when they are decorated).
open_video = gpu(VideoAnalysis.open)
encode_clip = gpu(VideoAnalysis.from_clip)
ask_model = gpu(VideoAnalysis.answer)
compare_methods = gpu(views.compare_views)  # FastV and VisionZip run the model
method_curves = gpu(views.compare_curves)


def user_errors(fn):
    """Turn every error a person can cause into a readable gr.Error; log the rest."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # the page's session now (the model's may have replaced it)
        args = tuple(a.latest() if isinstance(a, Session) else a for a in args)
        session = next((a for a in args if isinstance(a, Session)), None)
        try:
            if session is None:
                return fn(*args, **kwargs)
            with SESSIONS.use(session):  # the memory budget's clock
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Released as err:
            raise gr.Error(RELEASED) from err
        except NoSession:  # a live control moved before any video ran: nothing to redraw
            return gr.skip()
        except (VideoError, BackendLoadError, AnswerUnavailable) as err:
            raise gr.Error(checks.brief(without_paths(str(err)))) from err
        except ValueError as err:  # mostly a refused argument; logged in case it is a bug
            log.warning("%s refused its arguments", fn.__name__, exc_info=True)
            raise gr.Error(checks.brief(without_paths(str(err)))) from err
        except MemoryError as err:
            raise gr.Error("Out of memory: try fewer frames or a smaller video.") from err
        except Exception as err:
            log.exception("unexpected error in %s", fn.__name__)
            why = checks.brief(without_paths(f"{type(err).__name__}: {err}"))
            raise gr.Error(f"Something went wrong ({why}).") from err

    return wrapper


FAILED: OrderedDict = OrderedDict()  # a session's last refused video: (its name, why)
MAX_FAILED = 256

STAGES = ("decoding frames", "tokens ready")  # a load's own words; the rest is "encoding frames"


def name_of(video) -> str:
    """A picked video's file name (the page's name for it), whatever the client sent."""
    path = video.get("path") if isinstance(video, dict) else getattr(video, "path", video)
    return checks.brief(video_name(path).replace("`", "'")) if isinstance(path, str) else ""


def progress_callback(progress: gr.Progress, stage: str | None = None):
    """The library's (fraction, message) progress reports on Gradio's progress bar, by stage
    (``stage``, else the message's) and in every 10 % step, whichever steps the library
    reported: tokens another visitor's request left in the cache, and the model's files, show
    no progress of their own."""
    shown = {"step": -1, "label": None}

    def show(fraction: float, message: str) -> None:
        label = stage or (message if message in STAGES else "encoding frames")
        step, last = int(fraction * 10 + 1e-9), shown["step"]
        steps = range(last + 1, step + 1) if step > last else [step] * (label != shown["label"])
        for k in steps:
            progress(k / 10, desc=label)
        shown.update(step=max(step, last), label=label)

    return show


def export_folder(root: Path = EXPORTS, keep_s: float = EXPORT_KEEP_S) -> Path:
    """A new folder for one export; exports' folders older than ``keep_s`` are deleted now,
    on a timer and at exit (Gradio serves its own copies of the files)."""
    root.mkdir(parents=True, exist_ok=True)
    export.sweep_folders(root, keep_s)
    export.sweep_on_timer(root, keep_s)
    return Path(tempfile.mkdtemp(dir=root))


# ----------------------------------------------------------------------------- session events
# Each event returns a dict of its outputs by name (the layout's component names); ``outputs``
# declares them, and the layout wires exactly those.


def outputs(*names: str):
    """Declare the names of the outputs an event returns (a dict of some of them)."""

    def declare(fn):
        fn.outputs = names
        return fn

    return declare


MAIN = ("numbers", "regions", "large", "view_caption", "answer_md", "drawn_graph")
MAIN += tuple(views.BANNERS.values())
TAB_VIEWS = ("matrix", "temporal", "curve", "per_frame", "probe_image", "probe_gallery")
TAB_VIEWS += ("probe_plot", "probe_note", "step", "scrub_image", "scrub_note")
# What a new video (frames, features) clears: everything drawn from the old one.
DERIVED = TAB_VIEWS + ("compare_gallery", "compare_table", "curves_plot", "answers_table")
DERIVED += ("answers_note", "files", "pending", "tau_graph", "drawn_graph")
CLEARED = {name: None for name in DERIVED} | {"probe_note": "", "scrub_note": "", "pending": ""}
CLEARED |= {"drawn_graph": ""}
CLEARED |= {"probe_gallery": [], "compare_gallery": [], "files": None}
AFTER_LOAD = ("frame", "ask", "play", "compare_btn", "curves_btn", "export_btn", "answers_btn")
AFTER_LOAD += ("answers_why", "choice", *DERIVED, *views.BANNERS.values())


@outputs(*AFTER_LOAD)
@user_errors
def after_load(session):
    """A video is in: everything drawn from the previous one is cleared; the frame slider spans
    its frames, the buttons that need one wake up, the comparison of answers says whether it
    can run, and the features radio says which features are in use (the model may have fallen
    back to pixel descriptors)."""
    session = live_session(session, compressed=False)
    if not session.fresh:  # cleared already (the pixel stage; its model failed)
        return {}
    session.fresh = False
    count = session.frames
    backend = session.analysis.backend
    with_model = gr.update(interactive=backend.can_answer)  # Ask, Compare answers
    why = (
        "" if backend.can_answer else f"Comparing answers needs a model. {views.no_answer(backend)}"
    )
    in_use = f"in use now: {backend.name}" + (
        " (the model did not load)" if backend.load_error else ""
    )
    awake = gr.update(interactive=True)
    return dict(
        CLEARED,
        frame=gr.update(maximum=max(count - 1, 1), value=session.frame, visible=count > 1),
        ask=with_model,  # the answer panel says why not
        play=awake,
        compare_btn=awake,
        curves_btn=awake,
        export_btn=awake,
        answers_btn=with_model,  # `why` says why not
        answers_why=why,
        choice=gr.update(info=in_use),
        **{name: "" for name in views.BANNERS.values()},
    )


@outputs("state", *MAIN, "tau", "use_tau", "stamp")
@user_errors
@fairness.takes_turns
def refresh(session, retention, view, fill, clock=None):
    """Compress at the slider's retention and redraw the main screen (the τ box takes the τ in
    use, exactly: typed back it gives the same count; the answer panel says what the model
    sees now, until its answer for this setting comes; the frame's τ-graph is marked out of
    date until the slider rests). ``clock``: see :func:`at_retention`."""
    return at_retention(live_session(session, compressed=False), retention, view, fill, clock)


@outputs("state", *MAIN, "tau", "use_tau", "stamp", "tau_graph")
@user_errors
@fairness.takes_turns
def rest(session, retention, view, fill, frame, clock=None):
    """The slider let go (the mouse released, a key lifted): the main screen at its retention
    unless the page shows it already, and the frame's τ-graph, at once: it does not wait for
    the step in flight, which is not sent once this one has taken the screen. (Gradio runs
    the events of one trigger one after the other: the graph comes in this event.)"""
    session = live_session(session, compressed=False)
    return at_retention(session, retention, view, fill, clock, frame)


def at_retention(session, retention, view, fill, clock, frame=None) -> dict:
    """The main screen at the slider's retention and, with ``frame``, that frame's τ-graph
    and the setting's stamp (for the open tab and the answer that follow).

    The τ search runs outside the session's lock and the pictures are drawn from a snapshot,
    so a newer request never waits for an older one's pictures; the setting changes under the
    lock. ``clock``: the page's time of the request (None: not the page's). A request older
    than one admitted, or overtaken by one for another retention, changes nothing (an empty
    dict: nothing to send); a page's request for the screen it shows already (or is being
    sent) draws only what is missing. The main screen is sent unless a newer redraw of it was
    claimed meanwhile, the graph unless the setting or the frame changed meanwhile (their own
    pictures follow)."""
    with session.lock:
        if not session.admit(clock, retention):
            return {}
    comp = session.compress_at(retention, False, 0.0)
    with session.lock:
        if not session.still_wanted(clock, retention):
            return {}
        session.view, session.fill = view, bool(fill)
        session.set_setting(retention, False, 0.0, comp)
        shot = session.snapshot()
        main = clock is None or session.shown != shot.screen()
        if main:
            session.shown, session.claims = shot.screen(), session.claims + 1
        claim = session.claims
    out = {} if frame is None else dict(stamp=shot.stamp, **graph_of(session, shot, frame))
    if main:
        screen = dict(
            views.redraw(shot),
            state=session,
            tau=float(tau_short(comp.tau)),
            use_tau=False,
            stamp=shot.stamp,
        )
        with session.lock:  # (the graph's line as it is now)
            if session.claims == claim:
                out = screen | out | {"drawn_graph": views.graph_banner(shot)}
    return out


def graph_of(session, shot, frame) -> dict:
    """Frame ``frame``'s τ-graph drawn from ``shot`` (a snapshot of ``session``), unless the
    page has it already; none if the setting or the frame changed meanwhile."""
    frame = shot.clamp(frame)
    if views.graph_is_drawn(shot, frame):
        return {}
    figure = views.tau_graph(shot, frame)
    with session.lock:
        if (session.stamp, session.frame) != (shot.stamp, shot.frame):
            return {}
        views.mark_graph(shot, frame)
    return dict(tau_graph=figure, drawn_graph="")


@outputs("state", *MAIN, "use_tau", "stamp")
@user_errors
@fairness.takes_turns
def apply_tau(session, tau, view, fill):
    """A τ typed and confirmed with Enter: compress at it (and say τ now rules)."""
    session = live_session(session, compressed=False)
    session.view, session.fill = view, bool(fill)
    session.redraws()
    session.set_setting(session.retention, True, tau)
    return dict(views.redraw(session), state=session, use_tau=True, stamp=session.stamp)


@outputs("state", *MAIN, "tau", "use_tau", "stamp")
@user_errors
@fairness.takes_turns
def refresh_tau(session, tau, use_tau, retention, view, fill):
    """The "set τ directly" box ticked or unticked: compress by τ or by retention (unticked,
    the τ box takes the τ in use, as after a slider move)."""
    session = live_session(session, compressed=False)
    session.view, session.fill = view, bool(fill)
    session.redraws()
    comp = session.set_setting(retention, use_tau, tau)
    shown = {} if use_tau else {"tau": float(tau_short(comp.tau))}
    return dict(
        views.redraw(session), state=session, use_tau=bool(use_tau), stamp=session.stamp, **shown
    )


@outputs("tau_graph", "drawn_graph")
@user_errors
@fairness.takes_turns
def tau_graph(session, frame, stamp=None):
    """The selected frame's τ-graph at the current compression (always on screen). ``stamp``:
    the setting it was asked for; a newer one has come (the slider still moving): skipped, the
    newer setting's own graph follows (a stale graph would only delay it)."""
    session = live_session(session)
    if stamp is not None and int(stamp) != session.stamp:
        return gr.skip()
    figure = views.tau_graph(session, frame)
    views.mark_graph(session, frame)
    return dict(tau_graph=figure, drawn_graph="")


@outputs("regions", "large", "tau_graph", "drawn_graph")
@user_errors
@fairness.takes_turns
def select_frame(session, frame):
    """A frame picked (slider or a click on the grid): drawn large, marked, and its τ-graph."""
    session = live_session(session)
    session.frame, session.shown = session.clamp(frame), None  # (Session.shown)
    graph = views.tau_graph(session, session.frame)
    views.mark_graph(session, session.frame)
    return dict(views.frames_views(session), tau_graph=graph, drawn_graph="")


SETTLE_S = 0.15  # a redraw of a tab waits this long for a newer setting before it starts


def newer(session, stamp) -> bool:
    """Whether a later setting than ``stamp`` has come (its own redraw follows: skip this one).
    Waits SETTLE_S first, so a slider moved by keys or a drag redraws the tab once at its end."""
    if stamp is None:
        return False
    time.sleep(SETTLE_S)
    return int(stamp) != session.stamp


@outputs(*TAB_VIEWS, *views.BANNERS.values())
@frees_memory  # opening the Similarity tab of a long video takes (and frees) 100s of MiB
@user_errors
@fairness.takes_turns
def tab_views(session, frame, view, tab, stamp=None):
    """What the open tab shows at the session's setting; the other tabs are drawn when they
    are opened. ``stamp``: the setting this redraw was asked for (None: the current one)."""
    session = live_session(session)
    if tab not in views.TABS[:3] or newer(session, stamp):
        return gr.skip()
    drawing, was = session.stamp, session.drawn.get(tab)
    frame = session.clamp(frame)
    if tab == "Similarity":
        out = dict(matrix=views.matrix_figure(session, frame), **views.video_figures(session))
    elif tab == "Probe":
        out = dict(probe_image=views.probe_picture(session, frame, view))
        if session.probed is not None:  # the clicked token, at this setting
            out |= views.probe_views(session, *session.probed, view, session.fill)
    else:
        steps = views.scrub_steps(session, frame)
        start = scrub.current_step(steps) + 1
        out = dict(step=gr.update(minimum=1, maximum=len(steps), value=start))
        out |= views.scrub_view(steps, start, session.comp.tau)
        out["step"] = gr.update(minimum=1, maximum=len(steps), value=start)
    if session.stamp != drawing:  # the setting changed while drawing: the views may mix two
        session.drawn[tab] = was  # compressions; the new setting's own redraw follows
        return gr.skip()
    session.mark_drawn(tab)
    return dict(out, **views.banners(session))


@frees_memory
def release_session(session) -> None:
    """A session expired (idle for SESSION_TTL, or its page closed): free its heavy parts now,
    whoever still holds a reference."""
    if isinstance(session, Session):
        session = session.latest()
        SESSIONS.forget(session)
        if session.analysis is not None:
            session.release()


@outputs("open_tab")
def open_tab(evt: gr.SelectData):
    """The tab a person opened (its label)."""
    return dict(open_tab=evt.value)


@outputs("regions", "large", "view_caption")
@user_errors
@fairness.takes_turns
def recolour(session, view, fill):
    session = live_session(session)
    session.view, session.fill, session.shown = view, bool(fill), None  # (Session.shown)
    return dict(views.frames_views(session), view_caption=views.view_caption(view))


@outputs("frame")
def pick_frame(evt: gr.SelectData):
    """A thumbnail clicked: inspect that frame."""
    return dict(frame=evt.index)


@outputs("step", "scrub_image", "scrub_note")
@user_errors
@fairness.takes_turns
def scrub_to(session, frame, step):
    """The τ scrubber dragged to a step (numbered from 1)."""
    session = live_session(session)
    steps = views.scrub_steps(session, session.clamp(frame))
    out = views.scrub_view(steps, int(step), session.comp.tau)
    return dict(out, step=gr.skip())


@outputs("step", "scrub_image", "scrub_note")
@user_errors
@fairness.takes_turns
def scrub_next(session, frame, step):
    """One tick of Play: the next step, from the first again after the last."""
    session = live_session(session)
    steps = views.scrub_steps(session, session.clamp(frame))
    return views.scrub_view(steps, int(step or 0) % len(steps) + 1, session.comp.tau)


@outputs("playing", "player", "play")
def toggle_play(playing):
    """Play or pause the τ scrubber."""
    playing = not playing
    return dict(
        playing=playing,
        player=gr.Timer(active=playing),
        play=gr.update(value="❚❚ Pause" if playing else "▶ Play"),
    )


@outputs("probe_gallery", "probe_plot", "probe_note", "probe_image", "drawn_probe")
@user_errors
@fairness.takes_turns
def probe(session, frame, view, fill, evt: gr.SelectData):
    """A clicked token: its region in every frame, its similarity to every token, the cell."""
    session = need_session(session)
    frame = session.clamp(frame)
    image = session.analysis.clip.frames[frame]
    y, x = checks.click_at(evt.index, *image.shape[:2])
    token = grid.token_at(y, x, image.shape[0], image.shape[1], *session.grid.shape)
    return views.probe_views(session, frame, token, view, fill)


@outputs("answer_md")
@user_errors
def show_answers(session, question, stamp=None, progress=gr.Progress()):
    """The answer at the session's compression beside the answer from every token."""
    session = live_session(session)
    backend = session.analysis.backend
    if not backend.can_answer:
        return dict(answer_md=views.answer_hint(session))
    if newer(session, stamp):
        return gr.skip()
    question, comp = checks.question_text(question), session.comp
    progress(0.1, desc=f"answering from {comp.num_tokens} tokens")
    compressed = ask_model(session.analysis, question, comp)
    progress(0.6, desc=f"answering from all {session.analysis.num_total} tokens")
    full = ask_model(session.analysis, question)
    return dict(answer_md=views.answers_markdown(session, compressed, full))


HEAVY_BUTTONS = ("compare_btn", "curves_btn", "export_btn")


@outputs(*HEAVY_BUTTONS)
def heavy_started():
    """A comparison or an export started: the server runs one such job per page at a time
    (``fairness.PER_SESSION``) and would refuse a second, so its buttons wait for it."""
    return {name: gr.update(interactive=False) for name in HEAVY_BUTTONS}


@outputs(*HEAVY_BUTTONS)
def heavy_done(session):
    """The job ended (done or failed): the buttons wake up again while a video is in."""
    awake = isinstance(session, Session) and session.analysis is not None
    return {name: gr.update(interactive=awake) for name in HEAVY_BUTTONS}


@outputs("compare_gallery", "compare_table", "drawn_compare")
@frees_memory
@user_errors
def compare(session, methods, frame, question):
    """Every chosen method at the compression on screen's budget, on the chosen frame."""
    question = checks.question_text(question)
    need_session(session).analysis.check_fits(methods, question)  # before any method runs
    return compare_methods(session, methods, frame, question)


@outputs("curves_plot")
@frees_memory
@user_errors
def curves(session, methods, question, progress=gr.Progress()):
    question = checks.question_text(question)
    need_session(session).analysis.check_fits(methods, question)  # before any method runs
    rows = method_curves(session, methods, question, progress)
    return dict(curves_plot=figures.metric_curves_figure(rows, views.METHOD_LABELS))


@outputs("answers_table", "answers_note", "drawn_compare")
@frees_memory
@user_errors
def compare_answers(session, methods, question, progress=gr.Progress()):
    session, question = need_session(session), checks.question_text(question)
    session.analysis.check_fits(methods, question)  # before any method runs
    return views.answer_rows(session, methods, question, progress)


@outputs("files", "drawn_export")
@frees_memory
@user_errors
def export_files(session, view, fill, progress=gr.Progress()):
    """The overlays as a GIF and an MP4, and the partition as JSON."""
    session = need_session(session)
    progress(0.1, desc="drawing overlays")
    images = [image for image, _ in views.region_images(session, view, fill, full_size=True)]
    folder = export_folder()
    progress(0.4, desc="writing GIF and MP4")
    stem = f"{Path(session.video).stem or 'video'}-scissor"
    gif = export.save_gif(images, folder / f"{stem}-regions.gif")
    mp4 = export.save_mp4(images, folder / f"{stem}-regions.mp4")
    summary, tokens = session.analysis.summary(session.comp), session.grid
    part = export.save_partition(  # one row of labels per token grid (a Qwen pair: one)
        folder / f"{stem}-partition.json",
        session.comp,
        num_frames=tokens.groups(summary["frames"]),
        timestamps=session.step_stamps(),
        method="scc",
        backend=summary["backend"],
        meta={"grid": dict(asdict(tokens), frames=summary["frames"])},  # rows, cols, per group
    )
    session.mark_drawn("Export")
    return dict(files=[str(gif), str(mp4), str(part)], drawn_export=views.banner(session, "Export"))


@outputs("pending")
def pending(session, frames, choice):
    """Frames or features changed since the video was loaded: say that Compress applies them
    (nothing is recomputed until then: a new sampling decodes and encodes the video again)."""
    if not isinstance(session, Session):
        return dict(pending="")
    asked_frames, asked_choice = session.asked
    wanted = [f"{int(frames)} frames"] if int(frames or 0) != asked_frames else []
    wanted += ["the features chosen"] if choice != asked_choice else []
    if not wanted:
        return dict(pending="")
    return dict(pending=f"⏳ **Press Compress to apply** {' and '.join(wanted)}.")


# The numbers line's first line while pixel regions stand in for a model's, and after it failed.
STAND_IN = (
    "⏳ **Pixel regions for now: {model} is encoding the frames.** Its features replace these "
    "when they arrive (the bar at the top shows how far it is)."
)
MODEL_FAILED = "⚠️ **{model} could not encode the frames** ({why}): these are pixel regions."
LOADED = ("state", "status", *AFTER_LOAD, *MAIN, "tau", "use_tau", "stamp", "tau_graph")
LOADED = tuple(dict.fromkeys((*LOADED, "answer_md")))  # each once


def stand_in(session: Session, retention, view, fill) -> dict:
    """The page drawn from a session of pixel regions standing in for the model's features:
    what a loaded video's events draw (cleared tabs, the main screen, the frame's τ-graph, the
    answer panel saying the answers wait for the model), in one go."""
    out = after_load(session) | refresh(session, retention, view, fill)
    return out | tau_graph(session, session.frame) | dict(answer_md=views.answer_hint(session))


# ----------------------------------------------------------------------------- backend events


class Served:
    """The events that need the app's backends: loading a video, the API, the status line."""

    def __init__(self, backends: Backends):
        self.backends = backends

    @outputs(*LOADED)
    def load(
        self,
        video,
        frames,
        choice,
        ckpt,
        epsilon,
        request: gr.Request,
        progress=gr.Progress(),
        retention=views.DEFAULT_RETENTION,
        view=views.DEFAULT_VIEW,
        fill=False,
    ):
        """Decode and encode the chosen video: the session's analysis (an upload's tokens are
        this session's own: another visitor's load of the same file never finds them). A
        refusal is remembered for :meth:`load_failed`, which writes it on the page.

        A model that still has to encode the frames yields twice: first the pixel
        descriptors' regions on the model's own grid, drawn at once (the numbers line says
        they stand in for the model's features), then the model's session, which the events
        after this one draw everywhere (nothing of the pixel stage is left). When the model's
        encoding fails, the pixel pictures stay and the numbers line says why."""
        try:
            session, model, private = self._open(
                video, frames, choice, ckpt, epsilon, request, progress
            )
        except gr.Error as err:
            key = getattr(request, "session_hash", None)
            FAILED[key] = (name_of(video), str(err.message))
            while len(FAILED) > MAX_FAILED:
                FAILED.popitem(last=False)
            raise
        status = self.status(choice, ckpt)
        if model is None:  # pixels asked for, no model, or its tokens are in the cache
            yield dict(state=session, status=status)
            return
        yield dict(stand_in(session, retention, view, fill), status=status)
        try:
            final = self._encode(session, model, epsilon, private, progress)
        except gr.Error as err:  # the pixel regions stay, and say why
            log.warning("the model's encoding failed; pixel regions stay: %s", err.message)
            session.note = MODEL_FAILED.format(model=model.source, why=err.message)
            session.analysis.backend.unavailable_reason = session.note
            answer = views.answer_hint(session)
            yield dict(numbers=views.numbers_markdown(session), answer_md=answer)
            return
        SESSIONS.forget(session)  # the model's session takes over the page (and the budget)
        yield dict(state=session.replace(final), status=status)

    @frees_memory
    @user_errors
    def _open(self, video, frames, choice, ckpt, epsilon, request, progress):
        """Decode the video: its session, on the model's features or, while a model has yet to
        encode it, on pixel descriptors of the model's grid; that model (else None); the key
        that files an upload's tokens apart from others'."""
        if not video:
            raise gr.Error("Upload a video or click one of the examples.")
        path = checks.uploaded_video(video)
        private = None if checks.is_example(path) else getattr(request, "session_hash", "")
        chosen = self.backends.get(choice, ckpt, progress_callback(progress, "loading the model"))
        progress(0.0, desc="decoding frames")
        clip = load_video(path, int(frames))  # raises VideoError
        key = clip.key if private is None else (clip.key, private)
        model = None
        if not isinstance(chosen, PixelBackend) and not chosen.has_tokens(clip.frames, key):
            model = chosen
            chosen = PixelBackend.standing_in(model, clip.frames, self.backends.pixels.cache)
        report = progress_callback(progress, "pixel regions" if model else None)
        encode = VideoAnalysis.from_clip if isinstance(chosen, PixelBackend) else encode_clip
        analysis = encode(clip, chosen, float(epsilon or 0.0), report, private)  # no GPU: pixels
        session = Session(analysis, video=video_name(path), asked=(int(frames), choice))
        if model is not None:
            session.note = STAND_IN.format(model=model.source)
        with SESSIONS.use(session):  # counted in the memory budget from now on
            return session, model, private

    @frees_memory
    @user_errors
    def _encode(self, session, model, epsilon, private, progress):
        """The model's features of the session's frames: the session that replaces it."""
        clip = session.analysis.clip
        report = progress_callback(progress, f"encoding frames with {model.source}")
        analysis = encode_clip(clip, model, float(epsilon or 0.0), report, private)
        final = Session(analysis, video=session.video, asked=session.asked)
        with SESSIONS.use(final):
            return final

    @outputs("state", "numbers", "regions", "large", "answer_md", *AFTER_LOAD)
    def load_failed(self, request: gr.Request):
        """A video refused: the reason stays on the page (the toast fades), and everything
        drawn from the previous video goes with it."""
        name, why = FAILED.pop(getattr(request, "session_hash", None), ("", "it was refused"))
        asleep = gr.update(interactive=False)
        buttons = ("ask", "play", "compare_btn", "curves_btn", "export_btn", "answers_btn")
        return dict(
            CLEARED,
            state=None,
            numbers=f"⚠️ **Could not open {f'`{name}`' if name else 'the video'}**: {why}",
            regions="",
            large="",
            answer_md="Answers appear here.",
            frame=gr.update(value=0),
            answers_why="",
            choice=gr.update(),
            **{name: asleep for name in buttons},
            **{name: "" for name in views.BANNERS.values()},
        )

    def status(self, choice, ckpt):
        return self.backends.status(choice, (ckpt or "").strip() or None)

    def default_status(self):
        return self.backends.status(MODEL_CHOICE, None)

    def poll_status(self, choice, ckpt):
        """The status line, every 2 s while the model loads (the timer stops itself after)."""
        ckpt = (ckpt or "").strip() or None
        active = self.backends.loading(choice, ckpt)
        return self.backends.status(choice, ckpt), gr.Timer(active=active)

    # --- API endpoints (typed; gradio_client: Client(url).predict(..., api_name="/compress"))

    def _api_analysis(self, video, frames: int) -> VideoAnalysis:
        path = checks.uploaded_video(video)
        chosen = self.backends.get(MODEL_CHOICE, None)
        private = None if checks.is_example(path) else uuid.uuid4().hex  # no one else's
        return open_video(path, chosen, frames, private=private)  # load_video checks the file

    @frees_memory
    @user_errors
    def compress_api(
        self, video: gr.FileData, retention: float, frames: int = DEFAULT_FRAMES
    ) -> dict:
        """SCC on a video at a retention ratio in (0, 1]: frames, token counts, retention, tau."""
        retention = check_retention(retention)  # before any decoding
        analysis = self._api_analysis(video, frames)
        return analysis.summary(analysis.compress(retention=float(retention)))

    @frees_memory
    @user_errors
    def answer_api(
        self, video: gr.FileData, question: str, retention: float, frames: int = DEFAULT_FRAMES
    ) -> dict:
        """The model's answer from the compressed tokens, with visual tokens and prefill time."""
        retention = check_retention(retention)  # before any decoding
        question = checks.question_text(question)
        analysis = self._api_analysis(video, frames)
        comp = analysis.compress(retention=float(retention))
        if not analysis.backend.can_answer:
            raise gr.Error(
                "No model is loaded, so there is no answer: "
                f"{analysis.backend.unavailable_reason or analysis.backend.load_error}"
            )
        result = ask_model(analysis, question, comp)
        return dict(
            answer=result.text,
            visual_tokens=result.visual_tokens,
            prefill_seconds=result.prefill_seconds,
            retention=comp.retention_reached,
            tau=comp.tau,
            backend=analysis.backend.name,
            pretrained=result.pretrained,
        )
