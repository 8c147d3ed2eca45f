"""Small builder functions (torchtune style): a config in, an assembled stack out.

>>> enc = encoder_from_config({"num_layers": 2, "embed_dim": 64, "num_heads": 4,
...                            "attention": "local", "attention_options": {"window": 8}})
>>> dec = decoder_from_config(TransformerConfig.from_name("tiny", attention="linear"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from toolkit.attention import cross_attention_for

from .transformer import TransformerDecoder, TransformerEncoder


@dataclass
class TransformerConfig:
    """Hyper-parameters shared by encoder and decoder stacks.

    ``attention`` names the self-attention everywhere; ``cross_attention`` (default: the
    same) the decoder's attention over the memory.
    """

    num_layers: int = 2
    embed_dim: int = 128
    num_heads: int = 4
    ffn_dim: int | None = None
    dropout: float = 0.1
    attention_dropout: float | None = None
    attention: str = "multihead"
    attention_options: dict[str, Any] = field(default_factory=dict)
    cross_attention: str | None = None
    cross_attention_options: dict[str, Any] | None = None
    memory_dim: int | None = None
    activation: str = "gelu"
    norm_first: bool = True
    layer_norm_eps: float = 1e-5
    bias: bool = True

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> TransformerConfig:
        """A preset (``tiny``, ``small``, ``base``, ``minilm``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid choices: {', '.join(PRESETS)}")
        return dataclasses.replace(cls(**PRESETS[name]), **overrides)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> TransformerConfig:
        """From a dict or an OmegaConf ``DictConfig``; unknown keys list the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - names
        if unknown:
            raise ValueError(
                f"unknown transformer config keys {sorted(unknown)}; valid keys: {sorted(names)}"
            )
        values = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}
        return cls(**values)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"num_layers": 2, "embed_dim": 64, "num_heads": 4, "ffn_dim": 128},
    "small": {"num_layers": 4, "embed_dim": 256, "num_heads": 4, "ffn_dim": 1024},
    "base": {"num_layers": 6, "embed_dim": 512, "num_heads": 8, "ffn_dim": 2048},
    "minilm": {
        "num_layers": 6,
        "embed_dim": 384,
        "num_heads": 12,
        "ffn_dim": 1536,
        "norm_first": False,
        "layer_norm_eps": 1e-12,
    },
}


def _as_config(cfg: TransformerConfig | Mapping[str, Any]) -> TransformerConfig:
    return cfg if isinstance(cfg, TransformerConfig) else TransformerConfig.from_mapping(cfg)


def _common(c: TransformerConfig) -> dict[str, Any]:
    return {
        "ffn_dim": c.ffn_dim,
        "dropout": c.dropout,
        "attention_dropout": c.attention_dropout,
        "activation": c.activation,
        "norm_first": c.norm_first,
        "layer_norm_eps": c.layer_norm_eps,
        "bias": c.bias,
    }


def encoder_from_config(cfg: TransformerConfig | Mapping[str, Any]) -> TransformerEncoder:
    """Build a ``TransformerEncoder`` from a ``TransformerConfig`` or a mapping of its fields."""
    c = _as_config(cfg)
    return TransformerEncoder(
        c.num_layers,
        c.embed_dim,
        c.num_heads,
        attention=c.attention,
        attention_options=c.attention_options,
        **_common(c),
    )


def decoder_from_config(cfg: TransformerConfig | Mapping[str, Any]) -> TransformerDecoder:
    """Build a ``TransformerDecoder``; cross-attention defaults to the self-attention type.

    Except a type that needs the query's position (``needs_positions``): ``local``'s window
    is anchored at the query's own position, which has no counterpart in a memory of another
    length, so such a decoder attends over the memory with standard ``multihead`` unless
    ``cross_attention`` says otherwise. The self-attention-only types among them
    (``rotary``, ``alibi``, ``relative``: ``cross_attention=False``) cannot be the
    cross-attention at all.
    ``cross_attention_options`` default to ``attention_options`` only when the cross type is
    the same as the self type (options of one core rarely fit another).
    """
    c = _as_config(cfg)
    cross = c.cross_attention or cross_attention_for(c.attention)
    cross_options = c.cross_attention_options
    if cross_options is None:
        cross_options = c.attention_options if cross == c.attention else {}
    return TransformerDecoder(
        c.num_layers,
        c.embed_dim,
        c.num_heads,
        self_attention=c.attention,
        cross_attention=cross,
        self_attention_options=c.attention_options,
        cross_attention_options=cross_options,
        memory_dim=c.memory_dim,
        **_common(c),
    )
