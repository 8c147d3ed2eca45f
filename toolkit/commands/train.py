"""Train, validate and test a recipe: ``python -m toolkit.train recipe=sentiment attention=…``.

Leaves the run folder of docs/run-folder.md in ``hydra.run.dir``: ``config.yaml``, ``checkpoints/``,
``per_example.jsonl.gz`` (toolkit/runs.py), ``metrics.json`` and ``attention/``.

Resume: ``hydra.run.dir=<run folder> resume=latest`` continues that run from its newest
checkpoint (``resume=auto``: the same, or a fresh start when there is none, for jobs that
may be requeued); ``ckpt_path=<file>`` continues from a given checkpoint. Optimiser,
scheduler, epoch/step, the position inside the epoch, random states and the CSV log
continue where the checkpoint left them.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from toolkit.attention import available as available_attention
from toolkit.attention import built_types
from toolkit.commands.overrides import run_with_key_help
from toolkit.paths import CONF_DIR
from toolkit.runs import import_object, write_config, write_metrics, write_per_example
from toolkit.training import compile as compile_mod
from toolkit.training import precision as precision_mod
from toolkit.training.checkpoints import (
    AtomicCheckpointIO,
    build_datamodule,
    latest_checkpoint,
    read_checkpoint,
)
from toolkit.training.resume import ExactResume, resumable_loader

log = logging.getLogger(__name__)
# the checkpoint callback whose best checkpoint the test pass uses (conf/callbacks/checkpoints.yaml)
BEST_CHECKPOINT = "model_checkpoint"


def check_config(cfg: DictConfig) -> None:
    """Fail early, listing the valid choices, on an unknown attention type."""
    names = available_attention()
    if cfg.attention.name not in names:
        raise ValueError(
            f"unknown attention type {cfg.attention.name!r}; valid choices: {', '.join(names)}"
        )


def load_init_weights(module: pl.LightningModule, path: str) -> None:
    """Fine-tuning: copy matching weights from a checkpoint (shapes must agree)."""
    state = read_checkpoint(path)["state_dict"]
    own = module.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(loaded))
    module.load_state_dict(loaded, strict=False)
    log.info("init_from %s: loaded %d tensors, skipped %d", path, len(loaded), len(skipped))
    if skipped:
        log.info("skipped (missing or shape mismatch): %s", ", ".join(skipped[:20]))


def build_callbacks(
    cfg: DictConfig, run_dir: Path
) -> tuple[dict[str, ModelCheckpoint], list[pl.Callback]]:
    """The ``callbacks`` config node, built: ``(checkpoints by name, other callbacks)``.

    Every ``ModelCheckpoint`` (conf/callbacks/checkpoints.yaml) writes into
    ``<run_dir>/checkpoints``; one whose ``every_n_train_steps`` is null or 0 (the step
    checkpoint while ``checkpoint_every_n_steps`` is null) is off. The others are the
    ``callbacks`` group's choice (``callbacks=ema`` ...), in config order.
    """
    checkpoints: dict[str, ModelCheckpoint] = {}
    others: list[pl.Callback] = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        target = get_object(node._target_) if node.get("_target_") else None
        if isinstance(target, type) and issubclass(target, ModelCheckpoint):
            if "every_n_train_steps" in node and not node.every_n_train_steps:
                continue
            checkpoints[str(name)] = instantiate(node, dirpath=run_dir / "checkpoints")
        else:
            others.append(instantiate(node))
    if BEST_CHECKPOINT not in checkpoints:
        raise ValueError(
            f"callbacks.{BEST_CHECKPOINT} is missing: the run needs its best-checkpoint "
            "callback (conf/callbacks/checkpoints.yaml)"
        )
    return checkpoints, others


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> tuple[Path | None, dict | None]:
    """The checkpoint to continue from (``ckpt_path`` or ``resume``), checked readable and
    of the same recipe; ``(None, None)`` for a fresh start."""
    mode = cfg.get("resume")
    if cfg.get("ckpt_path"):
        path: Path | None = Path(cfg.ckpt_path)
    elif mode in ("latest", "auto"):
        folder = run_dir / "checkpoints"
        path = latest_checkpoint(folder)
        if path is None and mode == "latest":
            raise FileNotFoundError(
                f"resume=latest: no checkpoint in {folder}; pass hydra.run.dir=<the run "
                "folder to continue> (or resume=auto to start fresh when there is none)"
            )
    elif mode:
        raise ValueError(f"resume={mode!r}: expected latest, auto or null (ckpt_path=FILE)")
    else:
        return None, None
    if path is None:
        log.info("resume=auto: no checkpoint in %s, starting fresh", run_dir / "checkpoints")
        return None, None
    raw = read_checkpoint(path)
    saved = raw["hyper_parameters"]["cfg"]
    for key in ("recipe.name", "attention.name", "model._target_"):
        ours, theirs = OmegaConf.select(cfg, key), OmegaConf.select(OmegaConf.create(saved), key)
        if ours != theirs:
            raise ValueError(
                f"{path}: checkpoint has {key}={theirs!r} but this run has {key}={ours!r}; "
                "resume with the overrides of the original run"
            )
    log.info("resuming from %s (epoch %s, step %s)", path, raw.get("epoch"), raw.get("global_step"))
    return path, raw


def continue_csv_log(logger: Any, last_step: int) -> None:
    """Keep a resumed run's CSV log: rows up to the checkpoint stay, later rows (redone
    after the resume) go. Lightning's CSV writer deletes ``metrics.csv`` when it starts,
    so the kept rows are written back after it has started."""
    metrics_csv = Path(logger.log_dir) / "metrics.csv"
    if not metrics_csv.is_file():
        return
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = sorted(reader.fieldnames or []), list(reader)
    # the CSV "step" of a row is the number of optimiser steps done before it was logged
    kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < last_step]
    writer = logger.experiment  # starts the writer (and deletes the file)
    tmp = metrics_csv.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        out.writerows(kept)
    tmp.replace(metrics_csv)
    writer.metrics_keys = list(fields)


def resolve_precision(cfg: DictConfig) -> precision_mod.Precision:
    """Replace ``trainer.precision`` (``auto`` by default) with what runs on this machine;
    an explicit bf16 request where bf16 is emulated fails here, before any data is built."""
    requested = cfg.trainer.get("precision", precision_mod.AUTO)
    chosen = precision_mod.resolve(
        requested, cfg.trainer.get("accelerator", "cpu"), precision_mod.recipe_cpu_bf16(cfg)
    )
    with open_dict(cfg):
        cfg.trainer.precision = chosen.resolved
    log.info("precision %s (%s)", chosen.resolved, chosen.reason)
    return chosen


def budget_report(cfg: DictConfig, trainer: pl.Trainer) -> dict[str, Any]:
    """The training budget asked for, what was trained, and what stopped it. Budgets are
    epochs or steps; ``trainer.max_time`` is only a guard, and when it fires the run says so
    (here, in metrics.json, and on the console)."""
    from lightning.pytorch.callbacks import Timer

    t = cfg.trainer
    max_epochs, max_steps = t.get("max_epochs"), t.get("max_steps")
    max_steps = None if max_steps in (None, -1) else int(max_steps)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    fired = bool(timer is not None and t.get("max_time") and timer.time_remaining("train") <= 0)
    steps = int(trainer.global_step)
    # epochs trained, fractional when a stop came inside an epoch
    per_epoch = trainer.num_training_batches
    if isinstance(per_epoch, (int, float)) and per_epoch not in (0, float("inf")):
        accumulate = max(int(t.get("accumulate_grad_batches") or 1), 1)
        epochs = round(steps * accumulate / per_epoch, 2)
    else:
        epochs = float(trainer.current_epoch)
    if fired:
        stopped_by = "max_time"
    elif max_steps is not None and steps >= max_steps:
        stopped_by = "max_steps"
    elif max_epochs is not None and trainer.current_epoch >= int(max_epochs):
        stopped_by = "max_epochs"
    elif t.get("fast_dev_run"):
        stopped_by = "fast_dev_run"
    else:
        stopped_by = "other"  # e.g. an early-stopping callback
    return {
        "max_epochs": max_epochs,
        "max_steps": max_steps,
        "max_time": t.get("max_time"),
        "limit_train_batches": t.get("limit_train_batches"),
        "epochs": epochs,
        "steps": steps,
        "stopped_by": stopped_by,
        "time_guard_fired": fired,
    }


def single_device_trainer(cfg: DictConfig) -> pl.Trainer:
    """A one-process trainer for the test pass after a multi-process fit."""
    accelerator = "cpu" if cfg.trainer.get("accelerator") == "cpu" else "auto"
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision=cfg.trainer.get("precision", "32-true"),
        limit_test_batches=cfg.trainer.get("limit_test_batches"),
        enable_progress_bar=False,
        plugins=[AtomicCheckpointIO()],
    )


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit, test and write the run folder; returns the metrics.json object."""
    check_config(cfg)
    chosen = resolve_precision(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    is_zero = rank_zero_only.rank == 0  # from the launcher's env (RANK/LOCAL_RANK/SLURM)
    resume_path, resumed = resume_checkpoint(cfg, run_dir)
    if cfg.get("validate_data", True):
        from toolkit.data.validate import validate_config

        validate_config(cfg)  # a bad dataset fails here, in seconds, listing every problem
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_zero:
        write_config(run_dir, cfg)

    module_cls = import_object(cfg.recipe.module)
    init_state = None
    if resumed is not None:
        # The run's own vocabulary and labels, whatever the data looks like now.
        init_state = resumed.get("hyper_parameters", {}).get("data_state")
    elif cfg.get("init_from"):
        # Fine-tuning keeps the checkpoint's vocabulary and labels so ids mean the same.
        saved = read_checkpoint(cfg.init_from)
        init_state = saved.get("hyper_parameters", {}).get("data_state")
    datamodule = build_datamodule(cfg.data, init_state)
    datamodule.prepare_data()
    datamodule.setup("fit")
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    module = module_cls(cfg=plain_cfg, data_state=datamodule.state())
    if cfg.get("init_from") and resumed is None:
        load_init_weights(module, cfg.init_from)
    # compile=true: the model compiled in place (state_dict keys unchanged); `compiled.active`
    # turns False when compilation fails at the first call and the model runs eager
    compiled = compile_mod.apply(module, bool(cfg.get("compile", False)))

    checkpoints, callbacks = build_callbacks(cfg, run_dir)
    checkpoint = checkpoints[BEST_CHECKPOINT]
    logger = instantiate(cfg.logger, save_dir=str(run_dir)) if cfg.get("logger") else False
    if resumed is not None and is_zero and isinstance(logger, CSVLogger):
        continue_csv_log(logger, int(resumed.get("global_step", 0)))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=[*checkpoints.values(), ExactResume(), *callbacks],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
    )
    # Training batches through a sampler that knows its epoch, its DDP shard and, after a
    # restore, how many batches of the interrupted epoch were already trained.
    make_train_loader = datamodule.train_dataloader
    datamodule.train_dataloader = lambda: resumable_loader(make_train_loader(), trainer)
    start = time.perf_counter()
    try:
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(resume_path) if resume_path else None
        )
    except Exception as err:
        if compiled.active and compile_mod.is_compiler_error(err):
            raise compile_mod.CompileError(
                f"compile=true: torch.compile failed during training ({type(err).__name__}); "
                "rerun with compile=false"
            ) from err
        raise
    train_seconds = time.perf_counter() - start
    budget = budget_report(cfg, trainer)
    if budget["time_guard_fired"] and is_zero:
        log.warning(
            "time guard trainer.max_time=%s fired after %s epochs / %d steps: this run trained "
            "less than its budget (max_epochs=%s, max_steps=%s)", budget["max_time"],
            budget["epochs"], budget["steps"], budget["max_epochs"], budget["max_steps"],
        )  # fmt: skip

    best = checkpoint.best_model_path or None
    if best:
        selection = f"best by {cfg.recipe.monitor} ({cfg.recipe.monitor_mode})"
    else:  # e.g. no validation ran: the test uses the last weights, and says so
        selection = f"last weights: no best checkpoint by {cfg.recipe.monitor} was saved"
        if is_zero:
            log.warning("checkpoint selection: %s; testing the last weights", selection)
    processes = trainer.world_size
    if trainer.world_size > 1:
        # Test once, on rank 0 alone: every rank's test pass would see only its shard.
        # The process group goes first, or metrics (torchmetrics) would wait for the
        # other ranks to sync.
        trainer.strategy.barrier()
        is_zero = trainer.is_global_zero
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if not is_zero:
            return {}
        trainer = single_device_trainer(cfg)
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics = module.test_metrics()
    diagnostics = module.export_attention(
        datamodule, run_dir / "attention", int(cfg.get("attention_examples", 8))
    )
    result = {
        "recipe": cfg.recipe.name,
        "attention": cfg.attention.name,
        # the options the type was built with (e.g. general's scale): two runs of one type
        # with different options are different configurations
        "attention_options": OmegaConf.to_container(
            cfg.attention.get("options") or OmegaConf.create({}), resolve=True
        ),
        "model": cfg.model.get("_target_", "").rsplit(".", 1)[-1],
        "seed": cfg.seed,
        "metrics": {**metrics.pop("metrics"), **diagnostics},
        **metrics,
        "train_seconds": round(train_seconds, 3),
        "epochs": trainer.current_epoch,
        "budget": budget,
        "params": count_params(module),
        # the attention types the model really holds (walked, not taken from the config)
        "attention_modules": built_types(module),
        "throughput": {
            "train_samples_per_s": round(module.train_samples / max(train_seconds, 1e-9), 2),
            "test_samples_per_s": round(module.test_samples / max(module.test_seconds, 1e-9), 2),
            "test_ms_per_sample": round(
                1000 * module.test_seconds / max(module.test_samples, 1), 4
            ),
            "threads": torch.get_num_threads(),
            "processes": processes,
            "precision": chosen.resolved,
            "precision_requested": chosen.requested,
            **compiled.record(),
            "cpu": precision_mod.describe_cpu(),
            **precision_mod.describe_gpu(),
        },
        "checkpoint": best or str(run_dir / "checkpoints" / "last.ckpt"),
        "checkpoint_selection": selection,
        "data": datamodule.manifest(),
    }
    per_example = module.per_example()
    if per_example is not None:  # before metrics.json: a run with metrics.json is complete
        write_per_example(run_dir, *per_example)
    write_metrics(run_dir, result)
    log.info("run folder: %s", run_dir)
    return result


def pin_run_dir(run_dir: Path) -> None:
    """Make ``hydra.run.dir`` the resolved absolute run folder.

    Lightning's DDP launcher restarts this script once per extra rank with
    ``hydra.run.dir=<HydraConfig run.dir>``; left as the configured pattern
    (``runs/...${now:...}``) each rank would resolve it again, at a later time, into a
    folder of its own.
    """
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(run_dir.resolve())


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def command(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    pin_run_dir(run_dir)
    try:
        result = train(cfg, run_dir)
    except (precision_mod.PrecisionError, compile_mod.CompileError) as err:  # not a traceback
        print(f"[toolkit.train] error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if not result:  # a DDP rank other than 0: rank 0 reports
        return None
    metric = cfg.recipe.monitor.split("/")[-1]
    value = result["metrics"].get(metric)
    print(f"[toolkit.train] {cfg.recipe.name}/{cfg.attention.name}: {result['metrics']}")
    b = result["budget"]
    print(
        f"[toolkit.train] trained {b['epochs']} epochs / {b['steps']} steps, stopped by "
        f"{b['stopped_by']}, precision {result['throughput']['precision']}, "
        f"compile {str(result['throughput']['compile']).lower()}"
    )
    print(f"[toolkit.train] run folder: {run_dir}")
    return value


def main() -> None:
    """``python -m toolkit.train key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "train")
