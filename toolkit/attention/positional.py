"""Positions inside dot-product self-attention: ``rotary``, ``alibi`` and ``relative``.

* ``rotary`` (RoFormer, Su et al. 2021): queries and keys are rotated, feature pair by
  feature pair, by an angle proportional to their position, so ``q_i · k_j`` depends on
  the positions only through ``i - j``; then plain scaled dot-product attention.
* ``alibi`` (Press et al. 2022): no position in the vectors; head ``h`` of ``H`` adds the
  linear bias ``-m_h · |i - j|`` to its scores, ``m_h = 2^(-8h/H)`` (the geometric sequence
  that starts at ``2^(-8/H)`` with that ratio).
* ``relative`` (Shaw et al. 2018): learned relative key embeddings ``a_{clip(j - i, ±k)}``
  (``k = max_relative_position``, one ``(2k + 1, d)`` table shared by the heads of a layer)
  enter the scores as ``q_i · (k_j + a_ij) / √d``. Shaw et al.'s value embeddings are left
  out (their ablation found the key ones carry the gain).

Design: each is a registered core of its own, not an option of ``scaled_dot``. They keep
the one interface (``(query, key, value, mask, need_weights) -> (output, weights)`` on
``(*, T, d)`` per-head tensors) and, like every registered name, become multi-head layers
through ``toolkit.nn.build_attention_layer``: ``attention=rotary`` on any recipe's command
line puts rotary positions into that recipe's self-attention, with options from
``conf/attention/<name>.yaml``. A type of its own is what a run records
(``built_types``: ``rotary``, not a ``scaled_dot`` that hides its positions), what the
registry-driven tests and the attention benchmark pick up by themselves, and what the
places where positions mean nothing can refuse by type (below); a ``positions=`` option of
``scaled_dot`` would have none of that.

Positions are aligned to the end, as in ``causal_mask`` and ``band_mask``: key ``j`` sits at
position ``j`` and query ``i`` at ``i + Tk - Tq``. For self-attention (``Tq == Tk``) these are
the token indices (real tokens come first; padding is at the end and masked). In incremental
decoding (``toolkit.nn.cached_attention``) the ``Tq`` new queries meet all ``Tk`` cached keys
and sit at the cache length onwards, so step-by-step decoding equals one causal forward
pass. The cache holds the keys unrotated: the core rotates all of them at every call (one
elementwise pass over the keys, small next to the attention over them), so the cache format,
``reorder_cache`` and beam search are unchanged.

The types are self-attention only (registered with ``cross_attention=False``,
``needs_positions=True``): a query and a key are scored by their positions in one
sequence. A decoder step over an encoder memory, one RNN query over a memory or a
learned pooling query has no such shared position, so ``TransformerDecoderLayer`` (cross
attention), ``MemoryAttention`` and ``AttentionPooling`` refuse them with a clear error and
the model builders fall back to ``multihead`` for cross-attention, as they do for ``local``.

Fused path: ``rotary`` rotates and then calls ``scaled_dot_product_attention`` (``is_causal``
kept when no mask is given); ``alibi`` and ``relative`` pass their bias as a float
``attn_mask`` with ``-inf`` on every key the boolean masks hide (padding, causal, per-query).
Queries that may see nothing output 0, as everywhere in the library. Attention capture and
``need_weights`` run the eager maths and return the real (biased) weights.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Tensor, masked_softmax, zero_fully_masked
from .dot import ScaledDotAttention
from .registry import Capabilities, register

# Positions of query and key in one sequence: self-attention only (no cross-attention, no
# query over a memory, no learned pooling query).
SELF_ONLY = Capabilities(cross_attention=False, pooling_query=False, needs_positions=True)


def query_key_positions(tq: int, tk: int, device=None) -> tuple[Tensor, Tensor]:
    """Positions of ``Tq`` queries and ``Tk`` keys, aligned to the end: ``(Tq,)``, ``(Tk,)``.

    Key ``j`` is at ``j``, query ``i`` at ``i + Tk - Tq`` (the last query meets the last key),
    as in ``causal_mask``: right for self-attention and for a KV cache.
    """
    keys = torch.arange(tk, device=device)
    return torch.arange(tk - tq, tk, device=device), keys


# ----------------------------------------------------------------------------- rotary


def rotary_angles(
    positions: Tensor, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Rotation angles ``(T, dim // 2)``: ``positions[t] · θ_i``, ``θ_i = base^(-2i / d')``
    for the ``d' = 2 · (dim // 2)`` rotated features (RoFormer eq. 15)."""
    pairs = dim // 2
    exponent = torch.arange(pairs, device=positions.device, dtype=dtype) * (2.0 / max(2 * pairs, 1))
    inv_freq = base**-exponent  # (pairs,)
    return positions.to(dtype)[:, None] * inv_freq[None, :]


def apply_rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate ``x (*, T, D)`` by position: pair ``(x_2i, x_2i+1)`` of step ``t`` turns by
    ``positions[t] · θ_i``. Norms are kept and ``rot(q, p) · rot(k, r)`` depends on
    ``p - r`` only. With an odd ``D`` the last feature is left as it is.

    Angles are computed in float64 for float64 inputs, in float32 otherwise.
    """
    d = x.shape[-1]
    rotated = 2 * (d // 2)
    if rotated == 0:
        return x
    angle_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    angles = rotary_angles(positions, d, base, angle_dtype)  # (T, D // 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    pairs = x[..., :rotated].unflatten(-1, (rotated // 2, 2))  # (*, T, D // 2, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out if rotated == d else torch.cat([out, x[..., rotated:]], dim=-1)


@register("rotary", SELF_ONLY)
class RotaryAttention(ScaledDotAttention):
    """Scaled dot-product attention over rotary-embedded queries and keys (Su et al. 2021).

    ``score_ij = rot(q_i, p_i) · rot(k_j, p_j) / √d``, positions aligned to the end (see
    the module docstring). No parameters; the fused path is SDPA on the rotated tensors.

    Args:
        query_dim, key_dim: per-head size (equal); an odd size leaves the last feature
            unrotated.
        dropout: dropout on attention weights.
        causal: query ``i`` sees keys ``j <= i + Tk - Tq`` only.
        scale: score scale (default ``1/√d``).
        base: wavelength base of the rotation frequencies (10000 in the paper).
    """

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        scale: float | None = None,
        base: float = 10000.0,
    ) -> None:
        super().__init__(query_dim, key_dim, dropout=dropout, causal=causal, scale=scale)
        if not base > 1.0:
            raise ValueError(f"rotary base must be > 1, got {base}")
        self.base = float(base)

    def rotate(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        """``query (*, Tq, d)``, ``key (*, Tk, d)`` rotated at their (end-aligned) positions."""
        q_pos, k_pos = query_key_positions(query.shape[-2], key.shape[-2], query.device)
        return apply_rotary(query, q_pos, self.base), apply_rotary(key, k_pos, self.base)

    def eager(self, query, key, value, mask):
        query, key = self.rotate(query, key)
        return super().eager(query, key, value, mask)

    def fast(self, query, key, value, mask):
        query, key = self.rotate(query, key)
        return super().fast(query, key, value, mask)

    def extra_repr(self) -> str:
        return f"base={self.base:g}, " + super().extra_repr()


# ----------------------------------------------------------------------------- biased


class _BiasedScaledDot(ScaledDotAttention):
    """``softmax(q kᵀ · scale + bias) v`` with a position bias ``(*, Tq, Tk)``.

    The fused path hands SDPA the bias as a float ``attn_mask`` holding ``-inf`` wherever the
    (user, causal) boolean mask hides a key.
    """

    def position_bias(self, query: Tensor, key: Tensor) -> Tensor:
        """The additive score bias, broadcastable to ``(*, Tq, Tk)``."""
        raise NotImplementedError

    def eager(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        scores = torch.matmul(query, key.transpose(-1, -2)) * self._scale(query.shape[-1])
        scores = scores + self.position_bias(query, key)
        mask = self.dense_mask(mask, tq, tk, query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights

    def fast(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        bias = self.position_bias(query, key).to(query.dtype)
        mask = self.dense_mask(mask, tq, tk, query.device)
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self._scale(query.shape[-1]),
        )
        return zero_fully_masked(out, mask)


def alibi_slopes(num_heads: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """ALiBi head slopes ``(H,)``: ``m_h = 2^(-8h/H)``, ``h = 1 .. H`` (8 heads: 1/2 .. 1/256;
    16 heads: the same with the geometric means in between, as in the paper)."""
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    h = torch.arange(1, num_heads + 1, device=device, dtype=torch.float64)
    return torch.pow(2.0, -8.0 * h / num_heads).to(dtype)


def alibi_bias(
    num_heads: int, tq: int, tk: int, device=None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(H, Tq, Tk)`` ALiBi bias ``-m_h · |p_i - p_j|`` at end-aligned positions.

    Causal attention only ever sees ``j <= i``, where this is the paper's ``-m_h · (i - j)``;
    bidirectional attention uses the distance both ways.
    """
    q_pos, k_pos = query_key_positions(tq, tk, device)
    distance = (q_pos[:, None] - k_pos[None, :]).abs().to(dtype)  # (Tq, Tk)
    return -alibi_slopes(num_heads, device, dtype)[:, None, None] * distance


@register("alibi", SELF_ONLY)
class ALiBiAttention(_BiasedScaledDot):
    """Scaled dot-product attention with linear distance biases (Press et al. 2022).

    ``score_ij = q_i · k_j / √d - m_h · |p_i - p_j|`` (causal: the future is masked, so the
    bias is ``-m_h · (i - j)``). The number of heads ``H`` (which sets the slopes) is read
    from the input, ``(B, H, T, d)`` as a multi-head layer passes it; a core called on
    ``(B, T, d)`` is one head (``m = 2^-8``). No parameters.

    Args:
        query_dim, key_dim: per-head size (equal).
        dropout: dropout on attention weights.
        causal: query ``i`` sees keys ``j <= i + Tk - Tq`` only.
        scale: score scale (default ``1/√d``).
    """

    def position_bias(self, query: Tensor, key: Tensor) -> Tensor:
        heads = query.shape[-3] if query.dim() >= 4 else 1
        bias = alibi_bias(heads, query.shape[-2], key.shape[-2], query.device, query.dtype)
        return bias if query.dim() >= 4 else bias[0]  # (H, Tq, Tk) | (Tq, Tk)


@register(
    "relative",
    dataclasses.replace(SELF_ONLY, test_options={"max_relative_position": 3}),  # clips at 11
)
class RelativeAttention(_BiasedScaledDot):
    """Self-attention with learned relative position keys (Shaw et al. 2018).

    ``score_ij = q_i · (k_j + a_{r(i, j)}) / √d`` with ``r(i, j) = clip(p_j - p_i, -k, k)``
    and one table ``a`` of ``2k + 1`` vectors of size ``d`` (``k = max_relative_position``),
    shared by the heads of the layer. All-zero ``a`` is plain ``scaled_dot``. The fused path
    computes ``q · aᵀ`` once per query ``(*, Tq, 2k + 1)``, gathers it into the
    ``(*, Tq, Tk)`` bias and passes that to SDPA.

    Args:
        query_dim: per-head size ``d`` (needed: it sizes the table); ``key_dim`` must equal it.
        max_relative_position: ``k``, the largest distance told apart (16 in the paper).
        dropout: dropout on attention weights.
        causal: query ``i`` sees keys ``j <= i + Tk - Tq`` only.
        scale: score scale (default ``1/√d``).
    """

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        scale: float | None = None,
        max_relative_position: int = 16,
    ) -> None:
        super().__init__(query_dim, key_dim, dropout=dropout, causal=causal, scale=scale)
        if query_dim is None:
            raise ValueError("relative attention needs query_dim (the size of its embeddings)")
        if int(max_relative_position) < 1:
            raise ValueError(f"max_relative_position must be >= 1, got {max_relative_position}")
        self.max_relative_position = int(max_relative_position)
        self.relative_keys = nn.Parameter(
            torch.empty(2 * self.max_relative_position + 1, query_dim)
        )
        nn.init.normal_(self.relative_keys, std=0.02)

    def relative_index(self, tq: int, tk: int, device=None) -> Tensor:
        """``(Tq, Tk)`` row of ``relative_keys`` for each pair: ``clip(p_j - p_i, ±k) + k``."""
        q_pos, k_pos = query_key_positions(tq, tk, device)
        k = self.max_relative_position
        return (k_pos[None, :] - q_pos[:, None]).clamp(-k, k) + k

    def position_bias(self, query: Tensor, key: Tensor) -> Tensor:
        tq, tk = query.shape[-2], key.shape[-2]
        if query.shape[-1] != self.relative_keys.shape[-1]:
            raise ValueError(
                f"relative attention was built for size {self.relative_keys.shape[-1]}, "
                f"got queries of size {query.shape[-1]}"
            )
        scale = self._scale(query.shape[-1])
        per_distance = torch.matmul(query, self.relative_keys.to(query.dtype).t()) * scale
        index = self.relative_index(tq, tk, query.device)  # (Tq, Tk)
        index = index.expand(*per_distance.shape[:-1], tk)  # (*, Tq, Tk)
        return per_distance.gather(-1, index)

    def extra_repr(self) -> str:
        return f"max_relative_position={self.max_relative_position}, " + super().extra_repr()
