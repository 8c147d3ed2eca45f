"""benchmarks/speed_defaults.py: the pure parts (step summary, resume, table, the fastest
setting within the seed noise), from hand-made step records and rows; nothing is timed."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import speed_defaults as sd  # noqa: E402


def _row(recipe, setting, seed, steps_per_s, quality="", loss=1.0, status="ok", compiled=None):
    compiled = sd.SETTINGS[setting][1] if compiled is None else compiled
    return {"recipe": recipe, "setting": setting, "seed": str(seed), "compiled": str(compiled),
            "steps_per_s": str(steps_per_s), "steps_per_s_with_compile": str(steps_per_s / 2),
            "first_step_s": "3.0", "median_step_s": str(1 / steps_per_s),
            "train_loss": str(loss), "quality": str(quality),
            "quality_metric": "val/accuracy" if quality != "" else "", "status": status,
            "threads": "2", "warmup": "5", "steps": "30", "trained_steps": "35",
            "load_start": "1.5", "load_end": "2.5"}  # fmt: skip


def test_summary_of_step_records():
    records = [{"seconds": s, "loss": l} for s, l in
               [(9.0, 3.0), (2.0, 2.5), (1.0, 2.0), (3.0, 1.5), (1.0, 1.0)]]  # fmt: skip
    out = sd.summarise(records, warmup=2)
    assert out["steps_done"] == 5 and out["first_step_s"] == 9.0 and out["warmup_s"] == 11.0
    assert out["median_step_s"] == 1.0 and out["steps_per_s"] == 1.0  # median of 1, 3, 1
    assert out["steps_per_s_with_compile"] == pytest.approx(5 / 16)  # compile counted
    assert out["train_loss"] == pytest.approx(2.0)  # the last five losses
    assert sd.summarise([], warmup=2) == {"steps_done": 0}
    assert math.isnan(sd.summarise(records[:2], warmup=2)["steps_per_s"])  # warm-up only


def test_trained_steps_and_resume():
    assert sd.trained_steps(5, 30, None) == 35
    assert sd.trained_steps(5, 30, 300) == 300
    rows = [_row("sentiment", "fp32-eager", 1, 10.0)]
    jobs = [("sentiment", s, seed) for s in ("fp32-eager", "fp32-compile") for seed in (1, 2)]
    assert sd.pending(rows, jobs) == jobs[1:]  # only the measured row is skipped
    expected = {"threads": 2, "warmup": 5, "steps": 30, "trained_steps": 35}
    sd.check_compatible(rows, expected)
    with pytest.raises(SystemExit, match="threads=2, this run has threads=1"):
        sd.check_compatible(rows, {**expected, "threads": 1})


def test_csv_round_trip_is_atomic_and_keeps_columns(tmp_path):
    path = tmp_path / "speed_defaults.csv"
    sd.write_csv(path, [{**_row("asr", "fp32-eager", 1, 2.0), "steps_per_s": 2.0}])
    assert not list(tmp_path.glob("*.tmp"))
    with open(path, newline="") as fh:
        (read,) = list(csv.DictReader(fh))
    assert list(read) == sd.COLUMNS and read["steps_per_s"] == "2"


def test_table_and_recommendation_within_seed_noise():
    rows = [
        _row("sentiment", "fp32-eager", 1, 10.0, quality=0.80),
        _row("sentiment", "fp32-eager", 2, 10.0, quality=0.82),  # seed sd 0.0141
        _row("sentiment", "fp32-compile", 1, 12.0, quality=0.81),
        _row("sentiment", "fp32-compile", 2, 12.0, quality=0.80),
        _row("sentiment", "bf16-mixed-eager", 1, 20.0, quality=0.60),  # faster, worse
        _row("sentiment", "bf16-mixed-eager", 2, 20.0, quality=0.62),
        _row("sentiment", "bf16-mixed-compile", 1, 0.1, status="timeout after 3 steps (5 s)"),
    ]
    agg = sd.aggregate(rows)
    assert agg[("sentiment", "fp32-eager")]["value"] == pytest.approx(0.81)
    assert agg[("sentiment", "fp32-eager")]["sd"] == pytest.approx(0.01414, abs=1e-4)
    assert agg[("sentiment", "bf16-mixed-compile")]["ok"] == 0
    assert sd.recommend(agg, "sentiment") == (
        "fp32-compile",
        "faster, quality within the seed noise",
    )
    md = sd.table_md(rows)
    assert "| sentiment | fp32-compile | 2/2 | 12 |" in md
    assert "val/accuracy 0.805 ± 0.0071" in md
    assert "timeout after 3 steps" in md
    assert "| sentiment | fp32-compile | faster, quality within the seed noise |" in md


def test_one_seed_cannot_decide_and_loss_is_compared_without_quality():
    rows = [_row("asr", "fp32-eager", 1, 1.0), _row("asr", "fp32-compile", 1, 2.0)]
    agg = sd.aggregate(rows)
    assert agg[("asr", "fp32-compile")]["compare_by"] == "train_loss"
    best, why = sd.recommend(agg, "asr")
    assert best is None and "two or more seeds" in why
    # a slower setting never replaces the baseline, noise or not
    rows = [_row("asr", "fp32-eager", 1, 2.0), _row("asr", "bf16-mixed-eager", 1, 0.02)]
    assert sd.recommend(sd.aggregate(rows), "asr") == ("fp32-eager", "the baseline")
    assert sd.recommend(sd.aggregate(rows[1:]), "asr")[0] is None  # no baseline


def test_markdown_states_cpu_threads_and_load(tmp_path):
    meta = {"command": "python benchmarks/speed_defaults.py", "cpu": "AMD EPYC (AVX2)",
            "cpu_model": "AMD EPYC, 2 logical CPUs", "flags": "avx2, fma", "torch": "2.x",
            "lightning": "2.y", "threads": 2, "warmup": 5, "steps": 30, "trained_steps": 35,
            "quality": False}  # fmt: skip
    md = sd.markdown([_row("sentiment", "fp32-eager", 1, 10.0)], meta)
    for text in ("AMD EPYC (AVX2)", "avx2, fma", "2 threads", "torch 2.x", "1.5–2.5",
                 "5 warm-up + 30 timed"):  # fmt: skip
        assert text in md
    sd.write_atomic(tmp_path / "t.md", md)
    assert (tmp_path / "t.md").read_text() == md and not list(tmp_path.glob("*.tmp"))
