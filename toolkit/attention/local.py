"""Sliding-window (banded) local attention, computed blockwise in O(N·w) time and memory."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import AttentionBase, Tensor, masked_softmax
from .registry import register


def band_mask(tq: int, tk: int, window: int, causal: bool, device=None) -> Tensor:
    """``(Tq, Tk)`` mask of the band ``|i - j| <= window`` (``i - window <= j <= i`` if causal).

    Positions are aligned to the end as in ``causal_mask`` (query ``i`` sits at ``i + Tk - Tq``).
    """
    i = torch.arange(tq, device=device)[:, None] + (tk - tq)
    j = torch.arange(tk, device=device)[None, :]
    upper = i if causal else i + window
    return (j >= i - window) & (j <= upper)


@register("local")
class LocalAttention(AttentionBase):
    """Scaled dot-product attention restricted to a window of ``window`` keys on each side.

    The fast path splits the queries into blocks of ``block_size`` (default ``window``) and
    lets each block score only the ``block + 2·window`` keys around it, so scores take
    ``O(N·w)`` memory instead of ``O(N²)``. The eager path is dense attention under the
    same band mask (used for weights and as the reference in tests).

    Args:
        window: keys visible on each side of a query (only the past when ``causal``).
        causal: also hide the future.
        dropout: dropout on attention weights.
        scale: score scale (default ``1/√d``).
        block_size: query block length of the fast path (default ``window``).
    """

    # Scores per group of query blocks on the fast path (bounds its transient memory).
    chunk_elements = 1 << 22

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        window: int = 64,
        causal: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = int(window)
        self.scale = scale
        self.block_size = int(block_size) if block_size else max(1, self.window)

    def _scale(self, dim: int) -> float:
        return 1.0 / math.sqrt(dim) if self.scale is None else self.scale

    def dense_mask(self, mask, tq, tk, device):
        band = band_mask(tq, tk, self.window, self.causal, device)
        return band if mask is None else mask & band

    def eager(self, query, key, value, mask):
        scores = torch.matmul(query, key.transpose(-1, -2)) * self._scale(query.shape[-1])
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights

    def fast(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        w, b = self.window, self.block_size
        per_query_mask = mask is not None and mask.shape[-2] != 1
        if tq != tk or per_query_mask or tk <= b + 2 * w:
            # Short inputs, cross-attention and per-query masks: the dense banded maths.
            return self.eager(query, key, value, mask)[0]
        lead = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
        n = tq
        nb = -(-n // b)  # number of query blocks
        pad_q = nb * b - n
        span = b + 2 * w  # keys seen by one block
        q = F.pad(query, (0, 0, 0, pad_q)).expand(*lead, nb * b, query.shape[-1])
        qb = q.reshape(*lead, nb, b, q.shape[-1])  # (*, nb, b, d)
        # Keys padded by w on the left and w + pad_q on the right: block m sees padded
        # positions [m·b, m·b + span), i.e. original keys [m·b - w, m·b + b + w).
        kpad = F.pad(key, (0, 0, w, w + pad_q)).expand(*lead, n + 2 * w + pad_q, key.shape[-1])
        vpad = F.pad(value, (0, 0, w, w + pad_q)).expand(
            *lead, n + 2 * w + pad_q, value.shape[-1]
        )
        kw = kpad.unfold(-2, span, b)  # (*, nb, d, span)
        vw = vpad.unfold(-2, span, b).transpose(-1, -2)  # (*, nb, span, dv)
        qb = qb * self._scale(query.shape[-1])  # scale the queries, not the (larger) scores

        # Band inside a block: query row r, window column c  ->  |(c - w) - r| <= w.
        r = torch.arange(b, device=query.device)[:, None]
        c = torch.arange(span, device=query.device)[None, :]
        allowed = (c >= r) & (c <= (r + w if self.causal else r + 2 * w))  # (b, span)
        # Keys that exist (not padding) and are allowed by the key mask.
        valid = torch.ones(n, dtype=torch.bool, device=query.device)
        if mask is not None:
            valid = mask[..., 0, :] & valid  # (B|1, H|1, Tk) -> key validity
        valid = F.pad(valid, (w, w + pad_q), value=False).unfold(-1, span, b)  # (.., nb, span)
        allowed = allowed & valid.unsqueeze(-2)  # (.., nb, b, span)
        # Without a key mask no row is empty (a real query sees its own key; a padded one
        # still sees key n - 1 when pad_q <= w), so the -inf fill can be in place and the
        # softmax needs no re-zeroing.
        may_be_empty = mask is not None or pad_q > w
        # Groups of blocks holding at most ``chunk_elements`` scores: bounded transients.
        step = max(1, self.chunk_elements // max(1, lead.numel() * b * span))
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        dv = value.shape[-1]
        out = None if grad or step >= nb else qb.new_empty(*lead, nb, b, dv)
        outs = []
        for s in range(0, nb, step):
            scores = torch.matmul(qb[..., s : s + step, :, :], kw[..., s : s + step, :, :])
            band = allowed[..., s : s + step, :, :]
            if may_be_empty:
                weights = masked_softmax(scores, band)
            else:
                weights = torch.softmax(scores.masked_fill_(~band, float("-inf")), dim=-1)
            part = torch.matmul(self.drop(weights), vw[..., s : s + step, :, :])  # (*, g, b, dv)
            del scores, weights
            if out is None:
                outs.append(part)
            else:  # no autograd: write in place (no long-lived small pieces between chunks)
                out[..., s : s + step, :, :] = part
        if out is None:
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-3)
        return out.reshape(*lead, nb * b, dv)[..., :n, :]

    def extra_repr(self) -> str:
        return f"window={self.window}, block_size={self.block_size}, " + super().extra_repr()
