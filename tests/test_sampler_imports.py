"""samplers/ has no import cycle, and its built-in components register lazily through their registries.

The graph is read from the source, not from what Python happened to import: every import statement of
every module counts, including those inside functions and under ``if TYPE_CHECKING:`` (an import a
module runs late is still an edge a reader must follow).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import REPO
from samplers.components import BUILTIN_MODULES

PACKAGE = REPO / "samplers"


def import_graph(package: Path) -> dict[str, set[str]]:
    """module → the modules of `package` it imports (by statement, wherever the statement is)."""
    modules = {path.stem for path in package.glob("*.py")}
    graph = {}
    for path in package.glob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 or node.module == package.name:  # from . import x / from .x import y
                    targets = [node.module.split(".")[0]] if node.level and node.module else [a.name for a in node.names]
                elif node.module and node.module.startswith(package.name + "."):
                    targets = [node.module.split(".")[1]]
                else:
                    continue
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith(package.name + ".")]
            else:
                continue
            edges |= {t for t in targets if t in modules}
        graph[path.stem] = edges - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_samplers_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 20 and graph["engine"] >= {"components", "variant"}  # the graph was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def late():\n    from .c import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import y\n")
    (package / "d.py").write_text("import pkg.a\n")
    graph = import_graph(package)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_built_in_components_are_imported_when_their_kind_is_first_read():
    code = ("import sys\n"
            "import samplers.components as c\n"
            "loaded = lambda: sorted(m for m in sys.modules if m.startswith('samplers.'))\n"
            "print(loaded())\n"
            "c.REGISTRIES['token_sampler'].names()\n"
            "print(loaded())\n")
    before, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                   cwd=REPO).stdout.splitlines()
    component_modules = {module for modules in BUILTIN_MODULES.values() for module in modules}
    assert not component_modules & set(ast.literal_eval(before)) and "samplers.variant" not in before
    assert component_modules & set(ast.literal_eval(after)) == {"samplers.token_samplers"}
