"""Kill a training run with SIGKILL after its first checkpoint, resume it, and get the same
final metrics as a run that was never interrupted; broken checkpoints fail naming the file."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit.training.checkpoints import latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# Deterministic and tiny: 2 epochs of ~8 batches, a step checkpoint every 3 steps.
ARGS = [
    "recipe=sentiment",
    "attention=additive",
    "data.limit=80",
    "data.extra_train_domains=[]",
    "data.batch_size=8",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "logger.flush_logs_every_n_steps=1",
    "attention_examples=1",
    "checkpoint_every_n_steps=3",
    "threads=1",
]
SLOW = ["+callbacks.slow._target_=_slow.SlowBatches", "+callbacks.slow.seconds=0.4"]
# With identical data order, weights, optimiser/scheduler state and RNG state the resumed
# run repeats the uninterrupted one operation for operation on CPU: bit-identical (the README
# says so), so the tolerance is zero.
TOL = 0.0


def env(cache: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(Path(__file__).parent)])
    return {**os.environ, "ATTN_TOOLKIT_CACHE": str(cache), "PYTHONPATH": path}


def train(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolkit.train", *ARGS, f"hydra.run.dir={run_dir}", *extra],
        cwd=run_dir.parent, env=env(cache), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def train_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    proc = train(base / "straight", base / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base


def test_sigkill_then_resume_matches_uninterrupted_run(reference):
    base = reference
    run_dir = base / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit.train", *ARGS, *SLOW, f"hydra.run.dir={run_dir}"],
        cwd=base, env=env(base / "cache"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    ckpts = run_dir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(p.name.startswith("step") for p in ckpts.glob("*.ckpt")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    newest = latest_checkpoint(ckpts)  # what resume=latest will pick
    saved = torch.load(newest, map_location="cpu", weights_only=False)
    killed_at = saved["global_step"]
    assert 3 <= killed_at < 16

    resumed = train(run_dir, base / "cache", "resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = resumed.stdout + resumed.stderr
    assert "resuming from" in said and f"step {killed_at})" in said

    straight = json.loads((base / "straight" / "metrics.json").read_text())
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["epochs"] == straight["epochs"]
    for name in ("accuracy", "f1_macro", "loss", "attention_entropy"):
        assert again["metrics"][name] == straight["metrics"][name], name
    # the global step continued from the checkpoint to the same end as the straight run
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    ref_last = torch.load(
        base / "straight" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert last["global_step"] == ref_last["global_step"] > killed_at
    for key, value in ref_last["state_dict"].items():
        torch.testing.assert_close(last["state_dict"][key], value, atol=TOL, rtol=0)
    # one CSV log, continued: every optimiser step logged once, in order
    assert train_steps(run_dir) == train_steps(base / "straight")


def test_resume_latest_without_checkpoint_fails_clearly(tmp_path):
    proc = train(tmp_path / "empty", tmp_path / "cache", "resume=latest")
    assert proc.returncode != 0
    assert "no checkpoint in" in proc.stderr and str(tmp_path / "empty") in proc.stderr
    assert not (tmp_path / "empty" / "config.yaml").exists()


def _broken(good: Path, bad: Path, kind: str) -> Path:
    if kind == "truncated":  # what a write killed half-way leaves (without atomic saves)
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "foreign":
        bad.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    else:  # a plain torch.save of some tensors
        torch.save({"weight": torch.zeros(2)}, bad)
    return bad


@pytest.mark.parametrize("kind", ["truncated", "foreign", "empty", "state_dict_only"])
def test_broken_checkpoint_names_the_file(reference, tmp_path, kind):
    from toolkit.training.checkpoints import CheckpointError, load_module

    good = reference / "straight" / "checkpoints" / "last.ckpt"
    bad = _broken(good, tmp_path / f"{kind}.ckpt", kind)
    with pytest.raises(CheckpointError, match=str(bad)):
        load_module(bad)


def test_resume_from_truncated_checkpoint_fails_naming_it(reference, tmp_path):
    run_dir = tmp_path / "run"
    good = reference / "straight" / "checkpoints" / "last.ckpt"
    (run_dir / "checkpoints").mkdir(parents=True)
    bad = _broken(good, run_dir / "checkpoints" / "last.ckpt", "truncated")
    proc = train(run_dir, reference / "cache", "resume=latest")
    assert proc.returncode != 0
    assert f"{bad}: unreadable checkpoint (truncated" in proc.stderr, proc.stderr[-2000:]
