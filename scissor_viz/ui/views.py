"""What the page shows, built from a session: the numbers line, the region gallery, the
figures, the comparison tables and the answers. Plain functions of a :class:`Session`; the
handlers call them and the layout never does."""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

from scissor_viz import figures, graphs, overlay, regions, scrub
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.methods import METHODS
from scissor_viz.scc import Compression
from scissor_viz.ui.backends import gpu
from scissor_viz.ui.memory import return_free_memory

DEFAULT_QUESTION = "What is happening in this video?"
DEFAULT_RETENTION = 0.35
DEFAULT_FRAMES = 16
VIEWS = {"Temporal step": "temporal", "Spatial step": "spatial", "Merge assignment": "merge"}
THUMB_WIDTH = 480  # pixels: frames in the grid are sent at most this wide
# The slider's search for tau stops at a K within this many tokens of its retention (the numbers
# line says the retention reached): half the graphs of the exact search (16 frames: 62 ms a move,
# was 108), and never further off than SCC's own steps in K make the exact one.
SLIDER_SLACK = 2
DEFAULT_VIEW = "Temporal step"
NO_VIDEO = "Pick a video first (upload one or click an example), then Compress."
READING_GUIDE = """
**How to read the picture.** Each sampled frame is cut into a 14 × 14 grid of cells: one cell is
one visual token, what the video LLM sees. SCC joins tokens that look alike.

* **Spatial step**: inside one frame, neighbouring-or-not cells more similar than τ join; each
  tinted region with an outline is one token now. A cell left untinted stayed alone.
* **Temporal step**: the regions of all frames are compared with each other. A region that
  repeats an earlier frame is merged into that frame's token: it is *dimmed* here, because this
  frame no longer pays for it. On a static camera almost everything after frame 0 dims: the
  video is "frame 0 and what changed".
* **Merge assignment**: every original token is finally averaged into its most similar kept
  token; cells with one colour went into one token.

Move **Retention** down and watch regions grow and frames dim. The **τ-graph** beside the
frames shows the similarity structure that decides it; the **answer** panel shows what the
model says from the kept tokens. The **Teach** tab replays one frame as τ falls, step by step.
"""
CURVE_RETENTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
METHOD_LABELS = {key: method.label for key, method in METHODS.items()}
DEFAULT_METHODS = [key for key, method in METHODS.items() if not method.needs_llm_attention]

# ----------------------------------------------------------------------------- session state


class NoSession(Exception):
    """A live control moved before any video was compressed."""


@dataclass
class Session:
    """What one browser session holds: its analysed video and the compression on screen."""

    analysis: VideoAnalysis
    comp: Compression | None = None  # set by the first refresh after loading
    curve: tuple[np.ndarray, np.ndarray] | None = None  # (taus, retention) for the plot
    scrubs: dict = field(default_factory=dict)  # frame -> the τ scrubber's steps
    _thumbnails: np.ndarray | None = field(default=None, repr=False)

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
        tolerance = min(SLIDER_SLACK / self.analysis.num_tokens, 0.5)  # below 1 for tiny videos
        return self.analysis.compress(retention=float(retention), tolerance=tolerance)


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


def clamp_frame(session: Session, frame) -> int:
    return int(np.clip(int(frame or 0), 0, len(session.analysis.clip.frames) - 1))


def view_key(view: str) -> str:
    """The pictures' name of a colouring view ("temporal", "spatial" or "merge")."""
    return VIEWS.get(view, "temporal")


# ----------------------------------------------------------------------------- pictures


def region_images(
    session: Session,
    view: str,
    fill: bool,
    probe: tuple[int, int] | None = None,
    *,
    full_size: bool = False,
) -> list[tuple[np.ndarray, str]]:
    """Every frame drawn for the view, with its caption (``probe``: one token's region lit);
    on the grid's thumbnails unless ``full_size`` (exports)."""
    analysis, comp, key = session.analysis, session.comp, view_key(view)
    frames = analysis.clip.frames if full_size else session.thumbnails()
    images = regions.view_overlays(frames, comp, key, fill=fill, probe=probe)
    captions = regions.view_captions(comp, key, analysis.clip.timestamps)
    return list(zip(images, captions))


def view_caption(view: str) -> str:
    """How to read the frames in this view."""
    return regions.CAPTIONS[view_key(view)]


def redraw(session: Session, view: str, fill: bool) -> tuple:
    """What a new compression changes on the main screen: (session, numbers, regions, caption)."""
    return session, numbers_markdown(session), region_html(session, view, fill), view_caption(view)


def probe_picture(session: Session, frame: int, view: str) -> np.ndarray:
    """The frame to click on, with its regions in the view."""
    labels = regions.view_labels(session.comp, view_key(view))
    return overlay.overlay(session.analysis.clip.frames[frame], labels[frame])


def probe_views(session: Session, frame: int, token: int, view: str, fill: bool) -> tuple:
    """The probe's answer to a click: (region in every frame, similarity figure, note, the
    frame with the clicked cell marked and every token tinted by its similarity to it)."""
    analysis = session.analysis
    similarity = figures.probe_similarity(analysis.tokens, frame, token)
    figure = figures.probe_figure(
        similarity, frame, token, session.comp.tau, timestamps=analysis.clip.timestamps
    )
    note = regions.probe_note(session.comp, view_key(view), frame, token)
    gallery = region_images(session, view, fill, probe=(frame, token))
    picture = regions.probe_image(analysis.clip.frames[frame], similarity[frame], token)
    return gallery, figure, note, picture


def scrub_steps(session: Session, frame: int) -> list[scrub.ScrubStep]:
    """The τ scrubber's steps for one frame at this compression (the last frame's are kept)."""
    key = (frame, session.comp.tau)
    if key not in session.scrubs:
        analysis = session.analysis
        steps = scrub.scrub_steps(
            analysis.clip.frames[frame], analysis.index.frame_similarity[frame], tau=key[1]
        )
        session.scrubs = {key: steps}
    return session.scrubs[key]


def scrub_view(steps: list[scrub.ScrubStep], step: int) -> tuple[np.ndarray, str]:
    """One step of the scrubber: (image, what the viewer sees)."""
    step = int(np.clip(step, 0, len(steps) - 1))
    here = " — **the τ in use now**" if steps[step].current else ""
    return steps[step].image, f"Step {step + 1} of {len(steps)}{here}. {steps[step].text}"


def no_answer_reason(backend) -> str:
    """Why there is no answer, in a line (the status line above holds the details)."""
    if backend.load_error:
        return "no model is loaded (the line at the top says why and how to fix it)."
    return backend.unavailable_reason or "no language model is loaded."


def answer_hint(session: Session) -> str:
    """The answer panel between answers: what the model sees, and why there is no answer."""
    comp, total = session.comp, session.analysis.num_tokens
    seen = (
        f"The model would see **{regions.plural(comp.num_tokens, 'visual token')}** of "
        f"{total:,} ({comp.retention:.1%})."
    )
    backend = session.analysis.backend
    if not backend.can_answer:
        return f"**No answer: {no_answer_reason(backend)}**\n\n{seen}"
    return f"{seen} Let go of the slider (or press *Ask again*) for its answer."


def jpeg_uri(image: np.ndarray, width: int = THUMB_WIDTH) -> str:
    """A JPEG data URI of a uint8 (H, W, 3) image, at most ``width`` pixels wide."""
    picture = Image.fromarray(image)
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)))
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def frames_html(pictures: list[tuple[np.ndarray, str]]) -> str:
    """The frames grid: one figure per frame (clickable), its caption under it. The page
    updates it in place, so the old pictures stay up until the new ones have arrived."""
    figures = "".join(
        f'<figure data-frame="{t}"><img src="{jpeg_uri(image)}" alt="frame {t}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for t, (image, caption) in enumerate(pictures)
    )
    return f'<div class="frames-grid">{figures}</div>'


def region_html(session: Session, view: str, fill: bool) -> str:
    """The frames grid of this view."""
    return frames_html(region_images(session, view, fill))


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


def tau_graph(session: Session, frame: int):
    """The selected frame's τ-graph: its spanning tree, the links above τ in region colours."""
    analysis, comp = session.analysis, session.comp
    frame = clamp_frame(session, frame)
    sim = analysis.index.frame_similarity[frame].cpu().numpy()
    labels = comp.spatial_labels[frame].cpu().numpy()
    title = (
        f"Frame {frame} · τ = {comp.tau:.3f} · {regions.plural(int(labels.max()) + 1, 'region')}"
    )
    return graphs.tau_graph_figure(sim, comp.tau, labels, analysis.clip.frames[frame], title=title)


def matrix_figure(session: Session, frame: int):
    """The selected frame's similarity matrix, ordered by region."""
    frame = clamp_frame(session, frame)
    sim = session.analysis.index.frame_similarity[frame].cpu().numpy()
    labels = session.comp.spatial_labels[frame].cpu().numpy()
    return figures.similarity_matrix_figure(
        sim, labels, title=f"Frame {frame}: similarity by region"
    )


def video_figures(session: Session):
    """The similarity tab's figures of the whole video: temporal graph, retention curve,
    tokens per frame (they do not change with the chosen frame)."""
    analysis, comp = session.analysis, session.comp
    if session.curve is None:
        session.curve = analysis.retention_curve()
    taus, retention = session.curve
    heights = analysis.index.spatial_merge_heights()  # computed once per video
    stamps = analysis.clip.timestamps
    return (
        graphs.temporal_graph_figure(analysis.tokens, comp, timestamps=stamps),
        figures.retention_figure(taus, retention, comp.tau, comp.retention, heights),
        figures.tokens_per_frame_figure(
            comp.spatial_counts, stamps, kept=regions.kept_per_frame(comp.temporal_labels)
        ),
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
        reduction, row = analysis.reduce(method, retention, question)
        return_free_memory()  # one method's scratch memory back before the next one's
        means = overlay.region_means(analysis.clip.frames, reduction.assignment)
        image = overlay.overlay(
            analysis.clip.frames[frame], reduction.assignment[frame], means, 1.0, mode="paint"
        )
        images.append(
            (
                image,
                f"{METHOD_LABELS[method]}: {reduction.num_tokens} tokens, "
                f"coverage {row['coverage']:.3f}",
            )
        )
        table.append(
            [
                METHOD_LABELS[method],
                reduction.num_tokens,
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
        if retention == CURVE_RETENTIONS[-1]:  # one method done: its scratch memory goes back
            return_free_memory()  # before the next one's is taken (the peak is one method's)
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
