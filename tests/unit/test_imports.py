"""Every module under toolkit/ and recipes/ imports in a fresh interpreter, whichever is imported
first: one interpreter imports them all in sorted order, another in reverse order, and a module
whose import fails is named. A static check reads the module-level imports and fails on any
cycle among these modules (an import inside a function is not one: it runs after both modules
have loaded)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("toolkit", "recipes")

# Run in a fresh interpreter: import the modules named on stdin in that order, print the
# failures as JSON {module: error}. SystemExit is caught too (a __main__ without its guard).
IMPORT_ALL = """
import importlib, json, sys, traceback
failed = {}
for name in json.load(sys.stdin):
    try:
        importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001
        failed[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
print(json.dumps(failed))
"""


def _files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (``__main__`` included)."""
    found = {}
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def test_every_module_imports_in_a_fresh_interpreter_in_either_order():
    modules = sorted(_files())
    assert len(modules) > 50 and "toolkit.train" in modules and "recipes.asr.model" in modules
    runs = {
        order: subprocess.Popen(
            [sys.executable, "-c", IMPORT_ALL],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in ("sorted", "reverse")
    }  # the two interpreters run side by side
    names = {"sorted": modules, "reverse": modules[::-1]}
    failures = {}
    for order, proc in runs.items():
        out, err = proc.communicate(json.dumps(names[order]), timeout=900)  # hang guard
        assert proc.returncode == 0, f"{order}: the interpreter failed\n{err[-2000:]}"
        for name, error in json.loads(out.strip().splitlines()[-1]).items():
            failures[f"{name} ({order} order)"] = error
    assert not failures, "modules that do not import:\n" + "\n".join(
        f"  {name}: {error}" for name, error in failures.items()
    )


def _module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports while it is imported: statements at
    module level, inside ``if``/``try``/``with`` blocks, not in functions or under
    ``TYPE_CHECKING``."""
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    module = parent + (f".{node.module}" if node.module else "")
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.With | ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in known and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_no_import_cycle_between_modules():
    files = _files()
    graph = {name: _module_level_imports(name, path, set(files)) for name, path in files.items()}
    assert graph["toolkit.train"], "the import reader found nothing"
    assert not _cycles(graph), f"module-level import cycles: {_cycles(graph)}"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder(graph, expected):
    assert _cycles(graph) == expected
