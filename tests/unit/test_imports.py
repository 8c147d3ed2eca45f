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


# ----- the commands: one package, thin entry points -----------------------------------------
ENTRY_POINTS = {  # python -m <module> -> the module of toolkit/commands/ that it runs
    "toolkit.train": "train", "toolkit.evaluate": "evaluate", "toolkit.predict": "predict",
    "toolkit.export": "export", "toolkit.compare": "compare", "toolkit.report": "report",
    "toolkit.interpret": "interpret", "toolkit.data": "data",
}  # fmt: skip


@pytest.mark.parametrize(("entry", "command"), ENTRY_POINTS.items())
def test_entry_points_only_call_their_command(entry: str, command: str):
    """Each ``python -m toolkit.<command>`` file imports ``main`` from ``toolkit.commands`` and
    calls it: the command's code lives in one place."""
    files = _files()
    path = files[entry] if files[entry].name != "__init__.py" else files[f"{entry}.__main__"]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = [
        n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    ]
    imports = [n for n in body if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        (f"toolkit.commands.{command}", ["main"])
    ], path
    assert len(body) == 2 and isinstance(body[1], ast.If), f"{path}: more than an entry point"
    assert (files["toolkit"].parent / "commands" / f"{command}.py").is_file()


def test_toolkit_root_holds_no_command_code():
    """The loose modules of the toolkit root: the entry points above and a few shared ones."""
    root = _files()["toolkit"].parent
    loose = {p.stem for p in root.glob("*.py")} - {"__init__"}
    entry = {name.split(".")[1] for name in ENTRY_POINTS}  # report/, interpret/, data/: packages
    assert loose - entry == {"api", "paths", "recipe_hooks", "runs"}, sorted(loose - entry)


@pytest.mark.parametrize("package", ["training", "report", "interpret", "data", "metrics"])
def test_libraries_do_not_import_the_commands(package: str):
    """The commands use the libraries, never the other way round (imports inside functions
    count too; a package's ``__main__`` entry point is the exception)."""
    for name, path in _files().items():
        if not name.startswith(f"toolkit.{package}") or name.endswith("__main__"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("toolkit.commands") for n in names), (name, names)
