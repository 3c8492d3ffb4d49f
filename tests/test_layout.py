"""The package's dependency direction: which module may import which.

    ui -> (analysis, pictures, export, numbers); sweep -> (analysis, figures);
    analysis -> (video, models, scc, methods, metrics, grid); models -> (patch, progress, grid);
    patch -> scc; pictures -> (scc, grid, numbers); methods -> scc; metrics -> scc;
    scc -> (torch, scipy); grid and numbers import nothing of the package

(the pictures: overlay, regions, figures, graphs, scrub, export; grid is the token grid's
geometry, which the models own and the pictures draw)

Read statically from every import statement (function-level ones too), and checked at run time
for the heavy third-party packages a light module must never pull in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scissor_viz"

PICTURES = {
    f"scissor_viz.{name}"
    for name in ("overlay", "regions", "figures", "graphs", "scrub", "export")
}
# what each layer may import from the package (a prefix allows its submodules)
ALLOWED = {
    "scissor_viz.scc": set(),
    "scissor_viz.numbers": set(),
    "scissor_viz.grid": set(),
    "scissor_viz.progress": set(),
    "scissor_viz.video": set(),
    "scissor_viz.synthetic": set(),
    "scissor_viz.metrics": {"scissor_viz.scc"},
    "scissor_viz.methods": {"scissor_viz.scc"},
    "scissor_viz.patch": {"scissor_viz.patch", "scissor_viz.scc"},
    "scissor_viz.models": {
        "scissor_viz.models",
        "scissor_viz.patch",
        "scissor_viz.progress",
        "scissor_viz.grid",
    },
    "scissor_viz.analysis": {
        "scissor_viz.video",
        "scissor_viz.models",
        "scissor_viz.scc",
        "scissor_viz.methods",
        "scissor_viz.metrics",
        "scissor_viz.progress",
        "scissor_viz.grid",
    },
    **{
        picture: PICTURES | {"scissor_viz.scc", "scissor_viz.grid", "scissor_viz.numbers"}
        for picture in PICTURES
    },
    "scissor_viz.ui": {
        "scissor_viz.ui",
        "scissor_viz.grid",
        "scissor_viz.analysis",
        "scissor_viz.methods",
        "scissor_viz.models",
        "scissor_viz.numbers",
        "scissor_viz.scc",
        "scissor_viz.video",
        *PICTURES,
    },
}

# third-party packages a module must not load, directly or through anything it imports
NEVER = {
    "scissor_viz.scc": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.methods": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.metrics": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.analysis": ("gradio", "plotly", "decord"),
    "scissor_viz.models": ("gradio", "plotly", "decord"),
    "scissor_viz.patch": ("gradio", "plotly", "decord"),
    **{picture: ("gradio", "transformers", "decord") for picture in PICTURES},
    "scissor_viz.grid": ("gradio", "transformers", "plotly", "decord"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """Every scissor_viz module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "scissor_viz":  # from scissor_viz import scc, viz
                found |= {f"scissor_viz.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("scissor_viz.")}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_below_it(layer):
    for name, path in MODULES.items():
        if not under(name, layer):
            continue
        for target in package_imports(path):
            assert any(under(target, ok) for ok in ALLOWED[layer]), f"{name} imports {target}"


def test_only_the_command_line_imports_the_sweep():
    importers = {
        name
        for name, path in MODULES.items()
        if any(under(t, "scissor_viz.sweep") for t in package_imports(path))
    }
    assert importers <= {"scissor_viz.__main__"}, importers


@pytest.mark.parametrize("module", sorted(NEVER))
def test_light_modules_do_not_load_heavy_packages(module):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = {name.split(".")[0] for name in loaded} & set(NEVER[module])
    assert not heavy, f"importing {module} loads {sorted(heavy)}"
