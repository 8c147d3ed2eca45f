"""``python -m toolkit.data validate``: every problem listed by file and line, with counts
and a non-zero exit code; the same checks stop ``toolkit.train`` before it builds anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from toolkit.data.cache import DataError
from toolkit.data.validate import validate_config, validate_files

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "toolkit.data", "validate", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def bad_sentiment(tmp_path):
    (tmp_path / "train.tsv").write_bytes(
        b"text\tlabel\ngood movie\tpos\n\tneg\nonly one column\n\xff oops\tneg\nfine\t\nok\tneg\n"
    )
    (tmp_path / "test.jsonl").write_text(
        '{"text": "x", "label": "pos"}\n{"text": "y", "label": "meh"}\nnot json\n[1]\n'
        '{"text": "", "label": "neg"}\n{"txt": "z", "label": "pos"}\n'
    )
    return tmp_path


def test_every_sentiment_problem_by_file_and_line(bad_sentiment):
    report = validate_files("sentiment", {"train": bad_sentiment / "train.tsv",
                                          "test": bad_sentiment / "test.jsonl"})  # fmt: skip
    found = {
        (Path(p.path).name, p.line, p.field, p.message.split(" (")[0]) for p in report.problems
    }
    assert found == {
        ("train.tsv", 3, "text", "empty text"),
        ("train.tsv", 4, None, "expected 2 columns, found 1"),
        ("train.tsv", 5, None, "not valid UTF-8"),
        ("train.tsv", 6, "label", "empty label"),
        ("test.jsonl", 2, "label", "label set mismatch: 'meh'"),
        ("test.jsonl", 3, None, "invalid JSON"),
        ("test.jsonl", 4, None, "expected a JSON object, got list"),
        ("test.jsonl", 5, "text", "empty text"),
        ("test.jsonl", 6, "text", "missing key"),
    }
    assert report.files == 2 and report.records == 12


def test_cli_lists_problems_with_counts_and_exit_code(bad_sentiment):
    proc = cli("recipe=sentiment", "train=train.tsv", "test=test.jsonl", cwd=bad_sentiment)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "train.tsv:3: field 'text': empty text"
    assert lines[-1].startswith("9 problem(s) in 2 of 2 file(s), 12 record(s) checked")
    good = bad_sentiment / "good.tsv"
    good.write_text("text\tlabel\nnice\tpos\nbad\tneg\n")
    ok = cli("recipe=sentiment", f"path={good}", cwd=bad_sentiment)
    assert ok.returncode == 0 and ok.stdout.startswith("0 problem(s)")
    assert cli("recipe=nope", "path=x", cwd=bad_sentiment).returncode == 2
    missing = cli("recipe=sentiment", "path=missing.tsv", cwd=bad_sentiment)
    assert missing.returncode == 1 and "missing.tsv: file not found" in missing.stdout


def test_parallel_files(tmp_path):
    (tmp_path / "src.txt").write_text("a\nb\n\n")
    (tmp_path / "tgt.txt").write_text("A\nB\nC\nD\n")
    report = validate_files("translation", {"train": [tmp_path / "src.txt", tmp_path / "tgt.txt"]})
    messages = [str(p) for p in report.problems]
    assert any("tgt.txt:4: mismatched parallel files" in m for m in messages)
    assert any("src.txt:3: field 'source': empty text" in m for m in messages)
    proc = cli("recipe=translation", "source=src.txt", "target=tgt.txt", cwd=tmp_path)
    assert proc.returncode == 1 and "2 problem(s)" in proc.stdout


def test_audio_and_image_checks(tmp_path):
    sr = 16000
    sf.write(tmp_path / "ok.wav", np.zeros(sr // 10, dtype=np.float32), sr)
    sf.write(tmp_path / "stereo.wav", np.zeros((sr // 10, 2), dtype=np.float32), sr)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), sr)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really a wave file")
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(
        '{"audio": "ok.wav", "text": "hello"}\n{"audio": "stereo.wav", "text": "two"}\n'
        '{"audio": "empty.wav", "text": "none"}\n{"audio": "garbage.wav", "text": "bad"}\n'
        '{"audio": "gone.wav", "text": "lost"}\n{"audio": "ok.wav", "text": "  "}\n'
    )
    report = validate_files("asr", {"train": manifest})
    by_line = {p.line: p.message for p in report.problems}
    assert set(by_line) == {2, 3, 4, 5, 6}
    assert "wrong channel count" in by_line[2] and "has 2, expected 1" in by_line[2]
    assert "zero-length audio" in by_line[3]
    assert "unreadable audio" in by_line[4]
    assert "audio file not found" in by_line[5]
    assert "empty text" in by_line[6]

    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("ok.png", "broken.png"):
        (images / name).write_bytes((tmp_path / name).read_bytes())
    report = validate_files("captioning", {"path0": images})
    assert [Path(p.path).name for p in report.problems] == ["broken.png"]
    assert "unreadable image" in report.problems[0].message and report.files == 2


def test_training_stops_before_building_anything(bad_sentiment, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from toolkit.commands.train import train
    from toolkit.paths import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "recipe=sentiment", f"data.train_file={bad_sentiment / 'train.tsv'}",
            f"data.test_file={bad_sentiment / 'test.jsonl'}"])  # fmt: skip
    GlobalHydra.instance().clear()
    with pytest.raises(DataError) as err:
        validate_config(cfg)
    assert "9 data problem(s) found" in str(err.value)
    with pytest.raises(DataError, match="train.tsv:3: field 'text': empty text"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
