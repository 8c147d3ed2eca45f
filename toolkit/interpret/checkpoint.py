"""Interpret a checkpoint: load it, run its recipe's adapter (``recipes/<task>/interpret.py``)
on the first ``examples`` test items and write, in the checkpoint's run folder (the folder
above ``checkpoints/``, or ``out``):

* ``interpret.json``: the erasure test per ranking and ``k``, the AOPC, the attention /
  random ratio with its bootstrap interval, and the rollout entry;
* ``interpret/rollout_XXX.png``: raw last-layer self-attention beside its rollout (models
  with self-attention layers);
* an ``interpretability`` entry in ``metrics.json`` (when the folder has one).

Both JSON files are written to a temporary file and renamed. The command line is
``python -m toolkit.interpret`` (:mod:`toolkit.commands.interpret`).
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

INTERPRET_FILE = "interpret.json"
FIGURE_DIR = "interpret"


def run_folder(ckpt: Path) -> Path:
    """The run folder of a checkpoint: the parent of ``checkpoints/``, else its folder."""
    ckpt = Path(ckpt).resolve()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def adapter_for(module) -> Any:
    """``recipes.<task>.interpret`` of the recipe whose module class ``module`` is."""
    package = type(module).__module__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.interpret")
    except ModuleNotFoundError as err:
        raise ValueError(f"recipe {package!r} has no interpret adapter ({err})") from None


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The compact ``interpretability`` entry of metrics.json."""
    erasure = result.get("erasure") or {}
    entry: dict[str, Any] = {"file": INTERPRET_FILE, "examples": erasure.get("examples"),
                             "ks": erasure.get("ks"), "seed": result.get("seed")}  # fmt: skip
    if erasure.get("methods"):
        entry["aopc"] = {m: v["aopc"] for m, v in erasure["methods"].items()}
        ratios = erasure.get("ratio_to_random", {})
        entry["aopc_ratio_to_random"] = {m: r["aopc"] for m, r in ratios.items()}
    else:
        entry["aopc"] = None
        entry["reason"] = erasure.get("reason", "no erasure result")
    rollout = result.get("rollout") or {}
    entry["rollout_layers"] = len(rollout["layers"]) if rollout.get("layers") else None
    return entry


def interpret_checkpoint(options: dict[str, Any], log=print) -> dict[str, Any]:
    """Run the adapter and write interpret.json (and the metrics.json entry)."""
    import torch
    from omegaconf import OmegaConf

    from toolkit.interpret.common import Settings
    from toolkit.runs import (
        METRICS_FILE,
        read_metrics,
        to_jsonable,
        write_metrics,
        write_text_atomic,
    )
    from toolkit.training.checkpoints import build_datamodule, load_module

    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    ckpt = Path(options["ckpt"])
    out_dir = Path(options["out"]) if options.get("out") else run_folder(ckpt)
    module = load_module(ckpt)
    adapter = adapter_for(module)
    saved = OmegaConf.create(module.hparams["cfg"])
    data_cfg = OmegaConf.merge(saved.data, options.get("data") or {})
    datamodule = build_datamodule(data_cfg, module.data_state)
    datamodule.prepare_data()
    datamodule.setup("test")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        log(f"[toolkit.interpret] {done}/{total} examples ({time.perf_counter() - t0:.0f} s)")

    settings = Settings(
        examples=int(options["examples"]), ks=list(options["ks"]), seed=int(options["seed"]),
        resamples=int(options["resamples"]), batch_size=int(options["batch_size"]),
        figures=int(options["figures"]), figure_dir=out_dir / FIGURE_DIR, progress=progress,
    )  # fmt: skip
    torch.manual_seed(settings.seed)
    sections = adapter.interpret(module, datamodule, settings)
    result = {
        "recipe": saved.recipe.name,
        "attention": saved.attention.name,
        "checkpoint": str(ckpt),
        "examples_requested": settings.examples,
        "ks": settings.ks,
        "seed": settings.seed,
        "resamples": settings.resamples,
        "seconds": round(time.perf_counter() - t0, 2),
        **sections,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / INTERPRET_FILE, json.dumps(to_jsonable(result), indent=2) + "\n")
    if (out_dir / METRICS_FILE).is_file():
        metrics = read_metrics(out_dir)
        metrics["interpretability"] = headline(result)
        write_metrics(out_dir, metrics)
    else:
        log(f"[toolkit.interpret] no {METRICS_FILE} in {out_dir}: only {INTERPRET_FILE} written")
    result["_out_dir"] = str(out_dir)
    return result
