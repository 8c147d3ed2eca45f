"""README figures come from committed result files: the `make demo` table equals what
benchmarks/demo_table.py makes of docs/demo/results.csv, and every recipe README block equals
what benchmarks/readme_tables.py makes of the recipe's results/ files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    """A benchmarks/ script loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _demo_table():
    return _script("demo_table")


def test_readme_demo_table_equals_the_committed_results():
    demo = _demo_table()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = demo.table()
    assert block.count("\n") >= 5  # header, rule and a row per demo run (>= 4 recipes)
    assert demo.replace_block(readme, block) == readme


def test_task_metric_words_from_a_row():
    demo = _demo_table()
    row = {"recipe": "translation", "chrf": "31.29", "copy_chrf": "23.99", "bleu": "8.35",
           "copy_bleu": "9.56"}  # fmt: skip
    assert demo.task_metric(row) == "chrF 31.3 (copy baseline 24.0), BLEU 8.3 (copy 9.6)"
    row = {"recipe": "asr", "wer": "0.2145", "wer_avg_10": "0.2933", "wer_avg_0": "0.7158"}
    assert demo.task_metric(row) == (
        "WER 21.4 % clean, 29.3 % at 10 dB, 71.6 % at 0 dB (babble; CTC greedy)"
    )


def _recipe_tables():
    return _script("readme_tables")


def test_recipe_readme_tables_equal_the_committed_results():
    tables = _recipe_tables()
    readmes = sorted({path for path, _ in tables.BLOCKS.values()})
    assert "recipes/asr/README.md" in readmes and "recipes/translation/README.md" in readmes
    for readme in readmes:
        current = (ROOT / readme).read_text(encoding="utf-8")
        assert tables.rendered(readme) == current, f"{readme}: run benchmarks/readme_tables.py"
    for name, (readme, render) in tables.BLOCKS.items():
        block = render()
        assert block.count("\n") >= 2, name  # header, rule and rows from the files
        start, end = tables.markers(name)
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert f"{start}\n{block}\n{end}" in text


def test_blocks_are_replaced_between_their_markers():
    tables = _recipe_tables()
    text = "intro\n<!-- results:x -->\nold\n<!-- results:x:end -->\nafter\n"
    assert tables.replace_block(text, "x", "| a |") == (
        "intro\n<!-- results:x -->\n| a |\n<!-- results:x:end -->\nafter\n"
    )
    with pytest.raises(SystemExit, match="no <!-- results:y -->"):
        tables.replace_block(text, "y", "| a |")
