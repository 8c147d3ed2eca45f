"""The sentiment recipe end to end: every attention type runs, a tiny set is overfit, own
data is validated, and the run folder follows the contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recipes.sentiment.data import SentimentDataModule
from toolkit.attention import available, capabilities
from toolkit.commands.train import train
from toolkit.data.cache import DataError
from toolkit.training.checkpoints import load_module

TINY = ["data.limit=40", "data.batch_size=8", "data.eval_batch_size=16", "threads=1"]


def check_run_folder(run: Path, recipe: str, attention: str) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recipe"] == recipe and metrics["attention"] == attention
    for key in ("metrics", "train_seconds", "params", "throughput", "data"):
        assert key in metrics, key
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "attention").glob("*.npz")) and (run / "attention" / "pooling.png").is_file()
    return metrics


@pytest.mark.parametrize("attention", available())
def test_fast_run_every_attention_type(attention, compose_cfg, tmp_path):
    cfg = compose_cfg("recipe=sentiment", f"attention={attention}", "debug=fast", *TINY)
    # the BiGRU's only attention is its pooling: the types that cannot pool with a learned
    # query (`local`, the self-attention-only types rotary, alibi, relative, and the stateful
    # ones location, coverage: decoder steps) are refused, not faked
    if not capabilities(attention).pooling_query:
        with pytest.raises(ValueError, match=f"attention={attention} with RNNClassifier"):
            train(cfg, tmp_path / "run")
        return
    result = train(cfg, tmp_path / "run")
    # the recorded type is the one the model holds (walked over its modules)
    assert attention in result["attention_modules"], result["attention_modules"]
    metrics = check_run_folder(tmp_path / "run", "sentiment", attention)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert 0.0 <= metrics["metrics"]["f1_macro"] <= 1.0
    cm = metrics["confusion_matrix"]["matrix"]
    assert sum(map(sum, cm)) == metrics["test_examples"] == 4
    assert metrics["params"] > 1000


@pytest.mark.parametrize("attention", ["multihead", "local", "linear"])
def test_fast_run_transformer_encoder(attention, compose_cfg, tmp_path):
    cfg = compose_cfg(
        "recipe=sentiment", "model=transformer", f"attention={attention}", "debug=fast", *TINY
    )
    result = train(cfg, tmp_path / "run")
    check_run_folder(tmp_path / "run", "sentiment", attention)
    assert attention in result["attention_modules"], result["attention_modules"]
    maps = list((tmp_path / "run" / "attention").glob("example_000.npz"))
    arrays = dict(np.load(maps[0]))
    self_maps = [k for k in arrays if k.startswith("self_attention/")]
    assert len(self_maps) == 2  # two encoder layers captured
    assert arrays[self_maps[0]].shape[0] == 4  # heads


def test_fast_run_and_evaluate_write_per_example_scores(compose_cfg, tmp_path):
    """per_example.jsonl.gz beside metrics.json: one line per test sentence, from which the
    run's accuracy and macro-F1 are recomputed; toolkit.evaluate writes the same file, and
    the paired bootstrap of the run against its re-scoring finds no difference."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from toolkit.commands.evaluate import evaluate
    from toolkit.metrics.significance import compare_per_example, corpus_metric
    from toolkit.paths import CONF_DIR
    from toolkit.runs import read_per_example

    cfg = compose_cfg("recipe=sentiment", "attention=additive", "debug=fast", *TINY)
    result = train(cfg, tmp_path / "run")
    header, records = read_per_example(tmp_path / "run")
    assert header["kind"] == "classification" and header["per_example"] == 1
    assert len(records) == header["examples"] == result["test_examples"] == 4
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert {r["label"], r["predicted"]} <= set(header["labels"])
        assert 1 / len(header["labels"]) <= r["probability"] <= 1 and r["text"]
    for metric in ("accuracy", "f1_macro"):
        recomputed = corpus_metric(header, records, metric).value()
        assert recomputed == pytest.approx(result["metrics"][metric], abs=1e-6), metric

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        ecfg = compose(
            config_name="evaluate",
            overrides=[f"ckpt={result['checkpoint']}", "attention_examples=1"],
        )
    evaluate(ecfg, tmp_path / "eval")
    again = read_per_example(tmp_path / "eval")
    assert [(r["label"], r["predicted"]) for r in again[1]] == [
        (r["label"], r["predicted"]) for r in records
    ]
    same = compare_per_example([((header, records), again)], "accuracy", resamples=100)
    assert same.difference == 0 and same.p_value == 1.0


def _train_accuracy(module, datamodule) -> float:
    module.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.train_dataloader():
            logits, _ = module(batch["ids"], batch["mask"])
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            total += batch["labels"].numel()
    return correct / total


@pytest.mark.parametrize("attention", ["additive", "multihead"])
def test_tiny_overfit(attention, compose_cfg, tmp_path):
    cfg = compose_cfg(
        "recipe=sentiment",
        f"attention={attention}",
        "data.limit=48",
        "data.extra_train_domains=[]",
        "data.batch_size=16",
        "trainer.max_epochs=40",
        "trainer.enable_progress_bar=false",
        "model.dropout=0.0",
        "model.embed_dropout=0.0",
        "model.word_dropout=0.0",
        "optimizer.lr=5e-3",
        "scheduler.warmup_steps=5",
        "attention_examples=1",
        "threads=1",
    )
    train(cfg, tmp_path / "run")
    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt")
    dm = SentimentDataModule(limit=48, batch_size=16, state=module.data_state)
    assert module.cfg.data.extra_train_domains == []
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.splits["train"]) >= 36
    assert _train_accuracy(module, dm) >= 0.95


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_own_data_tsv_with_string_labels(tmp_path, compose_cfg):
    rows = ["text\tlabel"]
    for i in range(30):
        rows.append(f"great wonderful film number {i}\tgood")
        rows.append(f"awful boring mess number {i}\tbad")
        rows.append(f"a film about number {i}\tmeh")
    train_file = _write(tmp_path / "train.tsv", "\n".join(rows) + "\n")
    test_file = _write(tmp_path / "test.tsv", "text\tlabel\ngreat film\tgood\nawful film\tbad\n")
    cfg = compose_cfg(
        "recipe=sentiment",
        f"data.train_file={train_file}",
        f"data.test_file={test_file}",
        "debug=fast",
        "threads=1",
    )
    result = train(cfg, tmp_path / "run")
    assert result["data"]["kind"] == "own"
    assert result["confusion_matrix"]["labels"] == ["bad", "good", "meh"]
    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert module.label_map.labels == ["bad", "good", "meh"]


@pytest.mark.parametrize(
    "content, line, field",
    [
        ("text\tlabel\nfine film\tpos\n\tneg\n", 3, "text"),
        ("words\tlabel\nfine film\tpos\n", 1, "text"),
        ("text\tlabel\nfine film\tpos\nbad film\t\n", 3, "label"),
    ],
)
def test_own_data_bad_rows_name_file_line_field(tmp_path, content, line, field):
    bad = _write(tmp_path / "bad.tsv", content)
    dm = SentimentDataModule(train_file=str(bad))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"bad.tsv:{line}" in message and field in message


def test_unknown_label_in_test_split(tmp_path):
    train_file = _write(tmp_path / "train.jsonl", '{"text": "a", "label": "x"}\n' * 3)
    test_file = _write(
        tmp_path / "test.jsonl", '{"text": "b", "label": "x"}\n{"text": "c", "label": "z"}\n'
    )
    dm = SentimentDataModule(train_file=str(train_file), test_file=str(test_file))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    assert "test.jsonl:2" in str(err.value)
    assert "label" in str(err.value)
