"""``uniform``: equal weight on every visible key, whatever the query.

The ablation baseline ("attention replaced by a fixed mean over the source"): a model with
``attention=uniform`` has the same parameters and interface but cannot choose where to look,
so its gap to a real attention type measures what attending buys.
"""

from __future__ import annotations

import torch

from .base import AttentionBase, masked_softmax
from .registry import Capabilities, register


@register("uniform", Capabilities())
class UniformAttention(AttentionBase):
    """Mean of the visible values: ``weights = mask / mask.sum(-1)`` (causal and padding
    masks respected; a fully masked row gives zeros). Has no parameters; ``query_dim`` and
    ``key_dim`` are accepted so it drops in wherever a model passes its sizes."""

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)

    @staticmethod
    def _zero_scores(query, key):
        """All-zero scores ``(*, Tq, Tk)``, tied to query and key so that autograd reports
        their (exactly zero) gradients instead of "unused input"."""
        q0 = query.sum(-1, keepdim=True) * 0.0
        k0 = key.sum(-1).unsqueeze(-2) * 0.0
        return q0 + k0

    def eager(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        mask = self.dense_mask(mask, tq, tk, query.device)
        weights = masked_softmax(self._zero_scores(query, key), mask)
        return torch.matmul(self.drop(weights), value), weights

    def fast(self, query, key, value, mask):
        """The mean without a softmax: ``(m @ v) / m.sum(-1)`` with the 0/1 mask ``m``."""
        tq, tk = query.shape[-2], key.shape[-2]
        mask = self.dense_mask(mask, tq, tk, query.device)
        ones = torch.ones_like(self._zero_scores(query, key)) + self._zero_scores(query, key)
        m = ones if mask is None else ones * mask.to(ones.dtype)
        m = self.drop(m / m.sum(-1, keepdim=True).clamp_min(1.0))
        return torch.matmul(m, value)
