"""The import graph of ``controller`` has no cycle, the import contracts (``lint-imports``)
cover every module and catch a planted violation of each, and no module is over 600 lines.

The graph is grimp's, as import-linter builds it, with every import counted: those made inside
functions (the wiring imports adapters lazily) and those under ``TYPE_CHECKING`` too. None is
excluded: a cycle that only type checking sees still ties two modules into one unit that can
be neither read nor changed alone, and it is always broken by moving the shared type down.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest

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


# -- the import contracts cover every module, and catch what they are for ------------------------

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _layered() -> set[str]:
    """Every module the top-level layers contract names."""
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"
                 and "containers" not in c]
    return {name.strip() for layer in layers for name in re.split(r"[:|]", layer)}


def test_every_module_is_in_a_layer() -> None:
    """A new module of ``controller`` must be given its place: the layers contract names every
    top-level module and package (a module no contract names is checked by none)."""
    import controller

    found = {f"controller.{m.name}" for m in pkgutil.iter_modules(controller.__path__)}
    assert found - _layered() == set()
    assert _layered() - found == set(), "a layer names a module that does not exist"


def _lint_copy(tmp_path: Path, plant: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over a copy of the package with ``plant`` (path -> text) written into
    it: a file replaced, or a line appended (a text that starts with ``+``)."""
    shutil.copytree(REPO / "controller", tmp_path / "controller",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, text in plant.items():
        target = tmp_path / relative
        if text.startswith("+"):
            target.write_text(target.read_text() + text[1:])
        else:
            target.write_text(text)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          check=False)


def test_the_unplanted_copy_passes(tmp_path: Path) -> None:
    """The control: the copy itself keeps every contract (so a failure below is the plant's)."""
    result = _lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(("plant", "contract"), [
    pytest.param({"controller/credentials/gcp.py": '"""A new credential kind."""\n',
                  "controller/appreconciler.py": "+\nimport controller.credentials.gcp  # noqa\n"},
                 "Only the wiring names adapters", id="a-new-adapter-named-by-the-engine"),
    pytest.param({"controller/storage/gcs.py":
                  '"""A new backend."""\nimport controller.credentials.ecr  # noqa\n'},
                 "Adapters do not import each other", id="a-new-backend-imports-a-kind"),
    pytest.param({"controller/simulator/cheat.py":
                  '"""Borrows the client."""\nimport controller.dialect  # noqa\n'},
                 "The simulator is independent of the adapters and the engine",
                 id="the-simulator-borrows-the-clients-dialect"),
    pytest.param({"controller/marathon/cheat.py":
                  '"""Reaches up."""\nimport controller.appindex  # noqa\n'},
                 "Adapters do not reach into the wiring or the engine",
                 id="an-adapter-reaches-into-the-engine"),
    pytest.param({"controller/plan.py": "+\nimport aiohttp  # noqa\n"},
                 "Pure core has no I/O libraries", id="the-pure-core-does-io"),
    pytest.param({"controller/settings.py": "+\nimport controller.wiring  # noqa\n"},
                 "Layers", id="a-lower-layer-imports-a-higher-one"),
])
def test_a_planted_violation_breaks_its_contract(tmp_path: Path, plant: dict[str, str],
                                                 contract: str) -> None:
    result = _lint_copy(tmp_path, plant)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout[-2000:]


MAX_MODULE_LINES = 600
"""A module longer than this holds more than one thing: split it by what its parts do."""


def test_no_module_is_over_the_size_limit() -> None:
    package = Path(__file__).resolve().parents[2] / ROOT
    sizes = {str(path.relative_to(package.parent)): len(path.read_text().splitlines())
             for path in package.rglob("*.py")}
    assert len(sizes) > 50  # the package was found
    assert {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
