"""The attention block library: one interface, one registry.

>>> from toolkit import attention
>>> attention.available()  # doctest: +NORMALIZE_WHITESPACE
['additive', 'alibi', 'coverage', 'dot', 'general', 'linear', 'local', 'location',
 'multihead', 'relative', 'rotary', 'scaled_dot', 'uniform']
>>> block = attention.build("additive", query_dim=32, key_dim=48)
"""

from .additive import AdditiveAttention
from .base import (
    AttentionBase,
    AttentionCapture,
    capture_attention,
    capturing,
    causal_mask,
    masked_softmax,
    normalize_mask,
    padding_mask,
)
from .dot import DotAttention, GeneralAttention, ScaledDotAttention
from .linear import LinearAttention
from .local import LocalAttention, band_mask
from .location_coverage import (
    CoverageAttention,
    LocationAttention,
    StatefulAdditiveAttention,
    coverage_loss,
)
from .multihead import MultiHeadAttention
from .positional import (
    ALiBiAttention,
    RelativeAttention,
    RotaryAttention,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    query_key_positions,
)
from .registry import (
    available,
    build,
    built_types,
    get,
    implemented_type,
    register,
    self_attention_only,
    stateful,
)
from .uniform import UniformAttention


def set_fast_path(model, enabled: bool) -> None:
    """Switch every attention block in ``model`` to its fused (True) or eager (False) path."""
    for module in model.modules():
        if isinstance(module, AttentionBase):
            module.fast_path = enabled


__all__ = [
    "ALiBiAttention",
    "AdditiveAttention",
    "AttentionBase",
    "AttentionCapture",
    "CoverageAttention",
    "DotAttention",
    "GeneralAttention",
    "LinearAttention",
    "LocalAttention",
    "LocationAttention",
    "MultiHeadAttention",
    "RelativeAttention",
    "RotaryAttention",
    "ScaledDotAttention",
    "StatefulAdditiveAttention",
    "UniformAttention",
    "alibi_bias",
    "alibi_slopes",
    "apply_rotary",
    "available",
    "band_mask",
    "build",
    "built_types",
    "capture_attention",
    "capturing",
    "causal_mask",
    "coverage_loss",
    "get",
    "implemented_type",
    "masked_softmax",
    "normalize_mask",
    "padding_mask",
    "query_key_positions",
    "register",
    "self_attention_only",
    "set_fast_path",
    "stateful",
]
