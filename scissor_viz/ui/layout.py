"""The page: components laid out, and their events wired to the handlers. No handler bodies."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from scissor_viz import viz
from scissor_viz.models import Backend
from scissor_viz.ui import handlers as on
from scissor_viz.ui.backends import MODEL_CHOICE, PIXEL_CHOICE, Backends
from scissor_viz.ui.views import (
    DEFAULT_FRAMES,
    DEFAULT_METHODS,
    DEFAULT_QUESTION,
    DEFAULT_RETENTION,
    METHOD_LABELS,
    VIEWS,
)
from scissor_viz.video import MAX_FRAMES, example_videos

SESSION_TTL = 3600  # seconds a session's video stays in memory after its last use
# The queue's concurrency groups: redraws never wait behind decoding or the model.
PAGE = dict(api_visibility="undocumented")  # the page's events; the documented API is gr.api
LIGHT = dict(concurrency_id="light", concurrency_limit=4, **PAGE)
HEAVY = dict(concurrency_id="heavy", concurrency_limit=2, **PAGE)
MODEL = dict(concurrency_id="model", concurrency_limit=1, **PAGE)
INTRO = (
    "# ✂️ scissor-viz\n"
    "See how **LLaVA-Scissor** (Sun et al., 2025) compresses a video for a video LLM: "
    "tokens more similar than **τ** are joined into *semantic connected components*, "
    "first inside each frame, then across frames, and each component becomes one token. "
    "Move **Retention** to keep more or fewer tokens."
)
COMPARE_HELP = (
    "The methods LLaVA-Scissor is measured against, at the same retention, on the chosen "
    "frame. Each region is painted with the mean colour of the original tokens its output "
    "token stands for. **Coverage**: how close every original token is to its nearest kept "
    "token (1 = fully represented). **Redundancy**: how much the kept tokens repeat each "
    "other (lower is better)."
)


def _controls(backends: Backends) -> SimpleNamespace:
    """The left column: the video, its examples and every knob."""
    c = SimpleNamespace()
    c.video = gr.Video(label="Video", sources=["upload"], elem_id="video")
    examples = [[str(p)] for p in example_videos()]
    if examples:
        gr.Examples(examples, inputs=[c.video], label="Examples")
    c.frames = gr.Slider(
        1, MAX_FRAMES, DEFAULT_FRAMES, step=1, label="Frames", info="sampled uniformly"
    )
    c.question = gr.Textbox(DEFAULT_QUESTION, label="Question", lines=2)
    c.retention = gr.Slider(
        0.01,
        1.0,
        DEFAULT_RETENTION,
        step=0.01,
        label="Retention",
        info="share of the visual tokens kept (a ratio)",
        elem_id="retention",
    )
    with gr.Accordion("Advanced", open=False):
        c.use_tau = gr.Checkbox(False, label="Set τ directly (ignore Retention)")
        c.tau = gr.Slider(-1.0, 1.0, 0.9, step=0.0001, label="τ (similarity threshold)")
        c.epsilon = gr.Number(
            0.05,
            minimum=0,
            maximum=0.99,
            label="ε (error bound of the sampled components, used above 16,384 tokens)",
        )
        c.choice = gr.Radio([MODEL_CHOICE, PIXEL_CHOICE], value=MODEL_CHOICE, label="Features")
        c.ckpt = gr.Textbox(
            "", label="Checkpoint (hub id or local folder)", placeholder=backends.checkpoint
        )
    c.run = gr.Button("Compress", variant="primary", elem_id="run")
    return c


def _similarity_tab(c: SimpleNamespace) -> None:
    for name, label, caption in (
        ("tau_graph", "τ-graph of the frame", "tau_graph"),
        ("temporal", "Temporal graph", "temporal_graph"),
        ("matrix", "Similarity matrix", "similarity_matrix"),
        ("curve", "Retention vs τ", "retention"),
        ("per_frame", "Tokens per frame", "tokens_per_frame"),
    ):
        setattr(c, name, gr.Plot(label=label))
        gr.Markdown(viz.CAPTIONS[caption])


def _probe_tab(c: SimpleNamespace) -> None:
    gr.Markdown(
        "Click a token on the frame: its region lights up in every "
        "frame, and its similarity to every token is shown below."
    )
    c.probe_image = gr.Image(label="Click a token", interactive=False, elem_id="probe-image")
    c.probe_note = gr.Markdown()
    c.probe_gallery = gr.Gallery(
        label="Its region in every frame", columns=4, height="auto", format="jpeg"
    )
    gr.Markdown(viz.CAPTIONS["highlight"])
    c.probe_plot = gr.Plot(label="Similarity to the clicked token")
    gr.Markdown(viz.CAPTIONS["probe"])


def _compare_tab(c: SimpleNamespace) -> None:
    gr.Markdown(COMPARE_HELP)
    c.methods = gr.CheckboxGroup(
        [(label, key) for key, label in METHOD_LABELS.items()],
        value=DEFAULT_METHODS,
        label="Methods",
        info="FastV needs a loaded model (LLM attention)",
    )
    c.compare_btn = gr.Button("Compare at this retention", elem_id="compare")
    c.compare_gallery = gr.Gallery(
        label="Same frame, each method",
        columns=3,
        height="auto",
        format="jpeg",
        elem_id="compare-gallery",
    )
    c.compare_table = gr.Dataframe(
        headers=["method", "tokens", "retention", "coverage", "redundancy", "seconds", "note"],
        label="Numbers",
        wrap=True,
    )
    c.curves_btn = gr.Button("Curves from 5 % to 100 % retention")
    c.curves_plot = gr.Plot(label="Metrics against retention")
    c.answers_btn = gr.Button("Compare answers (needs a model)")
    c.answers_note = gr.Markdown()
    c.answers_table = gr.Dataframe(
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


def _views(c: SimpleNamespace) -> None:
    """The right column: the numbers, the frame slider and the tabs."""
    c.numbers = gr.Markdown("Pick a video to start.", elem_id="numbers")
    c.frame = gr.Slider(
        0,
        DEFAULT_FRAMES - 1,
        0,
        step=1,
        label="Frame (for the graphs, the probe and the τ scrubber)",
    )
    with gr.Tabs():
        with gr.Tab("Regions"):
            with gr.Row():
                c.view = gr.Radio(list(VIEWS), value="Temporal step", label="Colour by")
                c.fill = gr.Checkbox(False, label="Fill regions with their mean colour")
            c.gallery = gr.Gallery(
                label="Frames and their regions",
                columns=4,
                height="auto",
                format="jpeg",
                elem_id="regions",
            )
            gr.Markdown(viz.CAPTIONS["overlay"] + " " + viz.CAPTIONS["mean_fill"])
        with gr.Tab("Answer"):
            c.answer_md = gr.Markdown("Compress a video, then ask.", elem_id="answer")
            c.ask = gr.Button("Answer")
        with gr.Tab("Similarity"):
            _similarity_tab(c)
        with gr.Tab("Probe"):
            _probe_tab(c)
        with gr.Tab("Teach"):
            c.scrub = gr.Plot(label="Regions growing as τ falls")
            gr.Markdown(viz.CAPTIONS["tau_scrub"] + " Press ▶ to play.")
        with gr.Tab("Compare"):
            _compare_tab(c)
        with gr.Tab("Export"):
            gr.Markdown(
                "The overlays as an animated GIF and an MP4 for slides, and "
                "the partition as JSON (spatial, temporal and merge labels)."
            )
            c.export_btn = gr.Button("Export")
            c.files = gr.File(label="Files", file_count="multiple")


def _frame_range(session):
    count = len(session.analysis.clip.frames) if session else DEFAULT_FRAMES
    return gr.update(maximum=max(count - 1, 1), value=0)


def _wire(c: SimpleNamespace, served: on.Served) -> None:
    """Every event: what runs, on which inputs, into which outputs, in which queue."""
    figures = [c.tau_graph, c.matrix, c.temporal, c.curve, c.per_frame]  # frame's, then video's
    frame_outputs = [c.tau_graph, c.matrix, c.probe_image, c.scrub]
    refresh = dict(
        fn=on.refresh,
        inputs=[c.state, c.retention, c.use_tau, c.tau, c.view, c.fill, c.frame],
        outputs=[c.state, c.numbers, c.gallery, c.tau],
        **LIGHT,
    )
    similarity = dict(fn=on.similarity_figures, inputs=[c.state, c.frame], outputs=figures, **LIGHT)
    answers = dict(
        fn=on.show_answers,
        inputs=[c.state, c.question, c.retention, c.use_tau, c.tau],
        outputs=[c.answer_md],
        **MODEL,
    )
    loaded = c.run.click(
        served.load, [c.video, c.frames, c.choice, c.ckpt, c.epsilon], [c.state, c.status], **HEAVY
    )
    loaded = loaded.success(_frame_range, [c.state], [c.frame], **LIGHT)
    loaded = loaded.success(**refresh).success(**similarity)
    loaded = loaded.success(on.frame_views, [c.state, c.frame, c.view], frame_outputs, **LIGHT)
    loaded.success(**answers)
    # Redraw on every change (keys too; while one redraw runs only the latest waits), the
    # graphs after it, and ask the model only when the slider is let go.
    c.retention.change(**refresh, trigger_mode="always_last").success(**similarity)
    c.retention.release(**answers)
    c.tau.release(**refresh).success(**similarity).success(**answers)
    c.use_tau.change(**refresh).success(**similarity)
    for colouring in (c.view, c.fill):
        colouring.change(on.recolour, [c.state, c.view, c.fill], [c.gallery], **LIGHT)
    c.frame.release(on.frame_views, [c.state, c.frame, c.view], frame_outputs, **LIGHT)
    c.probe_image.select(
        on.probe,
        [c.state, c.frame, c.view, c.fill],
        [c.probe_gallery, c.probe_plot, c.probe_note],
        **LIGHT,
    )
    c.ask.click(**answers)
    c.export_btn.click(on.export_files, [c.state, c.view, c.fill], [c.files], **LIGHT)
    c.compare_btn.click(
        on.compare,
        [c.state, c.methods, c.retention, c.frame, c.question],
        [c.compare_gallery, c.compare_table],
        **HEAVY,
    )
    c.curves_btn.click(on.curves, [c.state, c.methods, c.question], [c.curves_plot], **HEAVY)
    c.answers_btn.click(
        on.compare_answers,
        [c.state, c.methods, c.retention, c.question],
        [c.answers_table, c.answers_note],
        **MODEL,
    )
    c.choice.change(served.status, [c.choice, c.ckpt], [c.status], **LIGHT)
    c.poll.tick(served.poll_status, [c.choice, c.ckpt], [c.status, c.poll], **LIGHT)


def build_demo(backend: Backend | None = None, checkpoint: str | None = None) -> gr.Blocks:
    """The scissor-viz app. ``backend`` injects a ready backend (tests); otherwise the
    checkpoint (argument, $SCISSOR_VIZ_CHECKPOINT or the 0.5B default) loads lazily."""
    backends = Backends(backend, checkpoint)
    served = on.Served(backends)
    with gr.Blocks(
        title="scissor-viz: LLaVA-Scissor, visualised", delete_cache=(3600, 3600)
    ) as demo:
        c = SimpleNamespace(state=gr.State(None, time_to_live=SESSION_TTL))
        gr.Markdown(INTRO)
        c.status = gr.Markdown(served.default_status(), elem_id="backend-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                c.__dict__.update(vars(_controls(backends)))
            with gr.Column(scale=2):
                _views(c)
        c.poll = gr.Timer(2.0, active=backends.loading(MODEL_CHOICE, None))
        _wire(c, served)
        gr.api(
            served.compress_api, api_name="compress", concurrency_id="heavy", concurrency_limit=2
        )
        gr.api(served.answer_api, api_name="answer", concurrency_id="model", concurrency_limit=1)
        demo.load(served.default_status, None, [c.status], **PAGE)
    backends.start()
    demo.queue(max_size=64, default_concurrency_limit=2)
    return demo
