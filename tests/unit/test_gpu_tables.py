"""benchmarks/gpu_tables.py: the GPU check's tables from run folders and a benchmark log."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_tables  # noqa: E402

LOG = """\
attention benchmark: full, device cuda, bfloat16, 2 threads, B=1 H=8 hd=64
             naive  1024     fwd        0.10 ms       32.0 MiB  (40 runs, 0.5 s)
/opt/torch/.venv/lib/python3.12/site-packages/torch/autograd/graph.py:869: UserWarning: x
        scaled_dot  8192 fwd_bwd        1.14 ms       48.5 MiB  (120 runs, paired, 4.8 s)
             local  8192     fwd  skipped: out of memory
[gpu.sh] attention benchmark stopped (exit 124); its finished rows are kept
"""


def test_cases_from_log_keeps_measured_lines_only():
    rows = gpu_tables.cases_from_log(LOG)
    assert rows == [
        {"attention": "naive", "seq_len": "1024", "pass": "fwd", "ms_median": "0.10",
         "peak_mib": "32.0"},
        {"attention": "scaled_dot", "seq_len": "8192", "pass": "fwd_bwd", "ms_median": "1.14",
         "peak_mib": "48.5"},
    ]  # fmt: skip


def test_tables_from_run_folders(tmp_path):
    run = tmp_path / "runs" / "captioning"
    run.mkdir(parents=True)
    saved = {
        "model": "ShowAttendTell",
        "attention": "additive",
        "metrics": {"bleu4": 38.167, "cider": 0.37},
        "train_seconds": 6.362,
        "budget": {"steps": 31},
        "throughput": {"precision": "bf16-mixed", "gpu": "Card X", "gpu_peak_mib": 249.5,
                       "train_samples_per_s": 311.86},
        "data": {"counts": {"train": 2000, "valid": 200, "test": 300}},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(saved))
    sentiment = tmp_path / "runs" / "sentiment"
    sentiment.mkdir()
    saved = {**saved, "metrics": {"accuracy": 0.7124},
             "data": {"counts": {"train": {"negative": 2, "positive": 3, "total": 5}}}}  # fmt: skip
    (sentiment / "metrics.json").write_text(json.dumps(saved))
    (tmp_path / "gpu.txt").write_text("Card X, 1 MiB, 1.0\n")
    log = tmp_path / "bench.log"
    log.write_text(LOG)
    gpu_tables.main([str(tmp_path), "--attention-log", str(log)])
    with open(tmp_path / "recipes.csv", newline="") as fh:
        rows = {r["recipe"]: r for r in csv.DictReader(fh)}
    assert rows["captioning"]["value"] == "38.17"  # already a percentage: not scaled
    assert rows["captioning"]["train_examples"] == "2000"
    assert rows["sentiment"]["value"] == "71.24" and rows["sentiment"]["train_examples"] == "5"
    assert rows["asr"]["status"].startswith("no metrics.json")
    md = (tmp_path / "gpu.md").read_text()
    assert "Card: Card X, 1 MiB, 1.0." in md and "| asr | no metrics.json" in md
    with open(tmp_path / "attention" / "attention.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
