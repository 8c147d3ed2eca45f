"""Sentence classifiers: an encoder over tokens, then attention pooling, then a linear head.

Every classifier returns ``(logits (B, C), pooling weights (B, T) | None)``; the pooling
weights are what the attention pictures and diagnostics of this recipe read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from toolkit.attention import capabilities, position_reason, stateful
from toolkit.nn import AttentionPooling, TransformerEncoder
from toolkit.nn.positions import build_positions

Tensor = torch.Tensor


def word_dropout(ids: Tensor, mask: Tensor, p: float, unk_id: int, training: bool) -> Tensor:
    """Replace real tokens by ``<unk>`` with probability ``p`` during training."""
    if not training or p <= 0:
        return ids
    drop = (torch.rand(ids.shape, device=ids.device) < p) & mask
    return ids.masked_fill(drop, unk_id)


class LexiconFeatures(nn.Module):
    """Prior polarity of each token from the VADER lexicon: ``(valence / 4, in lexicon)``.

    A fixed ``(V, 2)`` table indexed by token id (saved with the model); it lets the encoder
    know the polarity of sentiment words too rare in training to learn from scratch.
    """

    def __init__(self, vocab_tokens: list[str]) -> None:
        super().__init__()
        from toolkit.data.vader import load_vader_lexicon

        lexicon = load_vader_lexicon()
        table = torch.zeros(len(vocab_tokens), 2)
        for i, token in enumerate(vocab_tokens):
            if token in lexicon:
                table[i, 0] = lexicon[token] / 4.0
                table[i, 1] = 1.0
        self.register_buffer("table", table)

    def forward(self, ids: Tensor) -> Tensor:
        return self.table[ids]  # (B, T, 2)


def _lexicon(enabled: bool, vocab_tokens: list[str] | None) -> LexiconFeatures | None:
    if not enabled:
        return None
    if vocab_tokens is None:
        raise ValueError("lexicon features need the vocabulary (vocab_tokens)")
    return LexiconFeatures(vocab_tokens)


def refuse_stateful(model: str, attention: str) -> None:
    """``ValueError`` for a stateful type (``location``, ``coverage``) in a classifier."""
    if stateful(attention):
        raise ValueError(
            f"attention={attention} with {model}: {attention} is stateful (each decoder step "
            "attends with the previous step's weights or their running sum), and a sentence "
            "classifier has no decoder steps: its attention is the encoder's self-attention and "
            "a one-pass pooling query. Use attention=additive (the same scores without a "
            f"state), or {attention} in a recurrent decoder (translation model=rnn, captioning "
            "model=lstm)."
        )


class _Classifier(nn.Module):
    """Shared pooling + head. The stateful types (``location``, ``coverage``) are refused by
    every classifier (``refuse_stateful``): there are no decoder steps to carry a state."""

    def _init_head(
        self,
        dim: int,
        num_classes: int,
        attention: str,
        attention_options: dict[str, Any] | None,
        num_heads: int,
        dropout: float,
        pooling_only: bool = False,
    ) -> None:
        options = dict(attention_options or {})
        caps = capabilities(attention)
        # Types that cannot pool with a learned query (``pooling_query=False``; the stateful
        # ones were refused before): `local` (no position to centre a window on) and the
        # self-attention-only types (rotary, alibi, relative).
        if not caps.pooling_query:
            if pooling_only:  # the run would record the type and use something else
                raise ValueError(
                    f"attention={attention} with {type(self).__name__}: this model's only "
                    "attention of the run's type is its pooling, whose learned query has no "
                    f"position in the sentence, and {position_reason(attention)}. Use "
                    f"model=transformer attention={attention} ({attention} self-attention in "
                    "the encoder) or another attention type."
                )
            # Pool with scaled dot-product; the type shapes the Transformer encoder's
            # self-attention (metrics.json `attention_modules` lists both).
            attention, options = "scaled_dot", {}
        if capabilities(attention).layer:
            options.setdefault("num_heads", num_heads)
        else:
            options.pop("num_heads", None)
        self.pool = AttentionPooling(dim, attention=attention, **options)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def classify(
        self, states: Tensor, mask: Tensor, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        pooled, weights = self.pool(states, mask, need_weights=need_weights)  # (B, D), (B, T)
        return self.head(pooled), weights


class RNNClassifier(_Classifier):
    """Embedding -> bidirectional GRU/LSTM -> attention pooling -> linear.

    Args:
        vocab_size, num_classes: sizes from the data.
        attention: registered attention type of the pooling; ``attention_options`` its options.
        embed_dim, hidden_dim, num_layers, cell: the encoder.
        dropout: before the head and between RNN layers; ``embed_dropout`` on embeddings;
            ``word_dropout`` replaces tokens by ``<unk>`` in training.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        attention: str = "additive",
        attention_options: dict[str, Any] | None = None,
        embed_dim: int = 256,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.5,
        embed_dropout: float = 0.3,
        word_dropout: float = 0.1,
        cell: str = "gru",
        num_heads: int = 4,
        lexicon: bool = False,
        vocab_tokens: list[str] | None = None,
        pad_id: int = 0,
        unk_id: int = 1,
    ) -> None:
        super().__init__()
        refuse_stateful("RNNClassifier", attention)
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.pad_id, self.unk_id, self.word_dropout = pad_id, unk_id, word_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.embed_drop = nn.Dropout(embed_dropout)
        self.lexicon = _lexicon(lexicon, vocab_tokens)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(
            embed_dim + (2 if self.lexicon is not None else 0),
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self._init_head(
            2 * hidden_dim,
            num_classes,
            attention,
            attention_options,
            num_heads,
            dropout,
            pooling_only=True,
        )

    def forward(
        self, ids: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        ids = word_dropout(ids, mask, self.word_dropout, self.unk_id, self.training)
        x = self.embed_drop(self.embed(ids))  # (B, T, E)
        if self.lexicon is not None:
            x = torch.cat([x, self.lexicon(ids)], dim=-1)  # (B, T, E + 2)
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.classify(states, mask, need_weights)  # states (B, T, 2H)


class TransformerClassifier(_Classifier):
    """Embedding + positions -> Transformer encoder (self-attention = ``attention``) ->
    attention pooling (same type) -> linear.

    With a type that cannot pool with a learned query (``pooling_query=False`` in its
    registered capabilities) the pooling uses ``scaled_dot`` instead: for ``local`` a learned
    pooling query has no position to centre a window on, so the window shapes the encoder
    only (``attention_modules`` then lists ``local`` and ``scaled_dot``); the same holds for
    the self-attention-only types ``rotary``, ``alibi`` and ``relative`` (positions inside
    the encoder's self-attention).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        attention: str = "multihead",
        attention_options: dict[str, Any] | None = None,
        embed_dim: int = 256,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_dim: int = 512,
        dropout: float = 0.3,
        embed_dropout: float = 0.3,
        word_dropout: float = 0.1,
        positions: str = "sinusoidal",
        norm_first: bool = True,
        max_len: int = 512,
        lexicon: bool = False,
        vocab_tokens: list[str] | None = None,
        pad_id: int = 0,
        unk_id: int = 1,
    ) -> None:
        super().__init__()
        refuse_stateful("TransformerClassifier", attention)
        self.pad_id, self.unk_id, self.word_dropout = pad_id, unk_id, word_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lexicon = _lexicon(lexicon, vocab_tokens)
        self.lexicon_proj = nn.Linear(2, embed_dim) if self.lexicon is not None else None
        self.scale = embed_dim**0.5
        self.positions = build_positions(
            positions, embed_dim, max_len=max_len, dropout=embed_dropout
        )
        self.encoder = TransformerEncoder(
            num_layers=num_layers,
            embed_dim=embed_dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            dropout=dropout,
            attention=attention,
            attention_options={
                k: v for k, v in (attention_options or {}).items() if k != "num_heads"
            },
            norm_first=norm_first,
        )
        self._init_head(embed_dim, num_classes, attention, attention_options, num_heads, dropout)

    def forward(
        self, ids: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        ids = word_dropout(ids, mask, self.word_dropout, self.unk_id, self.training)
        x = self.embed(ids) * self.scale  # (B, T, E)
        if self.lexicon is not None:
            x = x + self.lexicon_proj(self.lexicon(ids))
        x = self.positions(x)
        states = self.encoder(x, mask)
        if isinstance(states, tuple):
            states = states[0]
        return self.classify(states, mask, need_weights)


class MiniLMClassifier(_Classifier):
    """all-MiniLM-L6-v2 loaded into our Transformer encoder, then pooling and a head.

    ``self_attention``: the encoder's attention type; ``None`` (default) = the run's
    ``attention`` (``multihead`` reproduces the original; another registered core swaps it
    while keeping the pretrained projections).
    ``pooling``: ``mean`` (as the sentence-transformers model was trained) or
    ``attention`` (pooling with the run's attention type).

    A run records ``attention``, so some module must use it: a ``self_attention`` other
    than ``attention`` with ``pooling="mean"`` is refused (``ValueError``), and so is
    ``attention="local"`` (or a self-attention-only type: ``rotary``, ``alibi``,
    ``relative``) when only the pooling would follow it. Types whose core has
    weights of its own (``additive``, ``general``) cannot be the encoder's (the pretrained
    model has none for them): pool with them instead (``self_attention=multihead``,
    ``pooling=attention``).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        attention: str = "multihead",
        attention_options: dict[str, Any] | None = None,
        path: str | None = None,
        self_attention: str | None = None,
        pooling: str = "mean",
        dropout: float = 0.1,
        max_len: int = 64,
        tokenizer: str = "minilm",
        vocab_tokens: list[str] | None = None,
    ) -> None:
        super().__init__()
        refuse_stateful("MiniLMClassifier", attention)
        from toolkit.nn.minilm import MiniLMEncoder

        if pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', got {pooling!r}")
        self_attention = self_attention or attention
        if self_attention != attention and pooling != "attention":
            raise ValueError(
                f"sentiment MiniLMClassifier: attention={attention} with "
                f"model.self_attention={self_attention} and model.pooling={pooling} uses no "
                f"{attention!r} module, yet the run would record it. Leave "
                f"model.self_attention=null (the encoder then uses the run's type), run "
                f"attention={self_attention}, or pool with it (model.pooling=attention)."
            )
        options = {}
        if self_attention == attention:
            options = {k: v for k, v in (attention_options or {}).items() if k != "num_heads"}
        try:
            self.encoder = MiniLMEncoder.from_pretrained(path, attention=self_attention, **options)
        except ValueError as err:
            raise ValueError(
                f"sentiment MiniLMClassifier: {err}; or pool with attention={attention} over "
                "the original encoder: model.self_attention=multihead model.pooling=attention"
            ) from err
        dim = self.encoder.hidden_size
        self.pooling = pooling
        if pooling == "attention":
            self._init_head(
                dim, num_classes, attention, attention_options, 4, dropout,
                pooling_only=self_attention != attention,
            )  # fmt: skip
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def forward(
        self, ids: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        states = self.encoder(ids, mask)  # (B, T, 384)
        if self.pooling == "attention":
            return self.classify(states, mask, need_weights)
        m = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        weights = (m.squeeze(-1) / m.sum(1)) if need_weights else None  # uniform over tokens
        return self.head(pooled), weights
