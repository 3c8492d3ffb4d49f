"""What the page shows, built from a session: the numbers line, the region gallery, the
figures, the comparison tables and the answers. Plain functions of a :class:`Session`; the
handlers call them and the layout never does."""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr
import numpy as np

from scissor_viz import viz
from scissor_viz.analysis import VideoAnalysis
from scissor_viz.methods import METHODS
from scissor_viz.scc import Compression
from scissor_viz.ui.backends import gpu

DEFAULT_QUESTION = "What is happening in this video?"
DEFAULT_RETENTION = 0.35
DEFAULT_FRAMES = 16
VIEWS = {
    "Temporal step": "temporal_labels",
    "Spatial step": "spatial_labels",
    "Merge assignment": "assignment",
}
NO_VIDEO = "Pick a video first (upload one or click an example), then Compress."
CURVE_RETENTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
METHOD_LABELS = {key: method.label for key, method in METHODS.items()}
DEFAULT_METHODS = [key for key, method in METHODS.items() if method.model != "required"]

# ----------------------------------------------------------------------------- session state


@dataclass
class Session:
    """What one browser session holds: its analysed video and the compression on screen."""

    analysis: VideoAnalysis
    comp: Compression | None = None  # set by the first refresh after loading
    curve: tuple[np.ndarray, np.ndarray] | None = None  # (taus, retention) for the plot

    def compress_at(self, retention: float, use_tau: bool, tau: float) -> Compression:
        """SCC at the slider's retention, or at the advanced panel's tau."""
        if use_tau:
            return self.analysis.compress(tau=float(tau))
        return self.analysis.compress(retention=float(retention))


def need_session(session: Session | None) -> Session:
    """The session, once a video has been compressed; else the message that says what to do."""
    if session is None or session.comp is None:
        raise gr.Error(NO_VIDEO)
    return session


def view_labels(comp: Compression, view: str):
    """The (frames, P) labels a colouring view paints: spatial, temporal or merge."""
    return getattr(comp, VIEWS.get(view, "temporal_labels"))


# ----------------------------------------------------------------------------- pictures


def region_images(session: Session, view: str, fill: bool, highlight: int | None = None):
    """The gallery: every frame with its regions, captioned."""
    analysis, comp = session.analysis, session.comp
    labels = view_labels(comp, view)
    images = viz.overlay_video(
        analysis.clip.frames,
        labels,
        fill="mean" if fill else "palette",
        alpha=1.0 if fill else 0.5,
        highlight=highlight,
    )
    counts = comp.spatial_counts.tolist()
    stamps = analysis.clip.timestamps
    return [
        (image, viz.frame_caption(t, float(stamps[t]), counts[t])) for t, image in enumerate(images)
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
        viz.tau_graph_figure(sim, comp.tau, labels, analysis.clip.frames[frame]),
        viz.similarity_matrix_figure(sim, labels, title=f"Frame {frame}: similarity by region"),
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
        viz.temporal_graph_figure(analysis.tokens, comp, timestamps=analysis.clip.timestamps),
        viz.retention_figure(taus, retention, comp.tau, comp.retention, heights),
        viz.tokens_per_frame_figure(comp.spatial_counts, analysis.clip.timestamps),
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
        means = viz.region_means(analysis.clip.frames, reduction.assignment)
        image = viz.overlay(
            analysis.clip.frames[frame], reduction.assignment[frame], means, alpha=1.0
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
