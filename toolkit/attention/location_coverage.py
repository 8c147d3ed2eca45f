"""Stateful attention for decoders: ``location`` and ``coverage``.

Both score like ``additive`` (Bahdanau et al. 2015) plus one term per memory entry ``j``
computed from an attention *state* that a decoder carries from one step to the next:

* ``location`` (location-aware attention, Chorowski et al. 2015):
  ``e_j = vᵀ tanh(W s + V h_j + U f_j + b)``, ``f = F * α_{t-1}``: a 1-D convolution
  (``channels`` filters of width ``kernel_size``, no bias) of the previous step's weights.
  The state is ``α_{t-1}``; before the first step it is uniform over the unmasked memory.
* ``coverage`` (Tu et al. 2016; See et al. 2017): ``e_j = vᵀ tanh(W s + V h_j + w_c c_j +
  b)`` with the coverage ``c_j = Σ_{t'<t} α_{t'j}``, the running sum of all past weights.
  The state is ``c``; before the first step it is zero. See et al.'s coverage loss
  ``Σ_j min(α_tj, c_tj)`` is :func:`coverage_loss`.

The stateful protocol (what a type registered with ``Capabilities(stateful=True)`` provides;
code asks the registry with ``toolkit.attention.stateful(name)``):

* ``init_state(key, mask=None) -> state (*, Tk)``: the state before the first step.
* ``precompute(key) -> dict``: per-memory work reused at every step (the key projection,
  ``AdditiveAttention.precompute``).
* ``step(query, key, value, mask=None, state=None, cache=None) -> (output, weights,
  new_state)``: one decoder step, ``query (*, 1, Dq)`` -> ``output (*, 1, Dv)``,
  ``weights (*, 1, Tk)`` and the state for the next step (``next_state(state, weights)``).
* ``forward(query, key, value, mask=None, need_weights=False, state=None, cache=None)``:
  the library interface; every query of the call sees ``state`` (default: ``init_state``,
  i.e. a first step) and no new state comes back.

The state is a plain tensor ``(*, Tk)`` (batch first), so a decoder keeps it in its own
decoder state (``toolkit.nn.RNNState.attention``) and beam search reorders it with the rest
of the state (``reorder_state``: rows ``index_select``-ed, no special case). Masked memory
entries get weight 0, so they never enter the state (``α_{t-1}`` and ``c`` are 0 there).

The state couples the steps of one decoder: step ``t`` needs the weights of step ``t - 1``.
A multi-head layer (a Transformer's self- or cross-attention, which computes every position
of a sequence in one parallel pass) and attention pooling (one pass, no steps) therefore
refuse these types; recurrent decoders (``toolkit.nn.MemoryAttention``) use them.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from .additive import AdditiveAttention
from .base import _CAPTURE, Tensor, masked_softmax, normalize_mask
from .registry import Capabilities, register

# One decoder step at a time over a memory (recurrent decoders only); scores like additive.
STATEFUL = Capabilities(
    self_attention=False,
    pooling_query=False,
    stateful=True,
    mixed_widths=True,
    fast_path=False,  # the weights are always needed (they make the next state)
    test_options={"hidden_dim": 6, "chunk_elements": 48},  # additive's chunked paths too
)


class StatefulAdditiveAttention(AdditiveAttention):
    """Additive attention whose key side gets ``features(state) (*, Tk, hidden)`` added:
    the shared machinery of ``location`` and ``coverage`` (protocol: module docstring).

    Subclasses implement ``init_state``, ``next_state`` and ``features``.
    """

    def init_state(self, key: Tensor, mask: Tensor | None = None) -> Tensor:
        """The state before the first step, ``(*, Tk)`` for ``key (*, Tk, Dk)`` and a key
        padding ``mask`` broadcastable to ``(*, Tk)`` (``True`` = real)."""
        raise NotImplementedError

    def next_state(self, state: Tensor, weights: Tensor) -> Tensor:
        """The state after a step whose weights are ``weights (*, 1, Tk)``."""
        raise NotImplementedError

    def features(self, state: Tensor) -> Tensor:
        """``state (*, Tk)`` -> the key-side term ``(*, Tk, hidden)``."""
        raise NotImplementedError

    def has_fast_path(self) -> bool:
        return False  # the weights are always needed (they make the next state)

    def _attend(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        state: Tensor | None,
        cache: dict[str, Tensor] | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> ``output (*, Tq, Dv)``, ``weights (*, Tq, Tk)``, the state that was used."""
        if key.shape[-2] != value.shape[-2]:
            raise ValueError(f"key has {key.shape[-2]} steps but value has {value.shape[-2]}")
        tq, tk = query.shape[-2], key.shape[-2]
        mask = normalize_mask(mask, query.dim(), tq, tk)
        if state is None:
            # keys that some query may see (a key padding mask, whatever the mask's form)
            state = self.init_state(key, None if mask is None else mask.any(dim=-2))
        elif state.shape[-1] != tk:
            raise ValueError(
                f"{self.registry_name} attention: the state covers {state.shape[-1]} memory "
                f"entries but the keys have {tk}"
            )
        keys = cache["key"] if cache is not None else self.k_proj(key)  # (*, Tk, h)
        scores = self.projected_scores(self.q_proj(query), keys + self.features(state))
        weights = masked_softmax(scores, self.dense_mask(mask, tq, tk, query.device))
        out = torch.matmul(self.drop(weights), value)
        cap = _CAPTURE.get()
        if cap is not None:
            cap.record(self._capture_name or self.registry_name, weights)
        return out, weights, state

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        state: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The library interface with a state: every query sees ``state (*, Tk)`` (default
        ``init_state``: a first step). ``cache``: ``precompute(key)``. Use ``step`` to get
        the next state as well."""
        out, weights, _ = self._attend(query, key, value, mask, state, cache)
        return out, (weights if need_weights else None)

    def step(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        state: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One decoder step: ``query (*, 1, Dq)`` over ``key (*, Tk, Dk)`` / ``value``.

        Args:
            state: from ``init_state`` or the previous step (``None``: ``init_state``).
            cache: ``precompute(key)`` (computed here when ``None``).

        Returns:
            ``output (*, 1, Dv)``, ``weights (*, 1, Tk)`` and the state for the next step.
        """
        if query.shape[-2] != 1:
            raise ValueError(
                f"{self.registry_name} attention steps one query at a time (the next state "
                f"depends on this step's weights); got {query.shape[-2]} queries"
            )
        out, weights, state = self._attend(query, key, value, mask, state, cache)
        return out, weights, self.next_state(state, weights)


@register(
    "location",
    dataclasses.replace(
        STATEFUL,
        test_options={"hidden_dim": 6, "chunk_elements": 48, "channels": 2, "kernel_size": 3},
    ),
)
class LocationAttention(StatefulAdditiveAttention):
    """Location-aware attention (Chorowski et al. 2015): additive scores plus ``U f_j``,
    ``f = F * α_{t-1}`` (``channels`` filters of width ``kernel_size`` over the previous
    step's weights, zero-padded to keep the memory length). State: ``α_{t-1}`` ``(*, Tk)``,
    uniform over the unmasked memory before the first step. With ``F = 0`` the weights are
    those of ``additive`` with the same ``W``, ``V``, ``b``, ``v``.

    Args:
        query_dim, key_dim, hidden_dim, dropout, causal, chunk_elements: as ``additive``.
        channels: convolution filters ``k`` (Chorowski et al.: 10).
        kernel_size: filter width ``r``, odd so each window is centred on its entry.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        channels: int = 10,
        kernel_size: int = 31,
        dropout: float = 0.0,
        causal: bool = False,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__(query_dim, key_dim, hidden_dim, dropout, causal, chunk_elements)
        if channels < 1:
            raise ValueError(f"location attention: channels must be >= 1, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"location attention: kernel_size must be odd and >= 1 (a window centred on "
                f"each memory entry), got {kernel_size}"
            )
        self.channels, self.kernel_size = int(channels), int(kernel_size)
        self.conv = nn.Conv1d(
            1, self.channels, self.kernel_size, padding=self.kernel_size // 2, bias=False
        )
        self.loc_proj = nn.Linear(self.channels, self.q_proj.out_features, bias=False)

    def init_state(self, key: Tensor, mask: Tensor | None = None) -> Tensor:
        shape = key.shape[:-1]  # (*, Tk)
        real = key.new_ones(shape) if mask is None else mask.to(key.dtype).expand(shape)
        return real / real.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def next_state(self, state: Tensor, weights: Tensor) -> Tensor:
        return weights.squeeze(-2)

    def features(self, state: Tensor) -> Tensor:
        lead, tk = state.shape[:-1], state.shape[-1]
        f = self.conv(state.reshape(-1, 1, tk))  # (N, C, Tk)
        return self.loc_proj(f.transpose(1, 2)).reshape(*lead, tk, -1)  # (*, Tk, h)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channels={self.channels}, kernel_size={self.kernel_size}"


@register("coverage", STATEFUL)
class CoverageAttention(StatefulAdditiveAttention):
    """Coverage attention (Tu et al. 2016; See et al. 2017): additive scores plus
    ``w_c c_j``, the coverage ``c_j = Σ_{t'<t} α_{t'j}`` (the running sum of past weights).
    State: ``c`` ``(*, Tk)``, zero before the first step. The coverage loss ``Σ_j min(α_tj,
    c_tj)`` that See et al. add to the training loss is :func:`coverage_loss`.

    Args: as ``additive`` (``query_dim``, ``key_dim``, ``hidden_dim``, ``dropout``,
    ``causal``, ``chunk_elements``).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__(query_dim, key_dim, hidden_dim, dropout, causal, chunk_elements)
        hidden = self.q_proj.out_features
        self.coverage_weight = nn.Parameter(torch.empty(hidden))  # w_c
        nn.init.uniform_(self.coverage_weight, -(hidden**-0.5), hidden**-0.5)

    def init_state(self, key: Tensor, mask: Tensor | None = None) -> Tensor:
        # a running sum: at least float32, also under bf16/fp16 autocast
        return key.new_zeros(key.shape[:-1], dtype=torch.promote_types(key.dtype, torch.float32))

    def next_state(self, state: Tensor, weights: Tensor) -> Tensor:
        return state + weights.squeeze(-2).to(state.dtype)

    def features(self, state: Tensor) -> Tensor:
        return state.unsqueeze(-1) * self.coverage_weight  # (*, Tk, h)


def coverage_loss(weights: Tensor, step_mask: Tensor | None = None) -> Tensor:
    """See et al.'s (2017) coverage loss ``Σ_j min(α_tj, c_tj)``, ``c_t = Σ_{t'<t} α_t'``,
    averaged over the real decoder steps.

    It penalises attending again to what earlier steps already attended to. It is a function
    of the weights only, so it applies to the attention of any decoder; with ``coverage``
    attention ``c_t`` is exactly the state that step ``t`` saw.

    Args:
        weights: ``(B, T, S)`` attention of ``T`` decoder steps over ``S`` memory entries.
        step_mask: ``(B, T)``, ``True`` on real (non-padding) decoder steps; padding steps
            neither count nor add to the coverage of later steps (they come last).

    Returns:
        A scalar: the summed loss divided by the number of real steps.
    """
    if weights.dim() != 3:
        raise ValueError(f"coverage_loss takes (B, T, S) weights, got {tuple(weights.shape)}")
    if step_mask is not None:
        weights = weights * step_mask[..., None].to(weights.dtype)
    coverage = F.pad(weights.cumsum(dim=1)[:, :-1], (0, 0, 1, 0))  # (B, T, S): c_t
    per_step = torch.minimum(weights, coverage).sum(dim=-1)  # (B, T)
    steps = per_step.numel() if step_mask is None else int(step_mask.sum())
    return per_step.sum() / max(steps, 1)
