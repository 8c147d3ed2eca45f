"""Transformer encoder/decoder layers and stacks whose attention is any registered type.

A layer reads like the maths. Pre-norm (``norm_first=True``)::

    x = x + drop(self_attn(norm1(x)))
    x = x + drop(ffn(norm2(x)))

Post-norm (``norm_first=False``, BERT / the original Transformer)::

    x = norm1(x + drop(self_attn(x)))
    x = norm2(x + drop(ffn(x)))

Masks follow the attention library: boolean, ``True`` = may attend; ``(B, T)`` is key padding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from toolkit.attention import self_attention_only

from .attention_layer import build_attention_layer, cached_attention

Tensor = torch.Tensor

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


def build_activation(name: str) -> nn.Module:
    """``gelu`` (exact erf form, as BERT), ``relu`` or ``silu``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid choices: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class FeedForward(nn.Sequential):
    """Position-wise FFN ``(B, T, E) -> (B, T, E)``: Linear, activation, dropout, Linear."""

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        activation: str = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(
            nn.Linear(embed_dim, ffn_dim, bias=bias),
            build_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, embed_dim, bias=bias),
        )


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN block.

    Args:
        embed_dim: model width ``E``.
        num_heads: attention heads.
        ffn_dim: FFN hidden size (default ``4 E``).
        dropout: dropout on residual branches and inside the FFN.
        attention_dropout: dropout on attention weights (default ``dropout``).
        attention: registered attention name (see ``build_attention_layer``).
        attention_options: extra options of that attention (e.g. ``{"window": 16}``).
        activation: FFN activation (``gelu``/``relu``/``silu``).
        norm_first: pre-norm (True) or post-norm (False).
        layer_norm_eps: LayerNorm epsilon.
        bias: biases in projections and FFN.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        attention: str = "multihead",
        attention_options: Mapping[str, Any] | None = None,
        activation: str = "gelu",
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.norm_first = norm_first
        self.self_attn = build_attention_layer(
            attention,
            embed_dim,
            num_heads,
            dropout=attention_dropout,
            bias=bias,
            **dict(attention_options or {}),
        )
        self.ffn = FeedForward(embed_dim, ffn_dim or 4 * embed_dim, activation, dropout, bias)
        self.norm1 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.drop = nn.Dropout(dropout)

    def _sa(self, x: Tensor, mask: Tensor | None, need_weights: bool):
        out, weights = self.self_attn(x, x, x, mask, need_weights)
        return self.drop(out), weights

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, E)``, key padding ``mask (B, T)`` -> ``(B, T, E)``, ``(B, H, T, T)|None``."""
        if self.norm_first:
            out, weights = self._sa(self.norm1(x), mask, need_weights)
            x = x + out
            x = x + self.drop(self.ffn(self.norm2(x)))
        else:
            out, weights = self._sa(x, mask, need_weights)
            x = self.norm1(x + out)
            x = self.norm2(x + self.drop(self.ffn(x)))
        return x, weights


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention + cross-attention over a memory + FFN.

    Self- and cross-attention are built separately, so any registered type works for each.

    Args:
        embed_dim: model width ``E``.
        num_heads: attention heads.
        ffn_dim: FFN hidden size (default ``4 E``).
        dropout: dropout on residual branches and inside the FFN.
        attention_dropout: dropout on attention weights (default ``dropout``).
        self_attention: registered name of the (causal) self-attention.
        cross_attention: registered name of the cross-attention; ``None`` for a decoder-only
            layer without memory. ``local`` works but its band is aligned to the memory's
            end (query ``i`` sits at ``i + S - T``), which rarely means anything here.
            Self-attention-only types (``rotary``, ``alibi``, ``relative``: positions of
            query and key in one sequence) are refused here (``ValueError``).
        self_attention_options, cross_attention_options: extra options for each.
        memory_dim: size of the memory vectors (default ``E``).
        activation, norm_first, layer_norm_eps, bias: as in ``TransformerEncoderLayer``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        self_attention: str = "multihead",
        cross_attention: str | None = "multihead",
        self_attention_options: Mapping[str, Any] | None = None,
        cross_attention_options: Mapping[str, Any] | None = None,
        memory_dim: int | None = None,
        activation: str = "gelu",
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.norm_first = norm_first
        self.self_attn = build_attention_layer(
            self_attention,
            embed_dim,
            num_heads,
            dropout=attention_dropout,
            causal=True,
            bias=bias,
            **dict(self_attention_options or {}),
        )
        self.norm1 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.cross_attn = None
        if cross_attention is not None:
            self.cross_attn = build_attention_layer(
                cross_attention,
                embed_dim,
                num_heads,
                kdim=memory_dim,
                vdim=memory_dim,
                dropout=attention_dropout,
                bias=bias,
                **dict(cross_attention_options or {}),
            )
            if self_attention_only(self.cross_attn.core_name):
                raise ValueError(
                    f"cross_attention={cross_attention!r} (core "
                    f"{self.cross_attn.core_name!r}) is self-attention only: it scores a query "
                    "and a key by their positions in one sequence, and a decoder step and a "
                    "memory frame share none. Use it for the self-attention and another type "
                    "(e.g. multihead) for the cross-attention."
                )
            self.norm2 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.ffn = FeedForward(embed_dim, ffn_dim or 4 * embed_dim, activation, dropout, bias)
        self.norm3 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.drop = nn.Dropout(dropout)

    def _self(self, x, mask, cache, need_weights):
        if cache is None:
            out, weights = self.self_attn(x, x, x, mask, need_weights)
        else:
            out, weights = cached_attention(
                self.self_attn, x, x, x, cache.setdefault("self", {}), mask, need_weights
            )
        return self.drop(out), weights

    def _cross(self, x, memory, memory_mask, cache, need_weights):
        if cache is None:
            out, weights = self.cross_attn(x, memory, memory, memory_mask, need_weights)
        else:
            out, weights = cached_attention(
                self.cross_attn,
                x,
                memory,
                memory,
                cache.setdefault("cross", {}),
                memory_mask,
                need_weights,
                static=True,
            )
        return self.drop(out), weights

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Decode ``x (B, T, E)`` against ``memory (B, S, Dm)``.

        Args:
            x: target states; with ``cache``, only the new steps.
            memory: encoder output (ignored, may be None, without cross-attention).
            mask: target key padding ``(B, T)`` (with ``cache``: over all steps so far).
            memory_mask: memory key padding ``(B, S)``.
            cache: per-layer dict of projected keys/values, updated in place.
            need_weights: also return attention weights.

        Returns:
            ``output (B, T, E)``, self weights ``(B, H, T, Tk)`` and cross weights
            ``(B, H, T, S)`` (each ``None`` unless ``need_weights``).
        """
        cross_w = None
        if self.norm_first:
            out, self_w = self._self(self.norm1(x), mask, cache, need_weights)
            x = x + out
            if self.cross_attn is not None:
                out, cross_w = self._cross(self.norm2(x), memory, memory_mask, cache, need_weights)
                x = x + out
            x = x + self.drop(self.ffn(self.norm3(x)))
        else:
            out, self_w = self._self(x, mask, cache, need_weights)
            x = self.norm1(x + out)
            if self.cross_attn is not None:
                out, cross_w = self._cross(x, memory, memory_mask, cache, need_weights)
                x = self.norm2(x + out)
            x = self.norm3(x + self.drop(self.ffn(x)))
        return x, self_w, cross_w


def _stack(
    layer_cls: type[nn.Module],
    num_layers: int,
    embed_dim: int,
    num_heads: int,
    layer_options: dict[str, Any],
) -> tuple[nn.ModuleList, nn.Module]:
    """``num_layers`` layers and the final norm (LayerNorm when pre-norm, else identity)."""
    layers = nn.ModuleList(
        layer_cls(embed_dim, num_heads, **layer_options) for _ in range(num_layers)
    )
    eps = layer_options.get("layer_norm_eps", 1e-5)
    norm_first = layer_options.get("norm_first", True)
    return layers, nn.LayerNorm(embed_dim, eps=eps) if norm_first else nn.Identity()


class TransformerEncoder(nn.Module):
    """A stack of ``TransformerEncoderLayer`` (+ a final LayerNorm when pre-norm).

    Args:
        num_layers: number of layers.
        embed_dim, num_heads: width and heads.
        **layer_options: any ``TransformerEncoderLayer`` argument (``attention=``, ...).
    """

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, **layer_options: Any):
        super().__init__()
        self.layers, self.norm = _stack(
            TransformerEncoderLayer, num_layers, embed_dim, num_heads, layer_options
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        """Encode ``x (B, T, E)`` with key padding ``mask (B, T)``.

        Returns:
            ``output (B, T, E)`` and, with ``need_weights``, one ``(B, H, T, T)`` map per
            layer (else ``None``). Padded positions get outputs too; ignore them downstream.
        """
        maps = [] if need_weights else None
        for layer in self.layers:
            x, weights = layer(x, mask, need_weights)
            if maps is not None:
                maps.append(weights)
        return self.norm(x), maps


class TransformerDecoder(nn.Module):
    """A stack of ``TransformerDecoderLayer`` with an incremental-decoding cache.

    Greedy decoding one step at a time::

        cache = decoder.init_cache()
        for t in range(max_len):
            x = positions(embed(tokens[:, -1:]), offset=decoder.cache_length(cache))
            y, _ = decoder(x, memory, memory_mask=memory_mask, cache=cache)

    gives the same outputs as one causal forward over the whole sequence.

    Args:
        num_layers: number of layers.
        embed_dim, num_heads: width and heads.
        **layer_options: any ``TransformerDecoderLayer`` argument.
    """

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, **layer_options: Any):
        super().__init__()
        self.layers, self.norm = _stack(
            TransformerDecoderLayer, num_layers, embed_dim, num_heads, layer_options
        )

    def init_cache(self) -> dict[str, Any]:
        """An empty cache: ``{"length": 0, "layers": [{} per layer]}``."""
        return {"length": 0, "layers": [{} for _ in self.layers]}

    @staticmethod
    def cache_length(cache: dict[str, Any] | None) -> int:
        """Steps already decoded into ``cache`` (the position offset of the next step)."""
        return 0 if cache is None else int(cache.get("length", 0))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, dict[str, list[Tensor]] | None]:
        """Decode ``x (B, T, E)`` (the new steps when ``cache`` is given).

        Args:
            x: target states.
            memory: ``(B, S, Dm)`` encoder output.
            mask: target key padding ``(B, T)`` (with ``cache``: ``(B, length + T)``).
            memory_mask: ``(B, S)`` memory key padding.
            cache: from ``init_cache()``; updated in place.
            need_weights: also return attention maps.

        Returns:
            ``output (B, T, E)`` and, with ``need_weights``, ``{"self": [(B, H, T, Tk)],
            "cross": [(B, H, T, S)]}`` with one map per layer (else ``None``).
        """
        if cache is not None and "layers" not in cache:
            cache.update(self.init_cache())
        maps = {"self": [], "cross": []} if need_weights else None
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache["layers"][i]
            x, self_w, cross_w = layer(x, memory, mask, memory_mask, layer_cache, need_weights)
            if maps is not None:
                maps["self"].append(self_w)
                maps["cross"].append(cross_w)
        if cache is not None:
            cache["length"] = cache.get("length", 0) + x.shape[1]
        return self.norm(x), maps
