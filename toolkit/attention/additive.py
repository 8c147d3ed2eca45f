"""Bahdanau (additive) attention, ``score = vᵀ tanh(W_q q + W_k k)``, with bounded memory."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .base import AttentionBase, Tensor, masked_softmax
from .registry import Capabilities, register


def _fill_scores(fn, qp: Tensor, kp: Tensor, v: Tensor, step: int, kstep: int) -> Tensor:
    """``fn(q_chunk, k_chunk, v)`` over all chunks, written into one preallocated tensor.

    Writing in place (rather than concatenating the pieces) matters on CPU: a long run of
    small long-lived pieces allocated between large short-lived chunks fragments the glibc
    heap, and the resident memory then grows by about one chunk per chunk.
    """
    tq, tk = qp.shape[-2], kp.shape[-2]
    out = None
    for start in range(0, tq, step):
        for kstart in range(0, tk, kstep):
            part = fn(qp[..., start : start + step, :], kp[..., kstart : kstart + kstep, :], v)
            if out is None:
                out = part.new_empty(*part.shape[:-2], tq, tk)
            out[..., start : start + step, kstart : kstart + kstep] = part
    return out


class _ChunkedScores(torch.autograd.Function):
    """Chunked scores whose backward recomputes one chunk at a time (like checkpointing
    every chunk), accumulating the gradients into preallocated tensors."""

    @staticmethod
    def forward(ctx, qp, kp, v, fn, step, kstep):
        ctx.fn, ctx.step, ctx.kstep = fn, step, kstep
        ctx.device_type = qp.device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device_type)
        ctx.autocast_dtype = torch.get_autocast_dtype(ctx.device_type)
        ctx.save_for_backward(qp, kp, v)
        return _fill_scores(fn, qp, kp, v, step, kstep)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        qp, kp, v = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        gq, gk, gv = (torch.zeros_like(t) if n else None for t, n in zip((qp, kp, v), need))
        step, kstep = ctx.step, ctx.kstep
        for start in range(0, qp.shape[-2], step):
            for kstart in range(0, kp.shape[-2], kstep):
                qc = qp[..., start : start + step, :].detach().requires_grad_(need[0])
                kc = kp[..., kstart : kstart + kstep, :].detach().requires_grad_(need[1])
                vc = v.detach().requires_grad_(need[2])
                with (
                    torch.enable_grad(),
                    torch.autocast(ctx.device_type, dtype=ctx.autocast_dtype, enabled=ctx.autocast),
                ):
                    part = ctx.fn(qc, kc, vc)
                wanted = [t for t, n in zip((qc, kc, vc), need) if n]
                g = grad[..., start : start + step, kstart : kstart + kstep]
                grads = iter(torch.autograd.grad(part, wanted, g))
                if need[0]:
                    gq[..., start : start + step, :] += next(grads)
                if need[1]:
                    gk[..., kstart : kstart + kstep, :] += next(grads)
                if need[2]:
                    gv += next(grads)
        return gq, gk, gv, None, None, None


@register(
    "additive",
    Capabilities(
        mixed_widths=True,
        fast_path=False,  # chunked eager scores; no fused kernel for tanh(W q + U k)
        test_options={"hidden_dim": 6, "chunk_elements": 48},  # query and key chunks run
        benchmark_options={"hidden_dim": 64},
    ),
)
class AdditiveAttention(AttentionBase):
    """Additive attention (Bahdanau et al. 2015); query and key dims may differ.

    The ``(*, Tq, Tk, hidden)`` tanh tensor is never materialised whole: scores are computed
    for chunks of queries (and of keys, when one query row is over budget) holding at most
    ``chunk_elements`` elements (or one ``(*, 1, 1, hidden)`` pair), and under autograd
    backward recomputes each chunk instead of storing it (as checkpointing every chunk
    would). Peak memory is therefore that of the ``(*, Tq, Tk)`` scores plus one chunk.

    Args:
        query_dim: size of the query vectors.
        key_dim: size of the key vectors (defaults to ``query_dim``).
        hidden_dim: size of the tanh layer (defaults to ``key_dim``).
        dropout: dropout on the attention weights.
        causal: let query ``i`` see keys ``j <= i`` only.
        chunk_elements: budget of one tanh chunk, in elements.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        key_dim = query_dim if key_dim is None else key_dim
        hidden_dim = key_dim if hidden_dim is None else hidden_dim
        self.q_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.k_proj = nn.Linear(key_dim, hidden_dim, bias=True)
        self.v = nn.Parameter(torch.empty(hidden_dim))
        nn.init.uniform_(self.v, -(hidden_dim**-0.5), hidden_dim**-0.5)
        self.chunk_elements = int(chunk_elements)

    def _chunk_scores(self, q_chunk: Tensor, keys: Tensor, v: Tensor) -> Tensor:
        # (*, c, 1, h) + (*, 1, Tk, h) -> (*, c, Tk, h) -> (*, c, Tk)
        return torch.matmul(torch.tanh(q_chunk.unsqueeze(-2) + keys.unsqueeze(-3)), v)

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Unnormalised scores ``(*, Tq, Tk)``."""
        return self.projected_scores(self.q_proj(query), self.k_proj(key))

    def projected_scores(self, qp: Tensor, kp: Tensor) -> Tensor:
        """Scores ``vᵀ tanh(qp_i + kp_j)`` ``(*, Tq, Tk)`` of projected queries ``(*, Tq, h)``
        and keys ``(*, Tk, h)``, in bounded-memory chunks (see the class)."""
        lead = torch.broadcast_shapes(qp.shape[:-2], kp.shape[:-2]).numel()
        tq, tk, h = qp.shape[-2], kp.shape[-2], qp.shape[-1]
        pair = max(1, lead * h)  # elements of one (query, key) pair of the tanh tensor
        # Keys are chunked too when one query row alone is over budget (long keys).
        kstep = min(tk, max(1, self.chunk_elements // pair))
        step = max(1, self.chunk_elements // (pair * kstep))
        if step >= tq and kstep >= tk:
            return self._chunk_scores(qp, kp, self.v)
        grad = torch.is_grad_enabled() and (
            qp.requires_grad or kp.requires_grad or self.v.requires_grad
        )
        if grad:
            return _ChunkedScores.apply(qp, kp, self.v, self._chunk_scores, step, kstep)
        return _fill_scores(self._chunk_scores, qp, kp, self.v, step, kstep)

    def eager(self, query, key, value, mask):
        scores = self.scores(query, key)
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights
