"""scissor-viz: the Gradio app (Hugging Face Spaces runs this file).

    python app.py [--checkpoint ID_OR_FOLDER] [--allow-any-checkpoint] [--host H] [--port P]

The host and port default to Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (else
127.0.0.1:7860); the checkpoint to $SCISSOR_VIZ_CHECKPOINT (else the LLaVA-OneVision 0.5B one).
The page is served at once; the model loads in the background.
"""

import argparse
import os
import signal
import sys

# A server's threads share few cores: OpenMP threads that sleep instead of spinning while they
# wait keep one visitor's small redraws from slowing down behind another's work (measured 2-4x on
# a busy 2-core machine). Set before torch is imported; the environment can override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from scissor_viz.ui import build_demo


def main() -> None:
    parser = argparse.ArgumentParser(description="scissor-viz: LLaVA-Scissor, visualised")
    parser.add_argument("--checkpoint", help="LLaVA-OneVision hub id or local folder")
    parser.add_argument(
        "--allow-any-checkpoint",
        action="store_true",
        default=None,
        help="let visitors load other checkpoints too (never with remote code)",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args()
    demo = build_demo(checkpoint=args.checkpoint, allow_any_checkpoint=args.allow_any_checkpoint)
    # Stopped by SIGTERM (a supervisor, Spaces): exit cleanly so the exit hooks delete exports.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
else:  # `gradio app.py` (reload mode) imports this module and looks for `demo`
    demo = build_demo()
