"""Measured interpretability: attention rollout and erasure (faithfulness) tests.

* ``rollout``: attention rollout of per-layer self-attention maps (Abnar & Zuidema 2020).
* ``erasure``: remove the top-k inputs by attention, by gradient × input saliency and at
  random; mean drops, AOPC, and the attention / random ratio with a bootstrap interval.
* ``command``: ``python -m toolkit.interpret ckpt=PATH`` runs a recipe's adapter
  (``recipes/<task>/interpret.py``) and writes ``interpret.json`` in the run folder.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ErasureResults": "erasure",
    "erasure_drops": "erasure",
    "grad_x_input": "erasure",
    "remove_top": "erasure",
    "summarize": "erasure",
    "attention_rollout": "rollout",
    "fuse_heads": "rollout",
}


def __getattr__(name: str) -> Any:  # lazy: `python -m toolkit.interpret --help` needs no torch
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ErasureResults",
    "attention_rollout",
    "erasure_drops",
    "fuse_heads",
    "grad_x_input",
    "remove_top",
    "summarize",
]
