"""The import graph of ``controller`` has no cycle (``lint-imports`` checks the layers).

The graph is grimp's, as import-linter builds it, with every import counted: those made inside
functions (the wiring imports adapters lazily) and those under ``TYPE_CHECKING`` too. None is
excluded: a cycle that only type checking sees still ties two modules into one unit that can
be neither read nor changed alone, and it is always broken by moving the shared type down.
"""

from __future__ import annotations

import grimp

ROOT = "controller"


def cycles(graph: grimp.ImportGraph, root: str = ROOT) -> list[list[str]]:
    """Each group of modules under ``root`` that import each other in a ring, as one path
    through it (``a -> b -> a``); Tarjan's strongly connected components."""
    modules = sorted(m for m in graph.modules if m == root or m.startswith(root + "."))
    inside = set(modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & inside) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1 or module in edges[module]:
                found.append(_ring(component, edges))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def _ring(component: set[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest way round the component from its first module back to it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for module in frontier:
            for imported in edges[module]:
                if imported == start:
                    return [*paths[module], start]
                if imported in component and imported not in paths:
                    paths[imported] = [*paths[module], imported]
                    following.append(imported)
        frontier = following
    raise AssertionError("a strongly connected component always has a ring")  # pragma: no cover


def test_controller_has_no_import_cycle() -> None:
    """No module of ``controller`` imports itself back through others."""
    found = cycles(grimp.build_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(ring) for ring in found)


def test_a_cycle_is_found_and_shown() -> None:
    """The check sees a ring, including one closed by a single import, and names its path."""
    graph = grimp.ImportGraph()
    for module in ("controller", "controller.a", "controller.b", "controller.c", "other"):
        graph.add_module(module)
    graph.add_import(importer="controller.a", imported="controller.b")
    graph.add_import(importer="controller.b", imported="controller.c")
    graph.add_import(importer="controller.c", imported="controller.a")
    graph.add_import(importer="controller.c", imported="other")
    assert cycles(graph) == [["controller.a", "controller.b", "controller.c", "controller.a"]]
    graph.remove_import(importer="controller.c", imported="controller.a")
    assert cycles(graph) == []
