"""benchmarks/data_wait.py: the data-wait share from a SimpleProfiler report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import data_wait  # noqa: E402

REPORT = "\n".join(
    [
        "FIT Profiler Report",
        "|  Action  \t|  Mean duration (s)\t|  Num calls \t|  Total time (s)\t|  Percentage %|",
        "|  Total  \t|  -  \t|  1987  \t|  5.335  \t|  100 %  \t|",
        "|  run_training_batch  \t|  0.05  \t|  60  \t|  3.0  \t|  58.4  \t|",
        "|  [_TrainingEpochLoop].train_dataloader_next\t|  0.0012\t|  60\t|  1.0\t|  1.3\t|",
    ]
)


def test_wait_share_from_a_profiler_report():
    totals = data_wait.profiler_totals(REPORT)
    assert totals["run_training_batch"] == (60, 3.0)
    share = data_wait.wait_share(totals)
    assert share["steps"] == 60
    assert share["wait_share"] == pytest.approx(0.25)  # 1 s of 1 + 3 s


def test_a_report_without_the_rows_is_refused():
    with pytest.raises(ValueError, match="train_dataloader_next"):
        data_wait.wait_share(
            data_wait.profiler_totals("|  run_training_batch | 0.1 | 3 | 0.3 | 1 |")
        )
