"""The LightningModule base every recipe derives from (optimiser/scheduler from config,
throughput counters, the hooks train/evaluate/predict rely on), and the training plumbing
shared by the entry points: atomic checkpoint files with clear load errors, and exact
mid-epoch resume (data position + random state)."""

from __future__ import annotations

import functools
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Sampler


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----- checkpoints ------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, truncated, or not ours."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


SAFETENSORS_WEIGHTS = "model.safetensors"


def read_safetensors_export(path: Path) -> dict[str, Any]:
    """A ``toolkit.export format=safetensors`` folder (or its ``model.safetensors``) as the
    parts of a checkpoint that loading uses: ``state_dict`` and ``hyper_parameters`` (``cfg``
    from ``config.yaml``, ``data_state`` from ``data_state.json``). Nothing in it is code:
    tensors, YAML and JSON."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    weights = folder / SAFETENSORS_WEIGHTS if path.is_dir() else path
    parts = {"weights": weights, "config": folder / "config.yaml",
             "data_state": folder / "data_state.json"}  # fmt: skip
    for what, file in parts.items():
        if not file.is_file():
            raise CheckpointError(file, f"missing: a safetensors export needs its {what} file")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights, f"unreadable safetensors file: {err}") from None
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(parts["config"]), resolve=True)
    except Exception as err:  # noqa: BLE001 - any YAML error: one message naming the file
        raise CheckpointError(parts["config"], f"unreadable YAML: {err}") from None
    try:
        data_state = json.loads(parts["data_state"].read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(parts["data_state"], f"unreadable JSON: {err}") from None
    return {"state_dict": state, "hyper_parameters": {"cfg": cfg, "data_state": data_state}}


def read_checkpoint(path: str | os.PathLike[str], require_recipe: bool = True) -> dict[str, Any]:
    """Load a checkpoint file (or a safetensors export folder), failing with a message that
    names the file when it is missing, empty, truncated (e.g. a write killed half-way) or
    foreign (not a Lightning checkpoint of a toolkit recipe)."""
    path = Path(path)
    if (path.is_dir() and (path / SAFETENSORS_WEIGHTS).is_file()) or path.suffix == ".safetensors":
        raw = read_safetensors_export(path)
        check_stored_targets(path, raw["hyper_parameters"]["cfg"])
        return raw
    if not path.exists():
        raise CheckpointError(path, "checkpoint not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file (expected a .ckpt checkpoint)")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (a write was interrupted?)")
    try:
        # weights_only: the unpickler builds tensors and plain containers only, so a file
        # can never run code while it is read (a toolkit checkpoint holds nothing else)
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors differ by corruption; one message for all
        text = str(err)
        if "Unsupported global" in text or "GLOBAL " in text:  # a pickle that would act
            found = text.split("GLOBAL ", 1)[1].split(" ", 1)[0] if "GLOBAL " in text else "?"
            raise CheckpointError(
                path, f"refused: its pickle asks for {found}, which is not a tensor or a plain "
                "value; a checkpoint is read with torch.load(weights_only=True) and never runs "
                "code (re-export the weights with python -m toolkit.export format=safetensors)",
            ) from None  # fmt: skip
        reason = text.splitlines()[0][:200] if text else type(err).__name__
        raise CheckpointError(
            path, f"unreadable checkpoint (truncated, corrupt or not a PyTorch file): {reason}"
        ) from None
    if not isinstance(raw, dict) or "state_dict" not in raw:
        kind = type(raw).__name__
        raise CheckpointError(
            path, f"not a Lightning checkpoint (a {kind} without 'state_dict'); "
            "expected a file from a toolkit run's checkpoints/ folder",
        )  # fmt: skip
    cfg = (raw.get("hyper_parameters") or {}).get("cfg") or {}
    if require_recipe:
        module = cfg.get("recipe", {}) if isinstance(cfg, dict) else {}
        if not isinstance(module, dict) or not module.get("module"):
            raise CheckpointError(path, "not a toolkit checkpoint (no recipe in its config)")
    check_stored_targets(path, cfg)
    return raw


def allowed_targets() -> frozenset[str]:
    """Every class or function the shipped configs name (``_target_`` values and the
    recipes' ``recipe.module``): the only code a checkpoint's stored config may import.
    Config folders of recipes from elsewhere count too (``$ATTN_TOOLKIT_CONF_PATH``, the
    command's ``hydra.searchpath``: :func:`toolkit.recipe_hooks.extra_conf_dirs`)."""
    from toolkit.paths import CONF_DIR
    from toolkit.recipe_hooks import extra_conf_dirs

    return _targets_in((CONF_DIR, *map(str, extra_conf_dirs())))


@functools.lru_cache(maxsize=8)
def _targets_in(folders: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("_target_", "module"):
            found.add(node)

    for folder in folders:
        for f in sorted(Path(folder).rglob("*.yaml")):
            walk(OmegaConf.to_container(OmegaConf.load(f), resolve=False))
    return frozenset(found)


# the parts of a stored config that loading a checkpoint imports from (evaluate, predict,
# export rebuild the recipe module, its model and its data module); callbacks, logger and
# trainer are always taken from the current command, never from a file
IMPORTED_SECTIONS = ("recipe", "model", "data")


def check_stored_targets(path: str | os.PathLike[str], cfg: Any) -> None:
    """Refuse a stored config that would import anything but a registered recipe or one of
    the toolkit's configured classes (``recipe.module`` and every ``_target_`` under
    ``model`` and ``data``, the sections loading imports from), before anything is imported.

    Raises:
        CheckpointError: naming the file, the key and the refused dotted path.
    """
    allowed = allowed_targets()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                here = f"{where}.{k}" if where else str(k)
                is_target = k == "_target_" or (where == "recipe" and k == "module")
                if is_target and not (isinstance(v, str) and v in allowed):
                    raise CheckpointError(
                        path, f"refused: its config names {here}={v!r}, which is not a "
                        "registered recipe or a class of the toolkit's configs; a checkpoint "
                        "may only name those (nothing from it is imported or run)",
                    )  # fmt: skip
                walk(v, here)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    if isinstance(cfg, dict):
        for section in IMPORTED_SECTIONS:
            if section in cfg:
                walk({section: cfg[section]}, "")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file in the same folder and renamed into
    place, so a crash mid-write leaves the previous file intact, never a truncated one;
    loading names the file when it is truncated or foreign."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None):
        return read_checkpoint(path, require_recipe=False)


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest ``*.ckpt`` in ``folder`` (by modification time; temp files ignored)."""
    folder = Path(folder)
    found = [p for p in folder.glob("*.ckpt") if not p.name.startswith(".") and p.is_file()]
    if not found:
        return None
    # last.ckpt wins a tie: it is written right after the checkpoint it copies
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


# ----- exact resume: data position and random state --------------------------------------------
class ResumableBatches(Sampler[list[int]]):
    """Wraps a recipe's batch sampler so that training can resume mid-epoch exactly.

    The epoch's batch order comes from the inner sampler seeded by the trainer's epoch (not
    by how often it was iterated), batches are sharded over DDP ranks (each rank takes
    every ``world``-th batch, all ranks the same count), and after a restore the batches
    already trained in the interrupted epoch are skipped.
    """

    def __init__(self, inner: Any, rank: int = 0, world: int = 1, epoch_fn=None) -> None:
        self.inner, self.rank, self.world = inner, rank, world
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches already trained)

    def __len__(self) -> int:
        return len(self.inner) // self.world

    def __iter__(self):
        epoch = int(self.epoch_fn())
        if hasattr(self.inner, "epoch"):
            self.inner.epoch = epoch  # LengthBucketBatches seeds its shuffle with it
        elif hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)
        batches = list(self.inner)
        if self.world > 1:
            batches = batches[: len(batches) // self.world * self.world][self.rank :: self.world]
        skip = 0
        if self.resume_at is not None and self.resume_at[0] == epoch:
            skip = self.resume_at[1]
        self.resume_at = None
        return iter(batches[skip:])


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints (``state_dict``)."""

    def __init__(self, *args: Any, progress_fn=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress_fn = progress_fn

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress_fn() if self.progress_fn else (0, 0)
        return {"epoch": int(epoch), "batches": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.batch_sampler, ResumableBatches):
            self.batch_sampler.resume_at = (int(state["epoch"]), int(state["batches"]))


def resumable_loader(loader: DataLoader, trainer: pl.Trainer) -> DataLoader:
    """Rebuild a training DataLoader around :class:`ResumableBatches` (rank-sharded)."""
    if loader.batch_sampler is None or isinstance(loader, ResumableLoader):
        return loader
    loop = trainer.fit_loop

    def progress() -> tuple[int, int]:
        return trainer.current_epoch, loop.epoch_loop.batch_progress.current.processed

    batches = ResumableBatches(
        loader.batch_sampler, trainer.global_rank, trainer.world_size, lambda: trainer.current_epoch
    )
    # Its own generator: creating an iterator must not draw from the global RNG (a resumed
    # run creates one at a point where the uninterrupted run did not).
    generator = torch.Generator().manual_seed(int(getattr(batches.inner, "seed", 0) or 0))
    return ResumableLoader(
        loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn, generator=generator, progress_fn=progress,
    )  # fmt: skip


class ExactResume(pl.Callback):
    """What Lightning's own restore leaves out, for a resumed run to repeat an uninterrupted
    one step for step.

    * Random state: python/numpy/torch generators are saved in each checkpoint and put back
      just before the first training batch after a resume (whatever the restart itself
      draws in between: sanity-check validation, DataLoader iterators).
    * Data position: Lightning builds the training iterator before it restores a
      checkpoint (``estimated_stepping_batches`` asks for the loader early), so the
      :class:`ResumableLoader` state it restores would never reach that iterator; the
      loader is rebuilt once the state is in place (restored epoch, batches to skip).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {  # plain types and tensors only: loadable with torch.load(weights_only=True)
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        if loop.restarting and loop._combined_loader_states_to_load:
            loop._combined_loader = None  # private API (Lightning 2.6): re-run setup_data
            loop.setup_data()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if state.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
