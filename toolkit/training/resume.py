"""Exact mid-epoch resume: the training data position (rank-sharded batches that skip what
an interrupted epoch already trained) and the random state, restored so a resumed run
repeats an uninterrupted one step for step."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


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
