"""One function per event of the page. Each takes what it needs (the session, the widgets'
values, the backends where a model is involved), asks the views for what to show, and turns
every error a person can cause into a readable ``gr.Error``."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import uuid
from pathlib import Path

import gradio as gr

from scissor_viz import export, figures, grid, scrub
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.models import AnswerUnavailable, BackendLoadError
from scissor_viz.scc import check_retention
from scissor_viz.ui import checks, fairness, views
from scissor_viz.ui.backends import MODEL_CHOICE, Backends, gpu
from scissor_viz.ui.memory import RELEASED, SESSIONS, Released, frees_memory
from scissor_viz.ui.views import DEFAULT_FRAMES, NoSession, Session, live_session, need_session
from scissor_viz.video import VideoError, without_paths

log = logging.getLogger(__name__)
# This server's exports (deleted on a timer and at exit; Gradio serves its own copies).
EXPORTS = Path(tempfile.gettempdir()) / f"scissor-viz-exports-{os.getpid()}"
EXPORT_KEEP_S = float(os.environ.get("SCISSOR_VIZ_EXPORT_KEEP_S", 600))  # seconds one is kept

# The model's work, wrapped once at import (ZeroGPU registers functions when they are decorated).
open_video = gpu(VideoAnalysis.open)
ask_model = gpu(VideoAnalysis.answer)
compare_methods = gpu(views.compare_views)  # FastV and VisionZip run the model
method_curves = gpu(views.compare_curves)


def user_errors(fn):
    """Turn every error a person can cause into a readable gr.Error; log the rest."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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


STAGES = ("decoding frames", "tokens ready")  # a load's own words; the rest is "encoding frames"


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


@user_errors
def after_load(session):
    """A video is in: the frame slider spans its frames, the buttons that need one wake up,
    the comparison of answers says whether it can run, and the features radio says which
    features are in use (the model may have fallen back to pixel descriptors)."""
    session = live_session(session, compressed=False)
    count = len(session.analysis.clip.frames)
    backend = session.analysis.backend
    with_model = gr.update(interactive=backend.can_answer)  # Ask, Compare answers
    why = (
        ""
        if backend.can_answer
        else f"Comparing answers needs a model: {views.no_answer_reason(backend)}"
    )
    in_use = f"in use now: {backend.name}" + (
        " (the model did not load)" if backend.load_error else ""
    )
    return (
        gr.update(maximum=max(count - 1, 1), value=0, interactive=count > 1),
        with_model,  # ask: the answer panel says why not
        *[gr.update(interactive=True)] * 4,  # play, compare, curves, export
        with_model,  # compare answers: `why` says why not
        why,
        gr.update(info=in_use),
    )


@user_errors
@fairness.takes_turns
def refresh(session, retention, view, fill):
    """Compress at the slider's retention and redraw the numbers and the regions."""
    session = live_session(session, compressed=False)
    session.comp = comp = session.compress_at(retention, False, 0.0)
    return (*views.redraw(session, view, fill), round(comp.tau, 4), False)


@user_errors
@fairness.takes_turns
def apply_tau(session, tau, view, fill):
    """A τ typed and confirmed with Enter: compress at it (and say τ now rules)."""
    session = live_session(session, compressed=False)
    session.comp = session.compress_at(0.0, True, tau)
    return (*views.redraw(session, view, fill), True)


@user_errors
@fairness.takes_turns
def refresh_tau(session, tau, use_tau, retention, view, fill):
    """The "set τ directly" box ticked or unticked: compress by τ or by retention."""
    session = live_session(session, compressed=False)
    session.comp = session.compress_at(retention, use_tau, tau)
    return (*views.redraw(session, view, fill), use_tau)


@user_errors
@fairness.takes_turns
def tau_graph(session, frame):
    """The selected frame's τ-graph at the current compression (always on screen)."""
    return views.tau_graph(live_session(session), frame)


@frees_memory  # opening the Similarity tab of a long video takes (and frees) 100s of MiB
@user_errors
@fairness.takes_turns
def tab_views(session, frame, view, tab):
    """What the open tab shows; the other tabs are drawn when they are opened. Outputs: the
    Similarity tab's four figures, the probe's picture, the τ scrubber's step, picture, note."""
    session = live_session(session)
    out = [gr.skip()] * 8
    if tab == "Similarity":
        out[:4] = views.matrix_figure(session, frame), *views.video_figures(session)
    elif tab == "Probe":
        out[4] = views.probe_picture(session, views.clamp_frame(session, frame), view)
    elif tab == "Teach":
        steps = views.scrub_steps(session, views.clamp_frame(session, frame))
        start = scrub.current_step(steps)
        out[5:] = gr.update(maximum=len(steps) - 1, value=start), *views.scrub_view(steps, start)
    return tuple(out)


@frees_memory
def release_session(session) -> None:
    """A session expired (idle for SESSION_TTL, or its page closed): free its heavy parts now,
    whoever still holds a reference."""
    if isinstance(session, Session):
        SESSIONS.forget(session)
        if session.analysis is not None:
            session.release()


def open_tab(evt: gr.SelectData):
    """The tab a person opened (its label)."""
    return evt.value


@user_errors
@fairness.takes_turns
def recolour(session, view, fill):
    session = live_session(session)
    return views.region_html(session, view, fill), views.view_caption(view)


def pick_frame(evt: gr.SelectData):
    """A thumbnail clicked: inspect that frame."""
    return evt.index


@user_errors
@fairness.takes_turns
def scrub_to(session, frame, step):
    """The τ scrubber dragged to a step."""
    steps = views.scrub_steps(live_session(session), views.clamp_frame(session, frame))
    return gr.skip(), *views.scrub_view(steps, int(step))


@user_errors
@fairness.takes_turns
def scrub_next(session, frame, step):
    """One tick of Play: the next step, from the first again after the last."""
    steps = views.scrub_steps(live_session(session), views.clamp_frame(session, frame))
    step = (int(step) + 1) % len(steps)
    return step, *views.scrub_view(steps, step)


def toggle_play(playing):
    """Play or pause the τ scrubber."""
    playing = not playing
    return playing, gr.Timer(active=playing), gr.update(value="❚❚ Pause" if playing else "▶ Play")


@user_errors
@fairness.takes_turns
def probe(session, frame, view, fill, evt: gr.SelectData):
    """A clicked token: its region in every frame, its similarity to every token, the cell."""
    session = need_session(session)
    frame = views.clamp_frame(session, frame)
    image = session.analysis.clip.frames[frame]
    y, x = checks.click_at(evt.index, *image.shape[:2])
    token = grid.token_at(y, x, image.shape[0], image.shape[1])
    return views.probe_views(session, frame, token, view, fill)


@user_errors
@fairness.takes_turns
def answer_hint(session):
    """While the slider moves: what the model would see (answers come on release)."""
    return views.answer_hint(live_session(session))


@user_errors
def show_answers(session, question, retention, use_tau, tau, progress=gr.Progress()):
    """The answer at this retention beside the answer from every token."""
    session = live_session(session)
    backend = session.analysis.backend
    if not backend.can_answer:
        return views.answer_hint(session)
    question = checks.question_text(question)
    comp = session.compress_at(retention, use_tau, tau)  # may run before the redraw for it
    progress(0.1, desc=f"answering from {comp.num_tokens} tokens")
    compressed = ask_model(session.analysis, question, comp)
    progress(0.6, desc=f"answering from all {session.analysis.num_tokens} tokens")
    full = ask_model(session.analysis, question)
    warning = (
        ""
        if backend.pretrained
        else "⚠️ **Random weights (test model): this text is not a real answer.**\n\n"
    )
    return warning + views.answers_markdown(compressed, full, comp.retention)


@frees_memory
@user_errors
def compare(session, methods, retention, frame, question):
    question = checks.question_text(question)
    need_session(session).analysis.check_fits(methods, question)  # before any method runs
    return compare_methods(session, methods, float(retention), frame, question)


@frees_memory
@user_errors
def curves(session, methods, question, progress=gr.Progress()):
    question = checks.question_text(question)
    need_session(session).analysis.check_fits(methods, question)  # before any method runs
    rows = method_curves(session, methods, question, progress)
    return figures.metric_curves_figure(rows, views.METHOD_LABELS)


@frees_memory
@user_errors
def compare_answers(session, methods, retention, question, progress=gr.Progress()):
    session, question = need_session(session), checks.question_text(question)
    session.analysis.check_fits(methods, question)  # before any method runs
    return views.answer_rows(session, methods, float(retention), question, progress)


@frees_memory
@user_errors
def export_files(session, view, fill, progress=gr.Progress()):
    """The overlays as a GIF and an MP4, and the partition as JSON."""
    session = need_session(session)
    progress(0.1, desc="drawing overlays")
    images = [image for image, _ in views.region_images(session, view, fill, full_size=True)]
    folder = export_folder()
    progress(0.4, desc="writing GIF and MP4")
    gif = export.save_gif(images, folder / "scissor-regions.gif")
    mp4 = export.save_mp4(images, folder / "scissor-regions.mp4")
    summary = session.analysis.summary(session.comp)
    part = export.save_partition(
        folder / "scissor-partition.json",
        session.comp,
        num_frames=summary["frames"],
        timestamps=summary["timestamps"],
        method="scc",
        backend=summary["backend"],
    )
    return [str(gif), str(mp4), str(part)]


# ----------------------------------------------------------------------------- backend events


class Served:
    """The events that need the app's backends: loading a video, the API, the status line."""

    def __init__(self, backends: Backends):
        self.backends = backends

    @frees_memory
    @user_errors
    def load(
        self, video, frames, choice, ckpt, epsilon, request: gr.Request, progress=gr.Progress()
    ):
        """Decode and encode the chosen video: the session's analysis (an upload's tokens are
        this session's own: another visitor's load of the same file never finds them)."""
        if not video:
            raise gr.Error("Upload a video or click one of the examples.")
        path = checks.uploaded_video(video)
        private = None if checks.is_example(path) else getattr(request, "session_hash", "")
        report = progress_callback(progress)
        chosen = self.backends.get(choice, ckpt, progress_callback(progress, "loading the model"))
        analysis = open_video(path, chosen, int(frames), float(epsilon or 0.0), report, private)
        session = Session(analysis)
        with SESSIONS.use(session):  # counted in the memory budget from now on
            return session, self.backends.status(choice, ckpt)

    def load_new(
        self, video, frames, choice, ckpt, epsilon, request: gr.Request, progress=gr.Progress()
    ):
        """A video picked (uploaded, or an example clicked): compress it at once; a cleared
        player does nothing."""
        if not video:
            return gr.skip()
        return self.load(video, frames, choice, ckpt, epsilon, request, progress)

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
            retention=comp.retention,
            tau=comp.tau,
            backend=analysis.backend.name,
            pretrained=result.pretrained,
        )
