"""The package's structure: which module may import which, as the README's dependency picture
states it (``ALLOWED`` below, and the README must say the same); the heavy third-party
packages a light module must never pull in; one copy of each engine helper (scc's); pictures
that re-export nothing and keep their functions short.

Read statically from every import statement (function-level ones too); the heavy packages are
also checked at run time, in a child interpreter (slow).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scissor_viz"

PICTURES = {
    f"scissor_viz.pictures.{name}" for name in ("overlay", "regions", "figures", "graphs", "scrub")
}
# what each layer may import from the package (a prefix allows its submodules; a module under
# two layers, like pictures.grid, keeps the rules of both)
ALLOWED = {
    "scissor_viz.scc": {"scissor_viz.pairs"},
    "scissor_viz.pairs": set(),
    "scissor_viz.numbers": set(),
    "scissor_viz.pictures.grid": set(),
    "scissor_viz.progress": set(),
    "scissor_viz.video": {"scissor_viz.video"},
    "scissor_viz.video.worker": set(),  # the child process loads it by path, without the package
    "scissor_viz.synthetic": set(),
    "scissor_viz.metrics": {"scissor_viz.scc"},
    "scissor_viz.methods": {"scissor_viz.scc"},
    "scissor_viz.patch": {"scissor_viz.patch", "scissor_viz.scc"},
    "scissor_viz.models": {
        "scissor_viz.models",
        "scissor_viz.patch",
        "scissor_viz.progress",
        "scissor_viz.pictures.grid",
    },
    "scissor_viz.analysis": {
        "scissor_viz.video",
        "scissor_viz.models",
        "scissor_viz.scc",
        "scissor_viz.methods",
        "scissor_viz.metrics",
        "scissor_viz.progress",
        "scissor_viz.pictures.grid",
        "scissor_viz.numbers",
    },
    "scissor_viz.pictures": {"scissor_viz.pictures", "scissor_viz.scc", "scissor_viz.numbers"},
    "scissor_viz.export": set(),
    "scissor_viz.sweep": {
        "scissor_viz.analysis",
        "scissor_viz.pictures.figures",
        "scissor_viz.methods",
        "scissor_viz.models",
        "scissor_viz.scc",
        "scissor_viz.video",
    },
    "scissor_viz.__main__": {"scissor_viz.methods", "scissor_viz.sweep", "scissor_viz.video"},
    "scissor_viz.ui": {
        "scissor_viz.ui",
        "scissor_viz.pictures",
        "scissor_viz.export",
        "scissor_viz.analysis",
        "scissor_viz.methods",
        "scissor_viz.models",
        "scissor_viz.numbers",
        "scissor_viz.scc",
        "scissor_viz.video",
    },
}

# third-party packages a module must not load, directly or through anything it imports
NEVER = {
    "scissor_viz.scc": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.pairs": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.methods": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.metrics": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.analysis": ("gradio", "plotly", "decord"),
    "scissor_viz.models": ("gradio", "plotly", "decord"),
    "scissor_viz.patch": ("gradio", "plotly", "decord"),
    **{picture: ("gradio", "transformers", "decord") for picture in PICTURES},
    "scissor_viz.export": ("gradio", "transformers", "plotly", "decord"),
    "scissor_viz.pictures.grid": ("gradio", "transformers", "plotly", "decord"),
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
            for alias in node.names:  # from scissor_viz.pictures import figures: the module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
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


@pytest.mark.slow  # a child interpreter
def test_the_video_worker_runs_without_the_package():
    """The child side of video reading loads by path where the package cannot be imported, and
    pulls in no torch (the parent starts it this way: clips._BOOT)."""
    code = (
        "import sys, importlib.util as u\n"
        "sys.modules['scissor_viz'] = None  # any import of the package now fails\n"
        "s = u.spec_from_file_location('worker', sys.argv[1]); m = u.module_from_spec(s)\n"
        "s.loader.exec_module(m)\n"
        "print(callable(m.main), 'torch' in sys.modules)\n"
    )
    worker = PACKAGE / "video" / "worker.py"
    ran = subprocess.run(
        [sys.executable, "-c", code, str(worker)], capture_output=True, text=True, check=True
    )
    assert ran.stdout.split() == ["True", "False"], ran.stderr


def readme_rules() -> dict[str, set[str]]:
    """The README's dependency picture (the code block after "Dependencies point one way"), one
    line ``layer[, layer] → module, …`` a rule, as full module names ("nothing" for none; a
    layer's own name among its targets: its modules import each other)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Dependencies point one way.*?```\n(.*?)```", readme, re.DOTALL)
    assert block, "README: no dependency picture"

    def names(text: str) -> set[str]:
        words = {w.strip() for w in re.sub(r"\(.*?\)", "", text).split(",") if w.strip()}
        return {f"scissor_viz.{w}" for w in words if w != "nothing"}

    rules = {}
    for line in block.group(1).splitlines():
        if "→" in line:
            layers, targets = line.split("→")
            for layer in names(layers):
                rules[layer] = names(targets) - {layer}
    return rules


def test_the_readme_states_these_rules():
    stated = readme_rules()
    assert set(stated) == set(ALLOWED)
    for layer, allowed in ALLOWED.items():
        assert stated[layer] == allowed - {layer}, layer


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module's source imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {m.split(".")[0] for m in names}


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_light_modules_never_import_heavy_packages(layer):
    for name, path in MODULES.items():
        if under(name, layer):
            assert not imported_packages(path) & set(NEVER[layer]), name


@pytest.mark.slow  # a child interpreter per module
@pytest.mark.parametrize("module", sorted(NEVER))
def test_light_modules_do_not_load_heavy_packages(module):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = {name.split(".")[0] for name in loaded} & set(NEVER[module])
    assert not heavy, f"importing {module} loads {sorted(heavy)}"


# ----------------------------------------------------------------------------- one copy of each


def called(node: ast.AST) -> str:
    """The last name of what is called: ``torch.cumsum`` -> cumsum, ``x.norm`` -> norm."""
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def engine_helper_copies(source: str) -> list[str]:
    """What in ``source`` recomputes a helper only the engine (scc.py) may define: unit rows
    (``normalize``, a division by a ``norm``), connected components (scipy's csgraph,
    networkx) or ids numbered across frames (an exclusive prefix sum, ``cumsum(c) - c``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and called(node.func) == "normalize":
            found.append("unit rows")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            calls = [n for n in ast.walk(node.right) if isinstance(n, ast.Call)]
            if any(called(n.func) == "norm" for n in calls):
                found.append("unit rows")
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.Attribute)):
            if re.search(r"csgraph|connected_components|networkx", ast.unparse(node)):
                found.append("components")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Sub)
            and isinstance(node.left, ast.Call)
            and called(node.left.func) == "cumsum"
        ):
            summed = [*node.left.args[:1], getattr(node.left.func, "value", None)]
            if ast.unparse(node.right) in {ast.unparse(a) for a in summed if a is not None}:
                found.append("ids across frames")
    return found


@pytest.mark.parametrize(
    "source, copy",
    [
        ("y = torch.nn.functional.normalize(x, dim=-1)", "unit rows"),
        ("y = x / np.linalg.norm(x, axis=1, keepdims=True)", "unit rows"),
        ("y = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)", "unit rows"),
        ("from scipy.sparse.csgraph import connected_components", "components"),
        ("n, labels = scipy.sparse.csgraph.connected_components(graph)", "components"),
        ("offsets = torch.cumsum(counts, 0) - counts", "ids across frames"),
        ("offsets = counts.cumsum(0) - counts", "ids across frames"),
    ],
)
def test_the_copy_finder_finds_copies(source, copy):
    assert copy in engine_helper_copies(source)


def test_the_copy_finder_leaves_other_uses_alone():
    source = "rank = torch.cumsum(keep, 0) - 1\nscore = x.float().norm(dim=-1)\ny = x / n"
    assert engine_helper_copies(source) == []


def test_one_copy_of_each_engine_helper():
    """Row normalisation, connected components and ids numbered across frames: scc's only."""
    for name, path in MODULES.items():
        if name != "scissor_viz.scc":
            assert not engine_helper_copies(path.read_text(encoding="utf-8")), name


# ----------------------------------------------------------------------------- the pictures


def test_the_pictures_index_imports_nothing():
    """The models import pictures.grid, which runs the package's index first: an import there
    (figures: plotly) would reach every model."""
    tree = ast.parse(MODULES["scissor_viz.pictures"].read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("module", sorted(PICTURES | {"scissor_viz.pictures.grid"}))
def test_pictures_reexport_nothing(module):
    """Every engine name a picture module imports, it uses itself (no re-export, no noqa)."""
    source = MODULES[module].read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "scissor_viz.scc":
            for alias in node.names:
                assert len(re.findall(rf"\b{alias.name}\b", source)) > 1, alias.name
            lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
            assert not any("noqa" in line for line in lines)


@pytest.mark.parametrize("module", sorted(PICTURES | {"scissor_viz.pictures.grid"}))
def test_functions_are_short_or_say_why(module):
    """No function over 60 lines unless a comment in it says why it is long."""
    source = MODULES[module].read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
            body = lines[node.lineno - 1 : node.end_lineno]
            assert any("# long:" in line for line in body), (module, node.name)
