"""The package's shape: no import cycle between subpackages, no function over 60 lines.

Both checks read the source with :mod:`ast` (nothing is imported), so they see every import,
function-level and ``TYPE_CHECKING`` ones included: a cycle that is broken only by importing
late is still a cycle in the design.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deploypipe"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, ast.Module]:
    """Dotted module name (``deploypipe.backends.base``) -> its parsed source."""
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        trees[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return trees


def _imported(module: str, is_package: bool, tree: ast.Module) -> set[str]:
    """Every absolute dotted name ``module`` imports from, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from .. import measure`
    return names


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[:len(anchor) - (level - 1)]
    return ".".join([*anchor, name] if name else anchor)


def _subpackage(name: str, known: set[str]) -> str | None:
    """``deploypipe.backends.base`` -> ``backends``; ``None`` outside deploypipe, for the
    package root (its lazy facade) and for an attribute that is no module."""
    parts = name.split(".")
    if parts[0] != "deploypipe" or len(parts) < 2 or f"deploypipe.{parts[1]}" not in known:
        return None
    return parts[1]


def subpackage_graph() -> dict[str, set[str]]:
    """Subpackage (or top-level module) -> the subpackages it imports from."""
    trees = _modules()
    known = set(trees)
    graph: dict[str, set[str]] = {}
    for module, tree in trees.items():
        src = _subpackage(module, known)
        if src is None:
            continue
        is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()
        deps = {_subpackage(n, known) for n in _imported(module, is_package, tree)}
        graph.setdefault(src, set()).update(d for d in deps if d and d != src)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            components.append([v, *component])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(sorted(c), graph) for c in components if len(c) > 1]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A path start -> ... -> start inside ``component`` (breadth first, so a short one)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, set()) & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return component


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function or method longer than ``limit``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    rel = path.relative_to(PACKAGE.parent)
                    found.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_import_cycle_between_subpackages():
    cycles = find_cycles(subpackage_graph())
    assert not cycles, ("import cycles between deploypipe's subpackages (move the shared code "
                        "into the lower package or a module above both): "
                        + "; ".join(" -> ".join(c) for c in cycles))


def test_no_function_longer_than_60_lines():
    offenders = long_functions()
    assert not offenders, (f"functions longer than {MAX_FUNCTION_LINES} lines (split them): "
                           + "; ".join(offenders))


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
