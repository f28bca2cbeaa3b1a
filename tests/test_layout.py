"""The package's shape: no import cycles among ``vision`` modules (imports inside functions
included), and no TensorFlow on the start-up paths that do not need it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vision"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str], package: str) -> set[str]:
    """The ``vision`` modules a module imports anywhere (functions too), except under
    ``if TYPE_CHECKING``, which never runs. ``from a.b import c`` counts as ``a.b.c`` when
    ``c`` is a module, else as ``a.b``."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``vision`` modules it imports."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(ast.parse(path.read_text()), modules, package) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == 1:
                return path[path.index(neighbour):] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40 and "vision.training.fast" in graph["vision.training.recipe"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions():
    """The check above can fail: a cycle closed by an import inside a function is found."""
    tree = ast.parse("def f():\n    from vision.b import x\n")
    graph = {"vision.a": _imports(tree, {"vision.a", "vision.b"}, "vision"), "vision.b": {"vision.a"}}
    assert find_cycle(graph) == ["vision.a", "vision.b", "vision.a"]


@pytest.mark.parametrize("module", ["vision.cli", "vision.data", "vision.data.datasets", "vision.runtime.inference",
                                    "vision.bundle.store", "vision.hub", "vision.models", "vision.zoo.everyday"])
def test_start_up_paths_do_not_import_tensorflow(module):
    """Importing the CLI or the data stage must not pay seconds for TensorFlow or Keras."""
    code = (f"import sys, {module}; heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules); "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {module} imported {result.stdout.strip()}"


def test_the_cli_help_runs_without_tensorflow():
    code = ("import sys, runpy; sys.argv = ['vision', '--help']\n"
            "try:\n    runpy.run_module('vision', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout
