"""The long-input setting (``compare setting=long``): each recipe's ``report.long`` overrides
give the attention >= 1,000 positions, joined items never mix splits, and the default
setting is unchanged. Small synthetic files (own-data formats) or a few generated scenes
stand in for the corpora; the joining code is the one the embedded corpora go through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipes.asr.data import JoinedUtterance, encoder_positions, join_utterances
from recipes.sentiment.data import join_documents
from recipes.translation.data import join_pairs
from toolkit.attention import capture_attention
from toolkit.data.audio import Utterance
from toolkit.report import recipe_report
from toolkit.runs import import_object

torch.set_num_threads(1)
LONG = 1000


def long_overrides(recipe: str) -> list[str]:
    own = recipe_report(recipe).overrides("long")
    assert own, f"conf/recipe/{recipe}.yaml has no report.long list"
    return list(own)


def build(cfg, **data):
    """The composed config's data module (set up) and recipe module, as train builds them."""
    dm = instantiate(OmegaConf.merge(cfg.data, data), _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    plain = OmegaConf.to_container(cfg, resolve=True)
    module = import_object(cfg.recipe.module)(cfg=plain, data_state=dm.state())
    return dm, module.eval()


def key_lengths(cap) -> list[int]:
    """The key length of every captured attention map."""
    return [int(m.shape[-1]) for maps in cap.maps.values() for m in maps]


# ----- the joining rules, on hand-made items ------------------------------------------------
def test_join_documents_counts_labels_and_remainder():
    pairs = [(f"w{i} " * 300, "pos" if i % 3 else "neg") for i in range(10)]  # 300 tokens each
    docs = join_documents(pairs, 1000)
    # 7 pos items (1,2,4,5,7,8): 4 fill a document (1200 tokens), the last 2 join it;
    # 3 neg items (0,3,6,9 -> 4 items): 4 fill one document
    by_label = {label: [len(t.split()) for t, y in docs if y == label] for label in ("pos", "neg")}
    assert by_label == {"pos": [1800], "neg": [1200]}
    assert sorted(w for t, _ in docs for w in set(t.split())) == sorted(f"w{i}" for i in range(10))
    # too few tokens for one document: one shorter document, nothing lost
    assert join_documents(pairs[:2], 1000) == [(pairs[0][0], "neg"), (pairs[1][0], "pos")]


def test_join_pairs_counts_source_positions():
    pairs = [(f"s{i} " * 400, f"t{i}") for i in range(7)]
    joined = join_pairs(pairs, 1000, lambda s: len(s.split()), target_sep=" ")
    # 3 sources of 400 reach 1,200; the 7th source joins the second group
    assert [len(s.split()) for s, _ in joined] == [1200, 1600]
    assert [t for _, t in joined] == ["t0 t1 t2", "t3 t4 t5 t6"]


def test_join_utterances_seconds_and_gaps():
    utts = [Utterance(f"{i}.wav", f"u{i}", "spk", 10.0) for i in range(9)]
    joined = join_utterances(utts, 41.0, gap=0.5)
    # 4 x 10 s + 3 gaps = 41.5 s; the 9th utterance joins the second group
    assert [len(u.parts) for u in joined] == [4, 5]
    assert [u.duration for u in joined] == [41.5, 52.0]
    assert joined[0].text == "u0 u1 u2 u3" and joined[0].audio == "0.wav+1.wav+2.wav+3.wav"
    assert encoder_positions(41.0) >= LONG > encoder_positions(40.0)


# ----- sentiment ----------------------------------------------------------------------------
def write_labelled(folder: Path, split: str, n: int, words: int = 60) -> Path:
    """``n`` sentences of ``words`` tokens, every token naming its split."""
    path = folder / f"{split}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(f"{split}{(i + j) % 7}" for j in range(words))
            f.write(json.dumps({"text": text, "label": "positive" if i % 2 else "negative"}))
            f.write("\n")
    return path


def test_sentiment_long_documents_reach_1000_positions(compose_cfg, tmp_path):
    files = {s: str(write_labelled(tmp_path, s, n)) for s, n in
             (("train", 80), ("valid", 40), ("test", 40))}  # fmt: skip
    data = {"train_file": files["train"], "valid_file": files["valid"],
            "test_file": files["test"], "min_freq": 1}  # fmt: skip
    cfg = compose_cfg("recipe=sentiment", "threads=1", *long_overrides("sentiment"))
    assert cfg.data.join_min_tokens == LONG and cfg.model._target_.endswith("TransformerClassifier")
    dm, module = build(cfg, **data)
    # 20 sentences of 60 tokens per label: one document of 17 (1,020 tokens) + 3 appended
    assert {s: len(p) for s, p in dm.splits.items()} == {"train": 4, "valid": 2, "test": 2}
    for split, pairs in dm.splits.items():  # no document mixes splits
        words = {w.rstrip("0123456789") for text, _ in pairs for w in text.split()}
        assert words == {split}, (split, words)
    batch = next(iter(dm.test_dataloader()))
    assert batch["ids"].shape == (2, 1200) and bool(batch["mask"].all())
    with torch.no_grad(), capture_attention(module.model) as cap:
        module(batch["ids"], batch["mask"])
    assert key_lengths(cap) and min(key_lengths(cap)) == 1200
    assert dm.manifest()["long_inputs"]["test"] == {"items": 2, "min": 1200, "median": 1200,
                                                    "max": 1200}  # fmt: skip
    # the default setting: one sentence per item, nothing joined, no manifest entry
    plain = compose_cfg("recipe=sentiment", "threads=1")
    assert plain.data.join_min_tokens == 0 and plain.model._target_.endswith("RNNClassifier")
    dm0 = instantiate(OmegaConf.merge(plain.data, data), _recursive_=False)
    dm0.setup("fit")
    assert {s: len(p) for s, p in dm0.splits.items()} == {"train": 80, "valid": 40, "test": 40}
    assert max(len(ids) for ids, _ in dm0._encoded["test"]) == 60
    assert "long_inputs" not in dm0.manifest()


# ----- translation --------------------------------------------------------------------------
def write_parallel(folder: Path, split: str, n: int) -> Path:
    path = folder / f"{split}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            src = " ".join(f"{split}{(i + j) % 5}" for j in range(30))
            f.write(json.dumps({"source": src, "target": src.upper()}) + "\n")
    return path


def test_translation_long_pairs_reach_1000_source_positions(compose_cfg, tmp_path):
    files = {s: str(write_parallel(tmp_path, s, n)) for s, n in
             (("train", 120), ("valid", 40), ("test", 40))}  # fmt: skip
    cfg = compose_cfg(
        "recipe=translation", "threads=1", "model.embed_dim=32", "model.ffn_dim=64",
        "model.encoder_layers=1", "model.decoder_layers=1", "model.num_heads=2",
        *long_overrides("translation"), "data.vocab_size=40",
    )  # fmt: skip
    assert cfg.data.join_min_tokens == LONG and cfg.decode.beam_size == 1
    dm, module = build(cfg, train_file=files["train"], valid_file=files["valid"],
                       test_file=files["test"])  # fmt: skip
    assert len(dm.splits["test"]) < 40 and len(dm.splits["train"]) < 120
    for split, pairs in dm.splits.items():  # source and target words of their own split only
        words = {w.rstrip("0123456789").lower() for s, t in pairs for w in (s + " " + t).split()}
        assert words == {split}, (split, words)
    batch = next(iter(dm.test_dataloader()))
    lengths = batch["src_mask"].sum(1)
    assert int(lengths.min()) >= LONG
    with torch.no_grad(), capture_attention(module.model) as cap:
        module.model(batch["src"], batch["src_mask"], batch["tgt_in"])
    # encoder self-attention and decoder cross-attention run over the >= 1,000 source positions
    assert batch["src"].shape[1] >= LONG
    assert key_lengths(cap).count(batch["src"].shape[1]) >= 2
    info = dm.manifest()["long_inputs"]
    assert info["test"]["min"] >= LONG and info["test"]["items"] == len(dm.splits["test"])
    plain = compose_cfg("recipe=translation", "threads=1", "data.vocab_size=40")
    assert plain.data.join_min_tokens == 0
    dm0 = instantiate(OmegaConf.merge(plain.data, {"train_file": files["train"],
                      "valid_file": files["valid"], "test_file": files["test"]}),
                      _recursive_=False)  # fmt: skip
    dm0.setup("fit")
    assert {s: len(p) for s, p in dm0.splits.items()} == {"train": 120, "valid": 40, "test": 40}
    assert "long_inputs" not in dm0.manifest()


# ----- captioning ---------------------------------------------------------------------------
SCENES = ["data.scenes.train=8", "data.scenes.valid=4", "data.scenes.test=4",
          "data.batch_size=4", "data.eval_batch_size=4", "threads=1"]  # fmt: skip


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_captioning_long_grid_has_1024_regions(model, compose_cfg):
    cfg = compose_cfg("recipe=captioning", f"model={model}", *long_overrides("captioning"),
                      *SCENES)  # fmt: skip
    dm, module = build(cfg)
    batch = next(iter(dm.test_dataloader()))
    assert batch["images"].shape[-2:] == (64, 64)  # the same scenes, a finer grid
    tokens = batch["tokens"][:, :-1]
    with torch.no_grad():
        _, weights = module.model(batch["images"], tokens, batch["boxes"], batch["box_mask"])
        regions, mask, grid = module.model.regions.encoder(batch["images"])
    assert grid == (32, 32) and regions.shape[1] == 1024 and weights.shape[-1] == 1024
    assert module.grid() == (32, 32)  # the grid the pointing game maps onto the boxes
    plain = compose_cfg("recipe=captioning", f"model={model}", *SCENES)
    _, module0 = build(plain)
    with torch.no_grad():
        regions0, _, grid0 = module0.model.regions.encoder(batch["images"])
    assert grid0 == (8, 8) and regions0.shape[1] == 64 and plain.model.encoder.image_size is None


# ----- asr ----------------------------------------------------------------------------------
def write_speech(folder: Path, split: str, n: int, seconds: float = 5.0) -> Path:
    """``n`` tones of ``seconds`` s, each transcript naming its split."""
    rng = np.random.default_rng(len(split))
    (folder / split).mkdir()
    path = folder / f"{split}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            wav = folder / split / f"{i}.wav"
            t = np.arange(int(seconds * 16000)) / 16000
            tone = 0.1 * np.sin(2 * np.pi * (200 + 20 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(wav, tone.astype(np.float32), 16000)
            f.write(json.dumps({"audio": str(wav), "text": f"{split} {i}"}) + "\n")
    return path


def test_asr_long_utterances_reach_1000_encoder_positions(compose_cfg, tmp_path):
    files = {s: str(write_speech(tmp_path, s, n)) for s, n in
             (("train", 20), ("valid", 9), ("test", 9))}  # fmt: skip
    small = ["model.embed_dim=32", "model.num_heads=2", "model.encoder_layers=1",
             "model.decoder_layers=1", "model.ffn_dim=64", "data.babble_pool=2",
             "data.test_noise.types=[white]", "data.test_noise.snrs=[10]",
             "data.test_noise.rt60s=[]", "threads=1"]  # fmt: skip
    cfg = compose_cfg("recipe=asr", *long_overrides("asr"), *small)
    assert cfg.data.join_min_seconds == 41.0
    dm, module = build(cfg, train_file=files["train"], valid_file=files["valid"],
                       test_file=files["test"])  # fmt: skip
    # 8 tones of 5 s + 7 gaps of 0.2 s = 41.4 s; the 9th joins the last item
    assert [len(u.parts) for u in dm.splits["test"]] == [9]
    assert [len(u.parts) for u in dm.splits["train"]] == [8, 12]
    for split, utts in dm.splits.items():  # no joined utterance mixes splits
        assert all(isinstance(u, JoinedUtterance) for u in utts)
        assert {w for u in utts for w in u.text.split() if not w.isdigit()} == {split}
        assert all(Path(p.audio).parent.name == split for u in utts for p in u.parts)
    item = dm.dataset("test")[0]
    assert len(item["audio"]) == int(9 * 5.0 * 16000 + 8 * 0.2 * 16000)
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        memory, mask, maps, _ = module.model.encode(batch["wave"], batch["lengths"], True)
    assert int(mask.sum(1).min()) >= LONG and maps[0].shape[-1] >= LONG
    # one row per test condition (clean, white noise at 10 dB), each the whole recording
    assert mask.sum(1).tolist() == [encoder_positions(45 + 1.6)] * 2 == [1164, 1164]
    info = dm.manifest()["long_inputs"]
    assert info["test"]["positions"]["min"] == 1164 and info["test"]["parts"] == 9
    # the default setting: one utterance per item
    plain = compose_cfg("recipe=asr", *small)
    assert plain.data.join_min_seconds == 0.0
    dm0 = instantiate(OmegaConf.merge(plain.data, {"train_file": files["train"],
                      "valid_file": files["valid"], "test_file": files["test"]}),
                      _recursive_=False)  # fmt: skip
    dm0.setup("fit")
    assert {s: len(u) for s, u in dm0.splits.items()} == {"train": 20, "valid": 9, "test": 9}
    assert not any(isinstance(u, JoinedUtterance) for u in dm0.splits["test"])
    assert "long_inputs" not in dm0.manifest()
