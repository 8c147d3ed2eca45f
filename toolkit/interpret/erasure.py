"""Faithfulness by erasure: does removing what attention points at change the prediction?

Attention weights are often read as an explanation; Jain & Wallace (2019, "Attention is not
Explanation") showed they need not be one. The test here is the plain erasure one: per
example, remove the ``k`` inputs with the highest attention and measure how much the model's
output quantity falls, against two controls computed on the same examples:

* ``random``: ``k`` inputs drawn uniformly among the real ones (one random order per
  example, so the removed sets are nested as ``k`` grows, like the attention ones);
* ``saliency``: the ``k`` inputs with the largest gradient × input norm (the gradient of the
  same output quantity with respect to each input vector, times the vector, L2 norm per
  position).

Everything is generic over a callable ``score(batch, keep) -> (B,)``: the model's output
quantity (a probability, a log-probability) for a batch where only the inputs with
``keep[b, t] = True`` are left in; how an input is removed (masked key, unknown token, zero
features) is the caller's choice. Rankings are ``(B, T)`` importances, higher = removed
first; ``valid (B, T)`` marks the inputs that exist (padding is never removed or counted).

The summary gives, per method and ``k``, the mean drop ``score(all) - score(erased)``; the
AOPC (area over the perturbation curve, Samek et al. 2017) per method,
``1/(K + 1) · Σ_{k ∈ {0} ∪ ks} drop_k`` (the ``k = 0`` term is 0), the mean over the listed
``ks`` rather than every ``k`` up to the largest; and the ratio of mean attention drop to
mean random drop with a percentile bootstrap 95 % interval over examples (resampling whole
examples). A ratio well above 1 says attention ranks inputs better than chance for this
output; a saliency ratio beside it says how far from a gradient-based ranking it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor
ScoreFn = Callable[[Any, Tensor], Tensor]

RANDOM = "random"


def remove_top(valid: Tensor, importance: Tensor, k: int) -> Tensor:
    """``keep (B, T)``: ``valid`` without each row's ``k`` most important valid inputs (all
    of them when a row has ``k`` or fewer). Ties go to the lower position."""
    if k <= 0:
        return valid.clone()
    scores = importance.float().masked_fill(~valid, float("-inf"))
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return valid & ~(rank < k)


def random_importance(valid: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random order of each row's valid inputs, as importances ``(B, T)``."""
    noise = torch.rand(valid.shape, generator=generator, device="cpu").to(valid.device)
    return noise.masked_fill(~valid, -1.0)


def grad_x_input(inputs: Tensor, outputs: Tensor) -> Tensor:
    """Gradient × input saliency: ``inputs (B, T, D)`` in the graph of ``outputs (B,)``
    (rows independent) -> ``(B, T)``: ``‖∂ outputs_b / ∂ inputs_bt ⊙ inputs_bt‖₂``."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, allow_unused=False)
    return (grad * inputs).float().norm(dim=-1).detach()


@torch.no_grad()
def erasure_drops(
    score: ScoreFn,
    batch: Any,
    valid: Tensor,
    rankings: Mapping[str, Tensor],
    ks: Sequence[int],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Score with every input, then with the top-``k`` of each ranking removed.

    Args:
        score: ``score(batch, keep) -> (B,)``.
        batch: whatever ``score`` takes.
        valid: ``(B, T)`` real inputs.
        rankings: ``{method: (B, T) importance}``; a ``random`` control is added.
        ks: how many inputs to remove.
        generator: for the random control (a fixed seed makes runs repeatable).

    Returns:
        ``base (B,)`` and ``{method: (B, len(ks)) drops}``, ``random`` included.
    """
    valid = valid.bool()
    base = score(batch, valid).detach().float().cpu()
    methods = {**rankings, RANDOM: random_importance(valid, generator)}
    drops: dict[str, Tensor] = {}
    for name, importance in methods.items():
        if importance.shape != valid.shape:
            raise ValueError(
                f"ranking {name!r} has shape {tuple(importance.shape)}, inputs {tuple(valid.shape)}"
            )
        cols = []
        for k in ks:
            erased = score(batch, remove_top(valid, importance.to(valid.device), int(k)))
            cols.append(base - erased.detach().float().cpu())
        drops[name] = torch.stack(cols, dim=1)
    return base, drops


@dataclass
class ErasureResults:
    """Drops gathered over batches; ``groups`` (optional) says which example each row is
    part of (e.g. the words of one caption), so rows are averaged per example first."""

    ks: list[int]
    base: list[Tensor] = field(default_factory=list)
    drops: dict[str, list[Tensor]] = field(default_factory=dict)
    groups: list[Tensor] = field(default_factory=list)

    def add(self, base: Tensor, drops: Mapping[str, Tensor], groups: Tensor | None = None) -> None:
        self.base.append(base.float().cpu())
        for name, d in drops.items():
            self.drops.setdefault(name, []).append(d.float().cpu())
        if groups is not None:
            self.groups.append(torch.as_tensor(groups).long().cpu())

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.base)

    def per_example(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``base (N,)`` and ``{method: (N, K)}``, one row per example (group means)."""
        base = torch.cat(self.base).double().numpy() if self.base else np.zeros(0)
        drops = {m: torch.cat(v).double().numpy() for m, v in self.drops.items()}
        if not self.groups:
            return base, drops
        groups = torch.cat(self.groups).numpy()
        ids, inverse = np.unique(groups, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(ids)).astype(float)

        def mean(x: np.ndarray) -> np.ndarray:
            out = np.zeros((len(ids), *x.shape[1:]))
            np.add.at(out, inverse, x)
            return out / counts.reshape(-1, *([1] * (x.ndim - 1)))

        return mean(base), {m: mean(d) for m, d in drops.items()}

    def summary(self, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
        base, drops = self.per_example()
        return summarize(base, drops, self.ks, resamples=resamples, seed=seed)


def aopc(drops: np.ndarray) -> np.ndarray:
    """Per example ``(N, K) -> (N,)``: ``Σ_k drop_k / (K + 1)`` (the ``k = 0`` term is 0)."""
    return drops.sum(axis=1) / (drops.shape[1] + 1)


def ratio_of_means(
    numerator: np.ndarray, denominator: np.ndarray, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """``mean(numerator) / mean(denominator)`` over examples with a percentile bootstrap
    95 % interval (examples resampled with replacement, ``seed`` fixed). The ratio is
    ``None`` (with a ``reason``) when the mean denominator is not positive, and so is the
    interval when more than 2.5 % of the resampled denominators are not."""
    n = len(numerator)
    if n == 0:
        return {"value": None, "ci95": None, "reason": "no examples"}
    den = float(np.mean(denominator))
    if den <= 1e-12:
        return {"value": None, "ci95": None,
                "reason": f"the random drop is not positive (mean {den:.3g})"}  # fmt: skip
    value = float(np.mean(numerator)) / den
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    nums, dens = numerator[idx].mean(axis=1), denominator[idx].mean(axis=1)
    ok = dens > 1e-12
    if ok.mean() < 0.975:
        return {"value": value, "ci95": None,
                "reason": "the resampled random drop is often not positive"}  # fmt: skip
    ratios = nums[ok] / dens[ok]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return {"value": value, "ci95": [float(lo), float(hi)]}


def summarize(
    base: np.ndarray,
    drops: Mapping[str, np.ndarray],
    ks: Sequence[int],
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The JSON-ready summary of per-example ``drops`` (``{method: (N, K)}``)."""
    ks = [int(k) for k in ks]
    out: dict[str, Any] = {
        "examples": len(base),
        "ks": ks,
        "score_mean": float(np.mean(base)) if len(base) else None,
        "methods": {},
        "ratio_to_random": {},
    }
    for name, d in drops.items():
        out["methods"][name] = {
            "drop": {str(k): float(d[:, j].mean()) if len(d) else None for j, k in enumerate(ks)},
            "aopc": float(aopc(d).mean()) if len(d) else None,
        }
    if RANDOM in drops:
        rand = drops[RANDOM]
        for name, d in drops.items():
            if name == RANDOM:
                continue
            per_k = {
                str(k): ratio_of_means(d[:, j], rand[:, j], resamples, seed)
                for j, k in enumerate(ks)
            }
            per_k["aopc"] = ratio_of_means(aopc(d), aopc(rand), resamples, seed)
            out["ratio_to_random"][name] = per_k
    return out
