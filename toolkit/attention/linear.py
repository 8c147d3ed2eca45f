"""Kernelised linear attention (Katharopoulos et al. 2020): O(N) time and memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import AttentionBase, Tensor
from .registry import Capabilities, register

FEATURE_MAPS = {
    "elu": lambda x: F.elu(x) + 1.0,
    "relu": F.relu,
    "softplus": F.softplus,
}


@register(
    "linear",
    Capabilities(
        test_options={"chunk_size": 4},  # the causal path carries sums across chunks
        test_dropout_keeps_weights=False,  # dropout zeroes key features, not weights
        benchmark_options={"feature_map": "elu"},
        benchmark_growth=1.0,
    ),
)
class LinearAttention(AttentionBase):
    """``out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j)`` with a positive feature map φ.

    Non-causal: ``φ(Q) (φ(K)ᵀ V)`` costs ``O(N·d·dv)``. Causal: the running sums are carried
    across chunks of ``chunk_size`` steps, so memory stays ``O(N·c + d·dv)``. The eager path
    forms the ``(Tq, Tk)`` weights explicitly (for maps and as the test reference).
    Masks: key padding and causal on the fast path; per-query masks use the eager path.
    No softmax weights exist to drop out, so ``dropout`` zeroes key features instead.

    Args:
        feature_map: ``elu`` (``elu(x) + 1``), ``relu`` or ``softplus``.
        causal: query ``i`` sees keys ``j <= i``.
        dropout: dropout on ``φ(k)`` features during training.
        eps: added to the normaliser.
        chunk_size: chunk length of the causal fast path.
    """

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        feature_map: str = "elu",
        causal: bool = False,
        dropout: float = 0.0,
        eps: float = 1e-6,
        chunk_size: int = 128,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        if feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"unknown feature_map {feature_map!r}; valid: {', '.join(FEATURE_MAPS)}"
            )
        self.feature_map = feature_map
        self.eps = eps
        self.chunk_size = chunk_size

    def features(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        phi = FEATURE_MAPS[self.feature_map]
        fk = phi(key)
        if self.dropout > 0 and self.training:
            fk = F.dropout(fk, self.dropout, True) * (1 - self.dropout)  # keep scale: drop only
        return phi(query), fk

    def eager(self, query, key, value, mask):
        fq, fk = self.features(query, key)
        a = torch.matmul(fq, fk.transpose(-1, -2))  # (*, Tq, Tk)
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        if mask is not None:
            a = a.masked_fill(~mask, 0.0)
        weights = a / (a.sum(dim=-1, keepdim=True) + self.eps)
        return torch.matmul(weights, value), weights

    def fast(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        if (mask is not None and mask.shape[-2] != 1) or (self.causal and tq != tk):
            return self.eager(query, key, value, mask)[0]
        fq, fk = self.features(query, key)
        if mask is not None:
            fk = fk * mask[..., 0, :, None].to(fk.dtype)  # padded keys contribute nothing
        if not self.causal:
            kv = torch.matmul(fk.transpose(-1, -2), value)  # (*, d, dv)
            z = fk.sum(dim=-2)  # (*, d)
            num = torch.matmul(fq, kv)  # (*, Tq, dv)
            den = torch.matmul(fq, z.unsqueeze(-1))  # (*, Tq, 1)
            return num / (den + self.eps)
        return self._causal(fq, fk, value)

    def _causal(self, fq: Tensor, fk: Tensor, value: Tensor) -> Tensor:
        lead = torch.broadcast_shapes(fq.shape[:-2], fk.shape[:-2], value.shape[:-2])
        d, dv, n, c = fq.shape[-1], value.shape[-1], fq.shape[-2], self.chunk_size
        state = fq.new_zeros(*lead, d, dv)  # Σ φ(k_j) v_jᵀ over past chunks
        norm = fq.new_zeros(*lead, d)  # Σ φ(k_j) over past chunks
        tri = torch.ones(c, c, dtype=torch.bool, device=fq.device).tril()
        outs = []
        for s in range(0, n, c):
            qc, kc, vc = fq[..., s : s + c, :], fk[..., s : s + c, :], value[..., s : s + c, :]
            m = qc.shape[-2]
            a = torch.matmul(qc, kc.transpose(-1, -2)).masked_fill(~tri[:m, :m], 0.0)
            num = torch.matmul(qc, state) + torch.matmul(a, vc)  # (*, m, dv)
            den = torch.matmul(qc, norm.unsqueeze(-1)) + a.sum(dim=-1, keepdim=True)
            outs.append(num / (den + self.eps))
            state = state + torch.matmul(kc.transpose(-1, -2), vc)
            norm = norm + kc.sum(dim=-2)
        return torch.cat(outs, dim=-2)
