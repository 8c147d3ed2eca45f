"""One registry mapping attention names to their builders."""

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


def built_types(model: nn.Module) -> dict[str, int]:
    """How many modules of each registered attention type ``model`` holds (a ``multihead``
    counts once, and so does the core inside it): what a run really uses."""
    by_class = {cls: name for name, cls in _REGISTRY.items() if isinstance(cls, type)}
    counts: dict[str, int] = {}
    for module in model.modules():
        name = by_class.get(type(module))
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
