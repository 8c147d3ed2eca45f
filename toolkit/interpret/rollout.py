"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Raw attention of a layer says how much each position reads from each position *of the layer
below*, not of the input. Rollout follows the information through the stack: per layer the
heads are fused (averaged by default), the identity is added for the residual connection
(``A + I``: half the information stays in place, as in the paper's ``0.5 A + 0.5 I`` once
rows are renormalised), rows are renormalised to sum to 1, and the layers are multiplied,
lowest first::

    R = Â_L · … · Â_2 · Â_1,        Â_l = rownorm(fuse_heads(A_l) + I)

``R[b, i, j]`` is the share of position ``i``'s top-layer representation that comes from
input position ``j``. With a key padding mask, padded keys get exactly 0 in every row and
padded query rows are 0 (they are not inputs and are never read).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Tensor = torch.Tensor

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(weights: Tensor, fusion: str = "mean") -> Tensor:
    """``(B, H, T, T)`` -> ``(B, T, T)`` by ``fusion`` over heads; a ``(B, T, T)`` map passes."""
    if weights.dim() == 3:
        return weights
    if weights.dim() != 4:
        raise ValueError(
            f"attention maps are (B, H, T, T) or (B, T, T), got {tuple(weights.shape)}"
        )
    if fusion == "mean":
        return weights.mean(1)
    if fusion == "max":
        return weights.amax(1)
    if fusion == "min":
        return weights.amin(1)
    raise ValueError(f"unknown head fusion {fusion!r}; valid: {', '.join(HEAD_FUSIONS)}")


def _row_normalise(a: Tensor) -> Tensor:
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / total.clamp_min(1e-30), torch.zeros_like(a))


def layer_matrix(
    weights: Tensor, mask: Tensor | None = None, fusion: str = "mean", residual: bool = True
) -> Tensor:
    """One layer's ``Â = rownorm(fuse(A) + I)`` (``(B, T, T)``, float64), masked keys 0."""
    a = fuse_heads(weights, fusion).double()
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"rollout needs square self-attention maps, got {tuple(a.shape)}")
    b, t, _ = a.shape
    real = torch.ones(b, t, dtype=torch.bool, device=a.device) if mask is None else mask.bool()
    if real.shape != (b, t):
        raise ValueError(f"key padding mask {tuple(real.shape)} does not fit maps {(b, t, t)}")
    pair = real[:, :, None] & real[:, None, :]  # real query and real key
    a = a * pair
    if residual:
        eye = torch.eye(t, dtype=a.dtype, device=a.device)[None]
        a = a + eye * pair
    return _row_normalise(a)


def attention_rollout(
    maps: Sequence[Tensor],
    mask: Tensor | None = None,
    fusion: str = "mean",
    residual: bool = True,
) -> Tensor:
    """Rollout of per-layer self-attention maps, lowest layer first.

    Args:
        maps: one ``(B, H, T, T)`` or ``(B, T, T)`` map per layer (input layer first).
        mask: ``(B, T)`` key padding mask, True = real position.
        fusion: how heads are fused: ``mean`` (the paper), ``max`` or ``min``.
        residual: add the identity for the residual connection (``False``: plain product).

    Returns:
        ``(B, T, T)`` float32; real rows sum to 1, masked keys and masked query rows are 0.
    """
    if not maps:
        raise ValueError("attention_rollout needs at least one layer's map")
    out = None
    for weights in maps:
        a = layer_matrix(weights, mask, fusion, residual)
        out = a if out is None else a @ out
    return out.float()
