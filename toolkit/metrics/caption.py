"""Caption metrics: corpus BLEU-1..4 over multiple references, CIDEr-D and CHAIR.

Inputs are tokenised captions (lists of tokens, or strings split on whitespace).

* BLEU (Papineni et al. 2002): n-gram counts clipped by the largest count in any reference,
  summed over the corpus; brevity penalty with the reference length closest to each
  hypothesis (ties: the shorter), as the COCO caption evaluation does.
* CIDEr-D (Vedantam et al. 2015, the variant the COCO server reports): TF-IDF n-gram vectors
  (n = 1..4; document frequencies over the test set's references), mean cosine similarity to
  each reference. CIDEr-D differs from plain CIDEr by (1) clipping each hypothesis n-gram's
  TF-IDF weight at the reference's, so repeating a word cannot raise the score, (2) a
  Gaussian length penalty ``exp(-(l_hyp - l_ref)² / 2σ²)``, σ = 6, and (3) a factor 10;
  it also uses no stemming. Like pycocoevalcap's ``Cider``, the length is counted in
  bigrams (``len - 1``): only the difference of lengths matters.
* CHAIR (Rohrbach et al. 2018): among the object words a caption mentions (each distinct
  object word once per caption), the share that names no object in the image (CHAIR-i),
  and the share of captions with at least one such word (CHAIR-s).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

Tokens = Sequence[str]


def _tokens(x: str | Tokens) -> list[str]:
    return x.split() if isinstance(x, str) else list(x)


def ngram_counts(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    """Counts of the ``n``-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def all_ngrams(tokens: Tokens, max_n: int) -> Counter[tuple[str, ...]]:
    """Counts of all 1..``max_n``-grams of ``tokens``."""
    out: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_n + 1):
        out.update(ngram_counts(tokens, n))
    return out


def bleu_statistics(hyp: str | Tokens, refs: Sequence[str | Tokens], max_n: int = 4) -> list[int]:
    """One item's BLEU sufficient statistics: ``[hyp_len, ref_len, correct_1..max_n,
    total_1..max_n]`` (clipped n-gram matches, hypothesis n-grams; ``ref_len`` the reference
    length closest to the hypothesis, ties: the shorter). Summed over items they give
    :func:`corpus_bleu` through :func:`bleu_from_statistics`."""
    hyp = _tokens(hyp)
    refs = [_tokens(r) for r in refs]
    if not refs:
        raise ValueError("every item needs at least one reference")
    ref_len = min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    correct, total = [0] * max_n, [0] * max_n
    for n in range(1, max_n + 1):
        counts = ngram_counts(hyp, n)
        best: Counter[tuple[str, ...]] = Counter()
        for r in refs:
            best |= ngram_counts(r, n)  # element-wise max over references
        correct[n - 1] = sum(min(c, best[g]) for g, c in counts.items())
        total[n - 1] = max(len(hyp) - n + 1, 0)
    return [len(hyp), ref_len, *correct, *total]


def bleu_from_statistics(stats: Sequence[float], max_n: int = 4) -> list[float]:
    """BLEU-1..``max_n`` in [0, 1] from summed :func:`bleu_statistics`."""
    hyp_len, ref_len = stats[0], stats[1]
    correct, total = stats[2 : 2 + max_n], stats[2 + max_n : 2 + 2 * max_n]
    if hyp_len == 0:
        return [0.0] * max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if correct[n] == 0 or total[n] == 0:
            scores.extend([0.0] * (max_n - n))
            break
        log_sum += math.log(correct[n] / total[n])
        scores.append(bp * math.exp(log_sum / (n + 1)))
    return scores


def corpus_bleu(
    hypotheses: Sequence[str | Tokens], references: Sequence[Sequence[str | Tokens]], max_n: int = 4
) -> list[float]:
    """Corpus BLEU-1..``max_n`` in [0, 1].

    Args:
        hypotheses: one caption per item.
        references: the references of each item (one or more).

    Returns:
        ``[BLEU-1, ..., BLEU-max_n]``; BLEU-n is the geometric mean of the 1..n precisions
        times the brevity penalty.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    sums = [0] * (2 + 2 * max_n)
    for hyp, refs in zip(hypotheses, references, strict=True):
        for k, v in enumerate(bleu_statistics(hyp, refs, max_n)):
            sums[k] += v
    return bleu_from_statistics(sums, max_n)


def cider_d(
    hypotheses: Sequence[str | Tokens],
    references: Sequence[Sequence[str | Tokens]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, list[float]]:
    """CIDEr-D of a corpus: ``(mean score, per-item scores)`` (scale: 0..10 per item)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if not hypotheses:
        return 0.0, []
    refs_counts = [[all_ngrams(_tokens(r), max_n) for r in refs] for refs in references]
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for refs in refs_counts:
        doc_freq.update({g for counts in refs for g in counts})
    log_docs = math.log(float(len(references)))

    def vectorise(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(max_n)]
        norm = [0.0] * max_n
        bigrams = 0
        for g, tf in counts.items():
            n = len(g) - 1
            w = tf * (log_docs - math.log(max(1.0, doc_freq[g])))
            vec[n][g] = w
            norm[n] += w * w
            if n == 1:
                bigrams += tf
        return vec, [math.sqrt(x) for x in norm], bigrams

    scores = []
    for hyp, refs in zip(hypotheses, refs_counts, strict=True):
        h = _tokens(hyp)
        hv, hn, hl = vectorise(all_ngrams(h, max_n))
        total = [0.0] * max_n
        for ref in refs:
            rv, rn, rl = vectorise(ref)
            penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                dot = sum(min(w, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, w in hv[n].items())
                if hn[n] and rn[n]:
                    dot /= hn[n] * rn[n]
                total[n] += dot * penalty
        score = sum(total) / max_n / len(refs) * 10.0
        scores.append(score)
    return sum(scores) / len(scores), scores


def chair(
    captions: Sequence[str | Tokens],
    present: Sequence[Collection[str]],
    object_words: Collection[str],
) -> dict[str, float]:
    """CHAIR-i / CHAIR-s hallucination rates and mention counts.

    Args:
        captions: generated captions.
        present: per caption, the object words of the objects really in the image.
        object_words: the vocabulary of object words (others are ignored).

    Returns:
        ``chair_i``, ``chair_s``, ``mentions`` (distinct object words per caption, summed)
        and ``hallucinated`` (those not in the image).
    """
    mentions = hallucinated = bad_captions = 0
    for cap, objects in zip(captions, present, strict=True):
        named = {t for t in _tokens(cap) if t in object_words}
        wrong = named - set(objects)
        mentions += len(named)
        hallucinated += len(wrong)
        bad_captions += bool(wrong)
    return {
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "chair_s": bad_captions / len(captions) if captions else 0.0,
        "mentions": float(mentions),
        "hallucinated": float(hallucinated),
    }


def exact_match(hypotheses: Iterable[str | Tokens], references: Iterable[Sequence]) -> float:
    """Share of hypotheses equal to one of their references."""
    hits = total = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        total += 1
        hits += any(_tokens(hyp) == _tokens(r) for r in refs)
    return hits / total if total else 0.0
