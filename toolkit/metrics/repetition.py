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
