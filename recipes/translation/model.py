"""Encoder–decoder models for translation, built from toolkit blocks.

Both expose the same interface, used by the module and by ``toolkit.decoding``:
``forward(src, src_mask, tgt_in) -> (logits, cross_attention)``,
``start(src, src_mask) -> state``, ``step(prefix, state, need_weights)`` and ``reorder``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from toolkit.attention import cross_attention_for, self_attention_only, stateful
from toolkit.nn import TransformerDecoder, TransformerEncoder, build_positions
from toolkit.nn.attention_layer import reorder_cache
from toolkit.nn.rnn import AttentionGRUDecoder, reorder_search_state


class Seq2SeqTransformer(nn.Module):
    """Pre-norm Transformer encoder–decoder with one shared source/target embedding tied
    to the output projection. Self- and cross-attention are the configured type, except
    that ``attention="local"`` keeps standard ``multihead`` cross-attention (a window is a
    self-attention pattern; a band over the source means nothing) unless
    ``cross_attention`` names a type: ``attention_modules`` then lists ``local`` for the
    self-attention and ``multihead`` + ``scaled_dot`` for the cross-attention. The
    self-attention-only types (``rotary``, ``alibi``, ``relative``: positions of query and
    key in one sequence) do the same, and cannot be named as ``cross_attention``. The
    stateful types (``location``, ``coverage``: each decoder step attends with the previous
    step's weights or their running sum) are refused: a Transformer computes every position
    in one parallel pass; they are ``Seq2SeqRNN`` attention (``model=rnn``)."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 256,
        num_heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "sinusoidal",
        max_positions: int = 512,
        cross_attention: str | None = None,
        attention: str = "multihead",
        attention_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for key, name in (("attention", attention), ("model.cross_attention", cross_attention)):
            if name is not None and stateful(name):
                raise ValueError(
                    f"translation Seq2SeqTransformer: {key}={name} is stateful (each decoder "
                    "step attends with the previous step's weights or their running sum), and "
                    "a Transformer computes every position of its self- and cross-attention in "
                    f"one parallel pass. Use model=rnn attention={name} (the GRU decoder's "
                    "attention over the source), or attention=additive here."
                )
        options = dict(attention_options or {})
        self.pad_id, self.embed_dim = pad_id, embed_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=embed_dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.positions = build_positions(positions, embed_dim, max_positions, dropout)
        common = {"ffn_dim": ffn_dim, "dropout": dropout, "attention_dropout": attention_dropout}
        self.encoder = TransformerEncoder(
            encoder_layers, embed_dim, num_heads, attention=attention,
            attention_options=options, **common,
        )  # fmt: skip
        # `local` is a self-attention pattern: a band over the source makes no sense for
        # cross-attention, so that falls back to multihead unless set explicitly; so do the
        # self-attention-only types (rotary, alibi, relative), which cross-attention refuses
        # (the registry's `needs_positions` / `cross_attention` capabilities).
        cross = cross_attention or cross_attention_for(attention)
        self.decoder = TransformerDecoder(
            decoder_layers, embed_dim, num_heads, self_attention=attention,
            cross_attention=cross, self_attention_options=options,
            cross_attention_options=options if cross == attention else {}, **common,
        )  # fmt: skip
        self.cross_attention_type = cross
        self.scale = math.sqrt(embed_dim)

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * self.scale, offset=offset)

    def logits(self, x: Tensor) -> Tensor:
        return x @ self.embedding.weight.t()

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        memory, _ = self.encoder(self.embed(src), src_mask)
        return memory

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        memory = self.encode(src, src_mask)
        out, maps = self.decoder(
            self.embed(tgt_in), memory, mask=tgt_in != self.pad_id, memory_mask=src_mask,
            need_weights=need_weights,
        )  # fmt: skip
        cross = _mean_heads(maps["cross"][-1]) if maps else None
        return self.logits(out), cross

    # ----- incremental decoding -------------------------------------------------------------
    def start(self, src: Tensor, src_mask: Tensor) -> dict[str, Any]:
        return {"memory": self.encode(src, src_mask), "mask": src_mask,
                "cache": self.decoder.init_cache()}  # fmt: skip

    def step(
        self, prefix: Tensor, state: dict[str, Any], need_weights: bool = False
    ) -> tuple[Tensor, dict[str, Any], Tensor | None]:
        cache = state["cache"]
        x = self.embed(prefix[:, -1:], offset=self.decoder.cache_length(cache))
        out, maps = self.decoder(
            x, state["memory"], memory_mask=state["mask"], cache=cache, need_weights=need_weights
        )
        log_probs = self.logits(out[:, -1]).float().log_softmax(-1)
        attn = _mean_heads(maps["cross"][-1])[:, -1] if maps else None
        return log_probs, state, attn

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return reorder_cache(state, index)


class Seq2SeqRNN(nn.Module):
    """Bidirectional GRU encoder + GRU decoder attending over the source at every step
    (Bahdanau et al. 2015 with ``additive``; Luong et al. 2015 with ``dot``/``general``).
    Self-attention-only types (``rotary``, ``alibi``, ``relative``) are refused. With a
    stateful type (``location``: Chorowski et al. 2015; ``coverage``: Tu et al. 2016, See et
    al. 2017) the decoder state carries the attention state (``RNNState.attention``), so
    ``step``/``reorder`` and beam search need nothing more."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        decoder_dim: int = 512,
        encoder_layers: int = 1,
        dropout: float = 0.2,
        style: str | None = None,
        attention: str = "additive",
        attention_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if self_attention_only(attention):
            raise ValueError(
                f"translation Seq2SeqRNN: attention={attention} is self-attention only (it "
                "scores a query and a key by their positions in one sequence), and this "
                "model's only attention is the decoder state over the source. Use "
                f"model=transformer attention={attention} (its self-attention; the "
                "cross-attention is then multihead)."
            )
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = nn.GRU(
            embed_dim, hidden_dim, encoder_layers, batch_first=True, bidirectional=True,
            dropout=dropout if encoder_layers > 1 else 0.0,
        )  # fmt: skip
        self.drop = nn.Dropout(dropout)
        # style None: the decoder step feeds each type as its registration says (Luong's
        # multiplicative scores the Luong way, the rest the Bahdanau way)
        options = dict(attention_options or {})
        self.decoder = AttentionGRUDecoder(
            vocab_size, embed_dim, decoder_dim, 2 * hidden_dim, attention=attention,
            padding_idx=pad_id, dropout=dropout, style=style, **options,
        )  # fmt: skip
        self.decoder.embedding = self.embedding  # one shared subword embedding

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        lengths = src_mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.embedding(src)), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return self.drop(out)

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        memory = self.encode(src, src_mask)
        logits, weights, _ = self.decoder(tgt_in, memory, src_mask)
        return logits, weights if need_weights else None

    def start(self, src: Tensor, src_mask: Tensor) -> dict[str, Any]:
        memory = self.encode(src, src_mask)
        return {"memory": memory, "mask": src_mask,
                "rnn": self.decoder.init_state(memory, src_mask),
                "pre": self.decoder.precompute(memory)}  # fmt: skip

    def step(
        self, prefix: Tensor, state: dict[str, Any], need_weights: bool = False
    ) -> tuple[Tensor, dict[str, Any], Tensor | None]:
        logits, rnn, weights = self.decoder.step(
            prefix[:, -1], state["rnn"], state["memory"], state["mask"], state["pre"]
        )
        new = {**state, "rnn": rnn}
        return logits.float().log_softmax(-1), new, weights if need_weights else None

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return reorder_search_state(state, index)


def _mean_heads(weights: Tensor) -> Tensor:
    """``(B, H, T, S)`` -> ``(B, T, S)``; 3-D maps pass through."""
    return weights.mean(1) if weights.dim() == 4 else weights
