"""Budgets are epochs or steps; `trainer.max_time` is a guard whose firing is recorded in
metrics.json and printed; the precision a run records is the one it ran with."""

from __future__ import annotations

import json

import pytest

from toolkit.commands.train import train
from toolkit.training import precision

TINY = ["data.limit=40", "data.extra_train_domains=[]", "data.batch_size=8",
        "data.eval_batch_size=16", "threads=1",
        "attention_examples=0", "trainer.enable_progress_bar=false"]  # fmt: skip


def test_epoch_budget_is_recorded(compose_cfg, tmp_path):
    cfg = compose_cfg("recipe=sentiment", "trainer.max_epochs=2", *TINY)
    result = train(cfg, tmp_path / "run")
    budget = json.loads((tmp_path / "run" / "metrics.json").read_text())["budget"]
    assert budget == result["budget"]
    assert budget["stopped_by"] == "max_epochs" and not budget["time_guard_fired"]
    assert budget["epochs"] == 2.0 and budget["max_epochs"] == 2
    assert budget["steps"] == 2 * 4  # 32 training sentences in batches of 8


def test_step_budget_stops_inside_an_epoch(compose_cfg, tmp_path):
    cfg = compose_cfg("recipe=sentiment", "trainer.max_epochs=null", "trainer.max_steps=6",
                      *TINY)  # fmt: skip
    budget = train(cfg, tmp_path / "run")["budget"]
    assert (budget["stopped_by"], budget["steps"], budget["epochs"]) == ("max_steps", 6, 1.5)


def test_time_guard_firing_is_reported(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg("recipe=sentiment", "trainer.max_epochs=10000",
                      "trainer.max_time=00:00:00:02", *TINY)  # fmt: skip
    with caplog.at_level("WARNING"):
        result = train(cfg, tmp_path / "run")
    budget = json.loads((tmp_path / "run" / "metrics.json").read_text())["budget"]
    assert budget["time_guard_fired"] and budget["stopped_by"] == "max_time"
    assert 0 < budget["epochs"] < 10000 and result["budget"] == budget
    assert any("time guard" in r.getMessage() for r in caplog.records)


def test_run_records_the_precision_it_used(compose_cfg, tmp_path, monkeypatch):
    """`auto` on a CPU without native bf16 trains in fp32 and says so; config.yaml holds
    the resolved value, not `auto`."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2": True, "avx512_bf16": False})
    cfg = compose_cfg("recipe=sentiment", "debug=fast", *TINY)
    assert cfg.trainer.precision == "auto"
    result = train(cfg, tmp_path / "run")
    assert result["throughput"]["precision"] == "32-true"
    assert result["throughput"]["precision_requested"] == "auto"
    assert "precision: 32-true" in (tmp_path / "run" / "config.yaml").read_text()


def test_explicit_bf16_on_emulating_cpu_fails_before_anything_is_built(compose_cfg, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2": True, "avx512_bf16": False})
    cfg = compose_cfg("recipe=sentiment", "debug=fast", "trainer.precision=bf16-mixed", *TINY)
    with pytest.raises(precision.PrecisionError, match="not native"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_testing_without_a_best_checkpoint_says_so(compose_cfg, tmp_path, caplog):
    """No validation ran, so no best checkpoint exists: the test uses the last weights and
    metrics.json and the log say it."""
    cfg = compose_cfg("recipe=sentiment", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
                      *TINY)  # fmt: skip
    with caplog.at_level("WARNING"):
        result = train(cfg, tmp_path / "run")
    assert result["checkpoint_selection"].startswith("last weights: no best checkpoint")
    assert any("checkpoint selection" in r.getMessage() for r in caplog.records)
    cfg = compose_cfg("recipe=sentiment", "trainer.max_epochs=1", *TINY)
    assert train(cfg, tmp_path / "run2")["checkpoint_selection"] == "best by val/accuracy (max)"
