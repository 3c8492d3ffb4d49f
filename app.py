"""scissor-viz: a placeholder until the app lands (see README)."""

import gradio as gr

with gr.Blocks(title="scissor-viz") as demo:
    gr.Markdown("# scissor-viz\nThe engine is ready (`scissor_viz.scc`); the app is being built.")

if __name__ == "__main__":
    demo.launch()
