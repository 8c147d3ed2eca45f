"""Recurrent decoders with attention over a memory (text tokens, image regions, audio frames).

Two orders of operations, one step module:

* Bahdanau et al. (2015) / Show, Attend and Tell: attend with the previous hidden state,
  feed ``[input; context]`` to the cell, output ``tanh(W_o [h; context; input])``.
* Luong et al. (2015): run the cell first (input feeding: ``[input; previous output]``),
  attend with the new hidden state, output the attentional state ``tanh(W_c [context; h])``.

``gate=True`` multiplies the context by ``β = sigmoid(f_β(h))`` (Xu et al. 2015, §4.2.1),
``h`` being the hidden state that made the query.

A stateful attention type (``location``, ``coverage``; ``toolkit.attention.stateful``)
keeps its state in ``RNNState.attention``: ``init_state`` sets it (uniform over the real
memory / zeros), every step replaces it, and ``reorder_state`` selects its rows with the rest
of the state, so beam search carries it without a special case. Other types leave it ``None``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ..attention import capabilities
from .memory_attention import AttentionPooling, MemoryAttention

Tensor = torch.Tensor

__all__ = [
    "AttentionGRUDecoder",
    "AttentionPooling",
    "AttentionRNNDecoder",
    "AttentionRNNDecoderStep",
    "RNNState",
    "StepOutput",
    "reorder_state",
]

STYLES = ("bahdanau", "luong")
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNState(NamedTuple):
    """Decoder state: ``hidden (L, B, H)``, LSTM ``cell (L, B, H)``, Luong ``feed (B, O)``,
    and the ``attention`` state ``(B, S)`` of a stateful attention type (previous weights for
    ``location``, coverage for ``coverage``; ``None`` for the other types)."""

    hidden: Tensor
    cell: Tensor | None = None
    feed: Tensor | None = None
    attention: Tensor | None = None


class StepOutput(NamedTuple):
    """A decoder step: ``output (B, O)``, ``state``, ``weights (B, S)``, ``context (B, Dc)``."""

    output: Tensor
    state: RNNState
    weights: Tensor
    context: Tensor


def reorder_state(state: RNNState, index: Tensor) -> RNNState:
    """Select batch rows ``index (B',)`` of a state (beam search)."""
    return RNNState(
        state.hidden.index_select(1, index),
        None if state.cell is None else state.cell.index_select(1, index),
        None if state.feed is None else state.feed.index_select(0, index),
        None if state.attention is None else state.attention.index_select(0, index),
    )


def reorder_search_state(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
    """Rows ``index`` of a beam-search state dict: ``RNNState`` values by
    :func:`reorder_state` (batch on dim 1), everything else by ``reorder_cache``."""
    from .attention_layer import reorder_cache

    return {
        name: reorder_state(value, index) if isinstance(value, RNNState)
        else reorder_cache(value, index)
        for name, value in state.items()
    }  # fmt: skip


class AttentionRNNDecoderStep(nn.Module):
    """One GRU/LSTM decoder step attending over a memory.

    Args:
        input_dim: size of the step input (e.g. the previous token's embedding).
        hidden_dim: cell size ``H`` (the attention query size).
        memory_dim: memory size ``Dm``.
        attention: registered attention name (see ``MemoryAttention``).
        style: ``bahdanau`` (attend with the previous state, context into the cell) or
            ``luong`` (attend with the new state); ``None`` = how the type's registration
            says it is fed (``Capabilities.rnn_style``: ``luong`` for dot/general, else
            ``bahdanau``).
        cell: ``gru`` or ``lstm``.
        num_layers: stacked cell layers (the top layer's state is the query).
        output_dim: size ``O`` of the step output (default ``H``).
        gate: multiply the context by a learned scalar gate ``sigmoid(f_β(h))``.
        input_feeding: Luong input feeding (default on for ``luong``; unused for bahdanau).
        dropout: dropout between cell layers and on the step output.
        **attention_options: options of the attention (``window``, ``num_heads``, ...).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        memory_dim: int,
        attention: str = "additive",
        style: str | None = None,
        cell: str = "gru",
        num_layers: int = 1,
        output_dim: int | None = None,
        gate: bool = False,
        input_feeding: bool = True,
        dropout: float = 0.0,
        **attention_options: Any,
    ) -> None:
        super().__init__()
        if style is None:
            style = capabilities(attention).rnn_style
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; valid choices: {', '.join(STYLES)}")
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}")
        self.style, self.cell_type = style, cell
        self.hidden_dim, self.num_layers = hidden_dim, num_layers
        self.output_dim = output_dim or hidden_dim
        self.input_feeding = input_feeding and style == "luong"
        self.attn = MemoryAttention(attention, hidden_dim, memory_dim, **attention_options)
        ctx = self.attn.context_dim
        if style == "bahdanau":
            rnn_in = input_dim + ctx
            self.out = nn.Linear(hidden_dim + ctx + input_dim, self.output_dim)
        else:
            rnn_in = input_dim + (self.output_dim if self.input_feeding else 0)
            self.out = nn.Linear(ctx + hidden_dim, self.output_dim)
        self.rnn = CELLS[cell](
            rnn_in,
            hidden_dim,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0,
        )
        self.gate = nn.Linear(hidden_dim, 1) if gate else None
        n_init = num_layers * hidden_dim * (2 if cell == "lstm" else 1)
        self.init_proj = nn.Linear(memory_dim, n_init)
        self.drop = nn.Dropout(dropout)

    def init_state(self, memory: Tensor, mask: Tensor | None = None) -> RNNState:
        """Initial state from the mean of the real memory entries (Xu et al. 2015).

        ``memory (B, S, Dm)``, ``mask (B, S)`` -> state with ``hidden (L, B, H)``.
        """
        if mask is None:
            mean = memory.mean(dim=1)
        else:
            m = mask[..., None].to(memory.dtype)  # (B, S, 1)
            mean = (memory * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)  # (B, Dm)
        b = memory.shape[0]
        init = torch.tanh(self.init_proj(mean))  # (B, L·H·{1,2})
        init = init.view(b, -1, self.num_layers, self.hidden_dim).permute(1, 2, 0, 3)
        hidden = init[0].contiguous()  # (L, B, H)
        cell = init[1].contiguous() if self.cell_type == "lstm" else None
        feed = memory.new_zeros(b, self.output_dim) if self.input_feeding else None
        attention = self.attn.init_state(memory, mask) if self.stateful else None
        return RNNState(hidden, cell, feed, attention)

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        """Memory keys to reuse at every step (see ``MemoryAttention.precompute``)."""
        return self.attn.precompute(memory)

    @property
    def stateful(self) -> bool:
        """Whether the attention carries a state between steps (``RNNState.attention``)."""
        return bool(getattr(self.attn, "stateful", False))

    def _attend(self, h: Tensor, memory, mask, cache, state: RNNState):
        """-> ``context (B, Dc)``, ``weights (B, S)``, next attention state or ``None``."""
        if self.stateful:
            context, weights, attention = self.attn.step(h, memory, mask, cache, state.attention)
        else:
            context, weights = self.attn(h, memory, mask, cache)  # (B, Dc), (B, S)
            attention = None
        if self.gate is not None:
            context = torch.sigmoid(self.gate(h)) * context  # β (B, 1)
        return context, weights, attention

    def _cell(self, x: Tensor, state: RNNState) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.cell_type == "lstm":
            out, (hidden, cell) = self.rnn(x[:, None, :], (state.hidden, state.cell))
        else:
            out, hidden = self.rnn(x[:, None, :], state.hidden)
            cell = None
        return out[:, 0], hidden, cell  # (B, H), (L, B, H), (L, B, H) | None

    def forward(
        self,
        inputs: Tensor,
        state: RNNState,
        memory: Tensor,
        mask: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> StepOutput:
        """One step.

        Args:
            inputs: ``(B, Din)`` step input.
            state: from ``init_state`` or the previous step.
            memory: ``(B, S, Dm)``.
            mask: ``(B, S)`` memory key padding, ``True`` = real.
            cache: ``precompute(memory)``, to avoid re-projecting keys every step.

        Returns:
            ``StepOutput(output (B, O), state, weights (B, S), context (B, Dc))``.
        """
        if self.style == "bahdanau":
            context, weights, attention = self._attend(state.hidden[-1], memory, mask, cache, state)
            h, hidden, cell = self._cell(torch.cat([inputs, context], dim=-1), state)
            output = torch.tanh(self.out(torch.cat([h, context, inputs], dim=-1)))
        else:
            x = torch.cat([inputs, state.feed], dim=-1) if self.input_feeding else inputs
            h, hidden, cell = self._cell(x, state)
            context, weights, attention = self._attend(h, memory, mask, cache, state)
            output = torch.tanh(self.out(torch.cat([context, h], dim=-1)))
        output = self.drop(output)
        feed = output if self.input_feeding else None
        return StepOutput(output, RNNState(hidden, cell, feed, attention), weights, context)


class AttentionGRUDecoder(nn.Module):
    """Token decoder: embedding -> ``AttentionRNNDecoderStep`` -> vocabulary logits.

    The memory can be any sequence of vectors: encoder states of a sentence, CNN image
    regions ``(B, H·W, C)`` or audio frames. ``cell="lstm"`` gives an LSTM decoder.

    Args:
        vocab_size: output vocabulary ``V``.
        embed_dim: token embedding size.
        hidden_dim: cell size.
        memory_dim: memory size ``Dm``.
        attention: registered attention name.
        padding_idx: embedding padding index.
        dropout: dropout on embeddings and step outputs.
        **step_options: other ``AttentionRNNDecoderStep`` arguments (``style``, ``cell``,
            ``gate``, ``num_layers``, ``output_dim``, attention options...).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        memory_dim: int,
        attention: str = "additive",
        padding_idx: int | None = 0,
        dropout: float = 0.0,
        **step_options: Any,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.step_module = AttentionRNNDecoderStep(
            embed_dim, hidden_dim, memory_dim, attention, dropout=dropout, **step_options
        )
        self.generator = nn.Linear(self.step_module.output_dim, vocab_size)
        self.drop = nn.Dropout(dropout)

    def init_state(self, memory: Tensor, mask: Tensor | None = None) -> RNNState:
        """See ``AttentionRNNDecoderStep.init_state``."""
        return self.step_module.init_state(memory, mask)

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        """See ``AttentionRNNDecoderStep.precompute``."""
        return self.step_module.precompute(memory)

    def step(
        self,
        tokens: Tensor,
        state: RNNState,
        memory: Tensor,
        mask: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, RNNState, Tensor]:
        """``tokens (B,)`` -> ``logits (B, V)``, new state, ``weights (B, S)``."""
        x = self.drop(self.embedding(tokens))  # (B, E)
        out = self.step_module(x, state, memory, mask, cache)
        return self.generator(out.output), out.state, out.weights

    def forward(
        self,
        tokens: Tensor,
        memory: Tensor,
        mask: Tensor | None = None,
        state: RNNState | None = None,
    ) -> tuple[Tensor, Tensor, RNNState]:
        """Teacher-forced decoding of ``tokens (B, T)`` (inputs, i.e. shifted right).

        Returns:
            ``logits (B, T, V)``, ``weights (B, T, S)`` and the final state (with
            ``coverage`` attention its ``attention`` is the coverage ``Σ_t weights[:, t]``).
            See et al.'s coverage loss is ``toolkit.attention.coverage_loss(weights,
            step_mask)``, for a recipe to add as ``coverage_loss_weight * loss``.
        """
        state = self.init_state(memory, mask) if state is None else state
        cache = self.precompute(memory)
        # as ``step`` at every position, with the embedding and the vocabulary projection
        # applied once to the whole sequence (one large product instead of T small ones)
        inputs = self.drop(self.embedding(tokens)).unbind(1)  # T x (B, E)
        outputs, weights = [], []
        for x in inputs:
            out = self.step_module(x, state, memory, mask, cache)
            state = out.state
            outputs.append(out.output)
            weights.append(out.weights)
        logits = self.generator(torch.stack(outputs, dim=1))
        return logits, torch.stack(weights, dim=1), state


AttentionRNNDecoder = AttentionGRUDecoder
