"""The report package on hand-built run folders: its stages import one way, the learning
curves are the CSV logs' numbers (mean over seeds per step, seconds from the logged column),
the cross-modal cell holds the seed mean and interval and its significance mark, and the
shared training module logs the time column the curves read."""

from __future__ import annotations

import ast
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import report
from toolkit.report import render, tables

PACKAGE = Path(report.__file__).parent
# the stages in flow order: a module may import only the ones before it
STAGES = ["spec", "collect", "tables", "figures", "page", "render"]

SENTIMENT = report.RecipeReport("sentiment", ["accuracy"], "accuracy", monitor="val/accuracy")
TRANSLATION = report.RecipeReport("translation", ["bleu"], "bleu", monitor="val/bleu")
LOG_HEADER = ["epoch", "step", "train/loss", "val/accuracy", "val/loss", "time/elapsed_s"]


def write_run(folder: Path, recipe: str, attention: str, seed: int, metrics: dict,
              samples_per_s: float = 100.0, steps: int = 30) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    m = {
        "recipe": recipe, "attention": attention, "model": "M", "seed": seed,
        "metrics": metrics, "train_seconds": 10.0 * seed, "params": 1000,
        "budget": {"max_steps": steps, "max_epochs": None, "steps": steps, "epochs": 1.0},
        "throughput": {"train_samples_per_s": samples_per_s, "test_ms_per_sample": 2.0},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder


def write_log(folder: Path, rows: list[dict]) -> None:
    """A Lightning-style ``logs/metrics.csv``: train rows and validation rows interleaved."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys([*LOG_HEADER, *(k for r in rows for k in r)]))
    with open(folder / "logs" / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


def write_per_example(folder: Path, correct: int, n: int = 100) -> None:
    from toolkit.runs import write_per_example as write

    records = [{"id": i, "label": "pos", "predicted": "pos" if i < correct else "neg",
                "probability": 0.9} for i in range(n)]  # fmt: skip
    write(folder, {"recipe": "sentiment", "kind": "classification", "labels": ["neg", "pos"]},
          records)  # fmt: skip


# ----- the package's import direction -----------------------------------------------------
def test_stages_import_only_earlier_stages():
    for i, stage in enumerate(STAGES):
        tree = ast.parse((PACKAGE / f"{stage}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            imported |= {n.split(".")[2] for n in names if n.startswith("toolkit.report.")}
            assert not any(n == "toolkit.report" for n in names), (stage, "imports the facade")
        later = imported & set(STAGES[i:])
        assert not later, f"{stage} imports {sorted(later)}: a stage may import earlier ones"
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(
        [*STAGES, "__init__", "__main__"]
    )  # a new module gets a place in STAGES


@pytest.mark.parametrize(
    "order",
    [["toolkit.report.render", "toolkit.report.collect"],
     ["toolkit.report.collect", "toolkit.report.render"],
     ["toolkit.report.page", "toolkit.report.tables", "toolkit.compare"]],
)  # fmt: skip
def test_import_in_any_order(order):
    code = "; ".join(f"import {m}" for m in order)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


# ----- learning curves --------------------------------------------------------------------
@pytest.fixture
def curve_runs(tmp_path):
    """sentiment: additive seeds 1 and 2 and multihead seed 1, validated at steps 9 and 19
    (seed 2 of additive also at 29); training rows between them carry no val/ value."""
    runs = tmp_path / "runs"
    logs = {
        ("additive", 1): [(9, 0.60, 4.0), (19, 0.70, 8.5)],
        ("additive", 2): [(9, 0.64, 5.0), (19, 0.74, 9.5), (29, 0.80, 14.0)],
        ("multihead", 1): [(9, 0.50, 6.0), (19, 0.55, 12.0)],
    }
    for (attention, seed), points in logs.items():
        folder = write_run(runs / attention / f"seed{seed}", "sentiment", attention, seed,
                           {"accuracy": points[-1][1]})  # fmt: skip
        rows = []
        for step, acc, seconds in points:
            rows.append({"epoch": 0, "step": step - 1, "train/loss": 0.9})  # not a val row
            rows.append({"epoch": 0, "step": step, "val/accuracy": acc, "val/loss": 1 - acc,
                         "time/elapsed_s": seconds})  # fmt: skip
        write_log(folder, rows)
    return runs


def test_learning_curves_are_the_logged_numbers(curve_runs, tmp_path):
    rows = report.collect(report.find_runs([curve_runs]))
    curves = {c.attention: c for c in report.learning_curves(SENTIMENT, rows)}
    add = curves["additive"]
    assert (add.metric, add.seeds) == ("val/accuracy", 2)
    assert [p.step for p in add.points] == [9, 19, 29]
    assert [p.mean for p in add.points] == pytest.approx([0.62, 0.72, 0.80])
    assert [p.n for p in add.points] == [2, 2, 1]
    assert add.points[0].std == pytest.approx(math.sqrt(2 * 0.02**2))  # stdev(0.60, 0.64)
    assert add.points[2].std is None  # one seed: no band
    # the seconds axis: the mean of the logged time/elapsed_s of the seeds at that step
    assert [p.seconds for p in add.points] == pytest.approx([4.5, 9.0, 14.0])
    assert [p.seconds for p in curves["multihead"].points] == pytest.approx([6.0, 12.0])

    out = tmp_path / "out"
    report.build_report(rows, out, {"sentiment": SENTIMENT})
    with open(out / "curves.csv", encoding="utf-8") as fh:
        table = [r for r in csv.DictReader(fh) if r["attention"] == "additive"]
    assert [(float(r["step"]), float(r["seconds"]), float(r["mean"]), r["n"]) for r in table] == [
        (9.0, 4.5, pytest.approx(0.62), "2"), (19.0, 9.0, pytest.approx(0.72), "2"),
        (29.0, 14.0, pytest.approx(0.80), "1"),
    ]  # fmt: skip
    assert (out / "curves_sentiment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    # the budget in both units: metrics.json budget.steps and train_seconds (10 s x seed)
    assert "| model | budget | attention | runs | optimiser steps | train s |" in md
    assert "| M | — | additive | 2/2 | 30 | 15.0 ± 7.0711 |" in md
    assert "| M | — | multihead | 1/1 | 30 | 10.0 |" in md
    assert tables._fmt_steps([580.0, 600.0]) == "590 ± 14"  # seeds that stopped apart
    assert "`curves_sentiment.png`" in md
    assert 'id="budget-sentiment"' in (out / "index.html").read_text()


def test_a_log_without_the_time_column_has_no_seconds(tmp_path):
    folder = write_run(tmp_path / "r", "sentiment", "dot", 1, {"accuracy": 0.5})
    write_log(folder, [{"epoch": 0, "step": 4, "val/accuracy": 0.5}])
    (curve,) = report.learning_curves(SENTIMENT, report.collect([folder]))
    assert [(p.step, p.mean, p.seconds) for p in curve.points] == [(4, 0.5, None)]
    assert not curve.has_seconds
    no_log = write_run(tmp_path / "old", "sentiment", "dot", 2, {"accuracy": 0.5})
    assert report.load_run(no_log).curve == []


# ----- the cross-modal view ---------------------------------------------------------------
@pytest.fixture
def cross_rows(tmp_path):
    """sentiment: additive right on 90 / 88 of 100 sentences (seeds 1 / 2), multihead on
    60 / 62, and `dot` an exact copy of multihead's runs; translation: no per-example files."""
    runs = tmp_path / "runs"
    sentiment = [("additive", 1, 90, 200.0), ("additive", 2, 88, 200.0),
                 ("multihead", 1, 60, 100.0), ("multihead", 2, 62, 100.0),
                 ("dot", 1, 60, 50.0), ("dot", 2, 62, 50.0)]  # fmt: skip
    for attention, seed, correct, speed in sentiment:
        folder = write_run(runs / "s" / attention / f"seed{seed}", "sentiment", attention, seed,
                           {"accuracy": correct / 100, "attention_entropy": 0.8,
                            "attention_lexicon_lift": 1.5 if attention == "additive" else 1.1},
                           samples_per_s=speed)  # fmt: skip
        write_per_example(folder, correct)
    for attention, seed, bleu in [("multihead", 1, 20.0), ("multihead", 2, 22.0),
                                  ("additive", 1, 18.0)]:  # fmt: skip
        write_run(runs / "t" / attention / f"seed{seed}", "translation", attention, seed,
                  {"bleu": bleu, "attention_monotonicity": 0.9}, samples_per_s=50.0)  # fmt: skip
    return report.collect(report.find_runs([runs]))


def test_cross_modal_cells_marks_and_efficiency(cross_rows, tmp_path):
    specs = {"sentiment": SENTIMENT, "translation": TRANSLATION}
    sig = report.Significance()
    view = report.cross_modal(cross_rows, specs, report.analyse_all(cross_rows, specs, sig), sig)
    assert view.attentions == ["multihead", "additive", "dot"]  # the reference first
    assert view.labels == ["sentiment accuracy ↑", "translation bleu ↑"]
    # mean 0.89, s = 0.0141421, t(0.975, 1) = 12.7062: 0.89 ± 0.127062; p = 2 / 1001
    assert view.cells[("additive", 0)].text() == "0.8900 [0.7629, 1.0171]*"
    assert view.cells[("multihead", 0)].text() == "0.6100 [0.4829, 0.7371]"
    dot = view.cells[("dot", 0)]  # two copies of the reference's runs: tested, no mark
    assert dot.tested and not dot.significant and dot.text() == "0.6100 [0.4829, 0.7371]"
    # translation has no per-example files: interval, no test, no mark
    assert view.cells[("multihead", 1)].text() == "21.0 [8.3, 33.7]"
    assert view.cells[("additive", 1)].text() == "18.0 (1 seed)"
    assert not view.cells[("additive", 1)].tested and ("dot", 1) not in view.cells
    # throughput ratio to multihead: 2 on sentiment, 1 on translation -> geometric mean √2
    assert view.efficiency["additive"]["train_samples_per_s"] == (pytest.approx(math.sqrt(2)), 2)
    assert view.efficiency["dot"]["train_samples_per_s"] == (pytest.approx(0.5), 1)

    table = view.table()
    by_type = {r[0]: dict(zip(table.header, r, strict=True)) for r in table.rows}
    assert list(by_type) == ["multihead (reference)", "additive", "dot"]
    assert by_type["additive"]["train samples/s (× multihead)"] == "1.41× (2)"
    assert by_type["additive"]["sentiment: entropy / lexicon lift"] == "0.800 / 1.500"
    assert by_type["dot"]["translation: monotonicity"] == "—"
    assert by_type["multihead (reference)"]["translation: monotonicity"] == "0.900"

    out = tmp_path / "out"
    index = report.build_report(cross_rows, out, specs, significance=sig)
    md = (out / "cross_modal.md").read_text()
    assert "| additive | 0.8900 [0.7629, 1.0171]* | 18.0 (1 seed) | 1.41× (2) |" in md
    assert "| dot | 0.6100 [0.4829, 0.7371] | — | 0.50× (1) |" in md
    assert "![primary metric per attention type and recipe](cross_modal.png)" in md
    assert (out / "cross_modal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = index.read_text()
    assert '<table id="cross-modal">' in page and "0.8900 [0.7629, 1.0171]*" in page
    assert "`cross_modal.md`" in (out / "results.md").read_text()

    # a stricter level: the same difference, no mark
    strict = report.Significance(alpha=0.001)
    view = report.cross_modal(
        cross_rows, specs, report.analyse_all(cross_rows, specs, strict), strict
    )
    assert view.cells[("additive", 0)].text() == "0.8900 [0.7629, 1.0171]"


# ----- the time column of the shared training module ----------------------------------------
def test_recipe_module_logs_elapsed_seconds_beside_validation(tmp_path):
    """A tiny module on the shared base (its own on_validation_epoch_start, as the recipes
    have) writes ``time/elapsed_s`` into the validation rows of the CSV log."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from toolkit.training.module import RecipeModule

    class Tiny(RecipeModule):
        def __init__(self):
            super().__init__({})
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return self.layer(x).pow(2).mean()

        def on_validation_epoch_start(self):
            self.seen = 0

        def validation_step(self, batch, batch_idx):
            (x,) = batch
            self.log("val/loss", self.layer(x).pow(2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(max_epochs=3, logger=CSVLogger(tmp_path, name="logs", version=""),
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=1,
                         accelerator="cpu", devices=1)  # fmt: skip
    module = Tiny()
    trainer.fit(module, data, data)
    curve = report.read_curve(tmp_path)
    assert [row["step"] for row in curve] == [1, 3, 5]  # one row per validation, no sanity row
    seconds = [row[report.ELAPSED_COLUMN] for row in curve]
    assert all(s > 0 for s in seconds) and seconds == sorted(seconds)
    assert all("val/loss" in row for row in curve)

    # a resumed run continues its clock from the checkpoint's reading
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed = Tiny()
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    assert resumed.elapsed_seconds() >= checkpoint["elapsed_s"] >= seconds[-1]


def test_render_writes_the_flat_table_of_benchmarks_collect(cross_rows, tmp_path):
    table = tables.metric_table(cross_rows, ["accuracy", "bleu"])
    assert table.header[:7] == ["recipe", "model", "budget", "attention", "seed", "accuracy",
                                "bleu"]  # fmt: skip
    render.write_table(table, tmp_path / "flat")
    with open(tmp_path / "flat.csv", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(cross_rows) == 9
    first = next(r for r in got if (r["recipe"], r["attention"], r["seed"]) ==
                 ("sentiment", "additive", "1"))  # fmt: skip
    assert (first["accuracy"], first["bleu"]) == ("0.9", "")
