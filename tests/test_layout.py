"""The package's shape: every import goes down the declared stage order (``vision.STAGES``), no
import cycles among ``vision`` modules (imports inside functions included in both), functions a
reader can hold, imports inside functions only where they say why, and no TensorFlow on the
start-up paths that do not need it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from vision import STAGES

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


def stage(module: str) -> int:
    """The position of ``module``'s stage in ``vision.STAGES`` (0: the bottom); the package's own
    ``__init__``, which imports nothing, is at the bottom."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    for position, names in enumerate(STAGES):
        if parts[1] in names:
            return position
    raise LookupError(f"{module} is in no stage: add vision.{parts[1]} to vision.STAGES")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import in ``graph`` from a lower stage to a higher one, as readable lines."""
    return [f"{module} ({'/'.join(STAGES[stage(module)])}) imports {target} ({'/'.join(STAGES[stage(target)])})"
            for module in sorted(graph) for target in sorted(graph[module]) if stage(target) > stage(module)]


def test_every_module_has_a_stage():
    graph = import_graph()
    assert {stage(module) for module in graph} == set(range(len(STAGES)))  # and no stage is empty


def test_every_import_goes_down_the_stage_order():
    """A module imports only its own stage and lower ones, at module level or inside a function
    (``if TYPE_CHECKING`` aside): a circle between stages cannot hide in a deferred import."""
    graph = import_graph()
    assert "vision.runtime.int8" in graph["vision.runtime.inference"]
    upward = upward_imports(graph)
    assert not upward, "imports up the stage order (vision.STAGES):\n" + "\n".join(upward)


def test_the_stage_check_sees_an_upward_import_inside_a_function():
    """The check above can fail: an import from training into export inside a function is found,
    one under ``if TYPE_CHECKING`` is not."""
    code = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vision.serve import rest\n"
            "def f():\n    from vision.export.formats import export\n")
    modules = {"vision.training.x", "vision.export.formats", "vision.serve.rest"}
    graph = {"vision.training.x": _imports(ast.parse(code), modules, "vision.training")}
    assert upward_imports(graph) == ["vision.training.x (training) imports vision.export.formats (export)"]


#: The longest function a reader is asked to hold, from its ``def`` line to its last line.
MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in ``source`` longer than ``limit`` lines,
    nested ones included."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= limit]


def test_no_function_is_longer_than_80_lines():
    found = [f"{path.relative_to(PACKAGE.parent)}: {name} ({lines} lines)"
             for path in sorted(PACKAGE.rglob("*.py")) for name, lines in long_functions(path.read_text())]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_the_length_check_counts_from_the_def_line_to_the_last():
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    assert long_functions(f"def held():\n{body}") == []  # 80 lines
    assert long_functions(f"@decorated\ndef long():\n{body}    return x0\n") == [("long", 81)]


def function_imports(source: str) -> list[tuple[int, str]]:
    """(line number, first line) of every import inside a function in ``source``, except under
    ``if TYPE_CHECKING``."""
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for branch in child.orelse:
                    visit(branch, in_function)
                continue
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child.lineno, lines[child.lineno - 1].strip()))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def test_every_import_inside_a_function_says_why_it_is_lazy():
    """An import deferred into a function keeps something heavy or optional (TensorFlow, most
    often) off a path that does not need it, and says so on its line: ``# lazy: <reason>``.
    Anything else belongs at the top of the module, where a reader sees what it depends on."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line}"
             for path in sorted(PACKAGE.rglob("*.py")) for number, line in function_imports(path.read_text())
             if "# lazy: " not in line]
    assert not found, "imports inside functions without a '# lazy: <reason>' comment:\n" + "\n".join(found)


def test_the_lazy_check_sees_imports_in_methods_and_nested_blocks():
    code = ("import os\nclass A:\n    def f(self):\n        try:\n            import json\n"
            "        except ImportError:\n            pass\n        import re  # lazy: reason\n")
    assert function_imports(code) == [(5, "import json"), (8, "import re  # lazy: reason")]


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
