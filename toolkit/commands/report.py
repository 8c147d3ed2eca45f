"""``python -m toolkit.report runs=RUNS [out=report]``: the comparison report of any run
folders (:mod:`toolkit.report`; keys: conf/report.yaml). ``runs`` is a run folder or a
folder to search below, or a list of them (``runs=[a,b]``); ``significance.reference``,
``.alpha``, ``.resamples`` and ``.seed`` set the paired bootstrap."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from toolkit.commands.overrides import run_with_key_help
from toolkit.paths import CONF_DIR
from toolkit.report import Significance, build_report, collect, find_runs


def report(cfg: DictConfig) -> Path:
    """Collect ``cfg.runs``, write the report folder ``cfg.out``; returns its index.html."""
    runs = [str(r) for r in cfg.runs] if isinstance(cfg.runs, ListConfig) else [str(cfg.runs)]
    significance = Significance.from_config(cfg.get("significance"))
    rows = collect(find_runs(runs))
    if not rows:
        raise SystemExit(f"no run folder (metrics.json) under {', '.join(runs)}")
    command = "python -m toolkit.report " + " ".join(sys.argv[1:])
    return build_report(rows, cfg.out, command=command, significance=significance)


@hydra.main(config_path=CONF_DIR, config_name="report", version_base="1.3")
def command(cfg: DictConfig) -> None:
    index = report(cfg)
    print(Path(cfg.out, "results.md").read_text(encoding="utf-8"))
    print(f"[toolkit.report] across modalities: {Path(cfg.out, 'cross_modal.md').resolve()}")
    print(f"[toolkit.report] report: {index.resolve()}")


def main() -> None:
    """``python -m toolkit.report key=value ...``; an override naming a key that does not
    exist fails with the valid keys listed."""
    run_with_key_help(command, CONF_DIR, "report")
