"""The package's layering (written down once in facemark/__init__.py's docstring) holds.

Every ``facemark`` module's imports are read with ``ast`` -- module-level and inside
functions alike -- and resolved to the module they name. The test fails when a module imports
a layer above its own, or when modules form an import cycle, except for what the two
allowlists below still name. The lists only ever shrink: an entry that no longer happens
fails the test too, so remove it when a fix lands. The facemark imports inside functions are
counted too, and may not grow past ``MAX_FUNCTION_LEVEL_IMPORTS``.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import facemark

PACKAGE = Path(facemark.__file__).parent

# Layer of each top-level part, lowest first; a module may import its own layer and below.
# Keep in step with the "Layers" paragraph of facemark/__init__.py.
LAYERS = {
    "facemark.errors": 0,
    "facemark.io": 1, "facemark.configs": 1,
    "facemark.data": 2,
    "facemark.models": 3,
    "facemark.training": 4, "facemark.evaluation": 4,
    "facemark.inference": 5,
    "facemark.api": 6,
    "facemark.cli": 7, "facemark.__main__": 7,
}

# Upward imports still to remove (importer, imported). Issue 11 tracks them.
UPWARD_ALLOWED: set[tuple[str, str]] = set()

# Import cycles still to break, each as the sorted tuple of its modules.
CYCLES_ALLOWED: set[tuple[str, ...]] = {
    # the heads register themselves in the registry, which imports them to fill itself
    ("facemark.models.heads", "facemark.models.heads.coordnet", "facemark.models.heads.grmi",
     "facemark.models.heads.mapnet", "facemark.models.heads.pip", "facemark.models.heads.stc",
     "facemark.models.registry"),
}


# Imports left inside functions: keep --help and load/detect light, fill registries, optional deps.
# 79 after issue #11; 81 with `facemark data pack`'s handler (CLI handlers import lazily).
MAX_FUNCTION_LEVEL_IMPORTS = 81


# The graph code has one home, benchmarks/import_graph.py (which also draws the picture and
# reads older trees without importing them).
_SPEC = importlib.util.spec_from_file_location(
    "import_graph", Path(__file__).resolve().parents[1] / "benchmarks" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(import_graph)

MODULES = {import_graph.module_name(p, PACKAGE.parent): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """The facemark modules that ``module`` imports, wherever the import statement is."""
    return import_graph.imported_modules(module, ast.parse(source), is_package, set(MODULES))


GRAPH = {module: _imports(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
         for module, path in MODULES.items()}


def _layer(module: str) -> int | None:
    """None for the package root (``facemark``), whose lazy re-exports sit above everything
    and whose ``__version__`` every layer may read."""
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def upward_imports(graph: dict[str, set[str]] = GRAPH) -> set[tuple[str, str]]:
    found = set()
    for module, targets in graph.items():
        for target in targets:
            low, high = _layer(module), _layer(target)
            if low is not None and high is not None and high > low:
                found.add((module, target))
    return found


def import_cycles() -> set[tuple[str, ...]]:
    """Strongly connected components of more than one module."""
    return set(import_graph.cycles(GRAPH))


def _is_facemark_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == "facemark"
    return isinstance(node, ast.Import) and any(
        alias.name.split(".")[0] == "facemark" for alias in node.names)


def function_level_imports(source: str) -> list[int]:
    """Line numbers of the facemark imports inside functions (methods, nested ones) of a
    module's source."""
    lines = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if inside and _is_facemark_import(child):
                lines.append(child.lineno)
            visit(child, inside)

    visit(ast.parse(source), False)
    return lines


def test_every_part_has_a_layer():
    missing = sorted(m for m in MODULES if m != "facemark" and _layer(m) is None)
    assert not missing, f"add these to LAYERS (and the docstring of facemark/__init__.py): {missing}"


def test_the_docstring_names_the_layers():
    doc = facemark.__doc__
    for prefix in LAYERS:
        assert prefix.split(".", 1)[1].lstrip("_") in doc, prefix


def test_no_import_runs_up_a_layer():
    found = upward_imports()
    new = sorted(found - UPWARD_ALLOWED)
    assert not new, "imports of a higher layer: " + ", ".join(f"{a} -> {b}" for a, b in new)
    gone = sorted(UPWARD_ALLOWED - found)
    assert not gone, f"fixed, remove from UPWARD_ALLOWED: {gone}"


def test_no_import_cycles():
    found = import_cycles()
    new = sorted(found - CYCLES_ALLOWED)
    assert not new, f"import cycles: {new}"
    gone = sorted(CYCLES_ALLOWED - found)
    assert not gone, f"broken, remove from CYCLES_ALLOWED: {gone}"


def test_the_checker_sees_function_level_and_relative_imports():
    source = ("import facemark.io\n"
              "def f():\n    from facemark.cli import main\n    from ..errors import FacemarkError\n"
              "    from . import crops\n")
    assert _imports("facemark.data.x", source) == {
        "facemark.io", "facemark.cli", "facemark.errors", "facemark.data.crops"}


def test_the_checker_catches_an_upward_import():
    # the last one removed (issue 11): self-training importing the face detectors
    source = "def f():\n    from facemark.inference.detectors import create_detector\n"
    module = "facemark.training.self_training"
    assert upward_imports({module: _imports(module, source)}) == {
        (module, "facemark.inference.detectors")}


def test_function_level_imports_do_not_grow():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in MODULES.values()
             for line in function_level_imports(path.read_text(encoding="utf-8"))]
    assert len(found) <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{len(found)} facemark imports inside functions, at most {MAX_FUNCTION_LEVEL_IMPORTS}: "
        "import at module level unless it breaks a cycle, keeps a heavy or optional dependency "
        "off the fast paths or fills a registry (then raise the number, saying why)")


def test_the_function_level_import_counter():
    source = ("import facemark.io\n"
              "def f():\n    from facemark.cli import main\n    import numpy\n"
              "class C:\n    def g(self):\n        from . import crops\n"
              "        h = lambda: __import__('facemark')\n")
    assert function_level_imports(source) == [3, 7]
