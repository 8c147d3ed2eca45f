"""Measured interpretability: attention rollout and erasure (faithfulness) tests.

* ``rollout``: attention rollout of per-layer self-attention maps (Abnar & Zuidema 2020).
* ``erasure``: remove the top-k inputs by attention, by gradient × input saliency and at
  random; mean drops, AOPC, and the attention / random ratio with a bootstrap interval.
* ``checkpoint``: a recipe's adapter (``recipes/<task>/interpret.py``) run on a checkpoint,
  ``interpret.json`` written in its run folder (``python -m toolkit.interpret ckpt=PATH``).
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
