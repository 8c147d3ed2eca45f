"""Sliding-window (banded) local attention, computed blockwise in O(N·w) time and memory."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .base import AttentionBase, Tensor, masked_softmax
from .registry import Capabilities, register


def band_mask(tq: int, tk: int, window: int, causal: bool, device=None) -> Tensor:
    """``(Tq, Tk)`` mask of the band ``|i - j| <= window`` (``i - window <= j <= i`` if causal).

    Positions are aligned to the end as in ``causal_mask`` (query ``i`` sits at ``i + Tk - Tq``).
    """
    i = torch.arange(tq, device=device)[:, None] + (tk - tq)
    j = torch.arange(tk, device=device)[None, :]
    upper = i if causal else i + window
    return (j >= i - window) & (j <= upper)


class LocalPAttention(nn.Module):
    """Luong et al. (2015) local-p attention for a single query over a memory.

    The registered ``local`` core anchors its window at the query's own position, which a
    decoder step over a memory of another length does not have. Local-p predicts the centre
    instead: ``p = (L - 1) · sigmoid(v_pᵀ tanh(W_p h))`` for a memory of real length ``L``,
    scores the keys within ``window`` of ``round(p)`` by scaled dot product and multiplies
    the weights by ``exp(-(s - p)² / 2σ²)``, ``σ = window / 2``. Unlike the paper the
    weights are renormalised to sum to one.

    It is the single-query form of the registered ``local`` type (a window of keys around
    one position): ``local`` declares it as its ``single_query_form``, which
    ``toolkit.nn.MemoryAttention`` builds, and ``built_types`` counts it as ``local``
    (``attention_type``).

    Args:
        query_dim: query size; keys must have the same size.
        window: half-width ``D`` of the window.
        dropout: dropout on the weights.
        scale: score scale (default ``1/√d``).
    """

    # The registered type this block implements (read by ``toolkit.attention.built_types``
    # from this class's own body only: a subclass must declare its own).
    attention_type = "local"

    def __init__(
        self, query_dim: int, window: int = 8, dropout: float = 0.0, scale: float | None = None
    ) -> None:
        super().__init__()
        self.window = int(window)
        self.dropout = dropout
        self.scale = query_dim**-0.5 if scale is None else scale
        self.w_p = nn.Linear(query_dim, query_dim, bias=False)
        self.v_p = nn.Linear(query_dim, 1, bias=False)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``query (B, 1, D)``, ``key (B, S, D)``, ``value (B, S, Dv)``, ``mask (B, S)``
        -> ``output (B, 1, Dv)``, ``weights (B, 1, S)``."""
        s = key.shape[1]
        if mask is None:
            lengths = torch.full((key.shape[0],), s, device=key.device)
        else:
            lengths = mask.sum(dim=-1)
        lengths = lengths.clamp_min(1).to(query.dtype)[:, None, None]  # (B, 1, 1)
        centre = (lengths - 1) * torch.sigmoid(self.v_p(torch.tanh(self.w_p(query))))  # (B,1,1)
        pos = torch.arange(s, device=key.device, dtype=query.dtype)  # (S,)
        allowed = (pos - centre.round()).abs() <= self.window  # (B, 1, S)
        if mask is not None:
            allowed = allowed & mask[:, None, :]
        scores = torch.matmul(query, key.transpose(1, 2)) * self.scale  # (B, 1, S)
        weights = masked_softmax(scores, allowed)
        sigma = max(self.window, 1) / 2.0
        weights = weights * torch.exp(-((pos - centre) ** 2) / (2 * sigma**2))
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        dropped = F.dropout(weights, self.dropout, self.training) if self.dropout else weights
        return torch.matmul(dropped, value), weights


@register(
    "local",
    Capabilities(
        needs_positions=True,  # the window is centred on the query's own position
        pooling_query=False,
        single_query_form=LocalPAttention,  # one decoder query: a predicted centre
        test_options={"window": 2, "block_size": 3},  # the blockwise path runs at 11 steps
        # as a multihead core: block_size divides window (the shifted-slices path)
        test_multihead_options={"window": 2, "block_size": 2},
        test_model_options={"window": 2},  # a band that cuts a dozen steps
        # longer than block_size + 2 * window, and no whole number of blocks (3 or 2)
        test_gradcheck_length=11,
        benchmark_options={"window": 256},
        benchmark_growth=1.0,
    ),
)
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
    chunk_elements = 1 << 23

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
        # Queries scaled (cheaper than scaling the scores) and padded to whole blocks; keys
        # and values padded by w on the left and w + pad_q on the right: block m sees padded
        # key positions [m·b, m·b + span), i.e. original keys [m·b - w, m·b + b + w).
        q = F.pad(query * self._scale(query.shape[-1]), (0, 0, 0, pad_q))
        q = q.expand(*lead, nb * b, query.shape[-1])
        kpad = F.pad(key, (0, 0, w, w + pad_q)).expand(*lead, n + 2 * w + pad_q, key.shape[-1])
        vpad = F.pad(value, (0, 0, w, w + pad_q)).expand(*lead, n + 2 * w + pad_q, value.shape[-1])
        run = self._shifted_blocks if w % b == 0 else self._unfolded_blocks
        return run(q, kpad, vpad, allowed, lead, n, step, may_be_empty, grad)

    def _shifted_blocks(self, q, kpad, vpad, allowed, lead, n, step, may_be_empty, grad):
        """``w`` a multiple of ``b``: block m's window is key blocks m .. m + 2w/b of the
        padded keys, so each group multiplies against shifted contiguous slices of the keys
        (no overlapping windows are materialised, nor saved for backward)."""
        b, dv = self.block_size, vpad.shape[-1]
        nb, shifts = q.shape[-2] // b, 2 * (self.window // b) + 1
        # Block-major layout (blocks, *, b, d): a group of blocks is a contiguous slice.
        qm = q.reshape(*lead, nb, b, q.shape[-1]).movedim(-3, 0).contiguous()
        km = kpad.reshape(*lead, nb + shifts - 1, b, kpad.shape[-1]).movedim(-3, 0).contiguous()
        vm = vpad.reshape(*lead, nb + shifts - 1, b, dv).movedim(-3, 0).contiguous()
        del q, kpad, vpad
        band = allowed.movedim(-3, 0)  # (nb, .., b, span)
        band = band[(slice(None),) + (None,) * (len(lead) + 3 - band.dim())]
        dropping = self.training and self.dropout > 0
        if grad and not dropping and not torch.is_autocast_enabled(qm.device.type):
            out = _ShiftedBlockAttention.apply(qm, km, vm, band, step, may_be_empty)
            return out.movedim(0, -3).reshape(*lead, nb * b, dv)[..., :n, :]
        out = None if grad or step >= nb else qm.new_empty(nb, *lead, b, dv)
        outs = []
        for s in range(0, nb, step):
            e = min(nb, s + step)
            q_g = qm[s:e]  # (g, *, b, d)
            scores = [torch.matmul(q_g, km[s + j : e + j].transpose(-1, -2)) for j in range(shifts)]
            scores = scores[0] if shifts == 1 else torch.cat(scores, dim=-1)  # (g, *, b, span)
            weights = self.drop(_group_softmax(scores, band[s:e], may_be_empty))
            del scores
            part = torch.matmul(weights[..., :b], vm[s:e])
            for j in range(1, shifts):
                part = part + torch.matmul(weights[..., j * b : (j + 1) * b], vm[s + j : e + j])
            del weights
            if out is None:
                outs.append(part)
            else:  # no autograd: write in place (no long-lived small pieces between chunks)
                out[s:e] = part
        if out is None:
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
        return out.movedim(0, -3).reshape(*lead, nb * b, dv)[..., :n, :]

    def _unfolded_blocks(self, q, kpad, vpad, allowed, lead, n, step, may_be_empty, grad):
        """Any ``w``, ``b``: the overlapping key windows come from ``unfold``."""
        b, w, dv = self.block_size, self.window, vpad.shape[-1]
        nb, span = q.shape[-2] // b, b + 2 * w
        qb = q.reshape(*lead, nb, b, q.shape[-1])  # (*, nb, b, d)
        out = None if grad or step >= nb else qb.new_empty(*lead, nb, b, dv)
        outs = []
        for g, q_group in enumerate(qb.split(step, dim=-3)):  # (*, step, b, d)
            s, e = g * step, g * step + q_group.shape[-3]  # blocks [s, e)
            # keys of blocks [s, e): padded positions [s·b, e·b + 2w), one window per block
            kw = kpad[..., s * b : e * b + 2 * w, :].unfold(-2, span, b)  # (*, g, d, span)
            vw = vpad[..., s * b : e * b + 2 * w, :].unfold(-2, span, b).transpose(-1, -2)
            scores = torch.matmul(q_group, kw)  # (*, g, b, span)
            weights = self.drop(_group_softmax(scores, allowed[..., s:e, :, :], may_be_empty))
            part = torch.matmul(weights, vw)  # (*, g, b, dv)
            del scores, weights
            if out is None:
                outs.append(part)
            else:  # no autograd: write in place (no long-lived small pieces between chunks)
                out[..., s:e, :, :] = part
        if out is None:
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-3)
        return out.reshape(*lead, nb * b, dv)[..., :n, :]

    def extra_repr(self) -> str:
        return f"window={self.window}, block_size={self.block_size}, " + super().extra_repr()


def _group_softmax(scores: Tensor, band: Tensor, may_be_empty: bool) -> Tensor:
    if may_be_empty:
        return masked_softmax(scores, band)
    return torch.softmax(scores.masked_fill_(~band, float("-inf")), dim=-1)


class _ShiftedBlockAttention(torch.autograd.Function):
    """Blockwise banded attention in block-major layout, with a hand-written backward.

    ``qm (nb, *, b, d)`` holds the (scaled) query blocks, ``km``/``vm`` ``(nb + s - 1, *, b, ·)``
    the padded key/value blocks (``s`` shifts: block m sees key blocks m .. m + s - 1) and
    ``band (nb, .., b, s·b)`` what each query may see. Same maths as the autograd loop,
    but the weights are kept in one preallocated tensor and the gradients are accumulated
    in place, group by group: no per-group pieces are allocated that outlive their group.
    Long runs of such pieces fragment the CPU heap (the resident set then grows far beyond
    what is allocated).
    """

    @staticmethod
    def forward(ctx, qm, km, vm, band, step, may_be_empty):
        nb, b = qm.shape[0], qm.shape[-2]
        shifts = km.shape[0] - nb + 1
        weights = qm.new_empty(*qm.shape[:-1], shifts * b)  # (nb, *, b, span)
        out = qm.new_empty(*qm.shape[:-1], vm.shape[-1])  # (nb, *, b, dv)
        for s in range(0, nb, step):
            e = min(nb, s + step)
            scores = torch.cat(
                [torch.matmul(qm[s:e], km[s + j : e + j].transpose(-1, -2)) for j in range(shifts)],
                dim=-1,
            )
            weights[s:e] = _group_softmax(scores, band[s:e], may_be_empty)
            del scores
            w = weights[s:e]
            out[s:e] = torch.matmul(w[..., :b], vm[s:e])
            for j in range(1, shifts):
                out[s:e] += torch.matmul(w[..., j * b : (j + 1) * b], vm[s + j : e + j])
        ctx.step = step
        ctx.save_for_backward(qm, km, vm, weights)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        qm, km, vm, weights = ctx.saved_tensors
        nb, b, step = qm.shape[0], qm.shape[-2], ctx.step
        shifts = km.shape[0] - nb + 1
        gq, gk, gv = torch.empty_like(qm), torch.zeros_like(km), torch.zeros_like(vm)
        for s in range(0, nb, step):
            e = min(nb, s + step)
            g, w = grad_out[s:e], weights[s:e]  # (g, *, b, dv), (g, *, b, span)
            # dL/dweights, then through the softmax: w * (dw - Σ dw·w); masked entries and
            # empty rows have w = 0, so they get no gradient (as with masked_softmax).
            dw = torch.cat(
                [torch.matmul(g, vm[s + j : e + j].transpose(-1, -2)) for j in range(shifts)],
                dim=-1,
            )
            dw.sub_((dw * w).sum(dim=-1, keepdim=True)).mul_(w)  # now dL/dscores
            gq[s:e] = torch.matmul(dw[..., :b], km[s:e])
            for j in range(shifts):
                cols = slice(j * b, (j + 1) * b)
                if j:
                    gq[s:e] += torch.matmul(dw[..., cols], km[s + j : e + j])
                gk[s + j : e + j] += torch.matmul(dw[..., cols].transpose(-1, -2), qm[s:e])
                gv[s + j : e + j] += torch.matmul(w[..., cols].transpose(-1, -2), g)
            del dw
        return gq, gk, gv, None, None, None
