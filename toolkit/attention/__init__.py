"""The attention block library: one interface, one registry.

Every module of this package is imported here, so a type registered in a new module
(``@register(name, Capabilities(...))``) is available without editing this file.

>>> from toolkit import attention
>>> attention.available()  # doctest: +NORMALIZE_WHITESPACE
['additive', 'alibi', 'coverage', 'dot', 'general', 'linear', 'local', 'location',
 'longformer', 'multihead', 'relative', 'rotary', 'scaled_dot', 'uniform']
>>> block = attention.build("additive", query_dim=32, key_dim=48)
"""

import importlib
import pkgutil

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
from .local import LocalAttention, LocalPAttention, band_mask, blocked_band_attention
from .location_coverage import (
    CoverageAttention,
    LocationAttention,
    StatefulAdditiveAttention,
    coverage_loss,
)
from .longformer import LongformerAttention
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
    Capabilities,
    available,
    build,
    built_types,
    capabilities,
    cross_attention_for,
    get,
    implemented_type,
    position_reason,
    register,
    self_attention_only,
    stateful,
    types_with,
    unregister,
)
from .uniform import UniformAttention


def _import_modules() -> None:
    """Import every module of the package (``__path__``): each registers the types it
    defines, so a new type needs no import here."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_modules()


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
    "Capabilities",
    "CoverageAttention",
    "DotAttention",
    "GeneralAttention",
    "LinearAttention",
    "LocalAttention",
    "LocalPAttention",
    "LocationAttention",
    "LongformerAttention",
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
    "blocked_band_attention",
    "build",
    "built_types",
    "capabilities",
    "capture_attention",
    "capturing",
    "causal_mask",
    "coverage_loss",
    "cross_attention_for",
    "get",
    "implemented_type",
    "masked_softmax",
    "normalize_mask",
    "padding_mask",
    "position_reason",
    "query_key_positions",
    "register",
    "self_attention_only",
    "set_fast_path",
    "stateful",
    "types_with",
    "unregister",
]
