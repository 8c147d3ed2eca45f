"""Multi-head attention: projections + heads around any registered core (default SDPA)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn
import torch.nn.functional as F

from .base import AttentionBase, Tensor, normalize_mask
from .registry import Capabilities, build, capabilities, register, stateful


@register("multihead", Capabilities(layer=True))
class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) whose per-head maths is a registered core.

    With ``core="scaled_dot"`` (default) this is standard MHA: the fused
    ``scaled_dot_product_attention`` runs whenever weights are not requested, the eager
    maths otherwise. ``core="local"``, ``"linear"``, ``"additive"``… give multi-head
    versions of those. When ``kdim == vdim == embed_dim`` the input projection is one packed
    ``in_proj`` (as in ``torch.nn.MultiheadAttention``), so self-attention is one matmul.

    Args:
        embed_dim: model width ``E``; ``E % num_heads == 0``.
        num_heads: number of heads ``H``; ``head_dim = E // H``.
        kdim, vdim: key/value input sizes (default ``E``).
        dropout: dropout on attention weights.
        bias: biases in the projections.
        causal: causal self-attention.
        core: registered name of the per-head attention.
        **core_options: passed to the core (e.g. ``window`` for ``local``).
    """

    registry_name = "multihead"

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = 1,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        core: str = "scaled_dot",
        **core_options: Any,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if capabilities(core).layer:
            raise ValueError(f"{core} cannot be a core: it is a multi-head layer itself")
        if stateful(core):
            raise ValueError(
                f"attention {core!r} is stateful: each decoder step attends with the previous "
                "step's weights (location) or their running sum (coverage), while a multi-head "
                "layer computes every query position of a sequence in one parallel pass, so it "
                "cannot be a Transformer's self- or cross-attention. Use it as the attention of "
                "a recurrent decoder (toolkit.nn.MemoryAttention, AttentionRNNDecoderStep: "
                "translation model=rnn, captioning model=lstm); here use e.g. 'additive' (the "
                "same scores without a state) or 'multihead'"
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        self.packed = kdim == embed_dim and vdim == embed_dim
        if self.packed:
            self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        else:
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k_proj = nn.Linear(kdim, embed_dim, bias=bias)
            self.v_proj = nn.Linear(vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.core_name = core
        self.core: AttentionBase = build(
            core,
            query_dim=self.head_dim,
            key_dim=self.head_dim,
            dropout=dropout,
            causal=causal,
            **core_options,
        )
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for lin in (self.in_proj,) if self.packed else (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections, ``(B, T, D) -> (B, T, E)`` each."""
        if not self.packed:
            return self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if query is key and key is value:
            return self.in_proj(query).chunk(3, dim=-1)
        w_q, w_k, w_v = self.in_proj.weight.chunk(3)
        b_q = b_k = b_v = None
        if self.in_proj.bias is not None:
            b_q, b_k, b_v = self.in_proj.bias.chunk(3)
        if key is value:
            k, v = F.linear(key, self.in_proj.weight[self.embed_dim :], None).chunk(2, dim=-1)
            if b_k is not None:
                k, v = k + b_k, v + b_v
            return F.linear(query, w_q, b_q), k, v
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``query (B, Tq, E)``, ``key (B, Tk, kdim)``, ``value (B, Tk, vdim)`` ->
        ``output (B, Tq, E)``, ``weights (B, H, Tq, Tk)`` when ``need_weights``."""
        b, tq, _ = query.shape
        tk = key.shape[1]
        q, k, v = self.project(query, key, value)
        q = q.view(b, tq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Tq, hd)
        k = k.view(b, tk, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Tk, hd)
        v = v.view(b, tk, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Tk, hd)
        mask = normalize_mask(mask, 4, tq, tk)  # (B|1, H|1, Tq|1, Tk)
        out, weights = self.core(q, k, v, mask, need_weights)  # (B, H, Tq, hd)
        out = self.out_proj(out.transpose(1, 2).reshape(b, tq, self.embed_dim))  # (B, Tq, E)
        if mask is not None:
            # A query that may attend to nothing in any head outputs 0, like every other
            # block, not the output projection's bias.
            empty = ~mask.any(dim=-1).any(dim=1)  # (B|1, Tq|1)
            if bool(empty.any()):
                out = out.masked_fill(empty[..., None], 0.0)
        return out, weights

    @property
    def fast_path(self) -> bool:
        return self.core.fast_path

    @fast_path.setter
    def fast_path(self, value: bool) -> None:
        self.core.fast_path = value

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, core={self.core_name!r}"
