"""Lightning callbacks of the ``callbacks`` config group (``conf/callbacks/``).

``callbacks=attention_images logger=tensorboard``: after each validation epoch, log a few
attention pictures to the logger (TensorBoard ``add_image``; loggers with ``log_image``,
e.g. W&B, also work). Pictures come from the module's optional hook
``attention_images(datamodule, n) -> {name: (H, W, 3) uint8}``; a recipe without it falls
back to its ``export_attention`` pictures (the PNGs it writes for the run folder).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np

log = logging.getLogger(__name__)


def png_to_rgb(path: str | Path) -> np.ndarray:
    """A PNG as ``(H, W, 3) uint8`` (alpha dropped)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def module_attention_images(
    module: pl.LightningModule, datamodule: Any, n: int
) -> dict[str, np.ndarray]:
    """``{name: (H, W, 3) uint8}`` from the module's ``attention_images`` hook, else from the
    pictures its ``export_attention`` writes."""
    hook = getattr(module, "attention_images", None)
    if callable(hook):
        return dict(hook(datamodule, n))
    export = getattr(module, "export_attention", None)
    if not callable(export):
        return {}
    with tempfile.TemporaryDirectory(prefix="attn-images-") as tmp:
        export(datamodule, Path(tmp), n)
        return {p.stem: png_to_rgb(p) for p in sorted(Path(tmp).glob("*.png"))}


class AttentionImages(pl.Callback):
    """Log ``num_examples`` examples' attention pictures every ``every_n_epochs`` epochs.

    Args:
        num_examples: examples passed to the hook (recipes draw one picture per example or
            one picture of all of them).
        max_images: at most this many pictures per epoch.
        every_n_epochs: log on epochs ``0, k, 2k, ...``.
        tag: prefix of the image names (``attention/<name>``).
    """

    def __init__(
        self, num_examples: int = 2, max_images: int = 4, every_n_epochs: int = 1,
        tag: str = "attention",
    ) -> None:  # fmt: skip
        self.num_examples = num_examples
        self.max_images = max_images
        self.every_n_epochs = max(1, every_n_epochs)
        self.tag = tag
        self.logged: list[tuple[str, int]] = []  # (name, step) of what was logged

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        loggers = [lg for lg in trainer.loggers if _can_log_images(lg)]
        if not loggers:
            return
        datamodule = getattr(trainer, "datamodule", None)
        try:
            images = module_attention_images(pl_module, datamodule, self.num_examples)
        except Exception as err:  # noqa: BLE001 - pictures must never stop training
            log.warning("attention images skipped this epoch: %s", err)
            return
        step = int(trainer.global_step)
        for name, img in list(images.items())[: self.max_images]:
            arr = np.asarray(img)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(f"attention image {name!r}: want (H, W, 3) uint8, got "
                                 f"{arr.dtype} {arr.shape}")  # fmt: skip
            key = f"{self.tag}/{name}"
            for lg in loggers:
                _log_image(lg, key, arr, step)
            self.logged.append((key, step))


def _can_log_images(logger: Any) -> bool:
    exp = getattr(logger, "experiment", None)
    return hasattr(exp, "add_image") or callable(getattr(logger, "log_image", None))


def _log_image(logger: Any, key: str, arr: np.ndarray, step: int) -> None:
    exp = getattr(logger, "experiment", None)
    if hasattr(exp, "add_image"):  # TensorBoard SummaryWriter
        exp.add_image(key, arr, global_step=step, dataformats="HWC")
    else:
        logger.log_image(key=key, images=[arr], step=step)
