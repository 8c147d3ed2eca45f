"""Greedy and beam search on hand-built models whose probabilities are known."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.decoding import beam_search, gnmt_length_penalty, greedy_search

BOS, EOS, A, B = 0, 1, 2, 3

# Next-token probabilities after each prefix (BOS left out of the key).
TABLE = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS: 0.25, A: 0.55, B: 0.2},
    (B,): {EOS: 0.9, A: 0.05, B: 0.05},
    (A, A): {EOS: 1.0},
    (A, B): {EOS: 1.0},
}


def table_step(prefix: torch.Tensor, state):
    rows = []
    for seq in prefix[:, 1:].tolist():
        probs = TABLE.get(tuple(seq), {EOS: 1.0})
        row = torch.full((4,), 1e-12)
        for token, p in probs.items():
            row[token] = p
        rows.append(row.log())
    attn = torch.nn.functional.one_hot(prefix[:, -1] % 3, 3).float()
    return torch.stack(rows), state, attn


def keep(state, index):
    return state


def seq_logprob(seq: list[int]) -> float:
    total, prefix = 0.0, ()
    for token in [*seq, EOS]:
        total += math.log(TABLE[prefix][token])
        prefix = (*prefix, token)
    return total


def test_greedy_takes_the_locally_best_token():
    hyp = greedy_search(table_step, None, 1, BOS, EOS, max_len=10)[0]
    assert hyp.tokens == [A, A]
    assert hyp.score == pytest.approx(seq_logprob([A, A]), abs=1e-6)


def test_beam_finds_the_known_best_sequence():
    # P(b eos) = 0.36 beats greedy's P(a a eos) = 0.33.
    hyp = beam_search(table_step, keep, None, 1, BOS, EOS, beam_size=2, max_len=10)[0][0]
    assert hyp.tokens == [B]
    assert hyp.score == pytest.approx(math.log(0.36), abs=1e-6)


def test_length_penalty_changes_the_choice_as_computed_by_hand():
    alpha = 1.0
    by_hand = {
        (B,): math.log(0.4 * 0.9) / ((5 + 2) / 6) ** alpha,
        (A, A): math.log(0.6 * 0.55 * 1.0) / ((5 + 3) / 6) ** alpha,
    }
    expected = max(by_hand, key=by_hand.get)
    assert expected == (A, A)  # the longer sequence wins once lengths are normalised
    hyp = beam_search(
        table_step, keep, None, 1, BOS, EOS, beam_size=2, max_len=10, length_penalty=alpha
    )[0][0]
    assert tuple(hyp.tokens) == expected
    assert hyp.score == pytest.approx(by_hand[expected], abs=1e-6)
    assert gnmt_length_penalty(3, alpha) == pytest.approx(8 / 6)


class RandomLM:
    """A fixed random model: logits depend on the last token and the position."""

    def __init__(self, vocab: int = 9, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(vocab, vocab, generator=g) * 2
        self.u = torch.randn(64, vocab, generator=g)
        self.u[:, EOS] += torch.linspace(-3, 3, 64)  # EOS grows likelier with length

    def step(self, prefix, state):
        logits = self.w[prefix[:, -1]] + self.u[prefix.shape[1] - 1]
        attn = torch.softmax(self.w[prefix[:, -1], :5], -1)
        return logits.log_softmax(-1), state, attn


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy(seed):
    lm = RandomLM(seed=seed)
    limits = torch.tensor([3, 7, 12, 20])
    greedy = greedy_search(lm.step, None, 4, BOS, EOS, limits, return_attention=True)
    beam = beam_search(
        lm.step, keep, None, 4, BOS, EOS, beam_size=1, max_len=limits, return_attention=True
    )
    for g, (b,) in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-5)
        torch.testing.assert_close(g.attention, b.attention)


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_max_len_and_batch_independence(beam):
    lm = RandomLM(seed=3)
    limits = torch.tensor([2, 5, 9])
    together = beam_search(
        lm.step,
        keep,
        None,
        3,
        BOS,
        EOS,
        beam_size=beam,
        max_len=limits,
        length_penalty=0.6,
        nbest=2,
    )
    for i in range(3):
        alone = beam_search(
            lm.step,
            keep,
            None,
            1,
            BOS,
            EOS,
            beam_size=beam,
            max_len=int(limits[i]),
            length_penalty=0.6,
            nbest=2,
        )[0]
        assert [h.tokens for h in together[i]] == [h.tokens for h in alone]
        assert all(len(h.tokens) <= limits[i] for h in together[i])
        scores = [h.score for h in together[i]]
        assert scores == sorted(scores, reverse=True)


def test_beam_is_never_worse_than_greedy_in_model_score():
    for seed in range(5):
        lm = RandomLM(seed=seed)
        g = greedy_search(lm.step, None, 1, BOS, EOS, 15)[0]
        b = beam_search(lm.step, keep, None, 1, BOS, EOS, beam_size=4, max_len=15)[0][0]
        assert b.score >= g.score - 1e-9
        assert b.logprob == pytest.approx(b.score)


def test_attention_follows_the_chosen_path():
    hyp = beam_search(
        table_step, keep, None, 1, BOS, EOS, beam_size=2, max_len=10, return_attention=True
    )[0][0]
    path = [BOS, *hyp.tokens]  # attention of position j is one-hot of token j (mod 3)
    assert hyp.attention.shape == (len(hyp.tokens) + 1, 3)
    assert hyp.attention.argmax(-1).tolist() == [t % 3 for t in path]


class PreferA:
    """A prefix scorer that likes sequences made of A only (full-prefix log-scores)."""

    def init_state(self, batch_index):
        return None

    def score(self, prefix, state):
        scores = torch.full((prefix.shape[0], 4), -5.0)
        scores[:, A] = 0.0
        scores[:, EOS] = -0.1
        bad = (prefix[:, 1:] == B).any(1)
        scores[bad] = -20.0
        return scores, None

    def select(self, candidates, rows, tokens):
        return None


def test_scorer_weight_mixes_in_prefix_scores():
    plain = beam_search(table_step, keep, None, 1, BOS, EOS, beam_size=2, max_len=10)[0][0]
    zero = beam_search(
        table_step,
        keep,
        None,
        1,
        BOS,
        EOS,
        beam_size=2,
        max_len=10,
        scorer=PreferA(),
        scorer_weight=0.0,
    )[0][0]
    mixed = beam_search(
        table_step,
        keep,
        None,
        1,
        BOS,
        EOS,
        beam_size=2,
        max_len=10,
        scorer=PreferA(),
        scorer_weight=0.5,
    )[0][0]
    assert plain.tokens == zero.tokens == [B]
    assert mixed.tokens == [A, A]
    # joint score of "a a eos" = 0.5 * log P_att + 0.5 * scorer(prefix "a a" + eos)
    assert mixed.score == pytest.approx(0.5 * seq_logprob([A, A]) + 0.5 * -0.1, abs=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(table_step, keep, None, 1, BOS, EOS, beam_size=0)
    with pytest.raises(ValueError, match="max_len"):
        greedy_search(table_step, None, 2, BOS, EOS, max_len=torch.tensor([3]))


def _looping_step(prefix: torch.Tensor, state):
    """A model that always prefers A (0.7), then B (0.2), EOS (0.1): it loops A A A ..."""
    row = torch.tensor([1e-12, 0.1, 0.7, 0.2]).log()
    return row.expand(prefix.shape[0], 4).clone(), state, None


def test_block_repeated_ngrams_by_hand():
    from toolkit.decoding.search import block_repeated_ngrams

    prefix = torch.tensor([[BOS, A, B, A], [BOS, B, B, B]])
    lp = torch.zeros(2, 4)
    # bigrams seen: row 0 (A,B) (B,A) -> after A, B is banned; row 1 (B,B) -> B banned
    out = block_repeated_ngrams(lp, prefix, 2, EOS)
    assert out[0].tolist() == [0, 0, 0, float("-inf")] and out[1].tolist()[B] == float("-inf")
    # trigram (A, B, A) would need tail (B, A) seen before: it is not in row 0
    assert block_repeated_ngrams(lp, prefix, 3, EOS)[0].isinf().sum() == 0
    assert block_repeated_ngrams(lp, prefix, 0, EOS) is lp  # off
    eos_prefix = torch.tensor([[BOS, EOS, A, EOS]])  # EOS is never forbidden
    assert not block_repeated_ngrams(torch.zeros(1, 4), eos_prefix, 1, EOS)[0, EOS].isinf()


@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_stops_a_loop(beam):
    def run(n):
        if beam == 1:
            return greedy_search(_looping_step, None, 1, BOS, EOS, max_len=8,
                                 no_repeat_ngram=n)[0].tokens  # fmt: skip
        return beam_search(_looping_step, keep, None, 1, BOS, EOS, beam_size=beam, max_len=8,
                           no_repeat_ngram=n)[0][0].tokens  # fmt: skip

    blocked = run(2)
    bigrams = list(zip(blocked, blocked[1:]))
    assert len(bigrams) == len(set(bigrams))  # no bigram twice
    if beam == 1:
        assert run(0) == [A] * 8  # the loop, up to max_len
        # A A, then A is banned after A (A,A seen) -> B; then A; then A and B are banned
        # after A -> EOS
        assert blocked == [A, A, B, A]
