"""Stateful attention (``location``, ``coverage``): the maths, the state a decoder carries,
masks, gradients, beam search (state reordering, beam 1 = greedy, the GNMT coverage
penalty) and the coverage loss, against hand-computed values where there are some."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

from toolkit.attention import (
    AdditiveAttention,
    CoverageAttention,
    LocationAttention,
    available,
    build,
    coverage_loss,
    stateful,
)
from toolkit.decoding import beam_search, gnmt_coverage_penalty, greedy_search
from toolkit.nn import AttentionGRUDecoder, MemoryAttention, RNNState, reorder_search_state

STATEFUL = ["location", "coverage"]
B, S, DQ, DK, DV = 3, 7, 5, 6, 4
LENGTHS = [7, 5, 2]


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def padding(lengths: list[int], total: int) -> torch.Tensor:
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


def block(name: str, dtype=torch.float32, **options):
    opts = {"hidden_dim": 8, **({"kernel_size": 3} if name == "location" else {}), **options}
    return build(name, query_dim=DQ, key_dim=DK, **opts).to(dtype)


def run_steps(core, queries, key, value, mask):
    """Step a core over ``queries (B, T, Dq)``: outputs, weights ``(B, T, S)``, states
    seen by each step ``(B, T, S)`` and the final state."""
    state, outs, weights, seen = None, [], [], []
    cache = core.precompute(key)
    for t in range(queries.shape[1]):
        seen.append(core.init_state(key, mask) if state is None else state)
        out, w, state = core.step(queries[:, t : t + 1], key, value, mask, state, cache)
        outs.append(out[:, 0])
        weights.append(w[:, 0])
    return torch.stack(outs, 1), torch.stack(weights, 1), torch.stack(seen, 1), state


# ----------------------------------------------------------------------------- registry


def test_registered_stateful_with_configs(conf_dir):
    from omegaconf import OmegaConf

    assert {n for n in available() if stateful(n)} >= {"coverage", "location"}
    for name in STATEFUL:
        cfg = OmegaConf.load(conf_dir / "attention" / f"{name}.yaml")
        assert cfg.name == name
        core = build(name, query_dim=DQ, key_dim=DK, **cfg.options)
        assert core.capabilities.stateful and not core.has_fast_path()
    assert OmegaConf.load(conf_dir / "attention" / "location.yaml").options.kernel_size % 2 == 1
    assert not stateful("additive") and not stateful("multihead")


def test_bad_options_and_one_query_per_step():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        LocationAttention(DQ, kernel_size=4)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        LocationAttention(DQ, channels=0)
    core = block("coverage")
    q, k, v = torch.randn(B, 2, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    with pytest.raises(ValueError, match="one query at a time"):
        core.step(q, k, v)
    with pytest.raises(ValueError, match="state covers 3 memory entries but the keys have 7"):
        core(q, k, v, state=torch.zeros(B, 3))


# ----------------------------------------------------------------------------- maths


def test_location_with_zero_convolution_equals_additive():
    additive = AdditiveAttention(DQ, DK, hidden_dim=8)
    location = block("location", channels=3, kernel_size=5)
    location.load_state_dict(additive.state_dict(), strict=False)  # W, V, b, v
    with torch.no_grad():
        location.conv.weight.zero_()
    q, k, v = torch.randn(B, 1, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    mask = padding(LENGTHS, S)
    ref_out, ref_w = additive(q, k, v, mask, need_weights=True)
    for state in (None, torch.rand(B, S)):  # whatever the previous weights
        out, w, _ = location.step(q, k, v, mask, state)
        assert_close(w, ref_w, atol=1e-6, rtol=0)
        assert_close(out, ref_out, atol=1e-6, rtol=0)
    with torch.no_grad():  # a non-zero convolution does change the weights
        location.conv.weight.normal_()
    assert not torch.allclose(location.step(q, k, v, mask, torch.rand(B, S))[1], ref_w)


def test_location_features_are_a_convolution_of_the_previous_weights():
    core = block("location", channels=2, kernel_size=3)
    prev = torch.rand(2, S)
    f = torch.nn.functional.conv1d(prev[:, None], core.conv.weight, padding=1)  # (2, C, S)
    expected = torch.einsum("bcs,hc->bsh", f, core.loc_proj.weight)
    assert_close(core.features(prev), expected)
    # hand-computed for one entry: U (F_{-1} a_{j-1} + F_0 a_j + F_1 a_{j+1})
    w = core.conv.weight[:, 0]  # (C, 3)
    j = 3
    hand = core.loc_proj.weight @ (w @ prev[0, j - 1 : j + 2])
    assert_close(core.features(prev)[0, j], hand)


def test_coverage_scores_match_the_formula():
    core = block("coverage")
    q, k = torch.randn(B, 1, DQ), torch.randn(B, S, DK)
    cov = torch.rand(B, S) * 2
    scores = core.projected_scores(core.q_proj(q), core.k_proj(k) + core.features(cov))
    hand = (
        torch.tanh(
            core.q_proj(q)[:, :, None, :]  # W s
            + core.k_proj(k)[:, None]  # V h_j + b
            + cov[:, None, :, None] * core.coverage_weight  # w_c c_j
        )
        @ core.v
    )
    assert_close(scores, hand)


@pytest.mark.parametrize("name", STATEFUL)
def test_states_after_t_steps(name):
    """coverage: the state is the sum of the weights returned so far; location: the last
    step's weights. Masked memory gets zero weight and never enters the state."""
    core = block(name)
    mask = padding(LENGTHS, S)
    q, k, v = torch.randn(B, 6, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    _, weights, seen, final = run_steps(core, q, k, v, mask)
    assert (weights[~mask[:, None].expand_as(weights)] == 0).all()
    assert (seen[~mask[:, None].expand_as(seen)] == 0).all() and (final[~mask] == 0).all()
    assert_close(weights.sum(-1), torch.ones(B, 6))
    if name == "coverage":
        assert (seen[:, 0] == 0).all()  # zeros before the first step
        assert_close(final, weights.sum(1))
        assert_close(seen[:, 1:], weights.cumsum(1)[:, :-1])
    else:
        assert_close(seen[:, 0], mask / mask.sum(-1, keepdim=True))  # uniform over real
        assert_close(final, weights[:, -1])
        assert_close(seen[:, 1:], weights[:, :-1])
    # the state matters: the same query with another state attends elsewhere
    other = core.step(q[:, :1], k, v, mask, torch.rand(B, S) * mask)[1]
    assert not torch.allclose(other, weights[:, :1])


@pytest.mark.parametrize("name", STATEFUL)
def test_padded_memory_never_matters(name):
    core = block(name)
    mask = padding(LENGTHS, S)
    q, k, v = torch.randn(B, 5, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    noisy_k = torch.where(mask[..., None], k, torch.randn(B, S, DK) * 50)
    noisy_v = torch.where(mask[..., None], v, torch.randn(B, S, DV) * 50)
    out, w, _, state = run_steps(core, q, k, v, mask)
    out2, w2, _, state2 = run_steps(core, q, noisy_k, noisy_v, mask)
    assert_close(out2, out, atol=1e-6, rtol=0)
    assert_close(w2, w, atol=1e-6, rtol=0)
    assert_close(state2, state, atol=1e-6, rtol=0)
    # a shorter memory without the padding gives the same for the short rows
    short = LENGTHS[2]
    out3, w3, _, state3 = run_steps(core, q[2:], k[2:, :short], v[2:, :short], None)
    assert_close(out3, out[2:], atol=1e-5, rtol=1e-5)
    assert_close(w3, w[2:, :, :short], atol=1e-5, rtol=1e-5)
    assert_close(state3, state[2:, :short], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", STATEFUL)
def test_gradcheck_through_the_state(name):
    """float64 gradcheck of three chained steps (the state carries gradients between them)
    w.r.t. queries, keys, values and every parameter."""
    extra = {"channels": 2} if name == "location" else {}
    core = block(name, dtype=torch.float64, hidden_dim=3, **extra)
    b, s, t = 2, 4, 3
    mask = padding([4, 3], s)
    names = [n for n, _ in core.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in core.named_parameters()]
    q = torch.randn(b, t, DQ, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b, s, DK, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, s, DV, dtype=torch.float64, requires_grad=True)

    stepper = Stepper(core)

    def fn(q, k, v, *ps):
        values = {f"core.{n}": p for n, p in zip(names, ps, strict=True)}
        state, outs = None, []
        for i in range(t):
            out, _, state = functional_call(stepper, values, (q[:, i : i + 1], k, v, mask, state))
            outs.append(out)
        return torch.cat(outs, 1), state

    assert torch.autograd.gradcheck(fn, (q, k, v, *params), eps=1e-6, atol=1e-5, rtol=1e-4)


class Stepper(torch.nn.Module):
    """``core.step`` as a module's forward, for ``functional_call``."""

    def __init__(self, core) -> None:
        super().__init__()
        self.core = core

    def forward(self, q, k, v, mask, state):
        return self.core.step(q, k, v, mask, state)


# ----------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("style", ["bahdanau", "luong"])
def test_rnn_decoder_carries_the_state(name, style):
    dec = AttentionGRUDecoder(11, 8, 16, 12, attention=name, style=style, cell="lstm").eval()
    memory, mask = torch.randn(B, S, 12), padding(LENGTHS, S)
    tokens = torch.randint(1, 11, (B, 5))
    logits, weights, final = dec(tokens, memory, mask)
    state = dec.init_state(memory, mask)
    assert isinstance(state, RNNState) and state.attention.shape == (B, S)
    cache = dec.precompute(memory)
    for t in range(5):  # step by step = teacher forcing, and the state is the coverage
        step_logits, state, w = dec.step(tokens[:, t], state, memory, mask, cache)
        assert_close(step_logits, logits[:, t], atol=1e-6, rtol=0)
        assert_close(w, weights[:, t], atol=1e-6, rtol=0)
        expected = weights[:, : t + 1].sum(1) if name == "coverage" else weights[:, t]
        assert_close(state.attention, expected, atol=1e-6, rtol=0)
    assert_close(final.attention, state.attention)
    # a stateless type leaves the field empty
    assert AttentionGRUDecoder(11, 8, 16, 12).init_state(memory, mask).attention is None


def test_memory_attention_forward_and_step_agree():
    attn = MemoryAttention("location", 16, 12, kernel_size=3)
    assert attn.stateful and not MemoryAttention("additive", 16, 12).stateful
    q, memory, mask = torch.randn(B, 16), torch.randn(B, S, 12), padding(LENGTHS, S)
    state = torch.rand(B, S) * mask
    ctx, w = attn(q, memory, mask, state=state)
    ctx2, w2, new = attn.step(q, memory, mask, attn.precompute(memory), state)
    assert_close(ctx, ctx2) and assert_close(w, w2)
    assert_close(new, w2)
    first, _ = attn(q, memory, mask)  # no state: the initial one
    assert_close(first, attn(q, memory, mask, state=attn.init_state(memory, mask))[0])


# ----------------------------------------------------------------------------- search


def rnn_search_fns(name, memory, mask, vocab: int = 13, style: str = "bahdanau"):
    dec = AttentionGRUDecoder(vocab, 8, 16, memory.shape[-1], attention=name, style=style)
    dec.eval()
    state = {"memory": memory, "mask": mask, "rnn": dec.init_state(memory, mask),
             "pre": dec.precompute(memory)}  # fmt: skip

    def step(prefix, st):
        logits, rnn, w = dec.step(prefix[:, -1], st["rnn"], st["memory"], st["mask"], st["pre"])
        return logits.log_softmax(-1), {**st, "rnn": rnn}, w

    return dec, state, step


@pytest.mark.parametrize("name", STATEFUL)
def test_beam_of_one_equals_greedy(name):
    memory, mask = torch.randn(B, S, 12), padding(LENGTHS, S)
    _, state, step = rnn_search_fns(name, memory, mask)
    greedy = greedy_search(step, state, B, 1, 2, 9, return_attention=True)
    beam = beam_search(step, reorder_search_state, state, B, 1, 2, beam_size=1, max_len=9,
                       return_attention=True)  # fmt: skip
    for g, (b,) in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert b.logprob == pytest.approx(g.logprob, abs=1e-5)
        assert_close(b.attention, g.attention)


@pytest.mark.parametrize("name", STATEFUL)
def test_beam_reordering_carries_the_state(name):
    """Two beams; the hand-set log-probabilities make both survivors of step 1 descend from
    beam 1 (B), so beam 0's state must be replaced by beam 1's. At every call the state of
    each row is checked against its own prefix: the sum (coverage) or the last (location)
    of the attention returned earlier along that prefix. Luong order (attend after the cell
    has read the token), so A and B already attend differently at step 1."""
    bos, eos, tok_a, tok_b, tok_c = 1, 2, 3, 4, 5
    table = {  # prefix -> probabilities of the next token (the rest share what is left)
        (bos,): {tok_a: 0.5, tok_b: 0.4},
        (bos, tok_a): {tok_c: 0.05},
        (bos, tok_b): {tok_a: 0.6, tok_c: 0.35},
        (bos, tok_b, tok_a): {eos: 0.9},
        (bos, tok_b, tok_c): {eos: 0.9},
    }
    memory, mask = torch.randn(1, S, 12), padding([5], S)
    dec, state, real_step = rnn_search_fns(name, memory, mask, vocab=8, style="luong")
    returned: dict[tuple, torch.Tensor] = {}  # prefix -> attention returned for it
    seen: list[tuple[tuple, torch.Tensor]] = []  # (prefix, state the call received)

    def step(prefix, st):
        _, new, w = real_step(prefix, st)
        log_probs = torch.full((prefix.shape[0], 8), math.log(1e-4))
        for row, p in enumerate(map(tuple, prefix.tolist())):
            seen.append((p, st["rnn"].attention[row].clone()))
            returned.setdefault(p, w[row].clone())
            for token, prob in table.get(p, {}).items():
                log_probs[row, token] = math.log(prob)
        return log_probs, new, w

    (best,) = beam_search(step, reorder_search_state, state, 1, bos, eos, beam_size=2,
                          max_len=5, return_attention=True)[0]  # fmt: skip
    assert best.tokens == [tok_b, tok_a]
    step1 = [(p, s) for p, s in seen if len(p) == 3]
    assert {p for p, _ in step1} == {(bos, tok_b, tok_a), (bos, tok_b, tok_c)}  # both from B
    # beam 0 (A) held another state than the survivors need
    assert not torch.allclose(returned[(bos, tok_a)], returned[(bos, tok_b)], atol=1e-3)
    checked = 0
    for p, received in seen:
        if len(p) == 1 or p not in returned:
            continue
        before = [returned[p[:i]] for i in range(1, len(p))]
        expected = torch.stack(before).sum(0) if name == "coverage" else before[-1]
        assert_close(received, expected, atol=1e-6, rtol=0)
        checked += 1
    assert checked >= 4
    # and the survivors' attention history is their own
    assert_close(best.attention[:2], torch.stack([returned[(bos,)], returned[(bos, tok_b)]]))
    # the search's own coverage sum (GNMT penalty) follows the beams too: each finished score
    # is its log-probability + beta * sum_j log min(its own summed attention, 1)
    hyps = beam_search(step, reorder_search_state, state, 1, bos, eos, beam_size=2, max_len=5,
                       return_attention=True, nbest=2, coverage_penalty=0.3,
                       coverage_mask=mask)[0]  # fmt: skip
    assert len(hyps) == 2
    for h in hyps:
        own = gnmt_coverage_penalty(h.attention.double().sum(0, keepdim=True), mask, 0.3)
        assert h.score == pytest.approx(h.logprob + float(own), abs=1e-5)


def fixed_step_fns(attention: dict[tuple, list[float]], probs: dict[tuple, dict[int, float]]):
    """A hand-built model: next-token probabilities and attention by prefix."""

    def step(prefix, st):
        rows = list(map(tuple, prefix.tolist()))
        log_probs = torch.full((len(rows), 4), math.log(1e-6))
        for r, p in enumerate(rows):
            for token, prob in probs.get(p, {}).items():
                log_probs[r, token] = math.log(prob)
        attn = torch.tensor([attention.get(p, [0.0, 0.0, 0.0]) for p in rows])
        return log_probs, st, attn

    return step, (lambda st, index: st)


def test_coverage_penalty_changes_the_ranking_as_computed_by_hand():
    """A and B each end after one word. A is likelier but both of its positions attend to
    source entry 0; B's second position attends to entry 1. Entry 2 is padding."""
    bos, eos, tok_a, tok_b = 0, 1, 2, 3
    probs = {(bos,): {tok_a: 0.6, tok_b: 0.4}, (bos, tok_a): {eos: 0.9},
             (bos, tok_b): {eos: 0.9}}  # fmt: skip
    attention = {(bos,): [0.9, 0.1, 0.0], (bos, tok_a): [0.9, 0.1, 0.0],
                 (bos, tok_b): [0.1, 0.9, 0.0]}  # fmt: skip
    step, reorder = fixed_step_fns(attention, probs)
    mask = torch.tensor([[True, True, False]])

    def search(beta):
        return beam_search(step, reorder, None, 1, bos, eos, beam_size=2, max_len=4, nbest=2,
                           coverage_penalty=beta, coverage_mask=mask)[0]  # fmt: skip

    plain = search(0.0)
    assert [h.tokens for h in plain] == [[tok_a], [tok_b]]
    assert plain[0].score == pytest.approx(math.log(0.6 * 0.9))
    beta = 0.5
    ranked = search(beta)
    # A: coverage (1.8, 0.2) -> log min(1.8, 1) + log 0.2; B: (1.0, 1.0) -> 0
    score_a = math.log(0.6 * 0.9) + beta * (math.log(1.0) + math.log(0.2))  # -1.421
    score_b = math.log(0.4 * 0.9) + beta * (math.log(1.0) + math.log(1.0))  # -1.022
    assert [h.tokens for h in ranked] == [[tok_b], [tok_a]]
    assert ranked[0].score == pytest.approx(score_b, abs=1e-6)
    assert ranked[1].score == pytest.approx(score_a, abs=1e-6)
    assert ranked[1].logprob == pytest.approx(math.log(0.54), abs=1e-6)  # model's, unpenalised
    # a small beta leaves A first (hand: -0.616 - 0.2 * 1.609 = -0.938 > -1.022)
    assert [h.tokens for h in search(0.2)][0] == [tok_a]
    # without the mask the padded entry (never attended) would cost beta * log(1e-6) each
    unmasked = beam_search(step, reorder, None, 1, bos, eos, beam_size=2, max_len=4, nbest=2,
                           coverage_penalty=beta)[0]  # fmt: skip
    assert unmasked[0].score == pytest.approx(score_b + beta * math.log(1e-6), abs=1e-6)
    # no attention from the model: no penalty
    no_attn = beam_search(lambda p, s: (step(p, s)[0], s, None), reorder, None, 1, bos, eos,
                          beam_size=2, max_len=4, coverage_penalty=beta)[0][0]  # fmt: skip
    assert no_attn.tokens == [tok_a] and no_attn.score == pytest.approx(math.log(0.54))


def test_gnmt_coverage_penalty_values():
    cov = torch.tensor([[1.8, 0.2, 0.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    expected = torch.tensor([math.log(0.2), 2 * math.log(0.5)], dtype=torch.float64)
    assert_close(gnmt_coverage_penalty(cov, mask, 0.3), 0.3 * expected)


# ----------------------------------------------------------------------------- loss


def test_coverage_loss_equals_hand_computation():
    weights = torch.tensor([[[0.7, 0.3], [0.4, 0.6], [0.5, 0.5], [0.2, 0.8]]])
    # c_1 = 0 -> 0; c_2 = (0.7, 0.3) -> min = (0.4, 0.3) = 0.7; c_3 = (1.1, 0.9) -> 1.0;
    # c_4 = (1.6, 1.4) -> min = (0.2, 0.8) = 1.0
    assert coverage_loss(weights).item() == pytest.approx((0 + 0.7 + 1.0 + 1.0) / 4)
    step_mask = torch.tensor([[True, True, True, False]])  # the last step is padding
    assert coverage_loss(weights, step_mask).item() == pytest.approx((0.7 + 1.0) / 3)
    with pytest.raises(ValueError, match=r"\(B, T, S\)"):
        coverage_loss(weights[0])


def test_coverage_loss_uses_the_coverage_the_decoder_saw():
    core = block("coverage")
    mask = padding(LENGTHS, S)
    q, k, v = torch.randn(B, 6, DQ), torch.randn(B, S, DK), torch.randn(B, S, DV)
    _, weights, seen, _ = run_steps(core, q, k, v, mask)
    step_mask = padding([6, 4, 1], 6)
    direct = (torch.minimum(weights, seen).sum(-1) * step_mask).sum() / step_mask.sum()
    assert_close(coverage_loss(weights, step_mask), direct)
    assert isinstance(CoverageAttention(4), AdditiveAttention)  # additive maths + w_c c_j
