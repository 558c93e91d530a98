"""The import structure: the core's layers (no cycles, no arrow pointing up a layer, no Qt), and the
editor's (no cycles among `app/` modules, the core reached only through its public names).

Every module is parsed (not imported); every import counts, at module level, inside a function (a
deferred import is still a dependency) or under `if TYPE_CHECKING:` (a type named across modules
ties them as much as a call). Layers, lowest first: a core module may import from its own layer
and the layers below it, never from a layer above.
"""
from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "export3d_core"

# Lowest first. A module belongs to the most specific entry that is its name or a package above it.
LAYERS: list[tuple[str, ...]] = [
    # foundations: no model, no data; plain settings, files, geometry, conversions, metrics
    ("errors", "atomic", "config", "camera", "devices", "display", "metrics", "cuda_graph", "arg_types",
     "tensor_files"),
    ("nn", "render"),  # networks and volume rendering: depend only on the config
    ("model", "acceleration"),  # Export3D composes nn + render; the accelerated renderer's settings
    ("checkpoint", "lambda_units"),  # weights on disk; λ in the units of the model's basis
    ("data",),  # corpora, synthetic heads, photo intake (no model)
    ("faces", "portrait", "expression_estimate",  # reading faces and portraits for the model
     "animation", "project_file"),  # keyframes of λ and the camera; the project file's fields they need
    # the staged, cached render path, what it writes, and what tunes it to one photo
    ("session", "export", "mesh", "mesh_pieces", "mesh_morph", "mesh_io", "mesh_raster", "mesh_export",
     "fit", "fit_file", "fit_upscale", "paste_back", "domain",
     "animation_export", "drive", "live"),  # animations rendered; a performance read from video into keys
    ("eval", "train"),  # the two consumers of everything below: neither imports the other
    ("bench", "view_commands", "mesh_command", "fit_command", "cli", "train.__main__",  # commands, entry points
     "animation_commands", "batch", "drive_commands"),
]
# Packages whose sub-modules must not import each other's package (siblings in one layer).
INDEPENDENT = (("eval", "train"),)
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "app")


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in CORE.rglob("*.py")}


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """(core modules imported by `name`, top-level names of other packages imported)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    core, other = set(), set()

    def add(target: str) -> None:
        if target == "export3d_core" or target.startswith("export3d_core."):
            core.add(target[len("export3d_core."):] if target != "export3d_core" else "")
        else:
            other.add(target.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["export3d_core", *package.split(".")] if package else ["export3d_core"]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from package import module` depends on the module
                sub = f"{target}.{alias.name}"
                add(sub if sub.startswith("export3d_core.") and sub[len("export3d_core."):] in MODULES else target)
    return {c for c in core if c != name}, other


def layer_of(name: str) -> int:
    matches = [(len(m), index) for index, members in enumerate(LAYERS) for m in members
               if name == m or name.startswith(m + ".")]
    if not matches:
        raise AssertionError(f"export3d_core.{name} is in no layer: add it to LAYERS in tests/test_layers.py")
    return max(matches)[1]


GRAPH = {name: imports_of(name)[0] for name in MODULES if name}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        layer_of(name)


def test_no_import_points_up_a_layer() -> None:
    upward = [f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})"
              for name, deps in GRAPH.items() for dep in deps if dep and layer_of(dep) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_independent_packages_do_not_import_each_other() -> None:
    crossing = []
    for a, b in INDEPENDENT:
        for name, deps in GRAPH.items():
            for mine, theirs in ((a, b), (b, a)):
                if name.split(".")[0] == mine:
                    crossing += [f"{name} imports {dep}" for dep in deps if dep.split(".")[0] == theirs]
    assert not crossing, "\n".join(crossing)


def test_core_modules_do_not_import_the_public_api_package() -> None:
    # `export3d_core/__init__` exports names lazily from every layer: importing it hides an arrow.
    assert not [name for name, deps in GRAPH.items() if "" in deps]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_imports_no_qt_and_no_app() -> None:
    qt = [f"{name} imports {package}" for name in MODULES for package in imports_of(name)[1]
          if package in QT_PACKAGES]
    assert not qt, "\n".join(qt)


def closure(name: str) -> set[str]:
    """Every core module `name` imports, directly or through others."""
    seen, todo = set(), [name]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_editors_inference_path_loads_no_training_evaluation_or_synthetic_data_code() -> None:
    # What the editor imports to render and to read an expression off a photo.
    for name in ("session", "export", "expression_estimate", "portrait", "lambda_units"):
        heavy = sorted(dep for dep in closure(name)
                       if dep.split(".")[0] in ("eval", "train", "bench") or dep.startswith("data.synth"))
        assert not heavy, f"{name} pulls in {heavy}"


def test_every_public_name_resolves() -> None:
    import export3d_core

    for name in export3d_core.__all__:
        assert getattr(export3d_core, name) is not None, name


# -- the editor (app/) ---------------------------------------------------------------------------------
APP = CORE.parent / "app"


def app_module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


APP_MODULES = {app_module_name(p): p for p in APP.rglob("*.py")}


def app_imports(name: str) -> tuple[set[str], list[str]]:
    """(app modules `name` imports, its imports of the core that are not `from export3d_core import NAME`
    with NAME public)."""
    import export3d_core

    path = APP_MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    app, outside_api = set(), []

    def add(target: str, names: tuple[str, ...] = ()) -> None:
        if target == "app" or target.startswith("app."):  # `from app import menus` depends on app.menus
            app.update({f"{target}.{n}" if f"{target}.{n}" in APP_MODULES else target for n in names} or {target})
        elif target == "export3d_core" and names:
            outside_api.extend(f"{name}: from export3d_core import {n} (not in __all__)"
                               for n in names if n not in export3d_core.__all__)
        elif target.split(".")[0] == "export3d_core":
            outside_api.append(f"{name}: imports {target}")

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            add(base, tuple(alias.name for alias in node.names))
    return {m for m in app if m != name}, outside_api


APP_GRAPH = {name: app_imports(name)[0] for name in APP_MODULES}


def test_the_editor_has_no_import_cycles() -> None:
    cycle = find_cycle(APP_GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_editor_imports_the_core_only_through_its_public_names() -> None:
    # The allowed surface is `export3d_core.__all__` (export3d_core/__init__.py says why).
    outside = [line for name in APP_MODULES for line in app_imports(name)[1]]
    assert not outside, "\n".join(outside)


def test_the_app_import_parser_sees_what_the_rules_are_about(tmp_path, monkeypatch) -> None:
    # A checker that parses nothing passes everything: feed it a module with each kind of import.
    (tmp_path / "app").mkdir()
    probe = tmp_path / "app" / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nfrom app import menus, APP_NAME\n"
                     "from export3d_core import Export3DError, not_public\n"
                     "if TYPE_CHECKING:\n    from app.main_window import MainWindow\n"
                     "def f():\n    from export3d_core.session import PortraitSession\n", encoding="utf-8")
    monkeypatch.setitem(APP_MODULES, "app.probe", probe)
    app, outside = app_imports("app.probe")
    assert app == {"app", "app.menus", "app.main_window"}
    assert outside == ["app.probe: from export3d_core import not_public (not in __all__)",
                       "app.probe: imports export3d_core.session"]
