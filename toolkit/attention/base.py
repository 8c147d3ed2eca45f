"""The attention interface, mask helpers and attention-map capture.

Every block maps ``(query, key, value, mask=None, need_weights=False)`` with shapes
``(*, Tq, Dq)``, ``(*, Tk, Dk)``, ``(*, Tk, Dv)`` to ``(output, weights | None)``:
``output`` is ``(*, Tq, Dv)`` and ``weights`` ``(*, Tq, Tk)`` (``*`` is the batch, or
batch and heads). Masks are boolean, ``True`` = may attend.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Capabilities

Tensor = torch.Tensor

_CAPTURE: contextvars.ContextVar[AttentionCapture | None] = contextvars.ContextVar(
    "attention_capture", default=None
)


class AttentionCapture:
    """Attention maps collected during a forward pass, by module name, one entry per call."""

    def __init__(self, detach: bool = True, to_cpu: bool = False) -> None:
        self.maps: dict[str, list[Tensor]] = {}
        self.detach = detach
        self.to_cpu = to_cpu

    def record(self, name: str, weights: Tensor) -> None:
        if self.detach:
            weights = weights.detach()
        if self.to_cpu:
            weights = weights.cpu()
        self.maps.setdefault(name, []).append(weights)

    def names(self) -> list[str]:
        return list(self.maps)

    def __getitem__(self, name: str) -> list[Tensor]:
        return self.maps[name]


@contextlib.contextmanager
def capture_attention(
    model: nn.Module | None = None, detach: bool = True, to_cpu: bool = False
) -> Iterator[AttentionCapture]:
    """Collect every attention map computed inside the block.

    Blocks switch to their eager path while capturing, so a model trained on a fused kernel
    still yields its weights. With ``model`` given, maps are keyed by module path.
    """
    if model is not None:
        modules = dict(model.named_modules())
        for name, module in modules.items():
            if isinstance(module, AttentionBase):
                # a multihead block records through its core: name it after the block
                # (also when the block is ``model`` itself, whose core's path is "core")
                parent_name, _, leaf = name.rpartition(".")
                parent = modules.get(parent_name)
                if leaf == "core" and getattr(parent, "core", None) is module:
                    name = parent_name or getattr(parent, "registry_name", "")
                module._capture_name = name or module.registry_name
    cap = AttentionCapture(detach=detach, to_cpu=to_cpu)
    token = _CAPTURE.set(cap)
    try:
        yield cap
    finally:
        _CAPTURE.reset(token)


def capturing() -> bool:
    """Whether an attention capture is active."""
    return _CAPTURE.get() is not None


def padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` boolean mask, ``True`` on real positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def causal_mask(tq: int, tk: int | None = None, device: torch.device | None = None) -> Tensor:
    """``(Tq, Tk)`` mask letting query ``i`` see keys ``j <= i + (Tk - Tq)``.

    Aligning to the end makes it right for incremental decoding, where the last ``Tq``
    queries meet all ``Tk`` cached keys.
    """
    tk = tq if tk is None else tk
    i = torch.arange(tq, device=device)[:, None]
    j = torch.arange(tk, device=device)[None, :]
    return j <= i + (tk - tq)


def normalize_mask(mask: Tensor | None, score_ndim: int, tq: int, tk: int) -> Tensor | None:
    """Make ``mask`` broadcastable to scores of ``score_ndim`` dims ``(B, [H,] Tq, Tk)``.

    A 2-D mask is a key-padding mask ``(B, Tk)``; a 3-D one is ``(B, Tq|1, Tk)``; a 4-D one
    is ``(B, H|1, Tq|1, Tk)``. Singleton axes are inserted after the batch axis.
    """
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"attention masks are boolean (True = may attend), got {mask.dtype}")
    if mask.dim() == 1:
        raise ValueError("a 1-D mask is ambiguous: pass (B, Tk) for key padding")
    if mask.dim() == 2:
        mask = mask[:, None, :]
    while mask.dim() < score_ndim:
        mask = mask.unsqueeze(1)
    if mask.dim() > score_ndim:
        raise ValueError(f"mask has {mask.dim()} dims but scores have {score_ndim}")
    if mask.shape[-1] != tk or mask.shape[-2] not in (1, tq):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not fit (Tq={tq}, Tk={tk}) attention"
        )
    return mask


def combine_masks(mask: Tensor | None, other: Tensor | None) -> Tensor | None:
    if mask is None:
        return other
    if other is None:
        return mask
    return mask & other


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis; masked keys get exactly 0, fully masked rows are all 0."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    # A fully masked row is NaN after softmax; every entry of it is masked, so this zeroes it
    # (and zeroes its gradient too).
    return weights.masked_fill(~mask, 0.0)


class AttentionBase(nn.Module):
    """Base class: picks the fused path when weights are not needed, eager maths otherwise.

    Subclasses implement ``eager(query, key, value, mask) -> (output, weights)`` and may
    implement ``fast(query, key, value, mask) -> output``. ``mask`` arrives normalised to the
    score rank (see ``normalize_mask``) and already combined with the causal mask when the
    block needs a dense one.
    """

    registry_name = "base"
    # What the type can do: ``register(name, Capabilities(...))`` sets both attributes on the
    # registered class; the registry answers by name (``toolkit.attention.capabilities``).
    capabilities = Capabilities()

    def __init__(self, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.causal = causal
        self.fast_path = True  # set False to force the eager maths everywhere
        self._capture_name: str | None = None

    def has_fast_path(self) -> bool:
        return type(self).fast is not AttentionBase.fast

    def fast(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def eager(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def dense_mask(self, mask: Tensor | None, tq: int, tk: int, device: torch.device) -> Tensor:
        """The user mask combined with the causal mask (if any)."""
        if self.causal:
            return combine_masks(mask, causal_mask(tq, tk, device))
        return mask

    def drop(self, weights: Tensor) -> Tensor:
        return F.dropout(weights, self.dropout, self.training) if self.dropout > 0 else weights

    def precompute(self, key: Tensor) -> dict[str, Tensor]:
        """Work on the keys alone that a caller attending many times over the same keys (a
        decoder, step by step) does once and passes back as ``forward(..., cache=)``; ``{}``
        when the type has none. A type that returns entries takes ``cache`` in ``eager``."""
        return {}

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query (*, Tq, Dq)`` over ``key (*, Tk, Dk)`` / ``value (*, Tk, Dv)``.

        ``cache``: ``precompute(key)`` of these keys (the eager maths then reuses it).
        Returns ``output (*, Tq, Dv)`` and ``weights (*, Tq, Tk)`` when ``need_weights``.
        """
        if key.shape[-2] != value.shape[-2]:
            raise ValueError(f"key has {key.shape[-2]} steps but value has {value.shape[-2]}")
        cap = _CAPTURE.get()
        mask = normalize_mask(mask, query.dim(), query.shape[-2], key.shape[-2])
        slow = need_weights or cap is not None or not (self.fast_path and self.has_fast_path())
        if cache or slow:  # cached keys are read by the eager maths
            extra = {"cache": cache} if cache else {}
            out, weights = self.eager(query, key, value, mask, **extra)
            if cap is not None:
                cap.record(self._capture_name or self.registry_name, weights)
            return out, (weights if need_weights else None)
        return self.fast(query, key, value, mask), None

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, causal={self.causal}"


def zero_fully_masked(out: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the outputs of queries that may attend to nothing (fused kernels give NaN/mean)."""
    if mask is None:
        return out
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., Tq|1, 1)
    if not bool(empty.any()):
        return out
    return out.masked_fill(empty, 0.0)
