"""The Gradio app: ``build_demo()`` lays out the page and wires its events to the handlers.

    demo = build_demo()            # or build_demo(backend=...) to inject a backend (tests)
    demo.launch()                  # with the page's stylesheet and upload limit

Rooms: ``backends`` (which feature backend serves a request), ``views`` (what the page shows,
built from a session: markdown, galleries, figures), ``handlers`` (one function per event, each
turning a person's errors into readable messages), ``layout`` (components and wiring only).
"""

from scissor_viz.ui.backends import MODEL_CHOICE, PIXEL_CHOICE, Backends
from scissor_viz.ui.layout import build_demo
from scissor_viz.ui.views import Session

__all__ = ["MODEL_CHOICE", "PIXEL_CHOICE", "Backends", "Session", "build_demo"]
