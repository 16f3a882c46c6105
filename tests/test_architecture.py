"""The layout's rules, checked from the code: no import cycles, the dependency direction,
module size, and the public surface of ``bridge``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bridge", "local_api", "colab_runtime")
MAX_LINES = 320  # "a file over ~300 lines is a sign two things share it" (STYLE.md)


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at the top or inside a function."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(10_000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = _graph()
    # a package's __init__ that only hands names on would make every sub-module a cycle
    # with it; bridge/__init__ loads lazily, the others are empty
    assert _cycles(graph) == []


def test_a_planted_cycle_is_caught() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_bridge_imports_neither_the_api_nor_the_worker() -> None:
    graph = _graph()
    wrong = {(m, d) for m, deps in graph.items() if m.startswith("bridge")
             for d in deps if d.startswith(("local_api", "colab_runtime"))}
    assert wrong == set()


def test_no_module_is_over_about_300_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_public_surface_of_bridge() -> None:
    import bridge

    assert bridge.__all__ == [
        "ChatStream",
        "ChatWidget",
        "Client",
        "ConnectWidget",
        "ModelsWidget",
        "StatusWidget",
        "find_or_start",
    ]
    for name in bridge.__all__:
        assert getattr(bridge, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = bridge.local_backend  # internals are reached by their sub-package


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support (fixtures as plugins), not in test modules."""
    wrong = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith("tests") and ".test_" in f".{n.split('.')[-1]}" for n in names):
                wrong.append(str(path.relative_to(ROOT)))
    assert wrong == []
