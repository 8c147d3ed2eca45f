"""One registry mapping attention names to their builders, and ``built_types``: which
registered types a model really holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make a block buildable as ``build(name, ...)``."""

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention type {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def available() -> list[str]:
    """The registered attention names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown attention type {name!r}; valid choices: {', '.join(available())}"
        ) from None


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the attention block registered as ``name`` with its keyword options."""
    builder = get(name)
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise TypeError(f"attention {name!r}: {err}") from err


def self_attention_only(name: str) -> bool:
    """Whether the registered type ``name`` scores a query and a key by their positions in one
    sequence (``rotary``, ``alibi``, ``relative``; the class says ``self_attention_only =
    True``). Such a type means nothing for cross-attention over a memory, one RNN query over a
    memory or a learned pooling query, and those uses refuse it (or, in the model builders,
    fall back to ``multihead`` cross-attention)."""
    return bool(getattr(get(name), "self_attention_only", False))


def stateful(name: str) -> bool:
    """Whether the registered type ``name`` carries an attention state from one decoder step
    to the next (``location``: the previous step's weights; ``coverage``: the running sum of
    all past weights; the class says ``stateful = True``; the protocol is described in
    ``toolkit.attention.location_coverage``). Such a type is one query step over a memory:
    recurrent decoders (``toolkit.nn.MemoryAttention``, ``AttentionRNNDecoderStep``) keep its
    state in their decoder state; a multi-head layer (Transformer self- or cross-attention, which
    computes every position in one parallel pass) and attention pooling refuse it."""
    return bool(getattr(get(name), "stateful", False))


def implemented_type(cls: type) -> str | None:
    """The registered attention type that instances of ``cls`` implement, or ``None``.

    A registered class implements its own name. Any other module class that computes a
    registered type's maths in another form (e.g. ``toolkit.nn.LocalPAttention``, the
    single-query form of ``local``) declares it in its body as
    ``attention_type = "<registered name>"``. The declaration is read from the class's own
    ``__dict__`` only: a subclass, which may change the maths, inherits neither that
    attribute nor the registered name (``registry_name``) here; it counts only when it is
    registered or declares ``attention_type`` itself.

    Raises:
        ValueError: the class declares a name that is not registered.
    """
    for name, registered in _REGISTRY.items():
        if registered is cls:
            return name
    declared = vars(cls).get("attention_type")
    if declared is None:
        return None
    if declared not in _REGISTRY:
        raise ValueError(
            f"{cls.__qualname__}.attention_type = {declared!r} is not a registered attention "
            f"type; valid choices: {', '.join(available())}"
        )
    return declared


def built_types(model: nn.Module) -> dict[str, int]:
    """How many modules of each registered attention type ``model`` holds: what a run really
    uses (``metrics.json`` -> ``attention_modules``).

    Every module found by ``model.modules()`` whose class ``implemented_type`` names counts
    once under that name: registered blocks and the classes that declare
    ``attention_type`` (``LocalPAttention`` counts as ``local``). A ``multihead`` layer
    counts once, and so does the core inside it (``multihead`` + ``scaled_dot`` for
    standard MHA, ``multihead`` + ``local`` for multi-head local attention). Wrappers that
    only hold such a module (``MemoryAttention``, ``AttentionPooling``) are not counted.
    """
    counts: dict[str, int] = {}
    names: dict[type, str | None] = {}
    for module in model.modules():
        cls = type(module)
        if cls not in names:
            names[cls] = implemented_type(cls)
        name = names[cls]
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
