"""Single-query attention over a memory, for any registered type, and attention pooling.

``MemoryAttention`` is what a recurrent decoder (text, image regions, audio frames) uses
each step: one query vector ``(B, Dq)`` attends over ``memory (B, S, Dm)`` with a key
padding mask ``(B, S)`` and gives a context ``(B, Dc)`` and weights ``(B, S)``.
``AttentionPooling`` lets learned queries attend over token states to pool a sequence.

Stateful types (``location``, ``coverage``; ``toolkit.attention.stateful``) carry a state
from one decoder step to the next; ``MemoryAttention`` passes it through generically
(``init_state`` before the first step, ``step`` returns the next one), and the decoder keeps
it in its own state (``toolkit.nn.RNNState.attention``), which beam search reorders.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from toolkit.attention import (
    LocalPAttention,
    build,
    capabilities,
    get,
    position_reason,
    self_attention_only,
)

from .attention_layer import build_attention_layer, cached_attention, project_key_value

Tensor = torch.Tensor

__all__ = ["AttentionPooling", "LocalPAttention", "MemoryAttention"]


def _refuse_self_attention_only(attention: str, options: dict[str, Any], why: str) -> None:
    """``ValueError`` for a self-attention-only type (also as a ``multihead`` core)."""
    core = options.get("core", "scaled_dot") if capabilities(attention).layer else attention
    if self_attention_only(core):
        raise ValueError(
            f"attention {position_reason(core)}, and {why}; use e.g. 'scaled_dot', "
            "'additive' or 'multihead' here"
        )


class MemoryAttention(nn.Module):
    """One query vector attends over a memory with any registered attention type.

    What each type needs is read from its registered ``Capabilities``:

    * ``mixed_widths`` cores (``additive``, ``general``, ...): built with ``query_dim`` and
      ``key_dim = memory_dim``.
    * ``multihead`` (the ``layer``): MHA with ``kdim = vdim = memory_dim`` (``num_heads``
      option, default 1); the context has size ``query_dim`` and weights are averaged over
      heads.
    * a type with a ``single_query_form`` (``local``: Luong local-p, ``LocalPAttention``,
      counted as ``local`` by ``toolkit.attention.built_types``, window centred on a
      predicted position): that form, over memory keys projected to ``query_dim``.
    * any other core (``dot``, ``scaled_dot``, ``linear``, ...): memory keys are projected to
      ``query_dim`` when the sizes differ; values stay the raw memory.
    * self-attention-only types (``cross_attention=False``: ``rotary``, ``alibi``,
      ``relative``) are refused: one query has no position in the memory (``ValueError``).
    * ``stateful`` types (``location``, ``coverage``; ``stateful`` is then True): built like
      the other cores; ``init_state`` gives the state before the first step and ``step``
      the context, the weights and the next state. ``forward`` attends with a given state
      (or the initial one) and returns no state.

    Args:
        attention: registered attention name.
        query_dim: query size ``Dq``.
        memory_dim: memory size ``Dm``.
        **options: options of the core (``window``, ``num_heads``, ``dropout``, ...).
    """

    def __init__(self, attention: str, query_dim: int, memory_dim: int, **options: Any) -> None:
        super().__init__()
        get(attention)  # unknown names list the valid ones
        _refuse_self_attention_only(
            attention,
            options,
            "one query over a memory (an RNN decoder step) has no position in that memory",
        )
        self.attention = attention
        caps = capabilities(attention)
        # multihead refuses a stateful core itself (MultiHeadAttention), with a message
        self.stateful = caps.stateful
        self.layer = caps.layer
        self.single_query = caps.single_query_form is not None
        self.key_proj: nn.Module | None = None
        self.context_dim = memory_dim
        if self.layer:
            num_heads = options.pop("num_heads", 1)
            self.core = build_attention_layer(
                attention, query_dim, num_heads, kdim=memory_dim, vdim=memory_dim, **options
            )
            self.context_dim = query_dim
        elif self.single_query:
            self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)
            self.core = caps.single_query_form(query_dim, **options)
        else:
            key_dim = memory_dim
            if not caps.mixed_widths and memory_dim != query_dim:
                self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)
                key_dim = query_dim
            self.core = build(attention, query_dim=query_dim, key_dim=key_dim, **options)

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        """Per-sequence work done once before decoding: projected memory keys (and values)."""
        if self.layer:
            k, v = project_key_value(self.core, memory, memory)  # (B, S, E) each
            b, s, _ = k.shape
            h = self.core.num_heads
            return {
                "key": k.view(b, s, h, -1).transpose(1, 2),  # (B, H, S, hd)
                "value": v.view(b, s, h, -1).transpose(1, 2),
            }
        key = memory if self.key_proj is None else self.key_proj(memory)
        if self.single_query:
            return {"key": key}
        # the core's own per-memory work (e.g. additive's key projection), reused every step
        return {"key": key, "core": self.core.precompute(key)}

    def init_state(self, memory: Tensor, mask: Tensor | None = None) -> Tensor | None:
        """The attention state before the first step, ``(B, S)`` (``None`` unless
        ``stateful``): zeros for ``coverage``, uniform over the real entries for ``location``."""
        return self.core.init_state(memory, mask) if self.stateful else None

    def step(
        self,
        query: Tensor,
        memory: Tensor,
        mask: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
        state: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One decoder step: as ``forward``, plus the attention state for the next step
        (``None`` for a type without state).

        Args:
            state: ``init_state(memory, mask)`` or the previous step's (``None``: initial).

        Returns:
            ``context (B, Dc)``, ``weights (B, S)`` and the next state ``(B, S) | None``.
        """
        if not self.stateful:
            context, weights = self(query, memory, mask, cache)
            return context, weights, None
        cache = self.precompute(memory) if cache is None else cache
        out, weights, state = self.core.step(
            query[:, None, :], cache["key"], memory, mask, state, cache["core"]
        )
        return out[:, 0], weights[:, 0], state

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        mask: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
        state: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``query (B, Dq)`` over ``memory (B, S, Dm)`` with key padding ``mask (B, S)``.

        Args:
            cache: ``precompute(memory)`` (computed here when ``None``).
            state: attention state ``(B, S)`` of a stateful type (``None``: the initial
                one); ignored by the other types. ``step`` also returns the next state.

        Returns:
            ``context (B, Dc)`` and ``weights (B, S)`` (zero on masked memory).
        """
        cache = self.precompute(memory) if cache is None else cache
        q = query[:, None, :]  # (B, 1, Dq)
        if self.stateful:
            out, weights = self.core(
                q, cache["key"], memory, mask, need_weights=True, state=state, cache=cache["core"]
            )
        elif self.layer:
            out, weights = cached_attention(
                self.core, q, memory, memory, dict(cache), mask, need_weights=True, static=True
            )
            weights = weights.mean(dim=1)  # (B, H, 1, S) -> (B, 1, S)
        elif self.single_query:
            out, weights = self.core(q, cache["key"], memory, mask)
        else:
            out, weights = self.core(
                q, cache["key"], memory, mask, need_weights=True, cache=cache.get("core")
            )
        return out[:, 0], weights[:, 0]  # (B, Dc), (B, S)


class AttentionPooling(nn.Module):
    """Learned queries attend over token states ``(B, T, D)`` to pool them to ``(B, D)``.

    With ``num_queries > 1`` (Lin et al. 2017) the ``Q`` pooled vectors are concatenated and
    projected back to ``D``. Types registered with ``pooling_query=False`` are refused:
    ``local`` (a learned query has no position to anchor a window at), the
    self-attention-only types (``rotary``, ``alibi``, ``relative``) and the stateful ones
    (``location``, ``coverage``: pooling is one pass, no steps).

    Args:
        dim: token state size ``D``.
        attention: registered attention name.
        num_queries: number of learned queries ``Q``.
        **options: options of the attention (``num_heads`` for ``multihead``, ...).
    """

    def __init__(
        self, dim: int, attention: str = "additive", num_queries: int = 1, **options: Any
    ) -> None:
        super().__init__()
        caps = capabilities(attention)
        if caps.cross_attention and caps.needs_positions:
            raise ValueError(
                f"attention pooling cannot use {attention!r} attention: "
                f"{position_reason(attention)}, and a learned query has no position; use "
                "'scaled_dot', 'additive' or 'multihead'"
            )
        _refuse_self_attention_only(
            attention, options, "a learned pooling query has no position in the sequence"
        )
        if caps.stateful:
            raise ValueError(
                f"attention pooling cannot use {attention!r} attention: it is stateful (each "
                "decoder step attends with the previous step's weights or their running sum), "
                "and pooling is one pass with no steps; use 'additive' (the same scores without "
                "a state), 'scaled_dot' or 'multihead'"
            )
        if not caps.pooling_query:
            raise ValueError(
                f"attention pooling cannot use {attention!r} attention (registered with "
                "pooling_query=False); use 'scaled_dot', 'additive' or 'multihead'"
            )
        self.attention = attention
        self.query = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        if caps.layer:
            num_heads = options.pop("num_heads", 1)
            self.attn = build_attention_layer(attention, dim, num_heads, **options)
        else:
            self.attn = build(attention, query_dim=dim, key_dim=dim, **options)
        self.out_proj = nn.Linear(num_queries * dim, dim) if num_queries > 1 else None

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Pool ``x (B, T, D)`` with key padding ``mask (B, T)``.

        Returns:
            ``pooled (B, D)`` and, with ``need_weights``, ``weights (B, T)`` (averaged over
            queries and heads; zero on padding), else ``None``.
        """
        b = x.shape[0]
        q = self.query.unsqueeze(0).expand(b, -1, -1)  # (B, Q, D)
        out, weights = self.attn(q, x, x, mask, need_weights)  # (B, Q, D)
        pooled = out[:, 0] if self.out_proj is None else self.out_proj(out.reshape(b, -1))
        if weights is not None:
            if weights.dim() == 4:
                weights = weights.mean(dim=1)  # (B, H, Q, T) -> (B, Q, T)
            weights = weights.mean(dim=1)  # (B, Q, T) -> (B, T)
        return pooled, weights
