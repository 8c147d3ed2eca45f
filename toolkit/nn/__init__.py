"""Shared building blocks made from ``toolkit.attention``: layers, stacks, decoders, positions.

Every block takes an ``attention`` name from the registry, so one config key changes the
attention type everywhere. MiniLM lives in ``toolkit.nn.minilm`` (needs the ``pretrained``
extra) and is imported lazily from there.
"""

from .attention_layer import (
    build_attention_layer,
    cached_attention,
    project_key_value,
    project_query,
    reorder_cache,
)
from .builders import PRESETS, TransformerConfig, decoder_from_config, encoder_from_config
from .memory_attention import AttentionPooling, LocalPAttention, MemoryAttention
from .positions import (
    LearnedPositionalEmbedding,
    NoPositions,
    SinusoidalPositionalEncoding,
    build_positions,
    sinusoidal_table,
)
from .rnn import (
    AttentionGRUDecoder,
    AttentionRNNDecoder,
    AttentionRNNDecoderStep,
    RNNState,
    StepOutput,
    reorder_search_state,
    reorder_state,
)
from .transformer import (
    FeedForward,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    build_activation,
)

__all__ = [
    "PRESETS",
    "AttentionGRUDecoder",
    "AttentionPooling",
    "AttentionRNNDecoder",
    "AttentionRNNDecoderStep",
    "FeedForward",
    "LearnedPositionalEmbedding",
    "LocalPAttention",
    "MemoryAttention",
    "NoPositions",
    "RNNState",
    "SinusoidalPositionalEncoding",
    "StepOutput",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "build_activation",
    "build_attention_layer",
    "build_positions",
    "cached_attention",
    "decoder_from_config",
    "encoder_from_config",
    "project_key_value",
    "project_query",
    "reorder_cache",
    "reorder_search_state",
    "reorder_state",
    "sinusoidal_table",
]
