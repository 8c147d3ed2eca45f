"""Luong-style dot-product attention: ``dot``, ``scaled_dot`` (÷√d) and ``general`` (bilinear)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import AttentionBase, Tensor, masked_softmax, zero_fully_masked
from .registry import Capabilities, register


class _DotProduct(AttentionBase):
    """``softmax(scale · q kᵀ) v``; the fused path is PyTorch's SDPA with the same scale."""

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        scale: float | None = None,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        if query_dim is not None and key_dim is not None and query_dim != key_dim:
            raise ValueError(
                f"{self.registry_name} attention needs query_dim == key_dim "
                f"({query_dim} != {key_dim}); use 'general' or 'additive'"
            )
        self.scale = scale

    def _scale(self, dim: int) -> float:
        return 1.0 if self.scale is None else self.scale

    def project_query(self, query: Tensor) -> Tensor:
        return query

    def eager(self, query, key, value, mask):
        q = self.project_query(query)
        scores = torch.matmul(q, key.transpose(-1, -2)) * self._scale(q.shape[-1])  # (*, Tq, Tk)
        mask = self.dense_mask(mask, q.shape[-2], key.shape[-2], q.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights

    def fast(self, query, key, value, mask):
        q = self.project_query(query)
        tq, tk = q.shape[-2], key.shape[-2]
        is_causal = self.causal and mask is None and tq == tk
        if self.causal and not is_causal:
            mask = self.dense_mask(mask, tq, tk, q.device)
        out = F.scaled_dot_product_attention(
            q,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            scale=self._scale(q.shape[-1]),
        )
        return zero_fully_masked(out, mask)


@register("dot", Capabilities(rnn_style="luong"))
class DotAttention(_DotProduct):
    """Luong dot attention, ``score = qᵀk`` (no scaling)."""


@register("scaled_dot", Capabilities(rnn_style="luong"))
class ScaledDotAttention(_DotProduct):
    """Scaled dot-product attention, ``score = qᵀk / √d`` (Vaswani et al. 2017)."""

    def _scale(self, dim: int) -> float:
        return 1.0 / math.sqrt(dim) if self.scale is None else self.scale


@register("general", Capabilities(mixed_widths=True, rnn_style="luong"))
class GeneralAttention(_DotProduct):
    """Luong general (bilinear) attention, ``score = qᵀ W k``; query and key dims may differ."""

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        scale: float | None = None,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal, scale=scale)
        key_dim = query_dim if key_dim is None else key_dim
        self.W = nn.Linear(query_dim, key_dim, bias=False)

    def project_query(self, query: Tensor) -> Tensor:
        return self.W(query)  # (*, Tq, Dk)
