"""Seed intervals and the paired bootstrap on hand-built inputs with known answers, the
per-example file format, and metrics recomputed from per-example parts against the
corpus implementations (sacreBLEU, jiwer, the caption metrics, torchmetrics)."""

from __future__ import annotations

import gzip
import math
import random

import numpy as np
import pytest
import sacrebleu
import torch
from torchmetrics.classification import MulticlassF1Score

from toolkit.metrics.asr import TextNormalization, edit_counts, error_rates
from toolkit.metrics.caption import cider_d, corpus_bleu
from toolkit.metrics.significance import (
    compare_per_example,
    corpus_metric,
    paired_bootstrap,
    seed_interval,
)
from toolkit.runs import PER_EXAMPLE_FILE, read_per_example, write_per_example

CLS = {"per_example": 1, "kind": "classification", "labels": ["neg", "pos"]}


def classification(correct: list[bool]) -> tuple[dict, list[dict]]:
    """A per-example file's content: every label ``pos``, right where ``correct``."""
    return CLS, [{"id": i, "label": "pos", "predicted": "pos" if ok else "neg"}
                 for i, ok in enumerate(correct)]  # fmt: skip


def test_known_difference_is_found():
    """B right on 90 of 100 sentences, A on 60 (B right wherever A is): +0.30, p < 0.01."""
    a = classification([i < 60 for i in range(100)])
    b = classification([i < 90 for i in range(100)])
    r = compare_per_example([(a, b)], "accuracy")
    assert r.difference == pytest.approx(0.30)
    assert (r.reference_value, r.system_value) == (pytest.approx(0.60), pytest.approx(0.90))
    assert r.p_value < 0.01 and r.p_value == pytest.approx(2 / 1001)  # no resample flips
    assert 0 < r.low < 0.30 < r.high  # the interval excludes 0
    assert (r.resamples, r.examples, r.seeds) == (1000, 100, 1)
    # B - A on each resample is the share of the 30 "B only" sentences: about ±0.046
    assert r.low == pytest.approx(0.21, abs=0.03) and r.high == pytest.approx(0.39, abs=0.03)
    # the other way round: the same size, negative
    back = compare_per_example([(b, a)], "accuracy")
    assert back.difference == pytest.approx(-0.30) and back.high < 0


def test_two_copies_of_one_run_differ_by_zero_with_p_one():
    run = classification([random.Random(0).random() < 0.7 for _ in range(200)])
    r = compare_per_example([(run, run)], "accuracy")
    assert r.difference == 0 and (r.low, r.high) == (0, 0)
    assert r.p_value == 1.0 and not r.significant(0.05)


def test_small_difference_is_not_significant():
    """61 vs 60 of 100 (one sentence apart): far from significant."""
    a = classification([i < 60 for i in range(100)])
    b = classification([i < 61 for i in range(100)])
    r = compare_per_example([(a, b)], "accuracy")
    assert r.difference == pytest.approx(0.01) and r.p_value > 0.5 and r.low <= 0 <= r.high


def test_bootstrap_is_seeded_and_deterministic():
    a = classification([i % 3 != 0 for i in range(90)])
    b = classification([i % 4 != 0 for i in range(90)])
    first = compare_per_example([(a, b)], "accuracy", seed=7)
    assert compare_per_example([(a, b)], "accuracy", seed=7) == first
    other = compare_per_example([(a, b)], "accuracy", seed=8)
    assert other.difference == first.difference and (other.low, other.high) != (
        first.low, first.high,
    )  # fmt: skip


def test_seed_interval_is_the_student_t_interval():
    # mean 0.83, s = sqrt(0.0013) = 0.0360555, t(0.975, 2) = 4.302653 (tables: 4.303)
    iv = seed_interval([0.80, 0.82, 0.87])
    half = 4.302653 * math.sqrt(0.0013) / math.sqrt(3)  # 0.0895668
    assert iv.mean == pytest.approx(0.83) and iv.n == 3
    assert iv.low == pytest.approx(0.83 - half, abs=1e-6)
    assert iv.high == pytest.approx(0.83 + half, abs=1e-6)
    assert (iv.low, iv.high) == (pytest.approx(0.740433, abs=1e-6),
                                 pytest.approx(0.919567, abs=1e-6))  # fmt: skip
    # two seeds: t(0.975, 1) = 12.7062; half = 12.7062 * 0.01 / sqrt(2) * sqrt(2) = 0.127062
    two = seed_interval([0.79, 0.81])
    assert (two.low, two.high) == (pytest.approx(0.8 - 0.127062, abs=1e-5),
                                   pytest.approx(0.8 + 0.127062, abs=1e-5))  # fmt: skip
    one = seed_interval([0.5])
    assert (one.mean, one.low, one.high, one.n) == (0.5, None, None, 1)


def test_wer_bootstrap_on_hand_built_edit_counts():
    """Utterance WER parts: a resample's WER is its summed errors over its summed words."""
    words = [4, 10, 6, 8, 12, 5, 9, 7, 11, 8]  # 80 reference words
    errors_a = [1, 3, 2, 2, 4, 1, 3, 2, 3, 3]  # 24 errors: WER 0.30
    errors_b = [0, 1, 1, 1, 1, 0, 1, 1, 1, 1]  # 8 errors:  WER 0.10
    header = {"per_example": 1, "kind": "asr", "conditions": ["clean", "babble_0"]}

    def run(errors):
        return header, [
            {"id": i, "condition": c, "word_errors": e * k, "ref_words": n, "char_errors": e,
             "ref_chars": 5 * n, "reference": f"utt {i}"}
            for c, k in (("clean", 1), ("babble_0", 2))
            for i, (e, n) in enumerate(zip(errors, words))
        ]  # fmt: skip

    r = compare_per_example([(run(errors_a), run(errors_b))], "wer")
    assert r.reference_value == pytest.approx(24 / 80) and r.system_value == pytest.approx(0.10)
    assert r.difference == pytest.approx(-0.20) and r.high < 0 and r.p_value < 0.01
    # by hand: one resample = utterances 0, 0, 1, ...: WER = summed errors / summed words
    m = corpus_metric(*run(errors_a), "wer")
    counts = np.zeros((1, 10))
    counts[0, 0], counts[0, 1] = 2, 1  # utterances 0, 0 and 1
    assert m.score(counts @ m.parts)[0] == pytest.approx((2 * 1 + 3) / (2 * 4 + 10))
    assert corpus_metric(*run(errors_a), "wer_babble_0").value() == pytest.approx(48 / 80)
    assert corpus_metric(*run(errors_a), "wer_avg_0").value() == pytest.approx(48 / 80)
    assert corpus_metric(*run(errors_a), "cer").value() == pytest.approx(24 / 400)


def test_edit_counts_add_up_to_jiwer_corpus_rates():
    refs = ["the cat sat on the mat", "open the file", "Hello, World!", " ?! ", "turn left now"]
    hyps = ["the cat sat on mat", "open a file please", "hello word", "noise", ""]
    norm = TextNormalization()
    counts = edit_counts(refs, hyps, norm)
    assert counts[3] is None  # an empty reference is left out, as in the WER
    kept = [c for c in counts if c is not None]
    assert kept[0]["word_errors"] == 1 and kept[0]["ref_words"] == 6
    assert kept[1]["word_errors"] == 2 and kept[3]["word_errors"] == 3  # all deleted
    wer = sum(c["word_errors"] for c in kept) / sum(c["ref_words"] for c in kept)
    cer = sum(c["char_errors"] for c in kept) / sum(c["ref_chars"] for c in kept)
    rates = error_rates(refs, hyps, norm)  # the module's corpus WER / CER
    assert (rates["utterances"], rates["skipped"]) == (4, 1)
    assert wer == pytest.approx(rates["wer"]) and cer == pytest.approx(rates["cer"])
    assert wer == pytest.approx(7 / 14)  # 1 + 2 + 1 + 3 errors over 6 + 3 + 2 + 3 words
    assert kept[2]["reference"] == "hello world" and kept[2]["char_errors"] == 1


REFS = ["Die Katze sitzt auf der Matte.", "Öffne die Datei.", "Das ist ein kleiner Test.",
        "Wir gehen heute ins Kino.", "Der Himmel ist blau.", "Ich habe keine Zeit."]  # fmt: skip
HYPS_A = ["Die Katze sitzt auf der Matte.", "Öffnen Sie die Datei.", "Das ist ein Test.",
          "Wir gehen ins Kino heute.", "Der Himmel ist blau.", "Ich habe Zeit."]  # fmt: skip
HYPS_B = ["Eine Katze sitzt auf der Matte.", "Öffne die Datei.", "Dies ist ein kleiner Test.",
          "Wir gehen heute ins Kino.", "Himmel blau.", "Ich habe keine Zeit."]  # fmt: skip


def translation(hyps: list[str]) -> tuple[dict, list[dict]]:
    header = {"per_example": 1, "kind": "translation", "bleu_tokenize": "13a"}
    return header, [{"id": i, "hypothesis": h, "reference": r}
                    for i, (h, r) in enumerate(zip(hyps, REFS))]  # fmt: skip


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_bleu_and_chrf_bootstrap_agree_with_sacrebleu(metric):
    score = sacrebleu.corpus_bleu if metric == "bleu" else sacrebleu.corpus_chrf
    a, b = score(HYPS_A, [REFS]).score, score(HYPS_B, [REFS]).score
    r = compare_per_example([(translation(HYPS_A), translation(HYPS_B))], metric, resamples=200)
    assert r.reference_value == pytest.approx(a, abs=1e-9)
    assert r.system_value == pytest.approx(b, abs=1e-9)
    assert r.difference == pytest.approx(b - a, abs=1e-9)
    assert r.low <= r.difference <= r.high and 0 < r.p_value <= 1
    # sentence order does not matter: pairing goes by id
    h, recs = translation(HYPS_B)
    assert compare_per_example([(translation(HYPS_A), (h, recs[::-1]))], metric,
                               resamples=200) == r  # fmt: skip


def test_different_test_sets_are_refused():
    h, recs = translation(HYPS_A)
    other = (h, [{**x, "reference": x["reference"] + "!"} for x in recs])
    with pytest.raises(ValueError, match="different labels/references"):
        compare_per_example([(translation(HYPS_A), other)], "bleu")
    with pytest.raises(ValueError, match="different test sets"):
        compare_per_example([(translation(HYPS_A), (h, recs[:-1]))], "bleu")
    with pytest.raises(ValueError, match="no per-example bootstrap for 'copy_bleu'"):
        compare_per_example([(translation(HYPS_A), translation(HYPS_B))], "copy_bleu")


def test_caption_bleu4_and_cider_from_per_image_parts():
    hyps = ["a red circle left of a blue square", "a green bag", "two objects a dress and a bag",
            "a small yellow dress"]  # fmt: skip
    refs = [["a red circle left of a blue square", "a red circle and a blue square"],
            ["a large green bag", "a green bag on the right"],
            ["there are two objects a dress and a bag", "a dress and a bag"],
            ["a small yellow dress", "one dress"]]  # fmt: skip
    header = {"per_example": 1, "kind": "captioning"}
    records = [{"id": i, "hypothesis": h, "references": r}
               for i, (h, r) in enumerate(zip(hyps, refs))]  # fmt: skip
    assert corpus_metric(header, records, "bleu4").value() == pytest.approx(
        100 * corpus_bleu(hyps, refs)[3]
    )
    assert corpus_metric(header, records, "cider").value() == pytest.approx(cider_d(hyps, refs)[0])


def test_macro_f1_matches_torchmetrics():
    rng = random.Random(3)
    labels = ["neg", "neu", "pos"]
    y = [rng.choice(labels[:2]) for _ in range(60)]  # "neu"/"neg" only in the truth
    p = [rng.choice(labels) for _ in range(60)]
    header = {"per_example": 1, "kind": "classification", "labels": labels}
    records = [{"id": i, "label": a, "predicted": b} for i, (a, b) in enumerate(zip(y, p))]
    ours = corpus_metric(header, records, "f1_macro").value()
    f1 = MulticlassF1Score(3, average="macro")
    theirs = f1(torch.tensor([labels.index(b) for b in p]), torch.tensor([labels.index(a)
                                                                          for a in y]))  # fmt: skip
    assert ours == pytest.approx(float(theirs), abs=1e-6)


def test_seeds_are_pooled_by_averaging_per_seed_differences():
    """Seed 1: B +0.30 over A; seed 2: B +0.10: the pooled difference is +0.20, and the same
    example draw scores every seed (so two copies of the pair give the one-pair answer)."""
    s1 = (
        classification([i < 60 for i in range(100)]),
        classification([i < 90 for i in range(100)]),
    )
    s2 = (
        classification([i < 70 for i in range(100)]),
        classification([i < 80 for i in range(100)]),
    )
    pooled = compare_per_example([s1, s2], "accuracy")
    assert pooled.difference == pytest.approx(0.20) and pooled.seeds == 2
    assert pooled.p_value < 0.01 and pooled.low > 0
    twice = compare_per_example([s1, s1], "accuracy")
    once = compare_per_example([s1], "accuracy")
    assert (twice.difference, twice.low, twice.high, twice.p_value) == pytest.approx(
        (once.difference, once.low, once.high, once.p_value)
    )


def test_generic_bootstrap_on_parts():
    """Any metric of summed parts: here a mean of per-example scores."""
    a = np.array([[x, 1.0] for x in [0.2, 0.4, 0.3, 0.5, 0.1] * 20])
    b = a + np.array([0.1, 0.0])
    r = paired_bootstrap([(a, b)], lambda s: s[:, 0] / s[:, 1], resamples=300)
    assert r.difference == pytest.approx(0.1) and r.low == pytest.approx(0.1)
    assert r.high == pytest.approx(0.1) and r.p_value == pytest.approx(2 / 301)


def test_per_example_file_round_trip_and_reproducible(tmp_path):
    header = {"recipe": "sentiment", "kind": "classification", "labels": ["neg", "pos"]}
    records = [
        {"id": 0, "label": "pos", "predicted": "pos", "probability": 0.9, "text": "gut"},
        {"id": 1, "label": "neg", "predicted": "pos", "probability": 0.6, "text": "übel"},
    ]
    path = write_per_example(tmp_path / "a", header, records)
    assert path == tmp_path / "a" / PER_EXAMPLE_FILE
    head, back = read_per_example(tmp_path / "a")
    assert head == {"per_example": 1, **header, "examples": 2} and back == records
    write_per_example(tmp_path / "b", header, records)
    assert path.read_bytes() == (tmp_path / "b" / PER_EXAMPLE_FILE).read_bytes()
    assert read_per_example(tmp_path / "none") is None
    with gzip.open(tmp_path / "c.gz", "wt") as fh:
        fh.write('{"id": 0}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c.gz").rename(tmp_path / "c" / PER_EXAMPLE_FILE)
    with pytest.raises(ValueError, match="no per-example header"):
        read_per_example(tmp_path / "c")
