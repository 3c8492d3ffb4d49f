"""The Gradio app: layout, events and per-session state. No algorithm lives here.

    demo = build_demo()            # or build_demo(backend=...) to inject a backend (tests)
    demo.queue().launch()

Every handler reads the session's :class:`~scissor_viz.analysis.VideoAnalysis` from ``gr.State``,
asks it (or the engine, plots and exports) for what to show, and turns every error a person can
cause into a readable ``gr.Error``. Models load lazily in a background thread, one per
checkpoint for the whole app; tokens, tau searches and answers are cached, so moving the
retention slider never re-encodes.
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from scissor_viz import export
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.figures import CAPTIONS as FIGURE_CAPTIONS
from scissor_viz.figures import (
    metric_curves_figure,
    probe_figure,
    probe_similarity,
    retention_figure,
    similarity_matrix_figure,
    tokens_per_frame_figure,
)
from scissor_viz.graphs import tau_graph_figure, temporal_graph_figure
from scissor_viz.grid import GRID, token_at
from scissor_viz.methods import METHODS
from scissor_viz.models import (
    AnswerUnavailable,
    Backend,
    BackendLoadError,
    LazyBackend,
    resolve_checkpoint,
)
from scissor_viz.models.pixels import PixelBackend
from scissor_viz.overlay import overlay, overlay_video, region_means
from scissor_viz.scc import Compression, check_retention
from scissor_viz.scrub import CAPTION as SCRUB_CAPTION
from scissor_viz.video import MAX_FRAMES, VideoError, example_videos
from scissor_viz.views import CAPTIONS as OVERLAY_CAPTIONS
from scissor_viz.views import frame_caption

log = logging.getLogger(__name__)

DEFAULT_QUESTION = "What is happening in this video?"
DEFAULT_RETENTION = 0.35
DEFAULT_FRAMES = 16
MODEL_CHOICE, PIXEL_CHOICE = "LLaVA-OneVision", "Pixel descriptors (no model)"
VIEWS = {
    "Temporal step": "temporal_labels",
    "Spatial step": "spatial_labels",
    "Merge assignment": "assignment",
}
NO_VIDEO = "Pick a video first (upload one or click an example), then Compress."
SESSION_TTL = 3600  # seconds a session's video stays in memory after its last use
CURVE_RETENTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
METHOD_LABELS = {key: method.label for key, method in METHODS.items()}
DEFAULT_METHODS = [key for key, method in METHODS.items() if method.model != "required"]

try:  # ZeroGPU on Hugging Face Spaces; a no-op everywhere else
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)


# The model's work, wrapped once at import (ZeroGPU registers functions when they are decorated).
open_video = gpu(VideoAnalysis.open)
ask_model = gpu(VideoAnalysis.answer)


# ----------------------------------------------------------------------------- backends


class Backends:
    """The app's feature backends: one lazily loaded model per checkpoint, and pixels."""

    def __init__(self, injected: Backend | None = None, checkpoint: str | None = None):
        self.injected = injected
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.pixels = PixelBackend()
        self._lazy: dict[str, LazyBackend] = {}
        self._lock = threading.Lock()

    def lazy(self, checkpoint: str) -> LazyBackend:
        with self._lock:
            if checkpoint not in self._lazy:
                self._lazy[checkpoint] = LazyBackend(checkpoint)
            return self._lazy[checkpoint]

    def start(self) -> None:
        """Begin loading the default model in the background (the page does not wait)."""
        if self.injected is None:
            self.lazy(self.checkpoint).start()

    def get(self, choice: str, checkpoint: str | None, progress=None) -> Backend:
        if choice == PIXEL_CHOICE:
            return self.pixels
        if self.injected is not None and not checkpoint:
            return self.injected
        return self.lazy(checkpoint or self.checkpoint).get(progress=progress)

    def loading(self, choice: str, checkpoint: str | None) -> bool:
        """Whether the chosen model is still loading."""
        if choice == PIXEL_CHOICE or (self.injected is not None and not checkpoint):
            return False
        return not self.lazy(checkpoint or self.checkpoint).loaded

    def status(self, choice: str, checkpoint: str | None) -> str:
        """One line saying which backend is active, and why answers may be unavailable."""
        if choice == PIXEL_CHOICE:
            return describe(self.pixels)
        if self.injected is not None and not checkpoint:
            return describe(self.injected)
        lazy = self.lazy(checkpoint or self.checkpoint)
        if not lazy.loaded:
            return f"⏳ Loading `{lazy.checkpoint}`: {lazy.message} ({lazy.fraction:.0%})"
        try:
            return describe(lazy.get())
        except Exception as err:
            return f"⚠️ Could not load `{lazy.checkpoint}`: {err}"


def describe(backend: Backend) -> str:
    line = f"**Backend:** {backend.name} — {backend.description}"
    if backend.load_error:  # the reason answers are unavailable too
        line += f"\n\n⚠️ **No model loaded, so no answers.** {backend.load_error}"
    elif not backend.can_answer:
        line += f"\n\n**Answers unavailable:** {backend.unavailable_reason or 'no language model'}"
    elif not backend.pretrained:
        line += "\n\n⚠️ **Random weights** (a test model): its text is not a real answer."
    return line


# ----------------------------------------------------------------------------- session state


@dataclass
class Session:
    """What one browser session holds: its analysed video and the compression on screen."""

    analysis: VideoAnalysis
    comp: Compression | None = None  # set by the first refresh after loading
    curve: tuple[np.ndarray, np.ndarray] | None = None  # (taus, retention) for the plot


def user_errors(fn):
    """Turn every error a person can cause into a readable gr.Error; log the rest."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (VideoError, BackendLoadError, AnswerUnavailable, ValueError) as err:
            raise gr.Error(str(err)) from err
        except MemoryError as err:
            raise gr.Error("Out of memory: try fewer frames or a smaller video.") from err
        except Exception as err:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}: {err}).") from err

    return wrapper


def _progress_fn(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)


def compression(session: Session, retention: float, use_tau: bool, tau: float) -> Compression:
    """SCC at the slider's retention, or at the advanced panel's tau."""
    if use_tau:
        return session.analysis.compress(tau=float(tau))
    return session.analysis.compress(retention=float(retention))


def _need(session: Session | None) -> Session:
    if session is None or session.comp is None:
        raise gr.Error(NO_VIDEO)
    return session


# ----------------------------------------------------------------------------- pictures


def region_images(session: Session, view: str, fill: bool, highlight: int | None = None):
    """The gallery: every frame with its regions, captioned."""
    analysis, comp = session.analysis, session.comp
    labels = getattr(comp, VIEWS.get(view, "temporal_labels"))
    images = overlay_video(
        analysis.clip.frames,
        labels,
        fill="mean" if fill else "palette",
        alpha=1.0 if fill else 0.5,
        highlight=highlight,
    )
    counts = comp.spatial_counts.tolist()
    stamps = analysis.clip.timestamps
    return [
        (image, frame_caption(t, float(stamps[t]), counts[t])) for t, image in enumerate(images)
    ]


def numbers_markdown(session: Session) -> str:
    s = session.analysis.summary(session.comp)
    per_frame = s["spatial_tokens_per_frame"]
    exact = "" if s["exact"] else " (temporal step sampled with ε)"
    return (
        f"**{s['tokens_before']:,} → {s['tokens_after']:,} tokens** "
        f"({s['frames']} frames × {s['tokens_per_frame']}) · retention reached "
        f"**{s['retention']:.1%}** · τ = **{s['tau']:.4f}**{exact} · after the spatial step: "
        f"{min(per_frame)}–{max(per_frame)} tokens per frame "
        f"(mean {np.mean(per_frame):.1f})"
    )


def verbatim(text: str) -> str:
    """Model text shown as written, not as Markdown."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text.strip()) or "(empty answer)"


def answers_markdown(compressed, full, retention: float) -> str:
    """The compressed answer beside the full-token one, each with its cost."""

    def block(title: str, a) -> str:
        return (
            f"**{title}** — {a.visual_tokens:,} visual tokens, "
            f"prefill {a.prefill_seconds:.2f} s\n\n"
            f"> {verbatim(a.text)}"
        )

    speedup = full.prefill_seconds / max(compressed.prefill_seconds, 1e-9)
    return (
        block(f"At {retention:.0%} retention", compressed)
        + "\n\n"
        + block("With every token", full)
        + f"\n\nPrefill {speedup:.1f}× faster with "
        f"{compressed.visual_tokens / full.visual_tokens:.0%}"
        " of the visual tokens."
    )


def frame_figures(session: Session, frame: int):
    """The similarity tab's figures of one frame: its tau-graph and its similarity matrix."""
    analysis, comp = session.analysis, session.comp
    frame = int(np.clip(frame, 0, len(analysis.clip.frames) - 1))
    sim = analysis.index.frame_similarity[frame].cpu().numpy()
    labels = comp.spatial_labels[frame].cpu().numpy()
    return (
        tau_graph_figure(sim, comp.tau, labels, analysis.clip.frames[frame]),
        similarity_matrix_figure(sim, labels, title=f"Frame {frame}: similarity by region"),
    )


def video_figures(session: Session):
    """The similarity tab's figures of the whole video: temporal graph, retention curve,
    tokens per frame (they do not change with the chosen frame)."""
    analysis, comp = session.analysis, session.comp
    if session.curve is None:
        session.curve = analysis.retention_curve()
    taus, retention = session.curve
    heights = analysis.index.spatial_merge_heights()  # computed once per video
    return (
        temporal_graph_figure(analysis.tokens, comp, timestamps=analysis.clip.timestamps),
        retention_figure(taus, retention, comp.tau, comp.retention, heights),
        tokens_per_frame_figure(comp.spatial_counts, analysis.clip.timestamps),
    )


def compare_views(session: Session, methods: list[str], retention: float, frame: int, question):
    """Each method's regions on one frame (mean colours), and a table of their numbers."""
    analysis = session.analysis
    frame = int(np.clip(frame, 0, len(analysis.clip.frames) - 1))
    usable = set(analysis.methods())
    images, table = [], []
    for method in methods:
        if method not in usable:
            gr.Warning(f"{METHOD_LABELS[method]} needs a loaded model; skipped.")
            continue
        red, row = analysis.reduce(method, retention, question)
        means = region_means(analysis.clip.frames, red.assignment)
        image = overlay(analysis.clip.frames[frame], red.assignment[frame], means, alpha=1.0)
        images.append(
            (
                image,
                f"{METHOD_LABELS[method]}: {red.num_tokens} tokens, coverage {row['coverage']:.3f}",
            )
        )
        table.append(
            [
                METHOD_LABELS[method],
                red.num_tokens,
                round(row["retention_reached"], 4),
                round(row["coverage"], 4),
                round(row["redundancy"], 4),
                round(row["seconds"], 3),
                row["note"],
            ]
        )
    return images, table


def compare_curves(session: Session, methods: list[str], question, progress) -> list[dict]:
    """Every method's metrics at CURVE_RETENTIONS (cached per video)."""
    analysis = session.analysis
    runs = [(m, r) for m in methods if m in analysis.methods() for r in CURVE_RETENTIONS]
    rows = []
    for i, (method, retention) in enumerate(runs):
        progress(i / max(len(runs), 1), desc=f"{METHOD_LABELS[method]} at {retention:.0%}")
        row = dict(analysis.reduce(method, retention, question)[1], backend=analysis.backend.name)
        rows.append(row)
    return rows


@gpu
def answer_rows(session: Session, methods: list[str], retention: float, question, progress):
    """Each method's answer against the full-token one (needs a model that answers)."""
    analysis = session.analysis
    backend = analysis.backend
    if not backend.can_answer:
        raise gr.Error(f"Comparing answers needs a model. {backend.unavailable_reason or ''}")
    usable = [m for m in methods if m in analysis.methods()]
    rows = []
    for i, method in enumerate(usable):
        progress(i / max(len(usable), 1), desc=f"answering with {METHOD_LABELS[method]}")
        fid = analysis.answer_fidelity(question, analysis.reduce(method, retention, question)[0])
        kl = fid["first_token_kl"]
        rows.append(
            [
                METHOD_LABELS[method],
                fid["visual_tokens"],
                fid["exact_match"],
                round(fid["token_f1"], 3),
                None if kl is None else round(kl, 4),
                round(fid["prefill_s"], 3),
                fid["answer"],
            ]
        )
    full = analysis.answer(question)
    note = (
        f"Full-token answer ({full.visual_tokens:,} visual tokens, prefill "
        f"{full.prefill_seconds:.2f} s): {verbatim(full.text)}"
    )
    if not backend.pretrained:
        note = "⚠️ **Random weights (test model): these texts are not real answers.**\n\n" + note
    return rows, note


# ----------------------------------------------------------------------------- the demo


def build_demo(backend: Backend | None = None, checkpoint: str | None = None) -> gr.Blocks:
    """The scissor-viz app. ``backend`` injects a ready backend (tests); otherwise the
    checkpoint (argument, $SCISSOR_VIZ_CHECKPOINT or the 0.5B default) loads lazily."""
    backends = Backends(backend, checkpoint)
    outdir = Path(tempfile.mkdtemp(prefix="scissor-viz-"))

    # --- handlers (thin: each asks the parts above and returns what the page shows)

    @user_errors
    def load(video, frames, choice, ckpt, epsilon, progress=gr.Progress()):
        if not video:
            raise gr.Error("Upload a video or click one of the examples.")
        chosen = backends.get(choice, (ckpt or "").strip() or None, _progress_fn(progress))
        analysis = open_video(
            video, chosen, int(frames), float(epsilon or 0.0), _progress_fn(progress)
        )
        return Session(analysis), backends.status(choice, ckpt)

    @user_errors
    def refresh(session, retention, use_tau, tau, view, fill, frame):
        if session is None:  # refresh is what gives a freshly loaded session its compression
            raise gr.Error(NO_VIDEO)
        session.comp = comp = compression(session, retention, use_tau, tau)
        return (
            session,
            numbers_markdown(session),
            region_images(session, view, fill),
            gr.update(value=round(comp.tau, 4)),
        )

    @user_errors
    def figures_for(session, frame):
        session = _need(session)
        return (*frame_figures(session, frame), *video_figures(session))

    @user_errors
    def redraw(session, view, fill):
        return region_images(_need(session), view, fill)

    @user_errors
    def frame_views(session, frame, view):
        session = _need(session)
        frame = int(frame)
        graph, matrix = frame_figures(session, frame)
        probe_image = overlay(
            session.analysis.clip.frames[frame],
            getattr(session.comp, VIEWS.get(view, "temporal_labels"))[frame],
        )
        # The plotly scrubber is gone: Teach is to show scrub.scrub_steps(frame, similarity,
        # tau=comp.tau) one step at a time in a gr.Image (the lead's ui package wires it).
        return graph, matrix, probe_image, None

    @user_errors
    def probe(session, frame, view, fill, evt: gr.SelectData):
        session = _need(session)
        frame = int(frame)
        image = session.analysis.clip.frames[frame]
        x, y = evt.index
        token = token_at(int(y), int(x), image.shape[0], image.shape[1])
        labels = getattr(session.comp, VIEWS.get(view, "temporal_labels"))
        component = int(labels[frame].flatten()[token])
        similarity = probe_similarity(session.analysis.tokens, frame, token)
        figure = probe_figure(similarity, frame, token, session.comp.tau)
        members = int((labels == component).sum())
        note = (
            f"Token {token} of frame {frame} (row {token // GRID}, column {token % GRID}) "
            f"belongs to region {component}: {members} tokens across "
            f"{int((labels == component).any(dim=1).sum())} frames became one token."
        )
        return region_images(session, view, fill, highlight=component), figure, note

    @user_errors
    def show_answers(session, question, retention, use_tau, tau, progress=gr.Progress()):
        session = _need(session)
        backend = session.analysis.backend
        if not backend.can_answer:
            return f"**Answer unavailable.** {backend.unavailable_reason or 'No language model.'}"
        comp = compression(session, retention, use_tau, tau)  # may run before the redraw for it
        progress(0.1, desc=f"answering from {comp.num_tokens} tokens")
        compressed = ask_model(session.analysis, question, comp)
        progress(0.6, desc=f"answering from all {session.analysis.num_tokens} tokens")
        full = ask_model(session.analysis, question)
        warning = (
            ""
            if backend.pretrained
            else ("⚠️ **Random weights (test model): this text is not a real answer.**\n\n")
        )
        return warning + answers_markdown(compressed, full, comp.retention)

    @user_errors
    def compare(session, methods, retention, frame, question):
        return compare_views(_need(session), methods, float(retention), frame, question)

    @user_errors
    def curves(session, methods, question, progress=gr.Progress()):
        rows = compare_curves(_need(session), methods, question, progress)
        return metric_curves_figure(rows, METHOD_LABELS)

    @user_errors
    def compare_answers(session, methods, retention, question, progress=gr.Progress()):
        return answer_rows(_need(session), methods, float(retention), question, progress)

    @user_errors
    def export_files(session, view, fill, progress=gr.Progress()):
        session = _need(session)
        progress(0.1, desc="drawing overlays")
        images = [image for image, _ in region_images(session, view, fill)]
        folder = Path(tempfile.mkdtemp(dir=outdir))
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

    # --- API endpoints (typed; gradio_client: Client(url).predict(..., api_name="/compress"))

    def _api_analysis(video, frames: int) -> VideoAnalysis:
        path = video.get("path") if isinstance(video, dict) else getattr(video, "path", video)
        if not path:
            raise gr.Error("Send a video file.")
        chosen = backends.get(MODEL_CHOICE, None)
        return VideoAnalysis.open(str(path), chosen, frames)  # load_video checks it

    @user_errors
    def compress_api(video: gr.FileData, retention: float, frames: int = DEFAULT_FRAMES) -> dict:
        """SCC on a video at a retention ratio in (0, 1]: frames, token counts, retention, tau."""
        retention = check_retention(retention)  # before any decoding
        analysis = _api_analysis(video, frames)
        return analysis.summary(analysis.compress(retention=float(retention)))

    @user_errors
    def answer_api(
        video: gr.FileData, question: str, retention: float, frames: int = DEFAULT_FRAMES
    ) -> dict:
        """The model's answer from the compressed tokens, with visual tokens and prefill time."""
        retention = check_retention(retention)  # before any decoding
        if not str(question or "").strip():
            raise gr.Error("Ask a question about the video.")
        analysis = _api_analysis(video, frames)
        comp = analysis.compress(retention=float(retention))
        if not analysis.backend.can_answer:
            raise gr.Error(
                "No model is loaded, so there is no answer: "
                f"{analysis.backend.unavailable_reason or analysis.backend.load_error}"
            )
        result = analysis.answer(question, comp)
        return dict(
            answer=result.text,
            visual_tokens=result.visual_tokens,
            prefill_seconds=result.prefill_seconds,
            retention=comp.retention,
            tau=comp.tau,
            backend=analysis.backend.name,
            pretrained=result.pretrained,
        )

    # --- layout

    with gr.Blocks(
        title="scissor-viz: LLaVA-Scissor, visualised", delete_cache=(3600, 3600)
    ) as demo:
        state = gr.State(None, time_to_live=SESSION_TTL)
        gr.Markdown(
            "# ✂️ scissor-viz\n"
            "See how **LLaVA-Scissor** (Sun et al., 2025) compresses a video for a video LLM: "
            "tokens more similar than **τ** are joined into *semantic connected components*, "
            "first inside each frame, then across frames, and each component becomes one token. "
            "Move **Retention** to keep more or fewer tokens."
        )
        status = gr.Markdown(backends.status(MODEL_CHOICE, None), elem_id="backend-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                examples = [[str(p)] for p in example_videos()]
                if examples:
                    gr.Examples(examples, inputs=[video], label="Examples")
                frames = gr.Slider(
                    1,
                    MAX_FRAMES,
                    DEFAULT_FRAMES,
                    step=1,
                    label="Frames",
                    info="sampled uniformly over the video",
                )
                question = gr.Textbox(DEFAULT_QUESTION, label="Question", lines=2)
                retention = gr.Slider(
                    0.01,
                    1.0,
                    DEFAULT_RETENTION,
                    step=0.01,
                    label="Retention",
                    info="share of the visual tokens kept (a ratio)",
                    elem_id="retention",
                )
                with gr.Accordion("Advanced", open=False):
                    use_tau = gr.Checkbox(False, label="Set τ directly (ignore Retention)")
                    tau = gr.Slider(-1.0, 1.0, 0.9, step=0.0001, label="τ (similarity threshold)")
                    epsilon = gr.Number(
                        0.05,
                        label="ε (error bound of the sampled components, used above 16,384 tokens)",
                        minimum=0,
                        maximum=0.99,
                    )
                    choice = gr.Radio(
                        [MODEL_CHOICE, PIXEL_CHOICE], value=MODEL_CHOICE, label="Feature backend"
                    )
                    ckpt = gr.Textbox(
                        "",
                        label="Checkpoint (hub id or local folder)",
                        placeholder=backends.checkpoint,
                    )
                run = gr.Button("Compress", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                numbers = gr.Markdown("Pick a video to start.", elem_id="numbers")
                frame = gr.Slider(
                    0,
                    DEFAULT_FRAMES - 1,
                    0,
                    step=1,
                    label="Frame (for the graphs, the probe and the τ scrubber)",
                )
                with gr.Tabs():
                    with gr.Tab("Regions"):
                        with gr.Row():
                            view = gr.Radio(list(VIEWS), value="Temporal step", label="Colour by")
                            fill = gr.Checkbox(False, label="Fill regions with their mean colour")
                        gallery = gr.Gallery(
                            label="Frames and their regions",
                            columns=4,
                            height="auto",
                            format="jpeg",
                            elem_id="regions",
                        )
                        gr.Markdown(
                            OVERLAY_CAPTIONS["overlay"] + " " + OVERLAY_CAPTIONS["mean_fill"]
                        )
                    with gr.Tab("Answer"):
                        answer_md = gr.Markdown("Compress a video, then ask.", elem_id="answer")
                        ask = gr.Button("Answer")
                    with gr.Tab("Similarity"):
                        tau_graph = gr.Plot(label="τ-graph of the frame")
                        gr.Markdown(FIGURE_CAPTIONS["tau_graph"])
                        temporal = gr.Plot(label="Temporal graph")
                        gr.Markdown(FIGURE_CAPTIONS["temporal_graph"])
                        matrix = gr.Plot(label="Similarity matrix")
                        gr.Markdown(FIGURE_CAPTIONS["similarity_matrix"])
                        curve = gr.Plot(label="Retention vs τ")
                        gr.Markdown(FIGURE_CAPTIONS["retention"])
                        per_frame = gr.Plot(label="Tokens per frame")
                        gr.Markdown(FIGURE_CAPTIONS["tokens_per_frame"])
                    with gr.Tab("Probe"):
                        gr.Markdown(
                            "Click a token on the frame: its region lights up in every "
                            "frame, and its similarity to every token is shown below."
                        )
                        probe_image = gr.Image(
                            label="Click a token", interactive=False, elem_id="probe-image"
                        )
                        probe_note = gr.Markdown()
                        probe_gallery = gr.Gallery(
                            label="Its region in every frame",
                            columns=4,
                            height="auto",
                            format="jpeg",
                        )
                        gr.Markdown(OVERLAY_CAPTIONS["highlight"])
                        probe_plot = gr.Plot(label="Similarity to the clicked token")
                        gr.Markdown(FIGURE_CAPTIONS["probe"])
                    with gr.Tab("Teach"):
                        scrub = gr.Plot(label="Regions growing as τ falls")
                        gr.Markdown(SCRUB_CAPTION + " Press ▶ to play.")
                    with gr.Tab("Compare"):
                        gr.Markdown(
                            "The methods LLaVA-Scissor is measured against, at the same "
                            "retention, on the chosen frame. Each region is painted with the "
                            "mean colour of the original tokens its output token stands for. "
                            "**Coverage**: how close every original token is to its nearest "
                            "kept token (1 = fully represented). **Redundancy**: how much the "
                            "kept tokens repeat each other (lower is better)."
                        )
                        methods = gr.CheckboxGroup(
                            [(label, key) for key, label in METHOD_LABELS.items()],
                            value=DEFAULT_METHODS,
                            label="Methods",
                            info="FastV needs a loaded model (LLM attention)",
                        )
                        compare_btn = gr.Button("Compare at this retention", elem_id="compare")
                        compare_gallery = gr.Gallery(
                            label="Same frame, each method",
                            columns=3,
                            height="auto",
                            format="jpeg",
                            elem_id="compare-gallery",
                        )
                        compare_table = gr.Dataframe(
                            headers=[
                                "method",
                                "tokens",
                                "retention",
                                "coverage",
                                "redundancy",
                                "seconds",
                                "note",
                            ],
                            label="Numbers",
                            wrap=True,
                        )
                        curves_btn = gr.Button("Curves from 5 % to 100 % retention")
                        curves_plot = gr.Plot(label="Metrics against retention")
                        answers_btn = gr.Button("Compare answers (needs a model)")
                        answers_note = gr.Markdown()
                        answers_table = gr.Dataframe(
                            headers=[
                                "method",
                                "visual tokens",
                                "exact match",
                                "token F1",
                                "first-token KL",
                                "prefill s",
                                "answer",
                            ],
                            label="Answers against the full-token answer",
                            wrap=True,
                        )
                    with gr.Tab("Export"):
                        gr.Markdown(
                            "The overlays as an animated GIF and an MP4 for slides, and "
                            "the partition as JSON (spatial, temporal and merge labels)."
                        )
                        export_btn = gr.Button("Export")
                        files = gr.File(label="Files", file_count="multiple")

        # --- events
        ui = dict(api_visibility="undocumented")  # the page's events; the API is below
        light = dict(concurrency_id="light", concurrency_limit=4, **ui)
        figures = [tau_graph, matrix, temporal, curve, per_frame]  # frame's, then the video's
        refresh_io = dict(
            fn=refresh,
            inputs=[state, retention, use_tau, tau, view, fill, frame],
            outputs=[state, numbers, gallery, tau],
            **light,
        )
        figures_io = dict(fn=figures_for, inputs=[state, frame], outputs=figures, **light)
        answer_io = dict(
            fn=show_answers,
            inputs=[state, question, retention, use_tau, tau],
            outputs=[answer_md],
            concurrency_id="model",
            concurrency_limit=1,
            **ui,
        )

        def frame_range(session):
            count = len(session.analysis.clip.frames) if session else DEFAULT_FRAMES
            return gr.update(maximum=max(count - 1, 1), value=0)

        loaded = run.click(
            load,
            [video, frames, choice, ckpt, epsilon],
            [state, status],
            concurrency_id="heavy",
            concurrency_limit=2,
            **ui,
        )
        loaded = loaded.success(frame_range, [state], [frame], **light)
        loaded = (
            loaded.success(**refresh_io)
            .success(**figures_io)
            .success(
                frame_views, [state, frame, view], [tau_graph, matrix, probe_image, scrub], **light
            )
        )
        loaded.success(**answer_io)
        # Redraw on every change (keys too; while one redraw runs only the latest waits), the
        # graphs after it, and ask the model only when the slider is let go.
        retention.change(**refresh_io, trigger_mode="always_last").success(**figures_io)
        retention.release(**answer_io)
        tau.release(**refresh_io).success(**figures_io).success(**answer_io)
        use_tau.change(**refresh_io).success(**figures_io)
        view.change(redraw, [state, view, fill], [gallery], **light)
        fill.change(redraw, [state, view, fill], [gallery], **light)
        frame.release(
            frame_views, [state, frame, view], [tau_graph, matrix, probe_image, scrub], **light
        )
        probe_image.select(
            probe, [state, frame, view, fill], [probe_gallery, probe_plot, probe_note], **light
        )
        ask.click(**answer_io)
        export_btn.click(export_files, [state, view, fill], [files], **light)
        compare_btn.click(
            compare,
            [state, methods, retention, frame, question],
            [compare_gallery, compare_table],
            concurrency_id="heavy",
            concurrency_limit=2,
            **ui,
        )
        curves_btn.click(
            curves,
            [state, methods, question],
            [curves_plot],
            concurrency_id="heavy",
            concurrency_limit=2,
            **ui,
        )
        answers_btn.click(
            compare_answers,
            [state, methods, retention, question],
            [answers_table, answers_note],
            concurrency_id="model",
            concurrency_limit=1,
            **ui,
        )
        choice.change(backends.status, [choice, ckpt], [status], **light)
        gr.api(compress_api, api_name="compress", concurrency_id="heavy", concurrency_limit=2)
        gr.api(answer_api, api_name="answer", concurrency_id="model", concurrency_limit=1)
        demo.load(lambda: backends.status(MODEL_CHOICE, None), None, [status], **ui)

        def poll_status(choice_, ckpt_):  # every 2 s while the model loads, then stops
            ckpt_ = (ckpt_ or "").strip() or None
            active = backends.loading(choice_, ckpt_)
            return backends.status(choice_, ckpt_), gr.Timer(active=active)

        poll = gr.Timer(2.0, active=backends.loading(MODEL_CHOICE, None))
        poll.tick(poll_status, [choice, ckpt], [status, poll], **light)

    backends.start()
    demo.queue(max_size=64, default_concurrency_limit=2)
    return demo
