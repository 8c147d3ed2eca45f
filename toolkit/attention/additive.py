"""Bahdanau (additive) attention, ``score = vᵀ tanh(W_q q + W_k k)``, with bounded memory."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .base import AttentionBase, Tensor, masked_softmax
from .registry import register


@register("additive")
class AdditiveAttention(AttentionBase):
    """Additive attention (Bahdanau et al. 2015); query and key dims may differ.

    The ``(*, Tq, Tk, hidden)`` tanh tensor is never materialised whole: scores are computed
    for chunks of queries holding at most ``chunk_elements`` elements, and under autograd
    each chunk is checkpointed so backward recomputes it instead of storing it. Peak memory
    is therefore that of the ``(*, Tq, Tk)`` scores plus one chunk.

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
        qp = self.q_proj(query)  # (*, Tq, h)
        kp = self.k_proj(key)  # (*, Tk, h)
        lead = torch.broadcast_shapes(qp.shape[:-2], kp.shape[:-2]).numel()
        tq, tk, h = qp.shape[-2], kp.shape[-2], qp.shape[-1]
        step = max(1, self.chunk_elements // max(1, lead * tk * h))
        if step >= tq:
            return self._chunk_scores(qp, kp, self.v)
        grad = torch.is_grad_enabled() and (
            qp.requires_grad or kp.requires_grad or self.v.requires_grad
        )
        parts = []
        for start in range(0, tq, step):
            q_chunk = qp[..., start : start + step, :]
            if grad:
                parts.append(
                    checkpoint(self._chunk_scores, q_chunk, kp, self.v, use_reentrant=False)
                )
            else:
                parts.append(self._chunk_scores(q_chunk, kp, self.v))
        return torch.cat(parts, dim=-2)

    def eager(self, query, key, value, mask):
        scores = self.scores(query, key)
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights
