"""What the page shows, built from a session: the numbers line, the region gallery, the
figures, the comparison tables and the answers. Plain functions of a :class:`Session`; the
handlers call them and the layout never does."""

from __future__ import annotations

import base64
import html
import io
import re

import gradio as gr
import numpy as np
from PIL import Image

from scissor_viz.methods import METHODS
from scissor_viz.numbers import tau_short, tau_text
from scissor_viz.pictures import figures, graphs, overlay, regions, scrub
from scissor_viz.pictures.grid import as_numpy
from scissor_viz.ui.backends import gpu
from scissor_viz.ui.memory import return_free_memory
from scissor_viz.ui.session import (  # noqa: F401 (the session's names, where they were)
    GRID_WIDTH,
    NO_VIDEO,
    THUMB_WIDTH,
    NoSession,
    Session,
    fit_width,
    live_session,
    need_session,
)

DEFAULT_QUESTION = "What is happening in this video?"
DEFAULT_RETENTION = 0.35
VIEWS = {"Temporal step": "temporal", "Spatial step": "spatial", "Merge assignment": "merge"}
DEFAULT_VIEW = "Temporal step"
READING_GUIDE = """
**How to read the picture.** Each sampled frame is cut into the model's grid of cells (14 × 14
for LLaVA-OneVision; the line above the frames gives the grid in use): one cell is one visual
token, what the video LLM sees. A model that encodes frames in pairs (Qwen-VL) has one grid per
pair: both frames of a pair show the pair's regions. SCC joins tokens that look alike.

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

TABS = ("Similarity", "Probe", "Teach", "Compare", "Export")  # the tabs whose views a setting draws
BANNERS = {tab: f"drawn_{tab.lower()}" for tab in TABS}  # each tab's "drawn for" line
GRAPH = "graph"  # the frame's τ-graph, in a session's ``drawn``: (stamp, setting, frame)
REDRAWN_BY = {  # how an out-of-date tab is brought up to date
    "Similarity": "redrawn when the tab is open",
    "Probe": "redrawn when the tab is open",
    "Teach": "redrawn when the tab is open",
    "Compare": "press a button above again",
    "Export": "press Export again",
}
RANDOM_WEIGHTS = "⚠️ **Random weights (test model): {} not {}.**\n\n"


def clamp_frame(session: Session, frame) -> int:
    return session.clamp(frame)


def tau_words(tau: float) -> str:
    """τ as the page writes it: the decimal that reproduces it (typed into the Advanced box, it
    gives the same count), and near 1 also as its gap to 1."""
    short, text = tau_short(tau), tau_text(tau)
    return short if text in (short, "1") or not text.startswith("1 −") else f"{short} ({text})"


def banner(session: Session, tab: str) -> str:
    """The line over a tab: which video and setting its views were drawn for, and whether that
    is still the page's."""
    drawn = session.drawn.get(tab)
    if drawn is None:
        return ""
    stamp, label = drawn
    if stamp == session.stamp:
        return f"Drawn for {label}."
    return f"⚠️ **Out of date**: drawn for {label}; now {session.label()} ({REDRAWN_BY[tab]})."


def banners(session: Session) -> dict:
    """Every tab's line (the redraws and every change of setting write them all)."""
    return {name: banner(session, tab) for tab, name in BANNERS.items()}


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
    grid = session.grid
    images = regions.view_overlays(frames, comp, key, fill=fill, probe=probe, grid=grid)
    captions = regions.view_captions(comp, key, analysis.clip.timestamps, grid, len(frames))
    return list(zip(images, captions))


def view_caption(view: str) -> str:
    """How to read the frames in this view."""
    return regions.CAPTIONS[view_key(view)]


def redraw(session: Session) -> dict:
    """What a new compression (or colouring) changes on the main screen: the numbers, the
    frames grid, the large frame, the view's caption, the answer panel (what the model sees
    now, until the answer for it comes), the τ-graph's line and every tab's "drawn for" line."""
    return dict(
        numbers=numbers_markdown(session),
        **frames_views(session),
        view_caption=view_caption(session.view),
        answer_md=answer_hint(session),
        drawn_graph=graph_banner(session),
        **banners(session),
    )


def mark_graph(session: Session, frame: int) -> None:
    """The frame's τ-graph was sent for the session's setting (``graph_banner`` reads it)."""
    setting = (
        f"{regions.plural(session.comp.num_tokens, 'token')} · τ = {tau_short(session.comp.tau)}"
    )
    session.drawn[GRAPH] = (session.stamp, setting, clamp_frame(session, frame))


def graph_is_drawn(session: Session, frame: int) -> bool:
    """Whether the page shows frame ``frame``'s τ-graph for the session's setting."""
    return session.drawn.get(GRAPH, ())[::2] == (session.stamp, clamp_frame(session, frame))


def graph_banner(session: Session) -> str:
    """The line under the frame's τ-graph: empty while the graph shows the setting in use (or
    no graph is drawn yet); else the setting it was drawn for. While the slider moves the graph
    waits (a redraw per step would slow every step): it is redrawn when the slider rests."""
    drawn = session.drawn.get(GRAPH)
    if drawn is None or drawn[0] == session.stamp:
        return ""
    return f"⚠️ **Out of date**: drawn for {drawn[1]}; redrawn when the slider rests."


def frames_views(session: Session) -> dict:
    """The frames grid (the selected frame marked; short captions, the whole one in each
    figure's tooltip) and the selected frame drawn large with its whole caption. Every frame
    is drawn THUMB_WIDTH wide and shrunk to GRID_WIDTH for the grid: the grid looks as the
    browser would show the large drawing, at a quarter of the bytes."""
    pictures = region_images(session, session.view, session.fill)
    uris = [jpeg_uri(image, GRID_WIDTH) for image, _ in pictures]  # drawn large, sent small
    full = [caption for _, caption in pictures]
    short = regions.short_captions(
        session.comp, view_key(session.view), session.grid, len(pictures)
    )
    large = jpeg_uri(pictures[session.frame][0])
    return dict(
        regions=frames_html(uris, short, session.frame, titles=full),
        large=large_html(large, full[session.frame], session.frame),
    )


def probe_picture(session: Session, frame: int, view: str) -> np.ndarray:
    """The frame to click on, with its regions in the view."""
    labels = regions.view_labels(session.comp, view_key(view))
    image = session.analysis.clip.frames[frame]
    return overlay.overlay(image, labels[session.step(frame)], cols=session.grid.cols)


def probe_views(session: Session, frame: int, token: int, view: str, fill: bool) -> dict:
    """The probe's answer to a click: its region in every frame, the similarity figure, the
    note, and the frame with the clicked cell marked and every token tinted by its similarity
    to it."""
    analysis, grid, step = session.analysis, session.grid, session.step(frame)
    similarity = figures.probe_similarity(analysis.tokens, step, token)
    names = [grid.step_name(g, session.frames) for g in range(len(similarity))]
    figure = figures.probe_figure(
        similarity,
        step,
        token,
        session.comp.tau,
        timestamps=session.step_stamps(),
        cols=grid.cols,
        names=names,
    )
    session.probed = (frame, token)
    session.mark_drawn("Probe")
    return dict(
        probe_gallery=region_images(session, view, fill, probe=(frame, token)),
        probe_plot=figure,
        probe_note=regions.probe_note(
            session.comp, view_key(view), frame, token, grid, session.frames
        ),
        probe_image=regions.probe_image(
            analysis.clip.frames[frame], similarity[step], token, cols=grid.cols
        ),
        drawn_probe=banner(session, "Probe"),
    )


def scrub_steps(session: Session, frame: int) -> list[scrub.ScrubStep]:
    """The τ scrubber's steps for one frame at this compression (the last frame's are kept)."""
    key = (frame, session.comp.tau)
    if key not in session.scrubs:
        analysis = session.analysis
        steps = scrub.scrub_steps(
            analysis.clip.frames[frame],
            analysis.index.frame_similarity[session.step(frame)],
            tau=key[1],
            cols=session.grid.cols,
        )
        session.scrubs = {key: steps}
    return session.scrubs[key]


def scrub_view(steps: list[scrub.ScrubStep], step: int, tau: float) -> dict:
    """One step of the scrubber, numbered from 1 on the slider and in the text alike: the step,
    its picture, and what the viewer sees (``tau``: the compression's, named at its step)."""
    step = int(np.clip(int(step or 1), 1, len(steps)))
    shown = steps[step - 1]
    here = f" — **the τ in use now, τ = {tau_words(tau)}**" if shown.current else ""
    return dict(
        step=step,
        scrub_image=shown.image,
        scrub_note=f"Step {step} of {len(steps)}{here}. {shown.text}",
    )


def no_answer_reason(backend) -> str:
    """Why there is no answer, in a line (the status line above holds the details)."""
    if backend.load_error:
        return "no model is loaded (the line at the top says why and how to fix it)."
    return backend.unavailable_reason or "no language model is loaded."


def no_answer(backend, what: str = "") -> str:
    """The one sentence the page says where an answer needs a model (after ``what``)."""
    return f"{what}No answer: {no_answer_reason(backend)}"


def answer_hint(session: Session) -> str:
    """The answer panel between answers: what the model sees, and why there is no answer."""
    comp, total = session.comp, session.analysis.num_total
    seen = (
        f"The model would see **{regions.plural(comp.num_tokens, 'visual token')}** of "
        f"{total:,} ({comp.retention_reached:.1%}) of `{session.video}`."
    )
    backend = session.analysis.backend
    if not backend.can_answer:
        return f"**{no_answer(backend)}**\n\n{seen}"
    return f"{seen} Let go of the slider (or press *Ask again*) for its answer."


def jpeg_uri(image: np.ndarray, width: int = THUMB_WIDTH) -> str:
    """A JPEG data URI of a uint8 (H, W, 3) image, at most ``width`` pixels wide."""
    picture = Image.fromarray(image)
    if picture.width > width:
        size = (width, round(picture.height * width / picture.width))
        picture = picture.resize(size, Image.Resampling.BOX)  # area-averaged, as a browser shrinks
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def frames_html(
    uris: list[str], captions: list[str], selected: int = 0, titles: list[str] | None = None
) -> str:
    """The frames grid: one figure per frame (clickable), its caption under it (lines split
    at newlines; ``titles``: the whole caption, shown on hover), the selected one outlined.
    The page updates it in place, so the old pictures stay up until the new ones arrive."""
    titles = titles or captions
    figures = "".join(
        f'<figure data-frame="{t}"{" class=selected" if t == selected else ""} '
        f'title="{html.escape(title)}"><img src="{uri}" alt="frame {t}">'
        f"<figcaption>{html.escape(caption).replace(chr(10), '<br>')}</figcaption></figure>"
        for t, (uri, caption, title) in enumerate(zip(uris, captions, titles))
    )
    return f'<div class="frames-grid">{figures}</div>'


def large_html(uri: str, caption: str, frame: int) -> str:
    """The selected frame, large (its marks and outlines readable)."""
    return (
        f'<figure class="large" data-frame="{frame}"><img src="{uri}" alt="frame {frame}, large">'
        f"<figcaption>Selected: {html.escape(caption)}</figcaption></figure>"
    )


def numbers_markdown(session: Session) -> str:
    s = session.analysis.summary(session.comp)
    per_frame = s["spatial_tokens_per_frame"]
    exact = "" if s["exact"] else " (temporal step sampled with ε)"
    frames = "frame" if s["frames"] == 1 else "frames"
    grid, groups = session.grid, len(per_frame)
    unit = "frame"
    if grid.frames_per_group > 1:  # one token grid per group of frames (Qwen-VL)
        unit = "group"
        frames += f" in {regions.plural(groups, 'group')} of {grid.frames_per_group}"
    note = f"{session.note}\n\n" if session.note else ""
    return note + (
        f"`{session.video}`: **{s['tokens_before']:,} → {s['tokens_after']:,} tokens** "
        f"({s['frames']} {frames} × {s['tokens_per_frame']}) · retention reached "
        f"**{s['retention']:.1%}** · τ = **{tau_words(s['tau'])}**{exact} · "
        f"regions after the spatial step: {min(per_frame)}–{max(per_frame)} per {unit} "
        f"(mean {np.mean(per_frame):.1f}) · {session.analysis.backend.source} features, "
        f"token grid {grid.rows} × {grid.cols} per {unit}"
    )


def verbatim(text: str) -> str:
    """Model text shown as written, not as Markdown."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text.strip()) or "(empty answer)"


def random_weights(backend, texts: str = "this text is", what: str = "a real answer") -> str:
    """The warning over answers of a model with random weights (empty for a real one)."""
    return "" if backend.pretrained else RANDOM_WEIGHTS.format(texts, what)


def answers_markdown(session: Session, compressed, full) -> str:
    """The compressed answer beside the full-token one, each with its cost."""

    def block(title: str, a) -> str:
        return (
            f"**{title}** — {a.visual_tokens:,} visual tokens, "
            f"prefill {a.prefill_seconds:.2f} s\n\n"
            f"> {verbatim(a.text)}"
        )

    speedup = full.prefill_seconds / max(compressed.prefill_seconds, 1e-9)
    return (
        random_weights(session.analysis.backend)
        + f"Answers about `{session.video}`.\n\n"
        + block(f"At {session.comp.retention_reached:.1%} retention", compressed)
        + "\n\n"
        + block("With every token", full)
        + f"\n\nPrefill {speedup:.1f}× faster with "
        f"{compressed.visual_tokens / full.visual_tokens:.0%}"
        " of the visual tokens."
    )


def tau_graph(session: Session, frame: int):
    """The selected frame's τ-graph: its spanning tree, the links above τ in region colours."""
    analysis, comp, grid = session.analysis, session.comp, session.grid
    frame = clamp_frame(session, frame)
    step = session.step(frame)
    sim = analysis.index.frame_similarity[step].cpu().numpy()
    labels = comp.spatial_labels[step].cpu().numpy()
    name = f"Frame {frame}"
    if grid.frames_per_group > 1:
        name = f"Frames {grid.step_name(step, session.frames)[1:]}"
    title = (
        f"{name} · τ = {tau_short(comp.tau)} · {regions.plural(int(labels.max()) + 1, 'region')}"
    )
    return graphs.tau_graph_figure(
        sim, comp.tau, labels, analysis.clip.frames[frame], title=title, cols=grid.cols
    )


def matrix_figure(session: Session, frame: int):
    """The selected frame's similarity matrix, ordered by region."""
    frame = clamp_frame(session, frame)
    step = session.step(frame)
    sim = session.analysis.index.frame_similarity[step].cpu().numpy()
    labels = session.comp.spatial_labels[step].cpu().numpy()
    return figures.similarity_matrix_figure(
        sim, labels, title=f"Frame {frame}: similarity by region"
    )


def video_figures(session: Session) -> dict:
    """The similarity tab's figures of the whole video: temporal graph, retention curve,
    tokens per frame (they do not change with the chosen frame)."""
    analysis, comp = session.analysis, session.comp
    if session.curve is None:
        session.curve = analysis.retention_curve()
    taus, retention = session.curve
    heights = analysis.index.spatial_merge_heights()  # computed once per video
    stamps = session.step_stamps()  # one per frame, or per temporal group
    return dict(
        temporal=graphs.temporal_graph_figure(
            analysis.tokens, comp, timestamps=stamps, cols=session.grid.cols
        ),
        curve=figures.retention_figure(taus, retention, comp.tau, comp.retention_reached, heights),
        per_frame=figures.tokens_per_frame_figure(
            comp.spatial_counts, stamps, kept=regions.kept_per_frame(comp.temporal_labels)
        ),
    )


def compare_views(session: Session, methods: list[str], frame: int, question) -> dict:
    """Each method's regions on one frame (mean colours), and a table of their numbers, at the
    session's compression (SCC's row is the compression on screen: the same K)."""
    analysis, grid = session.analysis, session.grid
    frame = clamp_frame(session, frame)
    steps = grid.steps(session.frames)
    for method in set(methods) - set(analysis.methods()):
        gr.Warning(f"{METHOD_LABELS[method]} needs a loaded model; skipped.")
    images, table = [], []
    for method, reduction, row in analysis.compare(methods, session.comp, question):
        assignment = as_numpy(reduction.assignment)[steps]  # a group's grid on its frames
        means = overlay.region_means(analysis.clip.frames, assignment, grid.cols)
        image = overlay.overlay(
            analysis.clip.frames[frame], assignment[frame], means, 1.0, mode="paint",
            cols=grid.cols,
        )  # fmt: skip
        label = f"{METHOD_LABELS[method]}: {reduction.num_tokens} tokens"
        images.append((image, f"{label}, coverage {row['coverage']:.3f}"))
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
        return_free_memory()  # one method's scratch memory back before the next one's
    session.mark_drawn("Compare")
    return dict(
        compare_gallery=images, compare_table=table, drawn_compare=banner(session, "Compare")
    )


def compare_curves(session: Session, methods: list[str], question, progress) -> list[dict]:
    """Every method's metrics at CURVE_RETENTIONS (cached per video)."""
    analysis = session.analysis
    runs = len([m for m in methods if m in analysis.methods()]) * len(CURVE_RETENTIONS)
    rows = []
    for row in analysis.curves(methods, CURVE_RETENTIONS, question):
        progress(len(rows) / max(runs, 1), desc=f"{METHOD_LABELS[row['method']]}")
        rows.append(row)
        if row["retention"] == CURVE_RETENTIONS[-1]:  # one method done: its scratch memory goes
            return_free_memory()  # back before the next one's is taken (the peak is one method's)
    return rows


@gpu
def answer_rows(session: Session, methods: list[str], question, progress) -> dict:
    """Each method's answer against the full-token one (needs a model that answers), at the
    session's compression's budget."""
    analysis = session.analysis
    backend = analysis.backend
    if not backend.can_answer:
        raise gr.Error(no_answer(backend, "Comparing answers needs a model. "))
    rows = []
    progress(0.0, desc="answering")
    for method, fid in analysis.answers(methods, session.comp, question):
        progress(len(rows) / max(len(methods), 1), desc=f"answered with {METHOD_LABELS[method]}")
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
        f"Full-token answer about `{session.video}` ({full.visual_tokens:,} visual tokens, "
        f"prefill {full.prefill_seconds:.2f} s): {verbatim(full.text)}"
    )
    note = random_weights(backend, "these texts are", "real answers") + note
    session.mark_drawn("Compare")
    return dict(answers_table=rows, answers_note=note, drawn_compare=banner(session, "Compare"))
