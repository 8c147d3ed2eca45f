"""CTC greedy decoding and the CTC prefix scorer, against hand-computed values and brute-force
enumeration of every alignment; joint CTC/attention beam search through the shared search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from toolkit.decoding import beam_search
from toolkit.decoding.ctc import CTCPrefixScorer, ctc_greedy

BLANK, EOS = 0, 1


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(s)
        prev = s
    return tuple(out)


def brute_force(probs: torch.Tensor, length: int) -> dict[tuple[int, ...], float]:
    """P(labelling) for every labelling, summing all alignments of ``length`` frames."""
    symbols = [s for s in range(probs.shape[1]) if s != EOS]
    table: dict[tuple[int, ...], float] = {}
    for path in itertools.product(symbols, repeat=length):
        p = math.prod(float(probs[t, s]) for t, s in enumerate(path))
        key = collapse(path)
        table[key] = table.get(key, 0.0) + p
    return table


def test_ctc_greedy_hand_built():
    # frames: a a _ a b b _ (a=2, b=3) -> "a a b"; second item cut at 3 frames -> "a".
    frames = [2, 2, 0, 2, 3, 3, 0]
    logits = torch.full((2, 7, 4), -5.0)
    for t, s in enumerate(frames):
        logits[:, t, s] = 0.0
    assert ctc_greedy(logits, torch.tensor([7, 3])) == [[2, 2, 3], [2]]


def test_prefix_score_hand_computed_one_and_two_frames():
    # One frame, p(blank)=.5 p(a)=.3 p(b)=.2: P(starts with a) = .3, P(empty) = .5.
    probs = torch.tensor([[[0.5, 0.0, 0.3, 0.2]]])
    scorer = CTCPrefixScorer(probs.clamp_min(1e-30).log(), torch.tensor([1]))
    state = scorer.init_state(torch.tensor([0]))
    scores, _ = scorer.score(None, state)
    assert scores[0, 2].exp().item() == pytest.approx(0.3)
    assert scores[0, EOS].exp().item() == pytest.approx(0.5)
    assert scores[0, BLANK].item() == float("-inf")
    # Two identical frames: labellings starting with a come from paths "a?" and "_a"
    # ("ba" starts with b): .3 + .5 * .3 = .45.
    probs2 = probs.repeat(1, 2, 1)
    scorer = CTCPrefixScorer(probs2.clamp_min(1e-30).log(), torch.tensor([2]))
    scores, cand = scorer.score(None, scorer.init_state(torch.tensor([0])))
    assert scores[0, 2].exp().item() == pytest.approx(0.45)
    # After "a": P(labelling is exactly "a") = aa + a_ + _a = .09 + .15 + .15 = .39
    state = scorer.select(cand, torch.tensor([0]), torch.tensor([2]))
    scores, _ = scorer.score(None, state)
    assert scores[0, EOS].exp().item() == pytest.approx(0.39)


@pytest.mark.parametrize("seed", [0, 1])
def test_prefix_scores_match_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    T, V = 5, 5  # blank, eos, three characters
    logits = torch.randn(2, T, V, generator=gen)
    logits[..., EOS] = float("-inf")
    log_probs = logits.log_softmax(-1)
    lengths = torch.tensor([5, 4])  # the second item is padded by one frame
    scorer = CTCPrefixScorer(log_probs, lengths)
    for item in range(2):
        table = brute_force(log_probs[item].exp(), int(lengths[item]))
        prefixes = [(), (2,), (3, 3), (2, 4), (4, 2, 2)]
        for prefix in prefixes:
            state = scorer.init_state(torch.tensor([item]))
            for tok in prefix:  # walk the prefix through select()
                _, cand = scorer.score(None, state)
                state = scorer.select(cand, torch.tensor([0]), torch.tensor([tok]))
            scores, _ = scorer.score(None, state)
            for c in (2, 3, 4):
                want = sum(p for lab, p in table.items() if lab[: len(prefix) + 1] == (*prefix, c))
                got = scores[0, c].exp().item()
                assert got == pytest.approx(want, rel=1e-4, abs=1e-9), (item, prefix, c)
            exact = table.get(prefix, 0.0)
            assert scores[0, EOS].exp().item() == pytest.approx(exact, rel=1e-4, abs=1e-9)


class ToyDecoder:
    """A decoder with fixed next-token log-probs depending only on the prefix length."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # (steps, V)

    def step(self, prefix, state):
        t = min(prefix.shape[1] - 1, self.table.shape[0] - 1)
        return self.table[t].expand(prefix.shape[0], -1).clone(), state, None

    @staticmethod
    def reorder(state, index):
        return state


def _toy(seed: int = 0, steps: int = 6, vocab: int = 5) -> tuple[ToyDecoder, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(steps, vocab, generator=gen)
    logits[:, BLANK] = float("-inf")
    ctc_logits = torch.randn(1, 8, vocab, generator=gen) * 3
    ctc_logits[..., EOS] = float("-inf")
    return ToyDecoder(logits.log_softmax(-1)), ctc_logits.log_softmax(-1)


def test_joint_beam_weight_zero_equals_attention_beam():
    toy, ctc = _toy()
    plain = beam_search(toy.step, toy.reorder, None, 1, BOS_EOS(), EOS, beam_size=3, max_len=5)
    scorer = CTCPrefixScorer(ctc, torch.tensor([8]))
    joint = beam_search(
        toy.step, toy.reorder, None, 1, BOS_EOS(), EOS, beam_size=3, max_len=5,
        scorer=scorer, scorer_weight=0.0,
    )  # fmt: skip
    assert joint[0][0].tokens == plain[0][0].tokens


def test_joint_beam_mostly_ctc_follows_ctc():
    # Peaked CTC posteriors spell 2 3 3 (with a blank between the 3s); with weight 0.9 on
    # the CTC prefix score the search must return that labelling whatever the (random)
    # attention scores say.
    frames = [2, 0, 3, 0, 3, 0]
    logits = torch.full((1, 6, 5), -8.0)
    for t, s in enumerate(frames):
        logits[0, t, s] = 0.0
    logits[..., EOS] = float("-inf")
    ctc = logits.log_softmax(-1)
    toy, _ = _toy(seed=3)
    scorer = CTCPrefixScorer(ctc, torch.tensor([6]))
    hyps = beam_search(
        toy.step, toy.reorder, None, 1, BOS_EOS(), EOS, beam_size=4, max_len=6,
        scorer=scorer, scorer_weight=0.9,
    )  # fmt: skip
    assert hyps[0][0].tokens == [2, 3, 3] == ctc_greedy(ctc, torch.tensor([6]))[0]


def BOS_EOS() -> int:  # noqa: N802 - the recipe uses one id for BOS and EOS
    return EOS
