"""Attention layers on ``(B, T, E)`` sequences, built by name, with a key/value cache.

Every registered attention name becomes a multi-head layer: ``multihead`` is standard MHA
(``scaled_dot`` core) and any other name ``X`` is ``MultiHeadAttention(core=X)``. So one
config key (``attention=local``) changes the maths inside every layer of a model while the
projections, heads and the incremental-decoding cache stay the same.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from toolkit.attention import MultiHeadAttention, available, get, normalize_mask

Tensor = torch.Tensor


def build_attention_layer(
    attention: str,
    embed_dim: int,
    num_heads: int,
    kdim: int | None = None,
    vdim: int | None = None,
    dropout: float = 0.0,
    causal: bool = False,
    bias: bool = True,
    **options: Any,
) -> MultiHeadAttention:
    """Build a multi-head attention layer whose per-head maths is the registered ``attention``.

    Args:
        attention: a registered name (``toolkit.attention.available()``); ``multihead``
            means standard MHA (``scaled_dot`` core, or ``core=`` given in ``options``).
        embed_dim: model width ``E``.
        num_heads: number of heads ``H``.
        kdim, vdim: key/value input sizes (default ``E``); equal to ``E`` gives a packed
            ``in_proj``.
        dropout: dropout on attention weights.
        causal: query ``i`` sees keys ``j <= i`` only.
        bias: biases in the projections.
        **options: passed to the core (e.g. ``window`` for ``local``).

    Returns:
        A module mapping ``query (B, Tq, E)``, ``key (B, Tk, kdim)``, ``value (B, Tk, vdim)``
        to ``(output (B, Tq, E), weights (B, H, Tq, Tk) | None)``.

    Raises:
        ValueError: unknown ``attention`` (the message lists the valid names).
    """
    get(attention)  # unknown names raise the registry's ValueError listing valid choices
    if attention == "multihead":
        core = options.pop("core", "scaled_dot")
    elif "core" in options:
        raise ValueError(
            f"'core' is only an option of attention='multihead' (got attention={attention!r}); "
            f"valid attention names: {', '.join(available())}"
        )
    else:
        core = attention
    return MultiHeadAttention(
        embed_dim,
        num_heads,
        kdim=kdim,
        vdim=vdim,
        dropout=dropout,
        bias=bias,
        causal=causal,
        core=core,
        **options,
    )


def project_query(layer: MultiHeadAttention, query: Tensor) -> Tensor:
    """The query projection of ``layer`` alone, ``(B, T, E) -> (B, T, E)``."""
    if not layer.packed:
        return layer.q_proj(query)
    e = layer.embed_dim
    bias = None if layer.in_proj.bias is None else layer.in_proj.bias[:e]
    return F.linear(query, layer.in_proj.weight[:e], bias)


def project_key_value(
    layer: MultiHeadAttention, key: Tensor, value: Tensor
) -> tuple[Tensor, Tensor]:
    """The key and value projections of ``layer``, ``(B, T, kdim|vdim) -> (B, T, E)`` each."""
    if not layer.packed:
        return layer.k_proj(key), layer.v_proj(value)
    e = layer.embed_dim
    w_k, w_v = layer.in_proj.weight[e:].chunk(2)
    b_k = b_v = None
    if layer.in_proj.bias is not None:
        b_k, b_v = layer.in_proj.bias[e:].chunk(2)
    return F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    b, t, e = x.shape
    return x.view(b, t, num_heads, e // num_heads).transpose(1, 2)  # (B, H, T, hd)


def cached_attention(
    layer: MultiHeadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    cache: dict[str, Tensor],
    mask: Tensor | None = None,
    need_weights: bool = False,
    static: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run ``layer`` on new query steps, reusing projected keys/values from ``cache``.

    Self-attention (``static=False``): ``key``/``value`` are the new steps only; their
    projections are appended to ``cache["key"]``/``cache["value"]`` ``(B, H, Tk, hd)`` and
    the new queries attend over everything cached. The causal mask of a causal core is
    aligned to the end (``causal_mask``), so ``Tq`` new queries see all earlier keys.
    Cross-attention (``static=True``): keys/values (the memory) are projected once, on the
    first call, and reused afterwards.

    Args:
        layer: a ``MultiHeadAttention`` (what ``build_attention_layer`` returns).
        query: ``(B, Tq, E)`` new steps.
        key, value: ``(B, Tnew, kdim|vdim)`` new steps, or the memory when ``static``.
        cache: a dict owned by this layer, updated in place (start with ``{}``).
        mask: key-padding mask over ALL cached keys ``(B, Tk)`` (or any mask
            ``normalize_mask`` accepts for ``(Tq, Tk)``).
        need_weights: also return the weights ``(B, H, Tq, Tk)``.
        static: keys/values do not grow (cross-attention).

    Returns:
        ``output (B, Tq, E)`` and ``weights (B, H, Tq, Tk)`` or ``None``.
    """
    if not isinstance(layer, MultiHeadAttention):
        raise TypeError(f"cached_attention needs a MultiHeadAttention, got {type(layer).__name__}")
    h = layer.num_heads
    b, tq, _ = query.shape
    if static and "key" in cache:
        q = project_query(layer, query)
        k, v = cache["key"], cache["value"]
    else:
        if query is key and key is value:
            q, k_new, v_new = layer.project(query, key, value)  # one packed matmul
        else:
            q = project_query(layer, query)
            k_new, v_new = project_key_value(layer, key, value)
        k_new, v_new = _split_heads(k_new, h), _split_heads(v_new, h)  # (B, H, Tnew, hd)
        if not static and "key" in cache:
            k = torch.cat([cache["key"], k_new], dim=2)  # (B, H, Tk, hd)
            v = torch.cat([cache["value"], v_new], dim=2)
        else:
            k, v = k_new, v_new
        cache["key"], cache["value"] = k, v
    q = _split_heads(q, h)  # (B, H, Tq, hd)
    mask = normalize_mask(mask, 4, tq, k.shape[2])  # (B|1, H|1, Tq|1, Tk)
    out, weights = layer.core(q, k, v, mask, need_weights)  # (B, H, Tq, hd)
    out = out.transpose(1, 2).reshape(b, tq, layer.embed_dim)  # (B, Tq, E)
    return layer.out_proj(out), weights


def reorder_cache(cache: Any, index: Tensor) -> Any:
    """Select batch rows ``index (B',)`` of every tensor in a (nested) cache (beam search)."""
    if isinstance(cache, Tensor):
        return cache.index_select(0, index)
    if isinstance(cache, dict):
        return {name: reorder_cache(value, index) for name, value in cache.items()}
    if isinstance(cache, list):
        return [reorder_cache(value, index) for value in cache]
    return cache
