"""A callback that slows training down, so a test can kill a run between two checkpoints."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class SlowBatches(pl.Callback):
    """Sleep ``seconds`` after every training batch (does not touch any random state)."""

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)
