"""``toolkit.compare ... interpret=true``: after each finished run without an
``interpretability`` entry, ``python -m toolkit.interpret`` on its kept checkpoint with the
run's threads; a run that has the entry is skipped, a failing step is counted, printed and
logged, and the run stays in the grid's rows. No model is trained: training and the launcher
are replaced, except in the test that runs the real launcher on a stand-in interpreter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from toolkit import report
from toolkit.commands import compare

SPEC = report.RecipeReport("sentiment", ["accuracy"], "accuracy",
                           attentions=["additive", "multihead"])  # fmt: skip
BEST = "best-epoch01-step40.ckpt"


def finish(run_dir: Path, threads: int, interpreted: bool = False, moved: bool = False) -> Path:
    """A finished run: metrics.json naming its best checkpoint (recorded under another
    folder when ``moved``), which exists under ``checkpoints/``."""
    ckpt = run_dir / "checkpoints" / BEST
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"weights")
    m = {"recipe": "sentiment", "attention": run_dir.parent.name, "model": "M",
         "seed": int(run_dir.name.removeprefix("seed")), "metrics": {"accuracy": 0.8},
         "train_seconds": 1.0, "throughput": {"threads": threads},
         "checkpoint": str(Path("/elsewhere/checkpoints") / BEST if moved else ckpt)}  # fmt: skip
    if interpreted:
        m["interpretability"] = {"examples": 200, "aopc": {"attention": 0.2}}
    (run_dir / "metrics.json").write_text(json.dumps(m))
    return ckpt


@pytest.fixture
def grid(tmp_path):
    cfg = OmegaConf.create({
        "profile": {"name": "quick", "seeds": [1, 2], "overrides": ["threads=1"]},
        "runs_dir": str(tmp_path / "runs"), "attentions": None, "seeds": None, "overrides": [],
    })  # fmt: skip
    return {(s.attention, s.seed): s for s in compare.plan(cfg, {"sentiment": SPEC})}


def fake_launcher(calls: list, fail_on: set[Path]):
    """Stands in for ``compare.launch``: records the command; an interpret of a run in
    ``fail_on`` exits 3, any other adds the entry to the run's metrics.json."""

    def launch(cmd, log_path, timeout_s):
        calls.append((cmd, log_path, timeout_s))
        run_dir = Path(log_path).parent
        Path(log_path).write_text("console\n")
        if run_dir in fail_on:
            return compare.Launched(3, False, 0.1, 1.0)
        m = json.loads((run_dir / "metrics.json").read_text())
        m["interpretability"] = {"examples": 50}
        (run_dir / "metrics.json").write_text(json.dumps(m))
        return compare.Launched(0, False, 0.1, 1.0)

    return launch


def test_interpret_runs_on_finished_runs_without_the_entry(grid, monkeypatch, capsys):
    need = finish(grid[("additive", 1)].run_dir, threads=3)
    finish(grid[("additive", 2)].run_dir, threads=3, interpreted=True)  # has it: skipped
    failing = grid[("multihead", 1)].run_dir
    finish(failing, threads=1)
    trained = []

    def fake_execute(spec, python, timeout_s):  # multihead seed 2 is trained now
        trained.append(spec.run_dir)
        finish(spec.run_dir, threads=2, moved=True)
        return {"status": "ok", "wall_seconds": 1.0, "peak_rss_mib": 1.0}

    calls: list = []
    monkeypatch.setattr(compare, "execute", fake_execute)
    monkeypatch.setattr(compare, "launch", fake_launcher(calls, fail_on={failing}))
    step = compare.InterpretStep(examples=50)
    rows = compare.run_grid(list(grid.values()), "PY", 900.0, interpret=step)

    fresh = grid[("multihead", 2)].run_dir
    assert trained == [fresh]
    assert [c[0] for c in calls] == [
        ["PY", "-m", "toolkit.interpret", f"ckpt={need}", "examples=50", "threads=3"],
        ["PY", "-m", "toolkit.interpret", f"ckpt={failing / 'checkpoints' / BEST}",
         "examples=50", "threads=1"],
        # recorded under a folder that is gone: the same file name in its own checkpoints/
        ["PY", "-m", "toolkit.interpret", f"ckpt={fresh / 'checkpoints' / BEST}",
         "examples=50", "threads=2"],
    ]  # fmt: skip
    assert all(log.name == "interpret.log" and timeout == 900.0 for _, log, timeout in calls)
    assert step.measured == [need.parent.parent, fresh] and step.failed == [failing]
    # the failure is printed, recorded beside the run, and the run stays in the rows
    out = capsys.readouterr().out
    assert (f"3/4 sentiment/multihead seed 1: interpret failed (exit 3): see "
            f"{failing / 'interpret.log'}") in out  # fmt: skip
    assert "1/4 sentiment/additive seed 1: interpreted in 0 s" in out
    side = json.loads((failing / "compare.json").read_text())["interpret"]
    assert (side["status"], side["returncode"]) == ("failed", 3)
    assert [r.status for r in rows] == ["reused", "reused", "reused", "ok"]
    assert rows[0].interpretability == {"examples": 50} and rows[2].interpretability is None
    summary = compare.interpret_summary(step)
    assert summary.startswith("[compare] interpret: 2 run(s) measured, 1 interpret step(s) failed")
    assert str(failing) in summary

    calls.clear()  # a second compare: only the failed one is tried again
    compare.run_grid(list(grid.values()), "PY", None, interpret=compare.InterpretStep())
    assert [c[0][3] for c in calls] == [f"ckpt={failing / 'checkpoints' / BEST}"]
    calls.clear()
    compare.run_grid(list(grid.values()), "PY", None)  # interpret=false: never launched
    assert calls == []


def test_real_launcher_counts_a_failing_interpreter_and_a_missing_checkpoint(tmp_path):
    """The real ``launch`` on a stand-in interpreter that prints its arguments and exits 5."""
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho "args: $*"\nexit 5\n')
    fake_python.chmod(0o755)
    run_dir = tmp_path / "sentiment" / "dot" / "seed1"
    ckpt = finish(run_dir, threads=4)
    step = compare.InterpretStep(examples=7)
    info = compare.interpret_run(run_dir, str(fake_python), step, 30)
    assert (info["status"], info["returncode"]) == ("failed", 5)
    log = (run_dir / "interpret.log").read_text()
    assert log.strip() == f"args: -m toolkit.interpret ckpt={ckpt} examples=7 threads=4"
    assert compare.interpret_line(info) == (
        f"interpret failed (exit 5): see {run_dir / 'interpret.log'}"
    )
    ckpt.unlink()  # no checkpoint left: failed without launching anything
    info = compare.interpret_run(run_dir, str(fake_python), step, 30)
    assert (
        info["returncode"] is None
        and "no kept checkpoint" in (run_dir / "interpret.log").read_text()
    )
    assert compare.interpret_line(info).startswith("interpret failed (no checkpoint)")
    assert step.failed == [run_dir, run_dir] and step.measured == []


def test_interpret_keys_of_conf_compare():
    from hydra import compose, initialize_config_dir

    from toolkit.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        default = compose("compare")
        on = compose("compare", ["interpret=true", "interpret_examples=40"])
        by_profile = compose("compare", ["++profile.interpret=true"])
    assert default.interpret is False and default.interpret_examples == 200
    assert compare.interpret_step(default) is None
    assert compare.interpret_step(on).examples == 40
    assert compare.interpret_step(by_profile).examples == 200


def test_reused_runs_print_no_interpret_line_without_the_key(grid, monkeypatch, capsys):
    finish(grid[("additive", 1)].run_dir, threads=1)
    monkeypatch.setattr(compare, "execute", lambda *a: pytest.fail("nothing to train"))
    compare.run_grid([grid[("additive", 1)]], sys.executable, None)
    assert "interpret" not in capsys.readouterr().out
