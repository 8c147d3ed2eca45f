"""Corpus BLEU and chrF with sacreBLEU (signatures kept so scores can be compared)."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF

# Languages without spaces between words are scored on characters (ja: chrF plus a
# character-level BLEU), the others with sacreBLEU's default 13a tokenizer.
CHAR_LANGS = {"ja", "zh", "ko"}


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str], target_lang: str = "de"
) -> dict[str, object]:
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature"}`` on one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu = BLEU(tokenize="char" if target_lang in CHAR_LANGS else "13a")
    chrf = CHRF()
    refs = [list(references)]
    b = bleu.corpus_score(list(hypotheses), refs)
    c = chrf.corpus_score(list(hypotheses), refs)
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
