"""The report's erasure-faithfulness view on hand-built run folders: each run's
``interpretability`` entry (as ``toolkit.interpret`` writes it) reaches results.csv as is,
results.md's "Faithfulness (erasure)" table holds one run's ratio with its bootstrap interval
and several seeds' mean with the Student-t interval over them, a type without the entry is
"not measured", the sentence says "hurts more" only for an interval entirely above 1, and the
cross-modal view carries the ratio per recipe."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

from toolkit import report
from toolkit.interpret.checkpoint import headline

SENTIMENT = report.RecipeReport("sentiment", ["accuracy"], "accuracy", monitor="val/accuracy")
# (attention, seed) -> (attention ratio, its interval, saliency ratio, its interval); None:
# the run was never interpreted
ENTRIES = {
    ("additive", 1): (1.8, [1.3, 2.4], 2.5, [2.0, 3.1]),
    ("dot", 1): (1.05, [0.9, 1.2], 1.7, [1.4, 2.0]),
    ("multihead", 1): (1.2, [1.1, 1.3], 2.0, [1.8, 2.2]),
    ("multihead", 2): (1.6, [1.4, 1.8], 2.4, [2.1, 2.7]),
    ("uniform", 1): None,
}
MORE = "hurts the output more than removing random ones"


def entry(att: float, att_ci: list[float], sal: float, sal_ci: list[float]) -> dict:
    """The metrics.json entry toolkit.interpret writes (its own ``headline``)."""
    result = {
        "seed": 0,
        "rollout": {},
        "erasure": {
            "examples": 200, "ks": [1, 2, 4],
            "methods": {"attention": {"aopc": 0.18}, "saliency": {"aopc": 0.25},
                        "random": {"aopc": 0.1}},
            "ratio_to_random": {"attention": {"aopc": {"value": att, "ci95": att_ci}},
                                "saliency": {"aopc": {"value": sal, "ci95": sal_ci}}},
        },
    }  # fmt: skip
    return headline(result)


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for (attention, seed), values in ENTRIES.items():
        folder = root / attention / f"seed{seed}"
        folder.mkdir(parents=True)
        m = {"recipe": "sentiment", "attention": attention, "model": "M", "seed": seed,
             "metrics": {"accuracy": 0.8}, "train_seconds": 10.0, "params": 1000}  # fmt: skip
        if values is not None:
            m["interpretability"] = entry(*values)
        (folder / "metrics.json").write_text(json.dumps(m))
    return root


def by_attention(table: report.Table) -> dict[str, dict]:
    return {r[2]: dict(zip(table.header, r, strict=True)) for r in table.rows}


def test_table_cells_are_the_entries_numbers(runs):
    rows = report.collect(report.find_runs([runs]))
    cells = by_attention(report.faithfulness_table(rows))
    one = cells["additive"]  # one run: its ratio and bootstrap interval
    assert (one["measured"], one["examples"]) == ("1/1", "200")
    assert one["attention / random AOPC"] == 1.8
    assert one["95 % interval"] == "1.3000 to 2.4000"
    assert one["saliency / random AOPC"] == 2.5
    assert one["95 % interval (saliency)"] == "2.0000 to 3.1000"
    seeds = cells["multihead"]  # two seeds: mean of the runs' ratios, t-interval over them
    half = stats.t.ppf(0.975, 1) * statistics.stdev([1.2, 1.6]) / 2**0.5
    assert seeds["measured"] == "2/2"
    assert seeds["attention / random AOPC"] == pytest.approx(1.4)
    assert seeds["95 % interval"] == f"{1.4 - half:.4f} to {1.4 + half:.4f}"
    assert seeds["saliency / random AOPC"] == pytest.approx(2.2)
    none = cells["uniform"]
    assert (none["measured"], none["examples"]) == ("0/1", "—")
    assert none["attention / random AOPC"] == "not measured"
    assert none["95 % interval"] == none["saliency / random AOPC"] == "—"


def test_sentences_say_more_than_random_only_above_one(runs):
    rows = report.collect(report.find_runs([runs]))
    groups = report.group_rows(rows)
    said = {a: report.group_faithfulness(a, m).sentence() for (_, _, a), m in groups.items()}
    assert MORE in said["additive"] and "entirely above 1" in said["additive"]
    assert "1.8000 [1.3000, 2.4000]" in said["additive"]
    for attention in ("dot", "multihead"):  # intervals containing 1
        assert MORE not in said[attention] and "includes 1" in said[attention]
    assert "(2 runs)" in said["multihead"]
    assert said["uniform"] == (
        "`uniform`: not measured (no finished run has an `interpretability` entry)."
    )


def test_report_files_show_the_entries(runs, tmp_path):
    out = tmp_path / "report"
    index = report.build_report(report.collect(report.find_runs([runs])), out,
                                {"sentiment": SENTIMENT})  # fmt: skip
    with open(out / "results.csv", encoding="utf-8") as fh:
        table = {(r["attention"], r["seed"]): r for r in csv.DictReader(fh)}
    add = table[("additive", "1")]
    assert [add[f"faithfulness_attention_ratio{e}"] for e in ("", "_low", "_high")] == [
        "1.8", "1.3", "2.4"]  # fmt: skip
    assert [add[f"faithfulness_saliency_ratio{e}"] for e in ("", "_low", "_high")] == [
        "2.5", "2.0", "3.1"]  # fmt: skip
    assert add["faithfulness_examples"] == "200"
    assert add["faithfulness_attention_rollout_ratio"] == ""  # no self-attention layers
    # per run, not the group's mean
    assert table[("multihead", "2")]["faithfulness_attention_ratio"] == "1.6"
    never = table[("uniform", "1")]
    assert all(v == "" for k, v in never.items() if k.startswith("faithfulness_"))

    md = (out / "results.md").read_text(encoding="utf-8")
    assert "Faithfulness (erasure)." in md
    assert "| M | — | additive | 1/1 | 200 | 1.8000 | 1.3000 to 2.4000 | 2.5000 |" in md
    assert "| M | — | uniform | 0/1 | — | not measured | — | — | — |" in md
    assert f"- `additive`: removing the inputs attention ranks first {MORE}" in md

    cross = (out / "cross_modal.md").read_text(encoding="utf-8")
    assert "sentiment: attention / random AOPC" in cross
    assert "1.8000 [1.3000, 2.4000]" in cross and "Faithfulness: per recipe" in cross
    view_rows = {r[0]: r[-1] for r in report.cross_modal(
        report.collect(report.find_runs([runs])), {"sentiment": SENTIMENT},
        report.analyse_all(report.collect(report.find_runs([runs])), {"sentiment": SENTIMENT}),
        report.Significance()).table().rows}  # fmt: skip
    assert view_rows["additive"] == "1.8000 [1.3000, 2.4000]"
    assert view_rows["uniform"] == "—"

    page = index.read_text(encoding="utf-8")
    assert "<h3>Faithfulness (erasure)</h3>" in page and 'id="faithfulness-sentiment"' in page
    assert "not measured" in page


def test_an_entry_without_a_ratio_says_why(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    reason = "the random drop is not positive (mean 0)"
    m = {"recipe": "sentiment", "attention": "dot", "model": "M", "seed": 1, "metrics": {},
         "train_seconds": 1.0, "interpretability": {"examples": 50, "aopc": {"random": 0.0},
         "aopc_ratio_to_random": {"attention": {"value": None, "ci95": None,
                                                "reason": reason}}}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(m))
    rows = report.collect([folder])
    (row,) = report.faithfulness_table(rows).rows
    assert row[3:6] == ["1/1", "50", "—"]  # measured, but no number to show
    sentence = report.group_faithfulness("dot", rows).sentence()
    assert sentence == f"`dot`: no attention / random ratio — {reason}."
