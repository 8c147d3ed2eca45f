"""Attention diagnostics: entropy of attention distributions and mass on marked tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Tensor = torch.Tensor


def attention_entropy(weights: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Entropy (nats) of each attention row and its value normalised by ``log(#keys)``.

    Args:
        weights: ``(*, Tk)`` distributions (rows sum to 1 over unmasked keys).
        mask: ``(*, Tk)`` boolean, True on keys that could be attended.

    Returns:
        ``entropy (*)`` and ``normalised (*)`` in [0, 1] (0 = one key, 1 = uniform); rows
        with a single key have normalised entropy 0.
    """
    w = weights.float().clamp_min(0)
    ent = -(w * torch.log(w.clamp_min(1e-12))).sum(-1)
    n = mask.sum(-1).float() if mask is not None else torch.full_like(ent, w.shape[-1])
    norm = ent / torch.log(n.clamp_min(2.0))
    return ent, torch.where(n > 1, norm, torch.zeros_like(norm))


def marked_mass(
    weights: Sequence[Sequence[float]], marks: Sequence[Sequence[bool]]
) -> dict[str, float]:
    """Share of attention on marked tokens versus their share of tokens.

    For sentiment: marks = token is in the VADER lexicon. ``lift`` > 1 means the model
    attends to marked tokens more than their frequency alone would give.
    """
    mass = total = marked = count = 0.0
    for w, m in zip(weights, marks, strict=True):
        for wi, mi in zip(w, m, strict=True):
            total += wi
            count += 1
            if mi:
                mass += wi
                marked += 1
    mass_share = mass / total if total else float("nan")
    token_share = marked / count if count else float("nan")
    lift = mass_share / token_share if token_share else float("nan")
    return {"mass": mass_share, "token_share": token_share, "lift": lift}


def uniform_entropy(n: int) -> float:
    return math.log(n) if n > 0 else 0.0


def peak_indices(weights, seed: int = 0) -> np.ndarray:
    """The peak position of each row of ``weights (..., S)``; a row whose maximum is shared
    by several positions (uniform attention, say) gets one of them drawn at random (seeded),
    never simply the first, so stuck or uniform attention cannot look aligned."""
    w = np.asarray(weights.float().cpu() if isinstance(weights, Tensor) else weights, float)
    flat = w.reshape(-1, w.shape[-1])
    rng = np.random.default_rng(seed)
    top = flat.max(axis=-1, keepdims=True)
    tied = flat >= top - 1e-6 * np.maximum(np.abs(top), 1e-12)
    peaks = np.empty(len(flat), dtype=np.int64)
    for i, row in enumerate(tied):
        choices = np.flatnonzero(row)
        peaks[i] = choices[0] if len(choices) == 1 else rng.choice(choices)
    return peaks.reshape(w.shape[:-1])


def monotonicity(weights: Tensor, seed: int = 0) -> float:
    """Share of consecutive output steps whose attention peak does not move backwards.

    ``weights (T_out, T_in)`` of one sequence (a cross-attention alignment). A diagonal or
    otherwise monotone alignment gives 1; peaks in random order give about
    ``0.5 + 1 / (2 T_in)``, and so does uniform attention: tied peaks are drawn at random
    (:func:`peak_indices`). Sequences with one output step give 1 (nothing can move back).
    """
    peaks = peak_indices(weights, seed)
    if peaks.size < 2:
        return 1.0
    return float((peaks[1:] >= peaks[:-1]).mean())


def diagonality(weights: Tensor) -> float:
    """Attention mass within one relative position of the main diagonal, rescaled to the
    rectangle (output step ``t`` of ``T`` maps to input ``t · S / T``); 1 = on the diagonal."""
    w = weights.float()
    t_out, t_in = w.shape[-2], w.shape[-1]
    rows = torch.arange(t_out, dtype=torch.float).unsqueeze(1) * (t_in / max(t_out, 1))
    cols = torch.arange(t_in, dtype=torch.float).unsqueeze(0)
    near = (cols - rows).abs() <= max(1.0, t_in / max(t_out, 1))
    total = w.sum()
    return float((w * near).sum() / total) if total > 0 else float("nan")
