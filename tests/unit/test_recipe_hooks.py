"""The commands know recipes only through their hooks: a new recipe package with
``predict.py`` / ``export.py`` / ``validate.py`` gets toolkit.predict, toolkit.export,
toolkit.api and the data checks without a toolkit change, and the commands' code names no
recipe (train -> evaluate -> predict -> export -> validate of a plug-in recipe with its own
conf files: tests/e2e/test_plugin_recipe.py)."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.training.module import RecipeModule

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ("sentiment", "translation", "captioning", "asr")


@pytest.mark.parametrize(
    "name",
    ["predict.py", "export.py", "api.py", "recipe_hooks.py", "data/validate.py",
     "data/__main__.py", "data/__init__.py"],
)  # fmt: skip
def test_commands_name_no_recipe(name):
    """Identifiers and string constants (docstrings aside) of the command modules."""
    tree = ast.parse((ROOT / "toolkit" / name).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            words.append(node.name)
    found = [w for w in words for r in RECIPES if r in w.lower()]
    assert found == [], f"toolkit/{name} names recipes: {found}"


PACKAGE = {
    "__init__.py": "",
    "module.py": """
        from toolkit.training.module import RecipeModule
        import torch

        class EchoModule(RecipeModule):
            def __init__(self, cfg, data_state=None):
                super().__init__(cfg, data_state)
                self.model = torch.nn.Linear(3, 2)
    """,
    "predict.py": """
        import numpy as np

        INPUT_KIND = "text"

        def predict_arrays(module, inputs, upper=False):
            out = []
            for text in inputs:
                words = text.split() or ["<empty>"]
                att = np.full((1, len(words)), 1.0 / len(words))
                answer = text.upper() if upper else text[::-1]
                out.append({"output": answer, "attention": att, "rows": ["all"],
                            "columns": words})
            return out

        def predict_records(module, inputs, out_dir=None, plot=False, upper=False):
            return [{"echo": p["output"]} for p in predict_arrays(module, inputs, upper)]
    """,
    "validate.py": """
        from toolkit.data.validate import check_table

        def validate_files(files, options, report):
            for path in files.values():
                check_table(path, [options.get("text_field", "text")], report)
    """,
    "export.py": """
        import torch
        from toolkit.commands.export import ExportGraph

        def export_graph(module):
            def example(n=2, length=7, seed=0):
                return (torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)),)
            return ExportGraph(module.model, "linear", ["x"], ["y"],
                               {"x": {0: "batch"}, "y": {0: "batch"}}, example, {"dim": 3})
    """,
}


@pytest.fixture
def echo_module(tmp_path, monkeypatch):
    package = tmp_path / "echo_recipe"
    package.mkdir()
    for name, text in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    from echo_recipe.module import EchoModule

    cfg = {"recipe": {"name": "echo"}, "attention": {"name": "none"}}
    yield EchoModule(cfg, {"x": 1}).eval()
    for name in [m for m in sys.modules if m.startswith("echo_recipe")]:
        del sys.modules[name]


def test_a_new_recipe_gets_predict_export_and_api_from_its_hooks(echo_module, tmp_path):
    from toolkit.api import Model
    from toolkit.commands.export import export, load_runner
    from toolkit.commands.predict import recipe_inputs

    lines = tmp_path / "in.txt"
    lines.write_text("ab cd\nxyz\n")
    pairs = recipe_inputs(echo_module, str(lines))
    assert pairs == [("ab cd", f"{lines}:1"), ("xyz", f"{lines}:2")]
    assert echo_module.input_kind == "text"
    records = echo_module.predict_records([x for x, _ in pairs], None, False, upper=True)
    assert records == [{"echo": "AB CD"}, {"echo": "XYZ"}]
    preds = Model(echo_module, tmp_path).predict(["ab cd", "xyz"])
    assert [p["output"] for p in preds] == ["dc ba", "zyx"]
    assert preds[0]["attention"].shape == (1, 2)
    np.testing.assert_allclose(preds[0]["attention"].sum(1), 1.0)
    info = export(echo_module, "torchscript", tmp_path / "out", check_inputs=3)
    assert info["graph"] == "linear.pt" and info["dim"] == 3
    assert info["parity_random_inputs"]["max_abs_diff"] == 0.0
    x = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(load_runner(tmp_path / "out" / "linear.pt")(x), echo_module.model(x))


def test_a_recipe_without_hooks_is_told_what_to_add(tmp_path):
    class Bare(RecipeModule):
        pass

    Bare.__module__ = "nowhere_recipe.module"
    bare = Bare({"recipe": {"name": "bare"}}, {})
    assert bare.input_kind == "text"
    with pytest.raises(NotImplementedError, match=r"nowhere_recipe\.predict\.predict_records"):
        bare.predict_records(["x"])
    from toolkit.commands.export import export

    with pytest.raises(NotImplementedError, match=r"nowhere_recipe\.export\.export_graph"):
        export(bare, "torchscript", tmp_path)


def test_a_new_recipe_gets_data_checks_from_its_validate_hook(echo_module, tmp_path):
    from toolkit.commands.data import main
    from toolkit.data.validate import validate_files

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"text": "hello"}\n')
    bad.write_text('{"text": "hello"}\n{"txt": "x"}\n{"text": ""}\n')
    assert validate_files("echo_recipe", {"train": good}).ok
    report = validate_files("echo_recipe", {"train": bad})
    assert [(p.line, p.field) for p in report.problems] == [(2, "text"), (3, "text")]
    assert main(["validate", "recipe=echo_recipe", f"path={bad}"]) == 1
    assert main(["validate", "recipe=no_such_recipe", f"path={bad}"]) == 2
