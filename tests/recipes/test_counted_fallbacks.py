"""Fall-backs that change what is measured are counted and said: own data without a test
file is scored on the validation split (manifest `test_split`, a warning); utterances over
`max_seconds` are counted per split; joint beams replaced by CTC's answer are counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.asr.data import ASRDataModule
from recipes.sentiment.data import SentimentDataModule


def test_sentiment_without_test_file_says_it_scores_on_validation(tmp_path, caplog):
    rows = "".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(40))
    (tmp_path / "train.jsonl").write_text(rows)
    dm = SentimentDataModule(train_file=str(tmp_path / "train.jsonl"))
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert dm.splits["test"] == dm.splits["valid"]
    assert dm.manifest()["test_split"].startswith("valid (no test file given")
    assert any("validation split" in r.getMessage() for r in caplog.records)
    both = SentimentDataModule(train_file=str(tmp_path / "train.jsonl"),
                               test_file=str(tmp_path / "train.jsonl"))  # fmt: skip
    both.setup("fit")
    assert both.manifest()["test_split"] == "test"


def _wav(path: Path, seconds: float) -> str:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path.name


def test_asr_counts_what_it_leaves_out(tmp_path, caplog):
    lines = [{"audio": _wav(tmp_path / f"u{i}.wav", s), "text": f"word {i}"}
             for i, s in enumerate([0.5, 0.5, 3.0, 0.5, 3.0] * 8)]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    dm = ASRDataModule(train_file=str(tmp_path / "train.jsonl"), max_seconds=2.0)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    manifest = dm.manifest()
    too_long = manifest["longer_than_max_seconds"]
    # 16 long ones left out of train + valid; test is the validation split here, so it
    # reports the same count as valid
    assert too_long["train"] + too_long["valid"] == 16 and too_long["test"] == too_long["valid"]
    counts = manifest["counts_used"]
    assert counts["train"] + counts["valid"] == 24
    assert manifest["test_split"].startswith("valid (no test file given")
    assert any("longer than data.max_seconds" in r.getMessage() for r in caplog.records)
