"""`profile=standard`: the 90 %-of-full-budget rule of benchmarks/standard_budget.py on
hand-built curves, and the profile's budgets held equal to the committed calibration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from toolkit import report
from toolkit.commands import compare
from toolkit.paths import CONF_DIR

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location(
        "standard_budget", ROOT / "benchmarks" / "standard_budget.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sb():
    return _script()


def test_rule_on_a_hand_built_curve(sb):
    # accuracy per epoch 0.50 0.70 0.66 0.80 0.90 1.00: 90 % of 1.00 first kept at epoch 5
    kept = sb.kept([0.5, 0.7, 0.66, 0.8, 0.9, 1.0])
    assert kept == [0.5, 0.7, 0.7, 0.8, 0.9, 1.0]
    assert sb.smallest_budget([1, 2, 3, 4, 5, 6], kept) == 4
    # a dip after the threshold does not move it: the kept checkpoint is the best so far
    kept = sb.kept([0.2, 0.95, 0.4, 1.0])
    assert sb.smallest_budget([1, 2, 3, 4], kept) == 1
    # already there at the first validation; exactly 90 % counts
    assert sb.smallest_budget([10, 20], [0.9, 1.0]) == 0
    assert sb.smallest_budget([10, 20], [0.899, 1.0]) == 1
    with pytest.raises(ValueError):
        sb.smallest_budget([2, 1], [0.5, 1.0])


def test_error_rates_use_one_minus_the_rate(sb):
    assert sb.quality(0.25, higher_is_better=False) == pytest.approx(0.75)
    assert sb.quality(42.0, higher_is_better=True) == 42.0
    with pytest.raises(ValueError):
        sb.quality(3.2, higher_is_better=False)  # a loss, not a rate


def test_calibrate_averages_seeds_and_reads_the_default_type_only(sb):
    """WER curves of two seeds of the default type (and one other type, ignored)."""
    runs = [
        {"recipe": "asr", "run": r, "attention": a, "seed": s, "monitor": "val/wer",
         "mode": "min", "unit": "epochs", "train_seconds": "100"}
        for r, a, s in [("a1", "multihead", 1), ("a2", "multihead", 2), ("b1", "local", 1)]
    ]  # fmt: skip
    wer = {"a1": [0.9, 0.3, 0.12, 0.1], "a2": [0.8, 0.4, 0.16, 0.1], "b1": [0.1, 0.1, 0.1, 0.1]}
    curves = [
        {"recipe": "asr", "run": run, "epoch": e, "step": 10 * (e + 1) - 1,
         "elapsed_s": 25.0 * (e + 1), "elapsed_source": "estimated", "value": v}
        for run, vs in wer.items() for e, v in enumerate(vs)
    ]  # fmt: skip
    (cal,) = sb.calibrate(runs, curves, attention_of=lambda recipe: "multihead")
    # mean 1 - WER: 0.15, 0.65, 0.86, 0.90; 90 % of 0.90 = 0.81 -> 3 epochs
    assert (cal.runs, cal.quality, cal.full_budget, cal.budget) == (2, "1 - value", 4, 3)
    assert cal.budget_steps == 30 and cal.budget_elapsed_s == 75.0
    assert cal.full_value == pytest.approx(0.1) and cal.budget_value == pytest.approx(0.14)
    assert cal.previous_logged == "2" and cal.override == ["trainer.max_epochs=3"]


def test_runs_trained_to_a_smaller_budget_decide_that_budget(sb):
    """Accuracy of one long run (3 epochs) and checks trained only to 1 and 2 epochs: a check
    replaces the long curve's point at its budget, in either direction."""

    def run(name, max_epochs, steps):
        return {"recipe": "sentiment", "run": name, "attention": "additive", "seed": 1,
                "monitor": "val/accuracy", "mode": "max", "unit": "epochs",
                "max_epochs": str(max_epochs), "max_steps": "", "steps": str(steps),
                "train_seconds": str(steps / 10)}  # fmt: skip

    def curve(name, values):
        return [{"recipe": "sentiment", "run": name, "epoch": e, "step": 100 * (e + 1) - 1,
                 "elapsed_s": 10.0 * (e + 1), "elapsed_source": "estimated", "value": v}
                for e, v in enumerate(values)]  # fmt: skip

    long_run = [run("long", 3, 300)]
    long_curve = curve("long", [0.95, 0.96, 1.0])
    (cal,) = sb.calibrate(long_run, long_curve, attention_of=lambda r: "additive")
    assert (cal.budget, cal.budget_source, cal.checks) == (1, "long-run curve", "")
    # the run trained to 1 epoch keeps only 0.80 (< 0.90): 1 epoch fails, 2 epochs (curve) pass
    runs = long_run + [run("one-a", 1, 100), run("one-b", 1, 100)]
    curves = long_curve + curve("one-a", [0.78]) + curve("one-b", [0.82])
    (cal,) = sb.calibrate(runs, curves, attention_of=lambda r: "additive")
    assert cal.budget == 2 and cal.budget_source == "long-run curve"
    assert cal.runs == 1 and cal.checks == "1 epoch: 0.8000 (80.0 %, 2 runs)"
    # a check of 2 epochs at 0.93 is what 2 epochs gets (its steps; the long run's seconds)
    runs += [run("two", 2, 190)]
    curves += curve("two", [0.7, 0.93])
    (cal,) = sb.calibrate(runs, curves, attention_of=lambda r: "additive")
    assert (cal.budget, cal.budget_source) == (2, "trained to budget (1 run)")
    assert (cal.budget_value, cal.budget_steps, cal.budget_elapsed_s) == (0.93, 190, 20.0)
    assert cal.previous_logged == "1" and cal.override == ["trainer.max_epochs=2"]


def _standard():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="compare", overrides=["profile=standard"])


def test_standard_profile_composes_and_its_budgets_equal_the_calibration(sb):
    cfg = _standard()
    prof = cfg.profile
    assert prof.name == "standard" and len(prof.seeds) >= 5
    assert report.Significance.from_config(cfg.significance).reference == "multihead"
    calibration = sb.read_calibration()
    assert sorted(calibration) == report.recipe_names()
    budgets = OmegaConf.to_container(prof.budgets)
    for name, row in calibration.items():
        unit, n = row["unit"], int(row["budget"])
        want = ([f"trainer.max_epochs={n}"] if unit == "epochs"
                else ["trainer.max_epochs=null", f"trainer.max_steps={n}"])  # fmt: skip
        assert budgets[name] == want, (name, budgets[name], row)
        # the profile's comment states the same figures
        assert f"{n} {unit}" in Path(CONF_DIR, "profile", "standard.yaml").read_text() or (
            n == 1 and f"1 {unit[:-1]}" in Path(CONF_DIR, "profile", "standard.yaml").read_text()
        )
    # the planned runs train exactly that budget
    specs = {name: report.recipe_report(name) for name in report.recipe_names()}
    grid = compare.plan(cfg, specs)
    for spec in grid:
        assert spec.overrides[: len(budgets[spec.recipe])] == budgets[spec.recipe]
        assert "threads=1" in spec.overrides
    cfg_u = OmegaConf.merge(cfg, {"significance": {"reference": "uniform"}})
    assert report.Significance.from_config(cfg_u.significance).reference == "uniform"


def test_committed_calibration_equals_the_committed_curves(sb):
    """calibration.csv/.md are what the script makes of runs.csv and curves.csv."""
    files = sb.outputs()
    for name in ("calibration.csv", "calibration.md"):
        assert (sb.OUT / name).read_text(encoding="utf-8") == files[name], name
