"""Decoding shared by the sequence recipes: greedy and beam search (``search``) and CTC
(``ctc``: greedy and prefix scoring for joint CTC/attention beam search)."""

from toolkit.decoding.ctc import CTCPrefixScorer, ctc_greedy
from toolkit.decoding.search import (
    Hypothesis,
    PrefixScorer,
    beam_search,
    gnmt_coverage_penalty,
    gnmt_length_penalty,
    greedy_search,
)

__all__ = [
    "CTCPrefixScorer",
    "Hypothesis",
    "PrefixScorer",
    "beam_search",
    "ctc_greedy",
    "gnmt_coverage_penalty",
    "gnmt_length_penalty",
    "greedy_search",
]
