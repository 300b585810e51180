"""Package structure: no import cycles among easrec's modules, no module over 400 lines.

The import graph has one edge per import of an easrec module, at module level or inside a
function: an import moved into a function hides a cycle from the interpreter but not from the
design, so it counts. Imports under `if TYPE_CHECKING:` (never run) do not. `from easrec.pkg import
name` is an edge to the submodule `easrec.pkg.name` when that is a module, else to the package
`easrec.pkg` (its `__init__`).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder in the repository -> the package it is imported as (pyproject.toml's package-dir).
PACKAGES = {"easrec": "easrec", "export": "easrec.export", "profiling": "easrec.profiling", "devices": "easrec.devices"}
MAX_LINES = 400
# Modules still over MAX_LINES, each to be split; remove a name when its module is.
OVERSIZE: set[str] = set()

# Cycles known and being removed elsewhere, each as the sorted tuple of its modules (none left).
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def module_files() -> dict[str, Path]:
    """Every easrec module name -> its file."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            found[name] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, in functions too, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the easrec modules it imports (anywhere in the module)."""
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        with warnings.catch_warnings():  # a module's invalid escape sequence is not this test's business
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("easrec"):
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return components


def test_graph_sees_known_edges():
    graph = import_graph()
    assert "easrec.devices.timing" in graph["easrec.devices.base"]
    assert "easrec.errors" in graph["easrec.io"]


def test_find_cycles_on_a_toy_graph():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = [c for c in find_cycles(import_graph()) if tuple(c) not in KNOWN_CYCLES]
    assert cycles == [], f"import cycles among easrec's modules: {cycles}"


@pytest.mark.parametrize("name", sorted(module_files()))
def test_module_size(name):
    lines = len(module_files()[name].read_text(encoding="utf-8").splitlines())
    if name in OVERSIZE:
        assert lines > MAX_LINES, f"{name} is {lines} lines now: remove it from OVERSIZE"
    else:
        assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES})"
