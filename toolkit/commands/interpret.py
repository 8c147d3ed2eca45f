"""``python -m toolkit.interpret ckpt=PATH [examples=200] [ks=[1,2,4]] [seed=0]``: the erasure
faithfulness test and attention rollout of a checkpoint (:mod:`toolkit.interpret.checkpoint`
writes ``interpret.json`` and the ``interpretability`` entry of ``metrics.json``).

Keys: ``ckpt``, ``examples`` (200), ``ks`` ([1,2,4]), ``seed`` (0), ``resamples`` (bootstrap
draws, 1000), ``batch_size`` (16), ``figures`` (rollout pictures, 4), ``threads`` (torch
threads; default: torch's), ``out`` (default: the checkpoint's run folder),
``data.<key>=value`` (data-module overrides, as for ``toolkit.evaluate``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from toolkit.commands.overrides import unknown_key_message
from toolkit.interpret.checkpoint import INTERPRET_FILE, headline, interpret_checkpoint

KEYS = ("ckpt", "examples", "ks", "seed", "resamples", "batch_size", "figures", "threads", "out")
USAGE = (
    "usage: python -m toolkit.interpret ckpt=PATH [examples=200] [ks=[1,2,4]] [seed=0]"
    " [resamples=1000] [batch_size=16] [figures=4] [threads=N] [out=DIR] [data.<key>=value]"
)


class UsageError(SystemExit):
    """A command line that cannot run: the message and the usage go to stderr, exit code 2."""

    def __init__(self, message: str) -> None:
        print(f"{message}\n{USAGE}", file=sys.stderr)
        super().__init__(2)


def _parse_ks(text: str) -> list[int]:
    parts = [p for p in text.strip().strip("[]").replace(" ", "").split(",") if p]
    ks = sorted({int(p) for p in parts})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {text!r}")
    return ks


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text) if text else None


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``key=value`` words -> settings; raises SystemExit(2) with a message on a bad one."""
    if any(word in ("-h", "--help") for word in argv):
        print(USAGE + "\n\n" + (__doc__ or "").split("\n\n", 1)[1].strip())
        raise SystemExit(0)
    out: dict[str, Any] = {"examples": 200, "ks": [1, 2, 4], "seed": 0, "resamples": 1000,
                           "batch_size": 16, "figures": 4, "data": {}}  # fmt: skip
    for word in argv:
        key, sep, value = word.partition("=")
        if not sep:
            raise UsageError(f"expected key=value, got {word!r}")
        if key.startswith("data."):
            out["data"][key.removeprefix("data.")] = _yaml_value(value)
        elif key not in KEYS:
            raise UsageError(unknown_key_message(key, [*KEYS, "data"]))
        elif key == "ks":
            try:
                out["ks"] = _parse_ks(value)
            except ValueError as err:
                raise UsageError(str(err)) from None
        elif key in ("ckpt", "out"):
            out[key] = value
        else:
            try:
                out[key] = int(value)
            except ValueError:
                raise UsageError(f"{key} must be an integer, got {value!r}") from None
    if "ckpt" not in out:
        raise UsageError("ckpt=PATH is required")
    return out


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
