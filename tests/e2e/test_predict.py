"""``python -m toolkit.predict``: text lines in (file, folder, stdin), JSONL out with the
prediction and scores, attention maps as npz (+ PNG with plot=true); bad inputs fail clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from toolkit.commands.train import train
from toolkit.paths import CONF_DIR
from toolkit.training.checkpoints import load_module

ROOT = Path(__file__).resolve().parents[2]


def _train(recipe: str, run: Path, *tiny: str) -> Path:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"recipe={recipe}", *tiny, "debug=fast", "threads=1", "attention_examples=1",
            "trainer.enable_progress_bar=false"])  # fmt: skip
    GlobalHydra.instance().clear()
    return Path(train(cfg, run)["checkpoint"])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    os.environ["ATTN_TOOLKIT_CACHE"] = str(base / "cache")
    return base


@pytest.fixture(scope="module")
def sentiment_ckpt(base):
    return _train("sentiment", base / "sentiment", "data.limit=60", "data.extra_train_domains=[]")


def predict_cli(args: list[str], cwd: Path, stdin: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "toolkit.predict", *args], cwd=cwd, env=env, input=stdin,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_predict_folder_with_plots(sentiment_ckpt, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("A wonderful, moving film.\n\nDull.\n")
    (inputs / "b.txt").write_text("The worst movie I have ever seen.\n")
    (inputs / "ignored.csv").write_text("not,text\n")
    out = tmp_path / "out"
    proc = predict_cli([f"ckpt={sentiment_ckpt}", f"input={inputs}", "plot=true",
                        f"hydra.run.dir={out}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [
        f"{inputs / 'a.txt'}:1", f"{inputs / 'a.txt'}:2", f"{inputs / 'a.txt'}:3",
        f"{inputs / 'b.txt'}:1",
    ]  # fmt: skip
    for r in rows:
        assert r["prediction"] in r["scores"]
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["prediction"] == max(r["scores"], key=r["scores"].get)
        maps = np.load(out / "attention" / r["attention_file"])
        assert maps["pooling"].sum() == pytest.approx(1.0, abs=1e-4)
        assert list(maps["tokens"]) == r["tokens"]
        assert (out / "attention" / r["picture"]).stat().st_size > 1000
    assert rows[1]["input"] == "" and "empty input" in rows[1]["warning"]


def test_predict_stdin_to_stdout(sentiment_ckpt, tmp_path):
    proc = predict_cli([f"ckpt={sentiment_ckpt}", "input=-", "output=-", "save_attention=false",
                        f"hydra.run.dir={tmp_path / 'o'}"],
                       tmp_path, stdin="good\nbad\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [r["input"] for r in rows] == ["good", "bad"]
    assert "attention_file" not in rows[0]


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing", "input not found"),
        ("binary", "in.txt:2: not valid UTF-8 (byte 0xff)"),
        ("bad_ckpt", "unreadable checkpoint"),
    ],
)
def test_predict_bad_inputs_fail_clearly(sentiment_ckpt, tmp_path, case, expected):
    ckpt, spec = sentiment_ckpt, tmp_path / "in.txt"
    spec.write_bytes(b"fine\n\xff\xfe broken\n" if case == "binary" else b"fine\n")
    if case == "missing":
        spec = tmp_path / "nope.txt"
    if case == "bad_ckpt":
        ckpt = tmp_path / "in.txt"
    proc = predict_cli([f"ckpt={ckpt}", f"input={spec}", f"hydra.run.dir={tmp_path / 'o'}"],
                       tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert expected in proc.stderr


def test_translation_predict_records(base, tmp_path):
    ckpt = _train("translation", base / "translation", "attention=multihead", "data.limit=40",
                  "data.vocab_size=200", "data.val_bleu_size=8")  # fmt: skip
    module = load_module(ckpt)
    lines = ["Open file", "", "Cancel"]
    records = module.predict_records(lines, tmp_path, plot=True)
    assert len(records) == 3
    assert records[1]["translation"] == "" and "empty input" in records[1]["warning"]
    eager = module.translate(lines)
    for r, e in zip(records, eager, strict=True):
        assert r["translation"] == e["translation"]
    maps = np.load(tmp_path / records[0]["attention_file"])
    assert maps["attention"].shape == (len(maps["target_tokens"]), len(maps["source_tokens"]))
    assert (tmp_path / records[0]["picture"]).is_file()
