"""The command-line entry points, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    run_dir = base / "run"
    proc = run(
        [
            "toolkit.train",
            "recipe=sentiment",
            "attention=additive",
            "debug=fast",
            "data.limit=40",
            "threads=1",
            f"hydra.run.dir={run_dir}",
        ],
        base / "cache",
        base,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, run_dir


def test_train_writes_run_folder(trained):
    _, run_dir = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["recipe"] == "sentiment" and metrics["attention"] == "additive"
    assert set(metrics["metrics"]) >= {"accuracy", "f1_macro", "attention_entropy"}
    assert metrics["data"]["kind"] == "embedded"
    assert (run_dir / "config.yaml").read_text().count("recipe:") == 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "attention" / "pooling.png").stat().st_size > 1000


def test_evaluate_rescores_checkpoint(trained):
    base, run_dir = trained
    out = base / "eval"
    proc = run(
        [
            "toolkit.evaluate",
            f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"hydra.run.dir={out}",
        ],
        base / "cache",
        base,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "metrics.json").read_text())
    first = json.loads((run_dir / "metrics.json").read_text())
    assert again["metrics"]["accuracy"] == pytest.approx(first["metrics"]["accuracy"])
    assert again["confusion_matrix"] == first["confusion_matrix"]


def test_unknown_attention_lists_choices(tmp_path):
    proc = run(["toolkit.train", "attention=nope"], tmp_path / "cache", tmp_path)
    assert proc.returncode != 0
    assert "additive" in proc.stderr and "multihead" in proc.stderr


def test_misspelt_key_fails_at_start(tmp_path):
    proc = run(["toolkit.train", "trainer.max_epoch=3"], tmp_path / "cache", tmp_path)
    assert proc.returncode != 0
    assert "max_epoch" in proc.stderr
    assert "Did you mean 'trainer.max_epochs'" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.json"))
