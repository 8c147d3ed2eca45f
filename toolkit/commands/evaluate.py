"""Re-score a checkpoint: ``python -m toolkit.evaluate ckpt=PATH [data.test_file=...]``.

Writes ``metrics.json`` (same contract as training, without training fields),
``per_example.jsonl.gz`` (toolkit/runs.py) and ``attention/`` into ``hydra.run.dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from toolkit.commands.overrides import run_with_key_help
from toolkit.commands.train import count_params
from toolkit.paths import CONF_DIR
from toolkit.runs import write_metrics, write_per_example
from toolkit.training import precision
from toolkit.training.checkpoints import build_datamodule, load_module


def evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    module = load_module(cfg.ckpt)
    saved = OmegaConf.create(module.hparams["cfg"])
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.data).items() if v is not None}
    data_cfg = OmegaConf.merge(saved.data, overrides)
    decode = {k: v for k, v in (cfg.get("decode") or {}).items() if v is not None}
    if decode:
        module.cfg = OmegaConf.merge(module.cfg, {"decode": decode})
    datamodule = build_datamodule(data_cfg, module.data_state)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    chosen = precision.resolve(
        trainer_cfg.get("precision"),
        trainer_cfg.get("accelerator"),
        precision.recipe_cpu_bf16(saved),
    )
    trainer_cfg["precision"] = chosen.resolved
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, **trainer_cfg)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = module.test_metrics()
    diagnostics = module.export_attention(
        datamodule, run_dir / "attention", int(cfg.attention_examples)
    )
    result = {
        "recipe": saved.recipe.name,
        "attention": saved.attention.name,
        "checkpoint": str(cfg.ckpt),
        "metrics": {**metrics.pop("metrics"), **diagnostics},
        **metrics,
        "params": count_params(module),
        "throughput": {
            "test_samples_per_s": round(module.test_samples / max(module.test_seconds, 1e-9), 2),
            "precision": chosen.resolved,
            "precision_requested": chosen.requested,
            "cpu": precision.describe_cpu(),
            **precision.describe_gpu(),
        },
        "data": datamodule.manifest(),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    per_example = module.per_example()
    if per_example is not None:
        write_per_example(run_dir, *per_example)
    write_metrics(run_dir, result)
    return result


@hydra.main(config_path=CONF_DIR, config_name="evaluate", version_base="1.3")
def command(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = evaluate(cfg, run_dir)
    print(f"[toolkit.evaluate] {result['recipe']}/{result['attention']}: {result['metrics']}")
    print(f"[toolkit.evaluate] run folder: {run_dir}")


def main() -> None:
    """``python -m toolkit.evaluate key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "evaluate")
