"""Share of training-step time spent waiting for data, per recipe, and time to quality.

    python benchmarks/data_wait.py [--recipes sentiment translation captioning asr]
                                   [--steps 40] [--threads 2] [--out DIR]
                                   [--override data.num_workers=0 ...]

Trains each recipe's default config for ``--steps`` optimiser steps under Lightning's
``SimpleProfiler`` (``+trainer.profiler=simple``; validation and test cut to two batches)
and reads two rows of its report: ``[_TrainingEpochLoop].train_dataloader_next`` (waiting
for the next batch) and ``run_training_batch`` (forward, backward, optimiser step). The share
is wait / (wait + batch); the target is ≤ 10 %. Beside it, the seconds of training the
default config needed to reach 90 % of its full-budget validation quality, read from
``results/compare/standard/calibration/calibration.csv`` (``benchmarks/standard_budget.py``).
Writes ``data_wait.csv``, ``data_wait.md`` (CPU, threads, load) and ``data_wait.png``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.training import precision  # noqa: E402

RECIPES = ("sentiment", "translation", "captioning", "asr")
ROW = re.compile(r"^\|\s*(?P<action>[^|]+?)\s*\|\s*(?P<mean>[0-9.e-]+)\s*\|\s*(?P<calls>\d+)\s*"
                 r"\|\s*(?P<total>[0-9.e-]+)\s*\|")  # fmt: skip
WAIT, BATCH = "[_TrainingEpochLoop].train_dataloader_next", "run_training_batch"
CALIBRATION = ROOT / "results/compare/standard/calibration/calibration.csv"


def profiler_totals(text: str) -> dict[str, tuple[int, float]]:
    """``action -> (calls, total seconds)`` from a ``SimpleProfiler`` report."""
    out = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            out[m["action"]] = (int(m["calls"]), float(m["total"]))
    return out


def wait_share(totals: dict[str, tuple[int, float]]) -> dict[str, float]:
    """Seconds waiting for data and in the training batch, and the waiting share."""
    if WAIT not in totals or BATCH not in totals:
        raise ValueError(f"profiler report lacks {WAIT!r} or {BATCH!r}")
    wait, batch = totals[WAIT][1], totals[BATCH][1]
    return {"steps": totals[BATCH][0], "wait_s": wait, "batch_s": batch,
            "wait_share": wait / (wait + batch)}  # fmt: skip


def time_to_quality() -> dict[str, dict[str, str]]:
    if not CALIBRATION.is_file():
        return {}
    with open(CALIBRATION, newline="", encoding="utf-8") as fh:
        return {r["recipe"]: r for r in csv.DictReader(fh)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/data_wait"))
    parser.add_argument("--override", nargs="*", default=[], help="more Hydra overrides")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    rows = []
    for recipe in args.recipes:
        cmd = [sys.executable, "-m", "toolkit.train", f"recipe={recipe}",
               "trainer.max_epochs=1", f"trainer.limit_train_batches={args.steps}",
               "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
               "+trainer.profiler=simple", "trainer.enable_progress_bar=false",
               f"threads={args.threads}", *args.override,
               f"hydra.run.dir={args.out / 'runs' / recipe}"]  # fmt: skip
        print(f"[data_wait] {recipe}: {' '.join(cmd[2:])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        (args.out / f"{recipe}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{recipe}: training failed, see {args.out / (recipe + '.log')}")
        row = {"recipe": recipe, **wait_share(profiler_totals(done.stdout + done.stderr)),
               "wall_s": time.perf_counter() - start}  # fmt: skip
        rows.append(row)
        total = row["wait_s"] + row["batch_s"]
        print(f"[data_wait] {recipe}: waiting {100 * row['wait_share']:.1f} % "
              f"({row['wait_s']:.2f} of {total:.1f} s)", flush=True)  # fmt: skip
    quality = time_to_quality()
    for row in rows:
        q = quality.get(row["recipe"], {})
        row["budget_to_90pct"] = f"{q['budget']} {q['unit']}" if q else ""
        row["train_s_to_90pct"] = q.get("budget_elapsed_s", "")
    fields = ["recipe", "steps", "wait_s", "batch_s", "wait_share", "wall_s",
              "budget_to_90pct", "train_s_to_90pct"]  # fmt: skip
    with open(args.out / "data_wait.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k])
                             for k in fields})  # fmt: skip
    lines = [
        "# Data wait and time to quality",
        "",
        f"CPU: {precision.describe_cpu()}; {args.threads} threads; {args.steps} training steps "
        f"per recipe (default config, `num_workers` as configured); load average "
        f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end (2 CPUs).",
        "",
        "| recipe | steps | waiting for data s | training batches s | waiting share | "
        "target ≤ 10 % | budget to 90 % of full quality | train s to 90 % |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ] + [
        f"| {r['recipe']} | {r['steps']} | {r['wait_s']:.2f} | {r['batch_s']:.1f} "
        f"| {100 * r['wait_share']:.1f} % | {'met' if r['wait_share'] <= 0.10 else 'missed'} "
        f"| {r['budget_to_90pct']} | {r['train_s_to_90pct']} |"
        for r in rows
    ]
    (args.out / "data_wait.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([r["recipe"] for r in rows], [100 * r["wait_share"] for r in rows])
    ax.axhline(10, color="grey", linestyle="--", label="target 10 %")
    ax.set_ylabel("% of step time waiting for data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "data_wait.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
