"""The LightningModule base every recipe derives from: optimiser/scheduler from config,
throughput counters, and the hooks the train/evaluate entry points rely on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


class RecipeModule(pl.LightningModule):
    """Base class of recipe modules.

    Subclasses build ``self.model`` in ``__init__`` from ``cfg`` (a plain dict, the resolved
    run config; saved in the checkpoint with ``data_state`` so ``load_from_checkpoint``
    rebuilds the same model) and implement the steps. ``test_metrics()`` returns the final
    metric dict; ``export_attention(datamodule, out_dir, n)`` writes maps and pictures.
    """

    def __init__(self, cfg: dict[str, Any], data_state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = OmegaConf.create(cfg)
        self.data_state = data_state or {}
        self.train_samples = 0
        self.test_samples = 0
        self.test_seconds = 0.0
        self._test_t0: float | None = None

    # ----- optimisation -------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = instantiate(self.cfg.optimizer)(params=self.parameters())
        if self.cfg.get("scheduler") is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = instantiate(self.cfg.scheduler)(optimizer=optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ----- throughput ---------------------------------------------------------------
    def count_train(self, n: int) -> None:
        self.train_samples += int(n)

    def on_test_epoch_start(self) -> None:
        self.test_samples, self.test_seconds = 0, 0.0

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._test_t0 = time.perf_counter()

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._test_t0 is not None:
            self.test_seconds += time.perf_counter() - self._test_t0
        self.test_samples += self.batch_size_of(batch)

    def batch_size_of(self, batch: Any) -> int:
        if isinstance(batch, dict):
            batch = next(iter(batch.values()))
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        return int(batch.shape[0]) if torch.is_tensor(batch) else 1

    # ----- contract used by toolkit.train / toolkit.evaluate ----------------------------
    def test_metrics(self) -> dict[str, Any]:
        raise NotImplementedError

    def export_attention(self, datamodule: pl.LightningDataModule, out_dir: Path, n: int) -> dict:
        """Save attention maps (npz) and pictures (png) for ``n`` test examples; return
        attention diagnostics to merge into metrics.json."""
        return {}

    @staticmethod
    def cfg_to_dict(cfg: DictConfig) -> dict[str, Any]:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
