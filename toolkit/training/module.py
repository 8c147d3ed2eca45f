"""The LightningModule base every recipe derives from: optimiser and scheduler from the
config, throughput counters, the training clock of the learning curves, and the hooks
``toolkit.train``, ``toolkit.evaluate`` and ``toolkit.predict`` rely on."""

from __future__ import annotations

import functools
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
    metric dict; ``export_attention(datamodule, out_dir, n)`` writes maps and pictures;
    ``per_example()`` returns the test set scored per example (``per_example.jsonl.gz``,
    toolkit/runs.py), which a recipe sets in ``on_test_epoch_end`` as ``self._per_example``.
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
        self._per_example: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._clock_start: float | None = None  # training clock of `time/elapsed_s`
        self._elapsed_before = 0.0  # its reading in the checkpoint a run resumed from

    # ----- optimisation -------------------------------------------------------------
    def configure_optimizers(self):
        build = instantiate(self.cfg.optimizer)
        if self._fused_conflicts_with_clipping():
            # Lightning refuses to clip gradients of a fused optimizer under mixed precision
            # (it assumes the fused step unscales); the unfused step computes the same update.
            build = functools.partial(build, fused=False)
        optimizer = build(params=self.parameters())
        if self.cfg.get("scheduler") is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = instantiate(self.cfg.scheduler)(optimizer=optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _fused_conflicts_with_clipping(self) -> bool:
        if self._trainer is None or not self.cfg.optimizer.get("fused"):
            return False
        mixed = "mixed" in str(self.trainer.precision)
        return mixed and bool(self.trainer.gradient_clip_val)

    # ----- throughput ---------------------------------------------------------------
    def count_train(self, n: int) -> None:
        self.train_samples += int(n)

    # ----- the learning-curve clock: `time/elapsed_s` in the CSV log ----------------------
    def on_train_start(self) -> None:
        self._clock_start = time.perf_counter() - self._elapsed_before

    def elapsed_seconds(self) -> float:
        """Wall-clock seconds since training started (the sanity check left out); a
        resumed run continues from its checkpoint's reading."""
        if self._clock_start is None:
            return self._elapsed_before
        return time.perf_counter() - self._clock_start

    def on_validation_start(self) -> None:
        # beside each validation pass's metrics (same CSV row): the time axis of the
        # report's learning curves (docs/run-folder.md)
        if self._clock_start is not None and not self.trainer.sanity_checking:
            self.log("time/elapsed_s", self.elapsed_seconds())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["elapsed_s"] = self.elapsed_seconds()
        # The loggers' pending rows reach the disk before the checkpoint does, so a run
        # killed after this checkpoint and resumed from it keeps the rows of every step the
        # checkpoint covers (the CSV logger otherwise writes every few steps only).
        if self._trainer is not None:
            for logger in self.trainer.loggers:
                logger.save()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._elapsed_before = float(checkpoint.get("elapsed_s", 0.0))

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

    def per_example(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """``(header, records)`` of the last test pass, one record per test example (the
        ``per_example.jsonl.gz`` format of toolkit/runs.py); None before a test pass."""
        return self._per_example

    def export_attention(self, datamodule: pl.LightningDataModule, out_dir: Path, n: int) -> dict:
        """Save attention maps (npz) and pictures (png) for ``n`` test examples; return
        attention diagnostics to merge into metrics.json."""
        return {}

    @staticmethod
    def cfg_to_dict(cfg: DictConfig) -> dict[str, Any]:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

    # ----- inference (toolkit.predict) ------------------------------------------------------
    def predict_records(
        self, inputs: list[Any], out_dir: Path | None = None, plot: bool = False, **options: Any
    ) -> list[dict[str, Any]]:
        """Predictions for raw inputs (text lines, image or audio paths): one JSON-able
        record per input (prediction + scores), in input order; attention maps go to
        ``out_dir`` as npz (and PNG with ``plot``), named in the record.

        The default delegates to ``predict_records(module, inputs, out_dir, plot, **options)``
        in the recipe package's ``predict`` module (``recipes/<name>/predict.py``; the hooks
        are listed in ``toolkit/recipe_hooks.py``), so a recipe adds inference without
        touching its module class or the toolkit.
        """
        from toolkit.recipe_hooks import hook

        return hook(self, "predict", "predict_records")(self, inputs, out_dir, plot, **options)

    @property
    def input_kind(self) -> str:
        """What toolkit.predict feeds predict_records: ``"text"`` lines, or ``"image"`` /
        ``"audio"`` paths (the recipe's ``predict.INPUT_KIND``; text when it has none)."""
        from toolkit.recipe_hooks import hook

        return str(hook(self, "predict", "INPUT_KIND", "text"))
