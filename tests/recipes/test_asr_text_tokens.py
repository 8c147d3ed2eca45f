"""The ASR recipe's text options: the open-vocabulary ``sentences`` corpus (movie-review
sentences of the sentiment source and WordNet usage examples, synthesised like the
commands) and sentencepiece output units, which travel in the checkpoint so a loaded model
decodes exactly as the trained one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from test_asr import SMALL  # the ASR tests' small model (tests/recipes is on sys.path)

from recipes.asr.corpus import (
    SENTENCE_SPLIT_SIZES,
    SENTENCE_WORDS,
    SPLIT_SIZES,
    TEST_VOICES,
    TRAIN_VOICES,
    build_speech_corpus,
    corpus_folder,
    corpus_sizes,
    generate_commands,
    held_out_record,
    load_speech_splits,
    sentence_splits,
    speech_sentences,
    speech_text,
    wordnet_sentences,
)
from recipes.asr.data import CharTokenizer, SentencePieceTokenizer, tokenizer_from_state
from recipes.asr.module import ASRModule
from toolkit.commands.evaluate import evaluate
from toolkit.data.cache import DataError
from toolkit.data.vader import SDIST_ENV, domain_sentences
from toolkit.metrics.asr import TextNormalization
from toolkit.paths import CONF_DIR
from toolkit.training.checkpoints import load_module

ROOT = Path(__file__).resolve().parents[2]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
TINY = [
    "data.limit=16",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.test_noise.types=[white,babble]",
    "data.test_noise.snrs=[10,0]",
    "decode.mode=joint",  # the joint beam path (the recipe default is CTC greedy)
    "decode.beam_size=2",
    *SMALL,
]


@pytest.fixture(scope="session")
def movie_sentences(sdist_path) -> tuple[list[str], dict]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SDIST_ENV, str(sdist_path))
        return speech_sentences(wordnet=False)


@pytest.fixture(scope="session")
def all_sentences(sdist_path) -> tuple[list[str], dict]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SDIST_ENV, str(sdist_path))
        return speech_sentences()


@pytest.fixture
def with_sdist(sdist_path, monkeypatch) -> Path:
    monkeypatch.setenv(SDIST_ENV, str(sdist_path))
    return sdist_path


# ----------------------------------------------------------------------------- sentences


def test_speech_text_normalisation():
    assert speech_text("Effective but too tepid biopic") == "effective but too tepid biopic"
    assert speech_text("Jackson's 90-minute ''epic''!") == "jackson's ninety minute epic"
    assert speech_text("Amélie  is a ‘delight’ \u2014 really.") == "amelie is a delight really"
    assert speech_text("It doesn’t work (at all).") == "it doesn't work at all"
    # Digits that are not a stand-alone 0..999, and symbols espeak-ng would speak: dropped.
    for text in ("The 21st Century's new ''Conan''", "1,000 ways", "7.5 out of 10",
                 "Sex & the city", "costs $5", "the 1990s", "100% fun"):  # fmt: skip
        assert speech_text(text) is None, text


def test_sentence_pool_and_splits(movie_sentences):
    sentences, source = movie_sentences
    assert source["member"].endswith("movieReviewSnippets_GroundTruth.txt")
    assert source["selection"]["kept"] == len(sentences) == len(set(sentences))
    low, high = SENTENCE_WORDS
    assert all(low <= len(s.split()) <= high for s in sentences)
    assert all(re.fullmatch(r"[a-z' ]+", s) for s in sentences)
    assert len(sentences) > SPLIT_SIZES["valid"] + SPLIT_SIZES["test"]
    full = sentence_splits(SPLIT_SIZES, 0, sentences)
    assert len(full["test"]) == SPLIT_SIZES["test"] and len(full["valid"]) == SPLIT_SIZES["valid"]
    sets = {s: set(texts) for s, texts in full.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"]
                or sets["valid"] & sets["test"])  # fmt: skip
    # Fewer distinct training sentences than utterances: they repeat, in order, to the count.
    distinct = len(sentences) - SPLIT_SIZES["valid"] - SPLIT_SIZES["test"]
    assert len(full["train"]) == SPLIT_SIZES["train"] and len(sets["train"]) == distinct
    repeats = SPLIT_SIZES["train"] - distinct
    assert full["train"][distinct:] == full["train"][:repeats]
    assert sentence_splits(SPLIT_SIZES, 0, sentences) == full  # same seed, same corpus
    assert sentence_splits(SPLIT_SIZES, 1, sentences)["test"] != full["test"]
    tiny = sentence_splits(corpus_sizes(16), 0, sentences)
    assert tiny["test"] == full["test"][: len(tiny["test"])]  # a limit takes a prefix


def test_wordnet_examples_and_the_open_vocabulary_pool(all_sentences, movie_sentences, tmp_path):
    examples, record = wordnet_sentences()
    assert record["package"] == "wordnet-base" and record["version"]
    assert set(record["sha256"]) == {"data.noun", "data.verb", "data.adj", "data.adv"}
    assert len(examples) > 40000 and "he played Bach on the organ" in examples
    sentences, source = all_sentences
    selection = source["selection"]
    assert selection["kept"] == len(sentences) == len(set(sentences))
    assert selection["kept_movie"] == len(movie_sentences[0])
    assert selection["kept_wordnet"] > 30000  # many more distinct sentences than 2,750
    assert source["wordnet"]["sha256"] == record["sha256"]
    full = sentence_splits(SENTENCE_SPLIT_SIZES, 0, sentences)
    assert len(set(full["train"])) == SENTENCE_SPLIT_SIZES["train"]  # no repeats needed
    held = held_out_record(full)
    assert held["test_sentences_in_train"] == held["valid_sentences_in_train"] == 0
    with pytest.raises(DataError, match="wordnet-base"):
        wordnet_sentences(tmp_path)


@needs_espeak
def test_tiny_sentences_corpus(all_sentences, with_sdist, tmp_path):
    folder = build_speech_corpus(tmp_path / "a", limit=8, workers=1, text="sentences")
    assert folder == corpus_folder(tmp_path / "a", 8, 0, "sentences")
    assert folder != corpus_folder(tmp_path / "a", 8, 0, "commands")
    assert folder.name == "sentences-v2-8-seed0"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["text"] == "sentences" and manifest["text_source"]["kind"] == "sentences"
    assert manifest["text_source"]["member"].endswith("movieReviewSnippets_GroundTruth.txt")
    assert manifest["text_source"]["wordnet"]["package"] == "wordnet-base"
    assert manifest["counts"] == {"train": 8, "valid": 6, "test": 6}
    assert manifest["held_out"]["test_sentences_in_train"] == 0
    splits = load_speech_splits(folder)
    texts = {s: [u.text for u in utts] for s, utts in splits.items()}
    source = {speech_text(t) for t in domain_sentences()[0] + wordnet_sentences()[0]}
    assert all(t in source for ts in texts.values() for t in ts)  # from the two sources
    assert all(t in all_sentences[0] for ts in texts.values() for t in ts)
    flat = [t for ts in texts.values() for t in ts]
    assert len(flat) == len(set(flat))  # no sentence twice, within or across splits
    assert {u.speaker for u in splits["test"]} <= set(TEST_VOICES)
    assert {u.speaker for u in splits["train"] + splits["valid"]} <= set(TRAIN_VOICES)
    assert build_speech_corpus(tmp_path / "a", limit=8, text="sentences") == folder  # reused

    again = build_speech_corpus(tmp_path / "b", limit=8, workers=1, text="sentences")
    for split in ("train", "valid", "test"):
        rows = [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]
        rows2 = [json.loads(x) for x in (again / f"{split}.jsonl").read_text().splitlines()]
        keys = ("text", "speaker", "speed", "pitch", "audio")
        assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in rows2]


# ----------------------------------------------------------------------------- tokens


def test_sentencepiece_tokenizer_round_trip():
    texts = sorted(set(generate_commands(400, seed=0)))
    tok = SentencePieceTokenizer.build(texts, 128)
    assert tok.kind == "sentencepiece" and (tok.blank_id, tok.eos_id) == (0, 3)
    assert len(tok) <= 128
    for text in texts[:50]:
        ids = tok.encode(text)
        assert ids and not {tok.blank_id, tok.eos_id, tok.unk_id, tok.bos_id} & set(ids)
        assert tok.decode(ids) == text
        assert tok.decode([*ids, tok.eos_id]) == text
        assert "".join(tok.labels(ids)).replace("\u2581", " ").strip() == text
    again = tokenizer_from_state(json.loads(json.dumps(tok.to_state())))
    assert isinstance(again, SentencePieceTokenizer)
    assert [again.encode(t) for t in texts] == [tok.encode(t) for t in texts]

    chars = CharTokenizer.build(texts)
    assert (chars.blank_id, chars.eos_id) == (0, 1)
    assert tokenizer_from_state(chars.to_state()).tokens == chars.tokens
    legacy = {"tokens": chars.tokens, "normalize": {}}  # checkpoints from before `kind`
    assert tokenizer_from_state(legacy).tokens == chars.tokens
    with pytest.raises(ValueError, match="sentencepiece"):
        tokenizer_from_state({"kind": "sentencepiece"})


def test_sentencepiece_state_survives_checkpoint(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["recipe=asr", *SMALL])
    GlobalHydra.instance().clear()
    texts = sorted(set(generate_commands(300, seed=1)))
    tok = SentencePieceTokenizer.build(texts, 96)
    state = {**tok.to_state(), "normalize": TextNormalization().to_dict(), "sample_rate": 16000}
    module = ASRModule(OmegaConf.to_container(cfg, resolve=True), state).eval()
    assert (module.model.blank, module.model.eos) == (0, 3)
    assert module.model.ctc_head.out_features == len(tok)
    path = tmp_path / "last.ckpt"  # the layout Lightning writes
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    loaded = load_module(path)
    assert isinstance(loaded.tokenizer, SentencePieceTokenizer)
    assert loaded.data_state["kind"] == "sentencepiece"
    assert [loaded.tokenizer.encode(t) for t in texts] == [tok.encode(t) for t in texts]
    wave = torch.randn(2, 12000) * 0.1
    lengths = torch.tensor([12000, 9000])
    for mode in ("ctc_greedy", "joint"):
        a = module.transcribe(wave, lengths, mode=mode)["tokens"]
        b = loaded.transcribe(wave, lengths, mode=mode)["tokens"]
        assert a == b, mode
        assert all(module.model.blank not in ids for ids in a)
        assert [module.tokenizer.decode(x) for x in a] == [loaded.tokenizer.decode(x) for x in b]


# ----------------------------------------------------------------------------- end to end


@needs_espeak
def test_cli_sentences_with_sentencepiece(compose_cfg, with_sdist, tiny_cache, tmp_path):
    """``python -m toolkit.train recipe=asr data.text=sentences data.tokens=sentencepiece``
    fits and tests; ``toolkit.evaluate`` re-decodes the checkpoint with its own pieces."""
    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(tiny_cache)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "toolkit.train", "recipe=asr", "debug=fast",
           "data.text=sentences", "data.tokens=sentencepiece", "data.sp_vocab_size=64",
           f"hydra.run.dir={run}", *TINY]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= saved["metrics"]["wer"] <= 5.0 and "ctc_greedy_wer" in saved["metrics"]
    assert saved["data"]["text"] == "sentences"
    assert saved["data"]["name"] == "sentences-v2-16-seed0"
    assert saved["data"]["tokens"]["kind"] == "sentencepiece"
    assert 30 < saved["data"]["tokens"]["size"] <= 64
    ckpt = run / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    assert module.data_state["kind"] == "sentencepiece" and module.model.eos == 3
    npz = sorted((run / "attention").glob("utt_*.npz"))
    assert npz
    for path in npz:  # the output pieces, one per row of the cross-attention
        with np.load(path) as arrays:
            assert "tokens" in arrays.files

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        ecfg = compose(
            config_name="evaluate",
            overrides=[f"ckpt={ckpt}", "decode.mode=ctc_greedy", "attention_examples=1"],
        )
    GlobalHydra.instance().clear()
    again = evaluate(ecfg, tmp_path / "eval")
    assert again["data"]["tokens"]["kind"] == "sentencepiece"
    assert again["metrics"]["wer"] == pytest.approx(saved["metrics"]["ctc_greedy_wer"])


def test_decoder_never_emits_blank_or_non_target_pieces():
    """With sentencepiece ids, the decoder's next-token distribution gives no mass to the CTC
    blank (0) or to the unknown (1) and BOS (2) pieces, which are never training targets."""
    from recipes.asr.model import CTCAttentionASR

    torch.manual_seed(0)
    model = CTCAttentionASR(
        vocab_size=12, embed_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1,
        blank=0, eos=3, never=SentencePieceTokenizer.never_ids,
    ).eval()  # fmt: skip
    memory, mask = torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)
    prefix = torch.full((2, 1), 3)
    log_probs, _, _ = model.step(prefix, model.init_state(memory, mask))
    assert torch.isneginf(log_probs[:, [0, 1, 2]]).all()
    assert torch.isfinite(log_probs[:, 3:]).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2))
