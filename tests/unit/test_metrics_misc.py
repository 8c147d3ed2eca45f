"""Attention diagnostics and schedules on hand-computed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.metrics.attention import attention_entropy, marked_mass
from toolkit.training.schedules import warmup_cosine


def test_entropy_hand_computed():
    w = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    ent, norm = attention_entropy(w, mask)
    assert ent.tolist() == pytest.approx([math.log(2), 0.0, math.log(4)], abs=1e-6)
    # uniform over the 2 real keys -> 1; one-hot -> 0; uniform over 4 -> 1
    assert norm.tolist() == pytest.approx([1.0, 0.0, 1.0], abs=1e-6)


def test_entropy_single_key_is_zero():
    ent, norm = attention_entropy(torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]))
    assert ent.item() == pytest.approx(0.0) and norm.item() == 0.0


def test_marked_mass_hand_computed():
    # two sentences: 1 of 4 and 1 of 2 tokens marked -> token share 2/6
    weights = [[0.7, 0.1, 0.1, 0.1], [0.5, 0.5]]
    marks = [[True, False, False, False], [False, True]]
    stats = marked_mass(weights, marks)
    assert stats["mass"] == pytest.approx(1.2 / 2.0)
    assert stats["token_share"] == pytest.approx(2 / 6)
    assert stats["lift"] == pytest.approx(0.6 / (1 / 3))


def test_warmup_cosine_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10, min_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1)  # (0 + 1) / 10
    assert lrs[9] == pytest.approx(1.0)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert all(a >= b - 1e-12 for a, b in zip(lrs[9:], lrs[10:]))  # monotone decay


def test_repeated_ngram_rate_on_hand_counted_outputs():
    from toolkit.metrics.repetition import repeated_ngram_rate, repeated_ngrams

    # "a b c x a b c": trigrams abc bcx cxa xab abc -> 1 duplicate of 5
    # "d d d d": ddd ddd -> 1 of 2; "e f": none; "": none
    texts = ["a b c x a b c", "d d d d", "e f", ""]
    assert repeated_ngrams(texts) == {"ngrams": 7, "repeated": 2}
    assert repeated_ngram_rate(texts) == 2 / 7
    assert repeated_ngrams(["a b a b a"], n=2) == {"ngrams": 4, "repeated": 2}
    assert repeated_ngram_rate(["no repeats here at all"]) == 0.0
    assert repeated_ngram_rate([]) == 0.0
