"""The page: components laid out, and their events wired to the handlers. No handler bodies.

One screen answers the three questions at once: the frames with their regions (large), the
selected frame's similarity graph beside them, and the answer panel under it. Deeper views
(the whole similarity structure, the probe, the τ scrubber, the comparison, export) are tabs.
"""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import gradio as gr

from scissor_viz.models import Backend
from scissor_viz.pictures import figures, regions, scrub
from scissor_viz.ui import checks, fairness, memory
from scissor_viz.ui import handlers as on
from scissor_viz.ui.backends import MODEL_CHOICE, PIXEL_CHOICE, Backends, public_name
from scissor_viz.ui.views import (
    BANNERS,
    DEFAULT_METHODS,
    DEFAULT_QUESTION,
    DEFAULT_RETENTION,
    DEFAULT_VIEW,
    METHOD_LABELS,
    READING_GUIDE,
    VIEWS,
)
from scissor_viz.video import DEFAULT_FRAMES, MAX_FRAMES, example_videos

SESSION_TTL = 600  # seconds a session's video stays in memory after its last change
PLAY_SECONDS = 0.7  # the τ scrubber's pace when playing
# The queue's concurrency groups, so light work never waits behind heavy work: redraws; the
# O(tokens²) figures (Similarity tab, probe); decoding and encoding a video (the page's load and
# both API calls: the model's own lock serialises its use, so a long decode never holds the
# answer slot); the comparison and exports; the page's answers. Each is wider than what one
# client may hold in it (fairness.PER_CLIENT), so one client never takes every slot.
PAGE = dict(api_visibility="undocumented")  # the page's events; the documented API is gr.api
LIGHT = dict(concurrency_id="light", concurrency_limit=16, **PAGE)
FIGURES = dict(concurrency_id="figures", concurrency_limit=6, **PAGE)
DECODE = dict(concurrency_id="decode", concurrency_limit=3)  # the API's too
HEAVY = dict(concurrency_id="heavy", concurrency_limit=2, **PAGE)
MODEL = dict(concurrency_id="model", concurrency_limit=1, **PAGE)
# A click on a frame of the grid is a select event with that frame's index.
MARK_FRAME = """(frame) => {
  document.querySelectorAll('#regions figure[data-frame]').forEach(
    (f) => f.classList.toggle('selected', Number(f.dataset.frame) === Number(frame)));
  return frame;
}"""
PICK_FRAME = """element.addEventListener('click', (e) => {
  const figure = e.target.closest('figure[data-frame]');
  if (figure) trigger('select', {index: Number(figure.dataset.frame), value: null});
});"""
LIVE = dict(show_progress="hidden", trigger_mode="always_last", **LIGHT)  # keep pictures up
# The page's time, put in place of a request's last input (the hidden ``clock``): the server
# applies the slider's requests in the order the page sent them.
CLOCKED = "(...inputs) => [...inputs.slice(0, -1), performance.now()]"
# The arrow keys (and Enter in the number box) let go of the Retention slider as the mouse
# does: a key lifted is the slider's release (the frame's τ-graph and the open tab follow).
KEYS_RELEASE = """() => {
  const keys = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp',
    'PageDown', 'Enter'];
  document.addEventListener('keyup', (e) => {
    const input = e.target;
    if (input instanceof HTMLInputElement && input.closest('#retention') && keys.includes(e.key))
      input.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
  });
}"""
INTRO = (
    "## ✂️ scissor-viz — see LLaVA-Scissor compress a video\n"
    "Tokens more similar than **τ** join into *semantic connected components*, first inside "
    "each frame, then across frames; each component becomes one token. Move **Retention**."
)
CSS = """
#regions .frames-grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr));
  gap: 6px; }
#regions figure { margin: 0; cursor: pointer; }
#regions figure img { width: 100%; height: auto; display: block; border-radius: 4px; }
#regions figcaption { font-size: 11px; line-height: 1.3; text-align: center;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.frames .thumbnail-item { aspect-ratio: auto; height: auto; display: flex;
  flex-direction: column; }
.frames .thumbnail-item img { object-fit: contain !important; height: auto; }
.frames .caption-label { position: static; max-width: 100%; border: none; opacity: 0.85;
  white-space: nowrap; text-overflow: clip; font-size: 12px; padding: 1px 4px; }
#numbers { min-height: 2.5em; }
#regions figure.selected img { outline: 3px solid #ff7a00; outline-offset: -3px; }
#regions figure.selected figcaption { font-weight: 600; color: #ff7a00; }
#large-frame figure { margin: 0; }
#large-frame img { width: 100%; height: auto; display: block; border-radius: 4px; }
#large-frame figcaption { font-size: 13px; text-align: center; }
.drawn-for { font-size: 13px; }
#drawn-graph { min-height: 1.6em; }
.drawn-for p:has(strong) { background: #fff3cd; color: #664d03; padding: 2px 6px;
  border-radius: 4px; }
#pending p, #numbers p:has(> strong:first-child) { color: inherit; }
#pending p { background: #fff3cd; color: #664d03; padding: 2px 6px; border-radius: 4px; }
button:disabled, button[disabled] { opacity: 0.45; filter: grayscale(1); cursor: not-allowed; }
"""
COMPARE_HELP = (
    "The methods LLaVA-Scissor is measured against, at the same retention, on the chosen "
    "frame. Each region is painted with the mean colour of the original tokens its output "
    "token stands for. **Coverage**: how close every original token is to its nearest kept "
    "token (1 = fully represented). **Redundancy**: how much the kept tokens repeat each "
    "other (lower is better)."
)


def _controls(c: SimpleNamespace, backends: Backends) -> None:
    """The left column: the video, its examples and every knob."""
    c.video = gr.Video(label="Video", sources=["upload"], elem_id="video", height=220)
    examples = [[str(p)] for p in example_videos()]
    c.example_picked = None  # the event that puts a clicked example in the player
    if examples:
        picker = gr.Examples(examples, inputs=[c.video], label="Examples (click one)")
        c.example_picked = picker.load_input_event
    c.retention = gr.Slider(
        0.01,
        1.0,
        DEFAULT_RETENTION,
        step=0.01,
        label="Retention",
        info="share of the visual tokens kept",
        elem_id="retention",
    )
    c.run = gr.Button("Compress", variant="primary", elem_id="run")
    c.frames = gr.Slider(1, MAX_FRAMES, DEFAULT_FRAMES, step=1, label="Frames", elem_id="frames")
    c.pending = gr.Markdown("", elem_id="pending")  # frames or features Compress would apply
    c.question = gr.Textbox(DEFAULT_QUESTION, label="Question", lines=2, elem_id="question")
    with gr.Accordion("Advanced", open=False):
        c.use_tau = gr.Checkbox(False, label="Set τ directly (ignore Retention)", elem_id="use-tau")
        c.tau = gr.Number(
            0.9,
            minimum=-1,
            maximum=1,
            step=0.001,
            label="τ (similarity threshold): type one and press Enter",
            elem_id="tau",
        )
        c.epsilon = gr.Number(
            0.05,
            minimum=0,
            maximum=0.99,
            label="ε (error bound of the sampled components, used above 16,384 tokens)",
        )
        c.choice = gr.Radio(
            [(f"Model: {public_name(backends.checkpoint)}", MODEL_CHOICE)]
            + [(PIXEL_CHOICE, PIXEL_CHOICE)],
            value=MODEL_CHOICE,
            label="Features",
            info="without weights the model falls back to pixel descriptors",
        )
        c.ckpt = gr.Textbox(  # free-form checkpoints only where the operator allows them
            "",
            label="Another checkpoint (hub id or local folder)",
            placeholder=public_name(backends.checkpoint),
            visible=backends.allow_any,
        )


def _main_view(c: SimpleNamespace) -> None:
    """Regions (large), the frame's graph and the answer panel, side by side."""
    c.numbers = gr.Markdown("Pick a video to start: click the example.", elem_id="numbers")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                c.view = gr.Radio(list(VIEWS), value=DEFAULT_VIEW, label="Show", scale=3)
                c.fill = gr.Checkbox(False, label="Fill with mean colour", scale=1)
            c.large = gr.HTML("", label="The selected frame", elem_id="large-frame")
            c.regions = gr.HTML(
                "",
                label="Frames and their regions",
                elem_id="regions",
                js_on_load=PICK_FRAME,
                min_height=100,
            )
            c.view_caption = gr.Markdown(regions.CAPTIONS["temporal"], elem_id="view-caption")
        with gr.Column(scale=2):
            c.frame = gr.Slider(0, DEFAULT_FRAMES - 1, 0, step=1, label="Frame", elem_id="frame")
            c.tau_graph = gr.Plot(label="τ-graph of the frame", elem_id="tau-graph")
            c.drawn_graph = gr.Markdown("", elem_id="drawn-graph", elem_classes="drawn-for")
            gr.Markdown(figures.CAPTIONS["tau_graph"])
            c.answer_md = gr.Markdown("Answers appear here.", elem_id="answer")
            c.ask = gr.Button("Ask again", interactive=False, elem_id="ask")


def _drawn_for(c: SimpleNamespace, tab: str) -> None:
    """The tab's line saying which video and setting its views were drawn for."""
    name = BANNERS[tab]
    setattr(c, name, gr.Markdown("", elem_id=name.replace("_", "-"), elem_classes="drawn-for"))


def _similarity_tab(c: SimpleNamespace) -> None:
    _drawn_for(c, "Similarity")
    for name, label, caption in (
        ("matrix", "Similarity matrix", "similarity_matrix"),
        ("temporal", "Temporal graph", "temporal_graph"),
        ("curve", "Retention vs τ", "retention"),
        ("per_frame", "Tokens per frame", "tokens_per_frame"),
    ):
        setattr(c, name, gr.Plot(label=label))
        gr.Markdown(figures.CAPTIONS[caption])


def _probe_tab(c: SimpleNamespace) -> None:
    _drawn_for(c, "Probe")
    gr.Markdown(
        "Click a token on the frame: its region lights up in every "
        "frame, and its similarity to every token is shown below."
    )
    c.probe_image = gr.Image(label="Click a token", interactive=False, elem_id="probe-image")
    c.probe_note = gr.Markdown(elem_id="probe-note")
    c.probe_gallery = gr.Gallery(
        label="Its region in every frame",
        elem_id="probe-gallery",
        elem_classes="frames",
        columns=4,
        height="auto",
        format="jpeg",
        object_fit="contain",
        allow_preview=False,
    )
    gr.Markdown(regions.CAPTIONS["highlight"])
    c.probe_plot = gr.Plot(label="Similarity to the clicked token")
    gr.Markdown(figures.CAPTIONS["probe"])


def _teach_tab(c: SimpleNamespace) -> None:
    _drawn_for(c, "Teach")
    gr.Markdown(scrub.CAPTION)
    with gr.Row():
        c.play = gr.Button("▶ Play", interactive=False, elem_id="play", scale=1)
        c.step = gr.Slider(1, 2, 1, step=1, label="Step (τ falls →)", elem_id="step", scale=4)
    c.scrub_image = gr.Image(label="The frame at this τ", interactive=False, elem_id="scrub")
    c.scrub_note = gr.Markdown(elem_id="scrub-note")
    c.playing = gr.State(False)
    c.player = gr.Timer(PLAY_SECONDS, active=False)


def _compare_tab(c: SimpleNamespace) -> None:
    _drawn_for(c, "Compare")
    gr.Markdown(COMPARE_HELP)
    c.methods = gr.CheckboxGroup(
        [(label, key) for key, label in METHOD_LABELS.items()],
        value=DEFAULT_METHODS,
        label="Methods",
        info="FastV needs a loaded model (LLM attention)",
    )
    with gr.Row():
        c.compare_btn = gr.Button("Compare at this setting", interactive=False, elem_id="compare")
        c.curves_btn = gr.Button("Curves, 5–100 %", interactive=False, elem_id="curves")
        c.answers_btn = gr.Button("Compare answers", interactive=False, elem_id="answers-btn")
    c.answers_why = gr.Markdown(elem_id="answers-why")
    c.compare_gallery = gr.Gallery(
        label="Same frame, each method",
        columns=3,
        height="auto",
        format="jpeg",
        object_fit="contain",
        allow_preview=False,
        elem_id="compare-gallery",
        elem_classes="frames",
    )
    c.compare_table = gr.Dataframe(
        headers=[
            "method",
            "tokens",
            "retention reached",
            "coverage",
            "redundancy",
            "seconds",
            "note",
        ],  # fmt: skip
        label="Numbers",
        wrap=True,
        column_widths=["22%", "8%", "13%", "11%", "12%", "10%", "24%"],
    )
    c.curves_plot = gr.Plot(label="Metrics against retention", elem_id="curves-plot")
    c.answers_note = gr.Markdown()
    c.answers_table = gr.Dataframe(
        headers=["method", "tokens", "exact", "F1", "KL", "prefill s", "answer"],
        label="Answers against the full-token answer",
        wrap=True,
        column_widths=["20%", "9%", "8%", "7%", "7%", "11%", "38%"],
    )


def _tabs(c: SimpleNamespace) -> None:
    with gr.Tabs() as c.tabs:  # the first tab is light: the others draw when opened
        with gr.Tab("How to read it"):
            gr.Markdown(READING_GUIDE)
        with gr.Tab("Similarity"):
            _similarity_tab(c)
        with gr.Tab("Probe"):
            _probe_tab(c)
        with gr.Tab("Teach"):
            _teach_tab(c)
        with gr.Tab("Compare"):
            _compare_tab(c)
        with gr.Tab("Export"):
            gr.Markdown(
                "The overlays as an animated GIF and an MP4 for slides, and "
                "the partition as JSON (spatial, temporal and merge labels)."
            )
            _drawn_for(c, "Export")
            c.export_btn = gr.Button("Export", interactive=False, elem_id="export")
            c.files = gr.File(label="Files", file_count="multiple", elem_id="files")


def wire(c: SimpleNamespace, listener, fn, inputs=(), **options):
    """``listener(fn)`` with ``inputs`` (names of the page's components, in ``fn``'s argument
    order) and the outputs ``fn`` declares by name (``handlers.outputs``); ``fn`` returns a
    dict of some of them by name. Returns the event, to chain the next one on."""
    named = {name: getattr(c, name) for name in getattr(fn, "outputs", ())}

    def components(out):
        if isinstance(out, dict) and "__type__" not in out:  # not gr.skip()
            if not out:  # nothing to change (Gradio reads an empty dict as one value)
                return gr.skip()
            return {named[name]: value for name, value in out.items()}
        return out

    @functools.wraps(fn)
    def by_name(*args, **kwargs):
        return components(fn(*args, **kwargs))

    @functools.wraps(fn)
    def each_by_name(*args, **kwargs):  # a generator: each of its updates, by name
        for out in fn(*args, **kwargs):
            yield components(out)

    wrapped = each_by_name if inspect.isgeneratorfunction(fn) else by_name
    return listener(wrapped, [getattr(c, name) for name in inputs], list(named.values()), **options)


def _wire_compression(c: SimpleNamespace, served: on.Served) -> None:
    """Compress (on upload, on an example, on the button), then every live redraw.

    A change of setting redraws the main screen (which marks the frame's τ-graph and every
    tab's views out of date), then the τ-graph, the open tab and the answer for that setting;
    these skip themselves when a newer setting has come in the meantime, so the last one is
    drawn, once. The Retention slider redraws the main screen at every step and the rest
    when it is let go (mouse released, key lifted): its release redraws the main screen and
    the τ-graph at once, without waiting for the step in flight."""
    graph = dict(fn=on.tau_graph, inputs=["state", "frame", "stamp"], **LIVE)
    tab = dict(
        fn=on.tab_views,
        inputs=["state", "frame", "view", "open_tab", "stamp"],
        show_progress="hidden",
        trigger_mode="always_last",
        **FIGURES,
    )
    answers = dict(
        fn=on.show_answers,
        inputs=["state", "question", "stamp"],
        show_progress_on=[c.answer_md],
        **MODEL,
    )
    at_retention = dict(fn=on.refresh, inputs=["state", "retention", "view", "fill"], **LIVE)
    clocked = ["state", "retention", "view", "fill"]  # and the page's time (CLOCKED)

    def then_views(event):
        """After a new setting: the frame's graph, the open tab, the answer."""
        event = wire(c, event.success, **graph)
        wire(c, wire(c, event.success, **tab).success, **answers)

    # A model still to encode the frames: pixel regions on its grid first (the load yields
    # them), then its session, drawn by the events after the load; the bar on the status line.
    # A video is compressed when it is picked (uploaded, or an example put in the player), not
    # on every change of the player: a cleared player starts nothing (its chain would redraw
    # the old video over the next file's load or refusal).
    loading = ["video", "frames", "choice", "ckpt", "epsilon", "retention", "view", "fill"]
    starts = [c.run.click, c.video.upload] + ([c.example_picked.then] if c.example_picked else [])
    for trigger in starts:
        options = dict(show_progress_on=[c.status], **DECODE, **PAGE)
        loaded = wire(c, trigger, served.load, loading, **options)
        wire(c, loaded.failure, served.load_failed, **LIGHT)
        loaded = wire(c, loaded.success, on.after_load, ["state"], **LIGHT)
        then_views(wire(c, loaded.success, **at_retention))
    # While the slider moves (mouse or keys): the regions, the numbers and the answer panel's
    # hint at every step (one request in flight, then the latest value: always_last); once
    # it rests, the main screen and the frame's graph for its value at once, then the open
    # tab and the answer.
    step = dict(LIVE, fn=on.refresh, inputs=[*clocked, "clock"], js=CLOCKED)
    wire(c, c.retention.change, **step)
    rest = dict(LIVE, fn=on.rest, inputs=[*clocked, "frame", "clock"], js=CLOCKED)
    rested = wire(c, c.retention.release, **rest)
    wire(c, rested.success, **tab)
    wire(c, rested.success, **answers)
    by_tau = (
        (c.tau.submit, on.apply_tau, ["state", "tau", "view", "fill"]),
        (c.use_tau.input, on.refresh_tau, ["state", "tau", "use_tau", "retention", "view", "fill"]),
    )
    for trigger, fn, inputs in by_tau:
        then_views(wire(c, trigger, fn, inputs, **LIVE))
    for colouring in (c.view, c.fill):
        wire(c, colouring.change, on.recolour, ["state", "view", "fill"], **LIVE)
    wire(c, c.regions.select, on.pick_frame, **LIGHT)
    c.frame.change(None, [c.frame], None, js=MARK_FRAME)  # the grid marks it at once
    picked = wire(c, c.frame.change, on.select_frame, ["state", "frame"], **LIVE)
    wire(c, picked.success, **tab)
    wire(c, wire(c, c.tabs.select, on.open_tab, **LIGHT).success, **tab)
    wire(c, c.ask.click, **answers)
    for knob in (c.frames, c.choice):
        wire(c, knob.change, on.pending, ["state", "frames", "choice"], **LIGHT)


def _wire_tabs(c: SimpleNamespace) -> None:
    """The deeper views: probe, τ scrubber, comparison, export."""
    wire(c, c.probe_image.select, on.probe, ["state", "frame", "view", "fill"], **FIGURES)
    wire(c, c.step.input, on.scrub_to, ["state", "frame", "step"], **LIVE)
    wire(c, c.play.click, on.toggle_play, ["playing"], **LIGHT)
    wire(c, c.player.tick, on.scrub_next, ["state", "frame", "step"], **LIVE)
    heavy = (
        (c.compare_btn, on.compare, ["state", "methods", "frame", "question"]),
        (c.curves_btn, on.curves, ["state", "methods", "question"]),
        (c.export_btn, on.export_files, ["state", "view", "fill"]),
    )
    quiet = dict(LIGHT, show_progress="hidden")
    for button, fn, inputs in heavy:  # one at a time: the others' buttons wait for it
        started = wire(c, button.click, on.heavy_started, **quiet)
        ran = wire(c, started.then, fn, inputs, **HEAVY)
        wire(c, ran.then, on.heavy_done, ["state"], **quiet)
    wire(c, c.answers_btn.click, on.compare_answers, ["state", "methods", "question"], **MODEL)


class Page(gr.Blocks):
    """The app's Blocks: ``launch`` brings the page's stylesheet, its script (KEYS_RELEASE) and
    the upload limit, whoever launches it (``python app.py``, ``gradio app.py``, Spaces, the
    tests)."""

    def launch(self, **kwargs):
        defaults = (("css", CSS), ("js", KEYS_RELEASE), ("max_file_size", checks.MAX_UPLOAD_BYTES))
        for key, value in defaults:
            if kwargs.get(key) is None:
                kwargs[key] = value
        return super().launch(**kwargs)

    async def process_api(self, *args, **kwargs):
        try:
            return await super().process_api(*args, **kwargs)
        except gr.Error as err:  # Gradio's own checks repeat the whole value they refused
            err.message = checks.brief(str(err.message))
            raise


def build_demo(
    backend: Backend | None = None,
    checkpoint: str | None = None,
    allow_any_checkpoint: bool | None = None,
) -> gr.Blocks:
    """The scissor-viz app. ``backend`` injects a ready backend (tests); otherwise the
    checkpoint (argument, $SCISSOR_VIZ_CHECKPOINT or the 0.5B default) loads in the background.
    Other checkpoints load only with ``allow_any_checkpoint`` (or
    $SCISSOR_VIZ_ALLOW_ANY_CHECKPOINT=1)."""
    backends = Backends(backend, checkpoint, allow_any_checkpoint)
    served = on.Served(backends)
    with Page(title="scissor-viz: LLaVA-Scissor, visualised", delete_cache=(3600, 3600)) as demo:
        c = SimpleNamespace(
            state=gr.State(None, time_to_live=SESSION_TTL, delete_callback=on.release_session),
            # the open tab's label: a hidden box, not a State, so API clients can name it too
            open_tab=gr.Textbox("", visible=False, elem_id="open-tab"),
            # the setting the page shows (a hidden box: a chained redraw reads the value the
            # page had when it was asked for, and skips itself when a newer one came)
            stamp=gr.Number(None, visible=False, elem_id="stamp"),
            clock=gr.Number(None, visible=False, elem_id="clock"),  # the page's time (CLOCKED)
        )
        gr.Markdown(INTRO)
        c.status = gr.Markdown(served.default_status(), elem_id="backend-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                _controls(c, backends)
            with gr.Column(scale=4):
                _main_view(c)
                _tabs(c)
        c.poll = gr.Timer(2.0, active=backends.loading(MODEL_CHOICE, None))
        _wire_compression(c, served)
        _wire_tabs(c)
        c.choice.change(served.status, [c.choice, c.ckpt], [c.status], **LIGHT)  # one output
        c.poll.tick(served.poll_status, [c.choice, c.ckpt], [c.status, c.poll], **LIGHT)
        gr.api(served.compress_api, api_name="compress", **DECODE)
        gr.api(served.answer_api, api_name="answer", **DECODE)
        demo.load(served.default_status, None, [c.status], **PAGE)
        memory.release_closed_pages(demo, SESSION_TTL)
    demo.backends = backends  # what the server holds (operators, tests)
    backends.start()
    demo.queue(default_concurrency_limit=2)
    fairness.guard_queue(demo)  # caps per session, per client, and for heavy work together
    return demo
