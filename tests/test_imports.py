"""No import circles among ctsdg's modules: read from the source with ast, so imports inside
functions and under ``TYPE_CHECKING`` count too (each is an edge a reader has to follow)."""

from __future__ import annotations

import ast
from pathlib import Path

import ctsdg

PACKAGE = Path(ctsdg.__file__).parent


def module_files() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ctsdg modules ``name`` names in its import statements: ``from pkg import sub`` is
    the submodule ``pkg.sub``, ``from pkg import thing`` is ``pkg`` (its ``__init__``).

    A package that ``name`` lies in is left out (``from ctsdg import __version__``): Python
    imports it before ``name`` in any case, and a package's ``__init__`` that names its own
    submodules would otherwise make every package a circle."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in modules else source)
    return {m for m in out if m in modules and m != name and not name.startswith(f"{m}.")}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert "ctsdg.errors" in graph["ctsdg.config"]
    assert "ctsdg.data.freeform" in graph["ctsdg.config"]
    assert "ctsdg.config" in graph["ctsdg.data.datasets"]  # under TYPE_CHECKING
    assert "ctsdg.checkpoints" in graph["ctsdg.training.steps"]
    assert "ctsdg.weights" in graph["ctsdg.models.vgg"]
    assert "ctsdg.inference" in graph["ctsdg"]  # under TYPE_CHECKING
    assert "ctsdg" not in graph["ctsdg.backends"]  # its own package


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_checkpoints_do_not_import_training() -> None:
    graph = import_graph()
    offenders = {
        (a, b)
        for a, targets in graph.items()
        if a.startswith("ctsdg.checkpoints")
        for b in targets
        if b.startswith("ctsdg.training")
    }
    assert offenders == set()
