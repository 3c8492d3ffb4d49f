"""scissor-viz: see how LLaVA-Scissor's Semantic Connected Components compress video tokens."""

from scissor_viz.scc import (
    Compression,
    ScissorIndex,
    scissor_compress,
    semantic_components,
    tau_for_retention,
)

__all__ = [
    "Compression",
    "ScissorIndex",
    "scissor_compress",
    "semantic_components",
    "tau_for_retention",
]
__version__ = "0.1.0"
