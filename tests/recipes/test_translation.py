"""Translation recipe: corpus, readers, metrics, models, CLI and a tiny overfit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipes.translation.catalogs import (
    FORMAT_SPEC,
    build_catalog_corpus,
    describe,
    keep_pair,
    load_catalog_splits,
    split_of,
)
from recipes.translation.model import Seq2SeqRNN, Seq2SeqTransformer
from recipes.translation.module import TranslationModule
from recipes.translation.parallel import read_parallel
from toolkit.attention import available, capabilities, stateful
from toolkit.data.cache import DataError
from toolkit.metrics.significance import corpus_metric
from toolkit.metrics.translation import corpus_scores
from toolkit.runs import read_per_example

ROOT = Path(__file__).resolve().parents[2]
HAS_CATALOGS = Path("/usr/share/locale/de/LC_MESSAGES").is_dir()
needs_catalogs = pytest.mark.skipif(not HAS_CATALOGS, reason="no Debian message catalogs")
TINY = ["data.limit=40", "data.vocab_size=200", "data.val_bleu_size=8", "threads=1"]


# ----------------------------------------------------------------------------- corpus
@needs_catalogs
def test_catalog_corpus_filters_and_manifest(tmp_path):
    folder = build_catalog_corpus("de", root=tmp_path, limit=30)
    manifest = describe(folder)
    assert manifest["counts"] == {"train": 30, "valid": 30, "test": 30}
    assert manifest["params"]["include_iso"] is False
    used = [c for c in manifest["catalogs"] if c["used"] == "yes"]
    assert used and all(len(c["sha256"]) == 64 for c in manifest["catalogs"])
    splits = load_catalog_splits(folder)
    lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert not any(r["origin"].startswith("iso") for r in rows)
    for name, pairs in splits.items():
        for src, tgt in pairs:
            assert src != tgt and keep_pair(src, tgt, 40) is None
            assert split_of(src, (0.9, 0.05, 0.05)) == name  # the hash decides the split
    # reused, not rebuilt: same folder, same files
    assert build_catalog_corpus("de", root=tmp_path, limit=30) == folder
    with pytest.raises(ValueError, match="target_lang"):
        build_catalog_corpus("xx", root=tmp_path)


def test_pair_filters():
    assert FORMAT_SPEC.search("Deleted %d files") and FORMAT_SPEC.search("Open {0}")
    assert keep_pair("Open the file", "Datei öffnen", 40) is None
    assert keep_pair("Delete %s", "%s löschen", 40) == "format_specifier"
    assert keep_pair("  -v, --verbose   explain", "ausführlich", 40) == "option_line"
    assert keep_pair("a " * 41, "b", 40) == "too_long"


# ----------------------------------------------------------------------------- own data
def test_own_parallel_formats(tmp_path):
    (tmp_path / "a.en").write_text("hello world\ngood morning\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("hallo welt\nguten morgen\n", encoding="utf-8")
    assert read_parallel([tmp_path / "a.en", tmp_path / "a.de"]) == [
        ("hello world", "hallo welt"), ("good morning", "guten morgen")]  # fmt: skip
    (tmp_path / "p.tsv").write_text("source\ttarget\nyes\tja\n", encoding="utf-8")
    assert read_parallel(tmp_path / "p.tsv") == [("yes", "ja")]
    (tmp_path / "p.jsonl").write_text('{"en": "no", "de": "nein"}\n', encoding="utf-8")
    assert read_parallel(tmp_path / "p.jsonl", "en", "de") == [("no", "nein")]


def test_own_parallel_errors_name_file_and_line(tmp_path):
    (tmp_path / "s.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.txt:3: .*differ in length: .*3 lines.*2"):
        read_parallel([tmp_path / "s.txt", tmp_path / "t.txt"])
    (tmp_path / "t.txt").write_text("eins\n\ndrei\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.txt:2: field 'target': empty line"):
        read_parallel([tmp_path / "s.txt", tmp_path / "t.txt"])
    (tmp_path / "t.txt").write_bytes(b"eins\nzwei\ndr\xffei\n")
    with pytest.raises(DataError, match=r"t\.txt:3: not valid UTF-8"):
        read_parallel([tmp_path / "s.txt", tmp_path / "t.txt"])
    (tmp_path / "bad.tsv").write_text("source\ttarget\nyes\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:2: field 'target'"):
        read_parallel(tmp_path / "bad.tsv")


# ----------------------------------------------------------------------------- metrics
def test_scores_equal_sacrebleu_api():
    hyps = ["Die Datei wurde gelöscht .", "Hallo Welt", "Ein Fehler ist aufgetreten"]
    refs = ["Die Datei wurde entfernt .", "Hallo Welt !", "Es ist ein Fehler aufgetreten"]
    ours = corpus_scores(hyps, refs, "de")
    assert ours["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert ours["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
    assert "tok:13a" in ours["bleu_signature"]
    ja = corpus_scores(["ファイルを開く"], ["ファイルを開きます"], "ja")
    char = sacrebleu.corpus_bleu(["ファイルを開く"], [["ファイルを開きます"]], tokenize="char")
    assert ja["bleu"] == pytest.approx(char.score) and "tok:char" in ja["bleu_signature"]
    with pytest.raises(ValueError):
        corpus_scores(["a"], ["a", "b"])


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("attention", available())
def test_transformer_steps_equal_teacher_forcing(attention):
    torch.manual_seed(0)
    if stateful(attention):  # location, coverage: recurrent decoders only (model=rnn)
        with pytest.raises(ValueError, match=rf"Seq2SeqTransformer: attention={attention} is "
                           rf"stateful.*model=rnn attention={attention}"):  # fmt: skip
            Seq2SeqTransformer(50, embed_dim=16, num_heads=2, attention=attention)
        return
    model = Seq2SeqTransformer(
        50,
        embed_dim=16,
        num_heads=2,
        encoder_layers=1,
        decoder_layers=2,
        ffn_dim=32,
        attention=attention,
        attention_options=dict(capabilities(attention).test_model_options),
    )
    model.eval()
    src = torch.randint(4, 50, (3, 7))
    src_mask = torch.ones_like(src, dtype=torch.bool)
    src_mask[1, 5:] = False
    tgt = torch.randint(4, 50, (3, 6))
    tgt[:, 0] = 2
    full, _ = model(src, src_mask, tgt)
    state = model.start(src, src_mask)
    for t in range(tgt.shape[1]):
        logp, state, attn = model.step(tgt[:, : t + 1], state, need_weights=True)
        torch.testing.assert_close(logp, full[:, t].log_softmax(-1), atol=2e-4, rtol=1e-4)
        assert attn.shape == (3, 7) and torch.all(attn[1, 5:] == 0)


@pytest.mark.parametrize("attention", ["additive", "general", "uniform", "location", "coverage"])
def test_rnn_steps_equal_teacher_forcing(attention):
    torch.manual_seed(0)
    model = Seq2SeqRNN(40, embed_dim=12, hidden_dim=8, decoder_dim=16, attention=attention)
    model.eval()
    src = torch.randint(4, 40, (2, 5))
    src_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    tgt = torch.randint(4, 40, (2, 4))
    full, weights = model(src, src_mask, tgt, need_weights=True)
    state = model.start(src, src_mask)
    state = model.reorder(state, torch.tensor([0, 1]))
    for t in range(4):
        logp, state, attn = model.step(tgt[:, : t + 1], state, need_weights=True)
        torch.testing.assert_close(logp, full[:, t].log_softmax(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn, weights[:, t])
    if attention == "uniform":  # the ablation really is a fixed mean over the source
        torch.testing.assert_close(weights[1, 0, :3], torch.full((3,), 1 / 3))


# ----------------------------------------------------------------------------- recipe
def _module(compose_cfg, *overrides):
    cfg = compose_cfg("recipe=translation", *TINY, *overrides)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup()
    module = TranslationModule(OmegaConf.to_container(cfg, resolve=True), dm.state())
    return cfg, dm, module


@needs_catalogs
def test_empty_source_gives_empty_translation(compose_cfg):
    _, _, module = _module(compose_cfg, "model.embed_dim=32", "model.ffn_dim=64")
    out = module.translate(["", "   ", "Open the file"], beam_size=2)
    assert out[0]["translation"] == "" and out[1]["translation"] == ""
    assert isinstance(out[2]["translation"], str)


@needs_catalogs
@pytest.mark.timeout(300)
def test_overfits_fifty_pairs(compose_cfg):
    """A small Transformer memorises 50 pairs: BLEU >= 90 on them (greedy and beam)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    _, dm, module = _module(
        compose_cfg, "attention=multihead", "data.limit=50", "data.max_words=12",
        "model.embed_dim=64", "model.ffn_dim=128", "model.encoder_layers=2",
        "model.decoder_layers=2", "model.dropout=0.0", "label_smoothing=0.0",
    )  # fmt: skip
    pairs = dm.splits["train"]
    assert len(pairs) == 50
    batch = dm.collate(dm._items(pairs))
    opt = torch.optim.AdamW(module.parameters(), 3e-3, weight_decay=0.0)
    for _ in range(150):
        loss, n = module._loss(batch, 0.0)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
    for beam in (1, 3):
        hyps = [r["translation"] for r in module.translate([s for s, _ in pairs], beam_size=beam)]
        bleu = corpus_scores(hyps, [t for _, t in pairs])["bleu"]
        assert bleu >= 90, f"beam {beam}: BLEU {bleu:.1f} on the 50 training pairs"


@needs_catalogs
@pytest.mark.timeout(600)
def test_fast_run_rnn_with_coverage(compose_cfg, tmp_path):
    """model=rnn attention=coverage trains with the coverage loss and beam-decodes with the
    GNMT coverage penalty (debug=fast)."""
    from toolkit.commands.train import train

    cfg = compose_cfg(
        "recipe=translation", "model=rnn", "attention=coverage", "debug=fast", *TINY,
        "model.embed_dim=32", "model.hidden_dim=32", "model.decoder_dim=32",
        "coverage_loss_weight=1.0", "decode.beam_size=2", "decode.coverage_penalty=0.2",
        "trainer.enable_progress_bar=false",
    )  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert result["attention"] == "coverage" and "coverage" in result["attention_modules"]
    m = result["metrics"]
    assert 0 <= m["bleu"] <= 100 and 0 <= m["attention_entropy"] <= 1
    assert result["decode"]["coverage_penalty"] == 0.2
    assert list((tmp_path / "run" / "attention").glob("example_*.npz"))


@needs_catalogs
@pytest.mark.timeout(600)
def test_rnn_records_the_attention_options_it_was_built_with(compose_cfg, tmp_path):
    from toolkit.commands.train import train

    cfg = compose_cfg(
        "recipe=translation", "model=rnn", "attention=general", "debug=fast", *TINY,
        "model.embed_dim=32", "model.hidden_dim=32", "model.decoder_dim=32",
        "attention.options.scale=0.125", "decode.beam_size=2",
        "trainer.enable_progress_bar=false",
    )  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert result["attention"] == "general" and "general" in result["attention_modules"]
    assert result["attention_options"] == {"scale": 0.125}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["attention_options"] == {"scale": 0.125}


@needs_catalogs
@pytest.mark.timeout(600)
def test_cli_train_then_evaluate(tmp_path, tiny_cache):
    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(tiny_cache)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "toolkit.train", "recipe=translation", "attention=additive",
           "debug=fast", "model.embed_dim=32", "model.ffn_dim=64", "model.num_heads=2",
           "decode.beam_size=2", f"hydra.run.dir={run}", *TINY]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=500)
    metrics = json.loads((run / "metrics.json").read_text())
    m = metrics["metrics"]
    for key in ("bleu", "chrf", "copy_bleu", "bleu_greedy", "attention_entropy"):
        assert key in m
    assert "nrefs:1" in metrics["signatures"]["bleu"]
    assert 0 <= m["attention_entropy"] <= 1 and metrics["decode"]["beam_size"] == 2
    assert len(list((run / "attention").glob("example_*.npz"))) == 2
    assert len(list((run / "attention").glob("example_*.png"))) == 2
    assert (run / "attention" / "translations.tsv").read_text().startswith("source\t")
    # per-example file: sacreBLEU's corpus scores recomputed from it are the run's
    header, records = read_per_example(run)
    assert header["kind"] == "translation" and len(records) == metrics["test_examples"]
    for key in ("bleu", "chrf"):
        assert corpus_metric(header, records, key).value() == pytest.approx(m[key], abs=1e-9)
    ckpt = metrics["checkpoint"]
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "toolkit.evaluate", f"ckpt={ckpt}", "decode.beam_size=1",
           "attention_examples=1", f"hydra.run.dir={out}"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    again = json.loads((out / "metrics.json").read_text())
    assert again["decode"]["beam_size"] == 1
    # evaluation greedy == the training run's greedy column (same checkpoint, same data)
    assert again["metrics"]["bleu"] == pytest.approx(m["bleu_greedy"], abs=1e-6)
    header, records = read_per_example(out)  # toolkit.evaluate writes it too
    bleu = corpus_metric(header, records, "bleu").value()
    assert bleu == pytest.approx(again["metrics"]["bleu"], abs=1e-9)
