"""Train, validate and test a recipe: ``python -m toolkit.train recipe=sentiment attention=…``.

Leaves the run folder of DESIGN.md in ``hydra.run.dir``: ``config.yaml``, ``checkpoints/``,
``metrics.json`` and ``attention/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from toolkit.attention import available as available_attention
from toolkit.cli import run_with_key_help
from toolkit.runs import import_object, write_config, write_metrics

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def check_config(cfg: DictConfig) -> None:
    """Fail early, listing the valid choices, on an unknown attention type."""
    names = available_attention()
    if cfg.attention.name not in names:
        raise ValueError(
            f"unknown attention type {cfg.attention.name!r}; valid choices: {', '.join(names)}"
        )


def load_init_weights(module: pl.LightningModule, path: str) -> None:
    """Fine-tuning: copy matching weights from a checkpoint (shapes must agree)."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    own = module.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(loaded))
    module.load_state_dict(loaded, strict=False)
    log.info("init_from %s: loaded %d tensors, skipped %d", path, len(loaded), len(skipped))
    if skipped:
        log.info("skipped (missing or shape mismatch): %s", ", ".join(skipped[:20]))


def extra_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """Callbacks of the ``callbacks`` group (``callbacks=ema`` ...)."""
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit, test and write the run folder; returns the metrics.json object."""
    check_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)

    module_cls = import_object(cfg.recipe.module)
    init_state = None
    if cfg.get("init_from"):
        # Fine-tuning keeps the checkpoint's vocabulary and labels so ids mean the same.
        saved = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
        init_state = saved.get("hyper_parameters", {}).get("data_state")
    datamodule = instantiate(cfg.data, state=init_state, _recursive_=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    module = module_cls(cfg=plain_cfg, data_state=datamodule.state())
    if cfg.get("init_from"):
        load_init_weights(module, cfg.init_from)

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-epoch{epoch:02d}-step{step}",
        monitor=cfg.recipe.monitor,
        mode=cfg.recipe.monitor_mode,
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    logger = instantiate(cfg.logger, save_dir=str(run_dir)) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=[checkpoint, *extra_callbacks(cfg)],
        default_root_dir=str(run_dir),
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start

    best = checkpoint.best_model_path or None
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics = module.test_metrics()
    diagnostics = module.export_attention(
        datamodule, run_dir / "attention", int(cfg.get("attention_examples", 8))
    )
    result = {
        "recipe": cfg.recipe.name,
        "attention": cfg.attention.name,
        "model": cfg.model.get("_target_", "").rsplit(".", 1)[-1],
        "seed": cfg.seed,
        "metrics": {**metrics.pop("metrics"), **diagnostics},
        **metrics,
        "train_seconds": round(train_seconds, 3),
        "epochs": trainer.current_epoch,
        "params": count_params(module),
        "throughput": {
            "train_samples_per_s": round(module.train_samples / max(train_seconds, 1e-9), 2),
            "test_samples_per_s": round(module.test_samples / max(module.test_seconds, 1e-9), 2),
            "test_ms_per_sample": round(
                1000 * module.test_seconds / max(module.test_samples, 1), 4
            ),
            "threads": torch.get_num_threads(),
            "precision": str(cfg.trainer.get("precision", "32-true")),
        },
        "checkpoint": best or str(run_dir / "checkpoints" / "last.ckpt"),
        "data": datamodule.manifest(),
    }
    write_metrics(run_dir, result)
    log.info("run folder: %s", run_dir)
    return result


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = train(cfg, run_dir)
    metric = cfg.recipe.monitor.split("/")[-1]
    value = result["metrics"].get(metric)
    print(f"[toolkit.train] {cfg.recipe.name}/{cfg.attention.name}: {result['metrics']}")
    print(f"[toolkit.train] run folder: {run_dir}")
    return value


if __name__ == "__main__":
    run_with_key_help(main, CONF_DIR, "train")
