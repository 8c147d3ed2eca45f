"""Outputs that show a broken generator: empty ones and ones that loop."""

from __future__ import annotations

import re
from collections.abc import Sequence

_CHAR_RUN = re.compile(r"([^\W\d_])\1{5,}")  # one letter six times in a row: "AAAAAA"


def degenerate(texts: Sequence[str]) -> dict[str, int]:
    """Outputs that show a broken model: ``empty`` ones and ``looping`` ones (a word said
    three times in a row, a word trigram that occurs three times, or one letter repeated six
    times in a row, as sub-word models loop)."""
    empty = looping = 0
    for text in texts:
        words = str(text).split()
        if not words:
            empty += 1
            continue
        run = any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        repeated = any(grams.count(g) >= 3 for g in set(grams))
        looping += run or repeated or bool(_CHAR_RUN.search(str(text)))
    return {"outputs": len(texts), "empty": empty, "looping": looping}


def repeated_ngrams(texts: Sequence[str], n: int = 3) -> dict[str, int]:
    """Word ``n``-grams of each output that repeat an earlier ``n``-gram of the same output
    (the repetition coverage is meant to remove; See et al. 2017 count duplicate n-grams the
    same way): ``{"ngrams": total, "repeated": duplicates}``. The rate is their ratio."""
    total = repeated = 0
    for text in texts:
        words = str(text).split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return {"ngrams": total, "repeated": repeated}


def repeated_ngram_rate(texts: Sequence[str], n: int = 3) -> float:
    """Share of word ``n``-grams that repeat one earlier in the same output (0 when there
    are none)."""
    counts = repeated_ngrams(texts, n)
    return counts["repeated"] / counts["ngrams"] if counts["ngrams"] else 0.0
