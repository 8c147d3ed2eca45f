"""Loading a checkpoint never runs code: a pickle that would act is refused by the
weights-only reader, and a stored config may only name registered recipes and the toolkit's
configured classes. Each hostile file is refused with its message; its side effect never
happens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit.training.checkpoints import CheckpointError, allowed_targets, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


class _Touch:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cfg(**over) -> dict:
    cfg = {"recipe": {"name": "sentiment", "module": "recipes.sentiment.module.SentimentModule"},
           "data": {"_target_": "recipes.sentiment.data.SentimentDataModule"},
           "model": {"_target_": "recipes.sentiment.model.RNNClassifier"}}  # fmt: skip
    for key, value in over.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


def _save(path: Path, cfg: dict, extra=None) -> Path:
    raw = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"cfg": cfg}}
    if extra is not None:
        raw["extra"] = extra
    torch.save(raw, path)
    return path


def test_pickle_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _save(tmp_path / "evil.ckpt", _cfg(), extra=_Touch(marker))
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused: its pickle asks for .*system"):
        read_checkpoint(evil)
    assert not marker.exists()


def test_evaluate_cli_refuses_it_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = _save(tmp_path / "evil.ckpt", _cfg(), extra=_Touch(marker))
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.evaluate", f"ckpt={evil}",
         f"hydra.run.dir={tmp_path / 'e'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "refused" in proc.stderr + proc.stdout
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ({"recipe__module": "os.system"}, "recipe.module", "os.system"),
        ({"data___target_": "builtins.exec"}, "data._target_", "builtins.exec"),
        ({"model___target_": "toolkit.runs.write_text_atomic"}, "model._target_",
         "toolkit.runs.write_text_atomic"),  # our own code, but not a configured class
    ],
)  # fmt: skip
def test_stored_config_naming_foreign_code_is_refused(tmp_path, override, key, value):
    path = _save(tmp_path / "foreign.ckpt", _cfg(**override))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused") and f"{key}={value!r}" in message


def test_allow_list_holds_every_recipe_and_nothing_else():
    allowed = allowed_targets()
    for name in ("sentiment", "translation", "captioning", "asr"):
        assert any(t.startswith(f"recipes.{name}.module.") for t in allowed)
    assert not [t for t in allowed if t.split(".")[0] in ("os", "builtins", "subprocess")]
