"""scissor-viz: see how LLaVA-Scissor's Semantic Connected Components compress video tokens."""

from scissor_viz.patch import apply_patch, remove_patch
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
    "apply_patch",
    "remove_patch",
    "scissor_compress",
    "semantic_components",
    "tau_for_retention",
]
__version__ = "0.1.0"
