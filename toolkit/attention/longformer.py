"""Longformer attention: a sliding window plus a few global tokens (Beltagy et al. 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Tensor
from .local import LocalAttention, band_mask
from .registry import Capabilities, register


@register(
    "longformer",
    Capabilities(
        # global tokens are positions shared by queries and keys of one sequence: a query
        # over another sequence (a decoder step over a memory, a learned pooling query)
        # has none, so it is a self-attention type (cross-attention falls back to multihead)
        cross_attention=False,
        needs_positions=True,
        pooling_query=False,
        # the blocked path runs at 11 steps, with one global token at each end of it
        test_options={
            "window": 2, "block_size": 3, "blocked_from": 1.0, "num_global": 1,
            "global_positions": (6,),
        },
        test_multihead_options={"block_size": 2, "global_positions": (4,)},
        test_model_options={"window": 2, "num_global": 1},
        test_gradcheck_length=11,
        benchmark_options={"window": 256, "num_global": 16},
        benchmark_growth=1.0,
    ),
)  # fmt: skip
class LongformerAttention(LocalAttention):
    """Sliding-window attention plus global tokens that attend to, and are attended by,
    every position (Beltagy et al. 2020, "Longformer").

    Query ``i`` may see key ``j`` when ``|i - j| <= window`` (``i - window <= j <= i`` if
    ``causal``), or when ``i`` or ``j`` is a global position; ``causal`` also hides every
    future key from global rows and global columns. Positions are aligned to the end of the
    keys as in ``local``. The paper's separate projections for global attention are the
    surrounding layer's business: this core scores every pair with the same
    ``q·k / √d``.

    Without weights, long self-attention runs the blocked path of ``local``
    (``blocked_band_attention``) with the global keys prepended to every block's window
    (so each block's keys are a copy, ``O(N·(w + G))`` memory) and the global rows as one
    dense SDPA call over all keys; short inputs, cross-shaped inputs and per-query masks
    use dense SDPA under the full mask. The eager path (weights, capture) is dense attention
    under the same mask.

    Args:
        window: keys visible on each side of a query (only the past when ``causal``).
        num_global: the first ``num_global`` positions are global.
        global_positions: more global positions (any order; ones at or past the sequence
            length are ignored).
        causal, dropout, scale, block_size, blocked_from: as ``local``.
    """

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        window: int = 64,
        num_global: int = 1,
        global_positions: Sequence[int] | None = None,
        causal: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
        block_size: int | None = None,
        blocked_from: float | None = None,
    ) -> None:
        super().__init__(
            query_dim,
            key_dim,
            window=window,
            causal=causal,
            dropout=dropout,
            scale=scale,
            block_size=block_size,
            blocked_from=blocked_from,
        )
        if num_global < 0:
            raise ValueError(f"num_global must be >= 0, got {num_global}")
        extra = [int(p) for p in (global_positions or ())]
        if any(p < 0 for p in extra):
            raise ValueError(f"global_positions must be >= 0, got {list(global_positions)}")
        self.num_global = int(num_global)
        self.global_positions = tuple(sorted(set(range(self.num_global)) | set(extra)))

    def global_index(self, length: int, device=None) -> Tensor:
        """Sorted global positions below ``length``, ``(G,)``."""
        return torch.tensor(
            [p for p in self.global_positions if p < length], dtype=torch.long, device=device
        )

    def dense_mask(self, mask, tq, tk, device):
        allowed = band_mask(tq, tk, self.window, self.causal, device)
        is_global = torch.zeros(tk, dtype=torch.bool, device=device)
        is_global[self.global_index(tk, device)] = True
        q_pos = torch.arange(tq, device=device) + (tk - tq)  # end-aligned query positions
        q_global = is_global[q_pos.clamp_min(0)] & (q_pos >= 0)
        extra = q_global[:, None] | is_global[None, :tk]
        if self.causal:
            extra = extra & (torch.arange(tk, device=device)[None, :] <= q_pos[:, None])
        allowed = allowed | extra
        return allowed if mask is None else mask & allowed

    def blocked_global_positions(self, length: int, device=None) -> Tensor | None:
        positions = self.global_index(length, device)
        return positions if len(positions) else None

    def extra_repr(self) -> str:
        return f"global_positions={list(self.global_positions)}, " + super().extra_repr()
