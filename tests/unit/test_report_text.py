"""What the comparison report tells a newcomer: budgets in words, what each run trained and
whether the time guard fired, sample outputs beside references, and broken outputs counted."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from toolkit import report


def _run(folder: Path, trainer: dict, budget: dict, samples: list[dict], data: dict | None = None):
    folder.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"trainer": trainer, "data": data or {}}), folder / "config.yaml"
    )
    m = {"recipe": "translation", "attention": "multihead", "model": "Seq2SeqTransformer",
         "seed": 1, "metrics": {"bleu": 12.5, "chrf": 40.0}, "train_seconds": 60.0,
         "budget": budget, "samples": samples, "params": 10}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(m))


def test_budget_in_words(tmp_path):
    _run(tmp_path / "a", {"max_epochs": 2, "max_time": "00:00:20:00"}, {}, [])
    assert report.budget_of(tmp_path / "a") == "2 epochs"
    _run(tmp_path / "b", {"max_epochs": None, "max_steps": 600}, {}, [],
         data={"format": "scenes", "scenes": {"train": 3000}})  # fmt: skip
    assert report.budget_of(tmp_path / "b") == "600 steps, 3,000 scenes"
    _run(tmp_path / "c", {"max_epochs": 1}, {}, [])
    assert report.budget_of(tmp_path / "c") == "1 epoch"


def test_trained_says_when_the_time_guard_fired():
    done = {"max_epochs": 2, "max_steps": None, "epochs": 2.0, "steps": 500,
            "time_guard_fired": False, "max_time": None}  # fmt: skip
    assert report.trained_of({"budget": done}) == ("2.0 of 2 epochs (500 steps)", False)
    cut = {**done, "epochs": 1.4, "steps": 350, "time_guard_fired": True,
           "max_time": "00:00:03:00"}  # fmt: skip
    text, fired = report.trained_of({"budget": cut})
    assert fired and text == "1.4 of 2 epochs (350 steps), time guard 00:00:03:00 fired"
    steps = {**done, "max_steps": 600, "steps": 600}
    assert report.trained_of({"budget": steps})[0] == "600 of 600 steps"


def test_degenerate_outputs_are_counted():
    texts = ["die Datei wurde gespeichert", "", "Zelle Zelle Zelle Zelle",
             "a b c x a b c y a b c", "the cat sat on the mat",
             "Legitimierung ist zum AAAAAAAALLLLAAAA", "Speicher 1000000"]  # fmt: skip
    assert report.degenerate(texts) == {"outputs": 7, "empty": 1, "looping": 3}


def test_report_shows_samples_guard_and_intro(tmp_path):
    samples = [
        {"source": "Save file", "reference": "Datei speichern", "translation": "Datei speichern"},
        {"source": "Cell", "reference": "Zelle", "translation": "Zelle Zelle Zelle"},
    ]
    budget = {"max_epochs": 2, "max_steps": None, "epochs": 1.5, "steps": 30,
              "time_guard_fired": True, "max_time": "00:00:01:00"}  # fmt: skip
    _run(tmp_path / "runs" / "r1", {"max_epochs": 2, "max_time": "00:00:01:00"}, budget, samples)
    rows = report.collect(report.find_runs([tmp_path / "runs"]))
    assert rows[0].guard_fired and rows[0].budget == "2 epochs"
    spec = report.RecipeReport(name="translation", metrics=["bleu", "chrf"], primary="bleu")
    report.build_report(rows, tmp_path / "out", {"translation": spec}, intro="What ran: `x`.")
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.splitlines()[2] == "What ran: `x`."
    assert "| Save file | Datei speichern | Datei speichern |" in md
    assert "2 outputs shown: 0 empty, 1 looping" in md
    assert "**Time guard fired**" in md and "1.5 of 2 epochs (30 steps)" in md
    page = (tmp_path / "out" / "index.html").read_text()
    assert "What ran: <code>x</code>." in page and "Zelle Zelle Zelle" in page
    assert "time guard fired" in page


def test_several_references_show_the_first_and_a_count():
    m = {"samples": [{"hypothesis": "a red circle", "references": ["r1", "r2", "r3"]},
                     {"hypothesis": "x", "references": ["only"]}] * 4}  # fmt: skip
    assert report.samples_of(m) == [
        {"hypothesis": "a red circle", "references": "r1 (+2 more)"},
        {"hypothesis": "x", "references": "only"},
    ] * 2 + [{"hypothesis": "a red circle", "references": "r1 (+2 more)"}]
