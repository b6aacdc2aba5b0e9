"""Imports inside umgkit flow one way (DESIGN.md): no module imports one that imports it back, and no
package imports a package above it in the layering

    registry / config -> data, backbones -> adapters -> heads -> models -> tasks -> engine users

Imports are read from the source (every ``import`` statement, also those inside functions), so a lazy
import that only hides a circle counts as the circle it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "umgkit"

# Package (or top-level module) -> its layer; a package may import its own layer and those below.
# _builtins imports modules by name only (importlib), at call time: it carries no static edge.
LAYERS = {
    0: {"umgkit", "errors", "_io", "_rng", "_tensors", "registry", "_builtins"},
    1: {"config"},
    2: {"data", "backbones", "vis", "metrics", "losses"},
    3: {"adapters", "engine"},
    4: {"heads"},
    5: {"models"},
    6: {"tasks", "pretrain"},
    7: {"cli", "cli_parser", "demo", "app", "integrations", "bench", "sweep"},
}
RANK = {name: layer for layer, names in LAYERS.items() for name in names}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    """umgkit module -> the umgkit modules it imports (``from pkg import name`` resolves to ``pkg.name`` when
    that is a module, else to ``pkg``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_umgkit_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_packages_import_only_their_own_layer_and_below():
    graph = import_graph()
    packages = {_package(m) for m in graph}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                    if RANK[_package(t)] > RANK[_package(m)])
    assert upward == []
    package_graph: dict[str, set[str]] = {p: set() for p in packages}
    for module, targets in graph.items():
        package_graph[_package(module)] |= {_package(t) for t in targets} - {_package(module)}
    assert cycles(package_graph) == []


def test_private_modules_are_used_only_inside_their_own_package():
    """A ``_name`` module inside a package is that package's infrastructure; what another package needs is
    public (top-level ``umgkit._x`` modules are shared infrastructure by design)."""
    graph = import_graph()
    crossing = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                      if t.count(".") >= 2 and t.rsplit(".", 1)[1].startswith("_")
                      and not t.rsplit(".", 1)[1].startswith("__")
                      and _package(t) != _package(m))
    assert crossing == []
