"""``python -m toolkit.interpret ckpt=PATH [examples=200] [ks=[1,2,4]] [seed=0]``.

Loads a checkpoint, runs its recipe's adapter (``recipes/<task>/interpret.py``) on the first
``examples`` test items and writes, in the checkpoint's run folder (the folder above
``checkpoints/``, or ``out=DIR``):

* ``interpret.json``: the erasure test per ranking and ``k``, the AOPC, the attention /
  random ratio with its bootstrap interval, and the rollout entry;
* ``interpret/rollout_XXX.png``: raw last-layer self-attention beside its rollout (models
  with self-attention layers);
* an ``interpretability`` entry in ``metrics.json`` (when the folder has one).

Both JSON files are written to a temporary file and renamed. Other keys: ``resamples``
(bootstrap draws, 1000), ``batch_size`` (16), ``figures`` (rollout pictures, 4),
``threads`` (torch threads; default: torch's), ``data.<key>=value`` (data-module
overrides, as for ``toolkit.evaluate``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

INTERPRET_FILE = "interpret.json"
FIGURE_DIR = "interpret"
KEYS = ("ckpt", "examples", "ks", "seed", "resamples", "batch_size", "figures", "threads", "out")


def _parse_ks(text: str) -> list[int]:
    parts = [p for p in text.strip().strip("[]").replace(" ", "").split(",") if p]
    ks = sorted({int(p) for p in parts})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {text!r}")
    return ks


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``key=value`` words (Hydra style, ``--key value`` also accepted) -> settings."""
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.interpret",
        description="Erasure faithfulness test and attention rollout for a checkpoint.",
        epilog="Keys: ckpt=PATH examples=200 ks=[1,2,4] seed=0 resamples=1000 batch_size=16 "
        "figures=4 threads=N out=DIR data.<key>=value",
    )
    parser.add_argument("words", nargs="*", help="key=value settings")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"examples": 200, "ks": [1, 2, 4], "seed": 0, "resamples": 1000,
                           "batch_size": 16, "figures": 4, "data": {}}  # fmt: skip
    for word in args.words:
        key, sep, value = word.partition("=")
        key = key.lstrip("-+")
        if not sep:
            parser.error(f"expected key=value, got {word!r}")
        if key.startswith("data."):
            out["data"][key.removeprefix("data.")] = _yaml_value(value)
        elif key not in KEYS:
            parser.error(f"unknown key {key!r}; valid: {', '.join(KEYS)}, data.<key>")
        elif key == "ks":
            try:
                out["ks"] = _parse_ks(value)
            except ValueError as err:
                parser.error(str(err))
        elif key in ("ckpt", "out"):
            out[key] = value
        else:
            try:
                out[key] = int(value)
            except ValueError:
                parser.error(f"{key} must be an integer, got {value!r}")
    if "ckpt" not in out:
        parser.error("ckpt=PATH is required")
    return out


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text) if text else None


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
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from toolkit.evaluate import load_module
    from toolkit.interpret.common import Settings
    from toolkit.runs import (
        METRICS_FILE,
        read_metrics,
        to_jsonable,
        write_metrics,
        write_text_atomic,
    )

    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    ckpt = Path(options["ckpt"])
    out_dir = Path(options["out"]) if options.get("out") else run_folder(ckpt)
    module = load_module(ckpt)
    adapter = adapter_for(module)
    saved = OmegaConf.create(module.hparams["cfg"])
    data_cfg = OmegaConf.merge(saved.data, options.get("data") or {})
    datamodule = instantiate(data_cfg, state=module.data_state, _recursive_=False)
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


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = interpret_checkpoint(options)
    except ValueError as err:  # a missing/broken checkpoint, a recipe without adapter
        print(f"[toolkit.interpret] error: {err}", file=sys.stderr)
        return 2
    entry = headline(result)
    print(f"[toolkit.interpret] {result['recipe']}/{result['attention']}: AOPC {entry['aopc']}")
    for method, ratio in (entry.get("aopc_ratio_to_random") or {}).items():
        interval = ratio.get("ci95")
        print(f"[toolkit.interpret]   AOPC {method} / random: {ratio['value']} (95% {interval})")
    print(f"[toolkit.interpret] wrote {Path(result['_out_dir']) / INTERPRET_FILE}")
    return 0
