"""Batched greedy and beam search over any autoregressive decoder.

The model side is two functions, so one search serves the translation, captioning and
speech recipes:

- ``step(prefix, state) -> (log_probs, new_state, attention)``: ``prefix`` is the
  ``(N, t)`` token prefix of every row (starting with BOS); ``log_probs`` is ``(N, V)``
  for the next token; ``attention`` is the newest position's weights over the memory
  ``(N, S)`` or ``None``.
- ``reorder(state, index) -> state``: the state of rows ``index`` (beam bookkeeping).

Beam search follows the usual recipe: each step ranks ``2 * beam`` candidates per item;
candidates ending in EOS among the first ``beam`` are finished (scored with the GNMT length
penalty ``((5 + |Y|) / 6) ** alpha``, |Y| counting EOS), the best non-EOS candidates stay
alive, and an item is done once it has ``beam`` finished hypotheses or reaches its maximum
length (where EOS is forced). With ``beam_size=1`` this is exactly greedy search.

An optional :class:`PrefixScorer` (e.g. CTC prefix scores) is mixed in as
``(1 - w) * attention log-prob + w * scorer score``.

``coverage_penalty`` β > 0 adds the GNMT coverage penalty (Wu et al. 2016) to the score of
every finished hypothesis, ``score = log P / lp + β Σ_j log(min(Σ_t α_tj, 1))``, summed over
the real memory entries ``j`` (``coverage_mask``) with ``α_t`` the attention of each generated
position (EOS included). It favours hypotheses that attended to every source entry. It
needs the step's attention: when ``step`` returns ``None`` the penalty is 0. The state the
model keeps is untouched: the search sums the returned attention itself and reorders that
sum with the beams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any, Tensor | None]]
ReorderFn = Callable[[Any, Tensor], Any]


@dataclass
class Hypothesis:
    """One decoded sequence: ``tokens`` without BOS/EOS, the search ``score`` (length-
    normalised for beam search), the summed model log-probability, and optionally the
    attention of every generated position (EOS included) over the memory."""

    tokens: list[int]
    score: float
    logprob: float = 0.0
    attention: Tensor | None = field(default=None, repr=False)


class PrefixScorer(Protocol):
    """Scores whole prefixes (e.g. CTC prefix probabilities) for joint decoding."""

    def init_state(self, batch_index: Tensor) -> Any:
        """State for rows that belong to batch items ``batch_index`` (N,)."""

    def score(self, prefix: Tensor, state: Any) -> tuple[Tensor, Any]:
        """(N, V) full log-scores of ``prefix + v`` for every token v, and candidate state."""

    def select(self, candidates: Any, rows: Tensor, tokens: Tensor) -> Any:
        """State after extending rows ``rows`` with ``tokens``."""


# Coverage below this counts as this in the coverage penalty: a real entry no step attended
# to (weight exactly 0, e.g. outside a local window) costs β·log(1e-6) ≈ -13.8 β, not -inf.
COVERAGE_FLOOR = 1e-6


def gnmt_coverage_penalty(
    coverage: Tensor, mask: Tensor | None = None, beta: float = 1.0
) -> Tensor:
    """GNMT coverage penalty ``β Σ_j log(min(c_j, 1))`` (Wu et al. 2016, eq. 14), ``<= 0``.

    Args:
        coverage: ``(N, S)`` attention summed over a hypothesis' positions.
        mask: ``(N, S)``, ``True`` on real memory entries (padding does not count).
        beta: the weight β.

    Returns:
        ``(N,)``; coverage is floored at ``COVERAGE_FLOOR`` before the log.
    """
    logs = coverage.clamp(min=COVERAGE_FLOOR, max=1.0).log()
    if mask is not None:
        logs = logs.masked_fill(~mask, 0.0)
    return beta * logs.sum(dim=-1)


def gnmt_length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (1 when alpha is 0)."""
    if alpha == 0:
        return torch.ones_like(length, dtype=torch.float) if torch.is_tensor(length) else 1.0
    return ((5.0 + length) / 6.0) ** alpha


def _max_lengths(max_len: int | Tensor, batch_size: int) -> Tensor:
    if torch.is_tensor(max_len):
        lengths = max_len.detach().to("cpu", torch.long).reshape(-1)
        if lengths.numel() != batch_size:
            raise ValueError(f"max_len has {lengths.numel()} entries for {batch_size} items")
        return lengths.clamp(min=0)
    return torch.full((batch_size,), max(int(max_len), 0), dtype=torch.long)


def _force_eos(log_probs: Tensor, rows: Tensor, eos: int) -> Tensor:
    """Only EOS is allowed on ``rows`` (bool, N): its own log-prob is kept."""
    if rows.any():
        forced = torch.full_like(log_probs[rows], float("-inf"))
        forced[:, eos] = log_probs[rows, eos]
        log_probs = log_probs.clone()
        log_probs[rows] = forced
    return log_probs


def block_repeated_ngrams(log_probs: Tensor, prefix: Tensor, n: int, eos: int) -> Tensor:
    """Forbid (log-prob -inf) every token that would repeat an ``n``-gram already in its
    row's prefix: ``no_repeat_ngram_size`` of fairseq / Hugging Face, ``block_ngram_repeat``
    of OpenNMT. EOS is never forbidden, so a row can always finish. ``n <= 0``: no change.

    Args:
        log_probs: ``(N, V)`` next-token scores.
        prefix: ``(N, t)`` tokens so far (BOS first).
    """
    if n <= 0 or prefix.shape[1] < n:
        return log_probs
    rows, banned = [], []
    for r, seq in enumerate(prefix.tolist()):
        tail = seq[len(seq) - (n - 1) :] if n > 1 else []
        for i in range(len(seq) - n + 1):
            if seq[i : i + n - 1] == tail and seq[i + n - 1] != eos:
                rows.append(r)
                banned.append(seq[i + n - 1])
    if not rows:
        return log_probs
    log_probs = log_probs.clone()
    log_probs[torch.tensor(rows), torch.tensor(banned)] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy_search(
    step: StepFn,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    reorder: ReorderFn | None = None,
    return_attention: bool = False,
    device: torch.device | str | None = None,
    no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """Arg-max decoding of ``batch_size`` items at once; ``max_len`` excludes EOS;
    ``no_repeat_ngram`` > 0 forbids repeating an n-gram (:func:`block_repeated_ngrams`).

    ``reorder`` is accepted for symmetry with :func:`beam_search` and unused: finished
    rows keep being fed EOS (cheap at these batch sizes, and keeps the state aligned).
    """
    del reorder
    limits = _max_lengths(max_len, batch_size)
    prefix = torch.full((batch_size, 1), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool)
    lengths = torch.zeros(batch_size, dtype=torch.long)
    logprob = torch.zeros(batch_size, dtype=torch.float64)
    attentions: list[Tensor] = []
    for t in range(int(limits.max()) + 1):
        log_probs, state, attn = step(prefix, state)
        log_probs = _force_eos(log_probs.float(), (limits <= t).to(log_probs.device), eos)
        log_probs = block_repeated_ngrams(log_probs, prefix, no_repeat_ngram, eos)
        token = log_probs.argmax(-1)
        alive = ~finished
        token_cpu = token.cpu()
        token_cpu[finished] = eos
        picked = log_probs.gather(1, token.unsqueeze(1)).squeeze(1).double().cpu()
        logprob += torch.where(alive, picked, torch.zeros_like(picked))
        lengths += alive.long()
        if return_attention and attn is not None:
            attentions.append(attn.detach().float().cpu())
        finished |= token_cpu == eos
        prefix = torch.cat([prefix, token_cpu.to(prefix.device).unsqueeze(1)], dim=1)
        if bool(finished.all()):
            break
    out = []
    for i in range(batch_size):
        n = int(lengths[i])  # generated positions, EOS included
        tokens = [int(x) for x in prefix[i, 1:n].tolist()]  # drop BOS and the final EOS
        attn = torch.stack([a[i] for a in attentions[:n]]) if attentions else None
        score = float(logprob[i])
        out.append(Hypothesis(tokens=tokens, score=score, logprob=score, attention=attn))
    return out


@torch.no_grad()
def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    beam_size: int = 5,
    max_len: int | Tensor = 100,
    length_penalty: float = 0.0,
    return_attention: bool = False,
    nbest: int = 1,
    scorer: PrefixScorer | None = None,
    scorer_weight: float = 0.0,
    device: torch.device | str | None = None,
    no_repeat_ngram: int = 0,
    coverage_penalty: float = 0.0,
    coverage_mask: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the ``nbest`` best finished hypotheses per item.
    ``no_repeat_ngram`` > 0 forbids repeating an n-gram (:func:`block_repeated_ngrams`).
    ``coverage_penalty`` β > 0 adds :func:`gnmt_coverage_penalty` to finished scores, over
    the memory entries where ``coverage_mask (batch_size, S)`` is ``True`` (default: all);
    it needs ``step`` to return attention (else it is 0)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    alpha = float(length_penalty)
    beta = float(coverage_penalty)
    weight = float(scorer_weight) if scorer is not None else 0.0
    k = beam_size
    early_stop = alpha == 0 and scorer is None and nbest <= 1
    limits = _max_lengths(max_len, batch_size)
    rows_of = torch.arange(batch_size).repeat_interleave(k)  # row -> item
    state = reorder(state, rows_of.to(device) if device is not None else rows_of)
    scorer_state = scorer.init_state(rows_of) if scorer is not None else None
    n = batch_size * k
    prefix = torch.full((n, 1), bos, dtype=torch.long, device=device)
    # Joint score and plain attention log-prob per row; only the first row of each item
    # starts alive so the k identical rows do not produce k copies of every candidate.
    score = torch.full((batch_size, k), float("-inf"), dtype=torch.float64)
    score[:, 0] = 0.0
    score = score.reshape(n)
    att_logp = torch.zeros(n, dtype=torch.float64)
    history: Tensor | None = None  # (n, t, S) attention of each row's prefix
    coverage: Tensor | None = None  # (n, S) attention summed over each row's prefix
    cov_mask = None if coverage_mask is None else coverage_mask.detach().cpu().bool()[rows_of]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    done = torch.zeros(batch_size, dtype=torch.bool)
    for t in range(int(limits.max()) + 1):
        log_probs, state, attn = step(prefix, state)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.float()
        forced = (limits[rows_of] <= t).to(log_probs.device)
        log_probs = _force_eos(log_probs, forced, eos).double().cpu()
        log_probs = block_repeated_ngrams(log_probs, prefix.cpu(), no_repeat_ngram, eos)
        if scorer is not None:
            extra, candidates = scorer.score(prefix, scorer_state)
            extra = _force_eos(extra.float(), forced.to(extra.device), eos).double().cpu()
            cand_att = att_logp.unsqueeze(1) + log_probs
            # Terms with weight 0 are left out, not multiplied: 0 * -inf would be NaN.
            cand = (1 - weight) * cand_att if weight < 1 else torch.zeros_like(cand_att)
            if weight > 0:
                cand = cand + weight * extra
            cand[score.isinf()] = float("-inf")  # dead rows stay dead
        else:
            cand_att = att_logp.unsqueeze(1) + log_probs
            cand = score.unsqueeze(1) + log_probs
        if return_attention and attn is not None:
            step_attn = attn.detach().float().cpu().unsqueeze(1)
            history = step_attn if history is None else torch.cat([history, step_attn], dim=1)
        cov_score = None  # (n,) coverage penalty of each row's prefix + this position
        if beta and attn is not None:
            step_cov = attn.detach().double().cpu()
            coverage = step_cov if coverage is None else coverage + step_cov
            cov_score = gnmt_coverage_penalty(coverage, cov_mask, beta)
        flat = cand.reshape(batch_size, k * vocab)
        top_scores, top_index = flat.topk(min(2 * k, k * vocab), dim=1)
        keep_rows, keep_tokens, keep_scores, keep_att = [], [], [], []
        for b in range(batch_size):
            if done[b]:
                # Keep the row count constant: a dead row that never finishes again.
                keep_rows += [b * k] * k
                keep_tokens += [eos] * k
                keep_scores += [float("-inf")] * k
                keep_att += [0.0] * k
                continue
            alive: list[tuple[int, int, float, float]] = []
            for rank, (s, idx) in enumerate(
                zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True)
            ):
                if s == float("-inf"):
                    break
                row, token = b * k + idx // vocab, idx % vocab
                if token == eos:
                    if rank < k and len(finished[b]) < k:
                        length = t + 1
                        hyp_attn = history[row].clone() if history is not None else None
                        finished[b].append(
                            Hypothesis(
                                tokens=[int(x) for x in prefix[row, 1:].tolist()],
                                score=s / float(gnmt_length_penalty(length, alpha))
                                + (0.0 if cov_score is None else float(cov_score[row])),
                                logprob=float(cand_att[row, token]),
                                attention=hyp_attn,
                            )
                        )
                elif len(alive) < k:
                    alive.append((row, token, s, float(cand_att[row, token])))
                if len(alive) == k:
                    break
            if len(finished[b]) >= k or t >= int(limits[b]) or not alive:
                done[b] = True
            elif early_stop and finished[b]:
                # Without length penalty or scorer, scores only fall as a prefix grows:
                # once the best finished beats every live row nothing can overtake it.
                done[b] = max(h.score for h in finished[b]) >= alive[0][2]
            while len(alive) < k:  # pad with dead rows
                alive.append((alive[0][0] if alive else b * k, eos, float("-inf"), 0.0))
            for row, token, s, a in alive:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(s if not done[b] else float("-inf"))
                keep_att.append(a)
        if bool(done.all()):
            break
        index = torch.tensor(keep_rows, dtype=torch.long)
        tokens = torch.tensor(keep_tokens, dtype=torch.long)
        score = torch.tensor(keep_scores, dtype=torch.float64)
        att_logp = torch.tensor(keep_att, dtype=torch.float64)
        dev_index = index.to(prefix.device)
        state = reorder(state, dev_index)
        if scorer is not None:
            scorer_state = scorer.select(candidates, index, tokens)
        if history is not None:
            history = history[index]
        if coverage is not None:
            coverage = coverage[index]
        prefix = torch.cat([prefix[dev_index], tokens.to(prefix.device).unsqueeze(1)], dim=1)
    results = []
    for b in range(batch_size):
        hyps = sorted(finished[b], key=lambda h: h.score, reverse=True)
        results.append(hyps[: max(1, nbest)])
    return results
