"""CTC decoding: greedy (best path) and the CTC prefix scorer for joint CTC/attention search.

The prefix scorer (Watanabe et al. 2017, "Hybrid CTC/attention architecture for end-to-end
speech recognition", Algorithm 2) gives, for a prefix ``g`` and every next token ``c``, the
log-probability that the CTC labelling *starts with* ``g + c`` (summed over all alignments);
for ``c = eos`` it is the probability that the labelling *is* ``g``. It follows the
``toolkit.decoding.PrefixScorer`` protocol: ``init_state`` / ``score`` / ``select``.

Forward variables per prefix ``h``, frame ``t`` (log domain, ``x_t`` = CTC log-posteriors)::

    r_t^n(h) = logadd(r_{t-1}^n(h), phi_{t-1}) + x_t(c)          # ends in c
    r_t^b(h) = logadd(r_{t-1}^b(h), r_{t-1}^n(h)) + x_t(blank)     # ends in blank
    phi_{t-1} = r_{t-1}^b(g) + [r_{t-1}^n(g) unless last(g) == c]   # may enter c at t
    psi(h) = sum_t phi_{t-1} x_t(c)   (+ x_1(c) when g is empty)
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor
NEG_INF = float("-inf")


def ctc_greedy(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: ``(B, T, V)`` frame posteriors (log or not: only the argmax is used).
        lengths: ``(B,)`` valid frames per item.
        blank: blank id.

    Returns:
        One token-id list per item.
    """
    best = log_probs.argmax(-1).cpu()  # (B, T)
    out = []
    for row, n in zip(best.tolist(), lengths.tolist(), strict=True):
        tokens, prev = [], None
        for tok in row[: int(n)]:
            if tok != prev and tok != blank:
                tokens.append(tok)
            prev = tok
        out.append(tokens)
    return out


class CTCPrefixScorer:
    """CTC prefix scores of every next token for a batch of prefixes.

    Args:
        log_probs: ``(B, T, V)`` CTC log-posteriors of the batch (vocabulary shared with
            the attention decoder: ``blank`` and ``eos`` are ids in it).
        lengths: ``(B,)`` valid frames.
        blank, eos: ids of the CTC blank and of end-of-sentence.

    A state holds, per hypothesis row: ``batch`` (which item), ``r`` ``(N, T, 2)`` the
    forward variables of the prefix (non-blank, blank), ``last`` its last token (-1 when
    empty). ``score`` returns ``(N, V)`` full prefix log-scores (``-inf`` for blank) and
    the candidates' forward variables for ``select``.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank: int = 0, eos: int = 1) -> None:
        b, t, v = log_probs.shape
        self.blank, self.eos, self.vocab = blank, eos, v
        valid = torch.arange(t, device=log_probs.device)[None] < lengths[:, None]  # (B, T)
        # Past an item's end: blank with probability 1 and nothing else, so every path
        # carries its mass unchanged to the last frame.
        x = log_probs.float().masked_fill(~valid[..., None], NEG_INF)
        x[..., blank] = x[..., blank].masked_fill(~valid, 0.0)
        self.x = x  # (B, T, V)

    def init_state(self, batch_index: Tensor) -> dict[str, Tensor]:
        """The empty prefix for rows belonging to items ``batch_index (N,)``."""
        batch_index = batch_index.to(self.x.device)
        x = self.x[batch_index]  # (N, T, V)
        r = torch.full((x.shape[0], x.shape[1], 2), NEG_INF, device=x.device)
        r[:, :, 1] = torch.cumsum(x[:, :, self.blank], dim=1)
        return {
            "batch": batch_index,
            "r": r,
            "last": torch.full_like(batch_index, -1),
        }

    def score(self, prefix: Tensor | None, state: dict[str, Tensor]) -> tuple[Tensor, Any]:
        """Full CTC prefix log-scores ``(N, V)`` of ``prefix + v`` for every token ``v``.

        ``prefix`` is not needed (the state carries it) and may be None.
        """
        x = self.x[state["batch"]]  # (N, T, V)
        n, t, v = x.shape
        rn, rb = state["r"][..., 0], state["r"][..., 1]  # (N, T) each
        empty = state["last"] < 0  # (N,)
        # phi (N, T, V): mass that may be followed by c at the next frame.
        same = torch.zeros(n, v, dtype=torch.bool, device=x.device)
        rows = (~empty).nonzero(as_tuple=True)[0]
        same[rows, state["last"][rows]] = True
        phi = torch.logaddexp(rb[..., None], rn[..., None].expand(n, t, v))
        phi = torch.where(same[:, None, :], rb[..., None].expand(n, t, v), phi)
        new_n = torch.full((n, t, v), NEG_INF, device=x.device)
        new_b = torch.full((n, t, v), NEG_INF, device=x.device)
        new_n[:, 0] = torch.where(empty[:, None], x[:, 0], torch.full_like(x[:, 0], NEG_INF))
        # psi accumulates every way of emitting c's first frame at t.
        terms = [new_n[:, 0]]
        for i in range(1, t):
            enter = phi[:, i - 1] + x[:, i]  # (N, V)
            terms.append(enter)
            new_n[:, i] = torch.logaddexp(new_n[:, i - 1] + x[:, i], enter)
            new_b[:, i] = (
                torch.logaddexp(new_b[:, i - 1], new_n[:, i - 1]) + x[:, i, self.blank, None]
            )
        psi = torch.logsumexp(torch.stack(terms, dim=0), dim=0)  # (N, V)
        psi[:, self.eos] = torch.logaddexp(rn[:, -1], rb[:, -1])
        psi[:, self.blank] = NEG_INF
        cand = {"r": torch.stack([new_n, new_b], dim=2), "batch": state["batch"]}  # (N,T,2,V)
        return psi, cand

    def select(self, cand: dict[str, Tensor], rows: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """State of the chosen extensions: row ``rows[i]`` extended by ``tokens[i]``."""
        rows, tokens = rows.to(self.x.device), tokens.to(self.x.device)
        r = cand["r"][rows, :, :, tokens]  # (M, T, 2)
        return {"batch": cand["batch"][rows], "r": r, "last": tokens.clone()}
