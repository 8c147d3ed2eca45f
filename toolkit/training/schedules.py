"""Learning-rate schedules as ``LambdaLR`` builders (used with ``_partial_: true`` configs)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_ratio: float = 0.05
) -> LambdaLR:
    """Linear warm-up to the base rate over ``warmup_steps``, then cosine decay to
    ``min_ratio`` × base at ``total_steps``."""
    warmup_steps = max(0, min(warmup_steps, total_steps // 2))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """Constant learning rate."""
    return LambdaLR(optimizer, lambda step: 1.0)
