"""Tables of a `benchmarks/gpu.sh` run: one row per recipe's one-epoch GPU run.

    python benchmarks/gpu_tables.py OUT      # reads OUT/runs/*/metrics.json
    python benchmarks/gpu_tables.py OUT --attention-log LOG   # also OUT/attention/attention.csv
                                             # rebuilt from the benchmark lines LOG printed

Writes ``OUT/recipes.csv`` (the columns below) and ``OUT/gpu.md`` (the card, the recipe table
and, when ``OUT/attention/attention.md`` exists, the attention benchmark's own Markdown).
A recipe whose run folder has no ``metrics.json`` (stopped, or failed) gets a row saying so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from pathlib import Path
from typing import Any

RECIPES = ("sentiment", "translation", "captioning", "asr")
# the test metric each recipe's table shows: (metrics key, label, scale)
HEADLINE = {
    "sentiment": ("accuracy", "accuracy %", 100.0),
    "translation": ("bleu", "BLEU", 1.0),
    "captioning": ("bleu4", "BLEU-4", 1.0),
    "asr": ("wer", "WER %", 100.0),
}
COLUMNS = [
    "recipe",
    "model",
    "attention",
    "gpu",
    "precision",
    "train_examples",
    "steps",
    "train_seconds",
    "train_samples_per_s",
    "gpu_peak_mib",
    "metric",
    "value",
    "status",
]


def row(recipe: str, run: Path) -> dict[str, Any]:
    """One recipe's row from its run folder (``status`` says why the figures are empty)."""
    path = run / "metrics.json"
    if not path.is_file():
        return {"recipe": recipe, "status": "no metrics.json (stopped or failed)"}
    saved = json.loads(path.read_text(encoding="utf-8"))
    thr = saved.get("throughput") or {}
    budget = saved.get("budget") or {}
    key, label, scale = HEADLINE[recipe]
    value = (saved.get("metrics") or {}).get(key)
    data = saved.get("data") or {}
    train = (data.get("counts") or {}).get("train")
    if isinstance(train, dict):  # per-class counts (sentiment)
        train = train.get("total")
    return {
        "recipe": recipe,
        "model": saved.get("model", ""),
        "attention": saved.get("attention", ""),
        "gpu": thr.get("gpu", ""),
        "precision": thr.get("precision", ""),
        "train_examples": train if train is not None else "",
        "steps": budget.get("steps", ""),
        "train_seconds": saved.get("train_seconds", ""),
        "train_samples_per_s": thr.get("train_samples_per_s", ""),
        "gpu_peak_mib": thr.get("gpu_peak_mib", ""),
        "metric": label,
        "value": "" if value is None else round(scale * float(value), 2),
        "status": "ok",
    }


# one measured case as benchmarks/attention.py prints it
CASE = re.compile(
    r"^\s*(?P<name>[a-z_0-9]+)\s+(?P<seq_len>\d+)\s+(?P<pass>fwd_bwd|fwd)\s+"
    r"(?P<ms>[0-9.]+) ms\s+(?P<mib>[0-9.]+) MiB"
)


def cases_from_log(text: str) -> list[dict[str, str]]:
    """The cases a (possibly stopped) benchmark printed, as ``attention.csv`` rows."""
    rows = []
    for line in text.splitlines():
        m = CASE.match(line)
        if m:
            rows.append(
                {
                    "attention": m["name"],
                    "seq_len": m["seq_len"],
                    "pass": m["pass"],
                    "ms_median": m["ms"],
                    "peak_mib": m["mib"],
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]], card: str, attention_md: str | None) -> str:
    lines = [
        "# GPU check (`benchmarks/gpu.sh`)",
        "",
        f"Card: {card or 'unknown'}.",
        "",
        "## One training epoch per recipe (`trainer=gpu`, precision auto)",
        "",
        "| recipe | model | attention | precision | train examples | steps | train s "
        "| samples/s | GPU peak MiB | test metric after 1 epoch |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['recipe']} | {r['status']} |" + " |" * 8)
            continue
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['attention']} | {r['precision']} "
            f"| {r['train_examples']} | {r['steps']} | {r['train_seconds']} "
            f"| {r['train_samples_per_s']} | {r['gpu_peak_mib']} | {r['metric']} {r['value']} |"
        )
    if attention_md:
        lines += ["", "## Attention benchmark", "", attention_md.strip()]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder benchmarks/gpu.sh wrote")
    parser.add_argument(
        "--attention-log",
        type=Path,
        help="rebuild OUT/attention/attention.csv from the case lines of this benchmark log",
    )
    args = parser.parse_args(argv)
    if args.attention_log is not None:
        cases = cases_from_log(args.attention_log.read_text(encoding="utf-8"))
        if not cases:
            raise SystemExit(f"{args.attention_log}: no benchmark case lines found")
        (args.out / "attention").mkdir(parents=True, exist_ok=True)
        tmp = args.out / "attention" / "attention.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(cases[0]))
            writer.writeheader()
            writer.writerows(cases)
        os.replace(tmp, args.out / "attention" / "attention.csv")
    rows = [row(r, args.out / "runs" / r) for r in RECIPES]
    tmp = args.out / "recipes.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    os.replace(tmp, args.out / "recipes.csv")
    card_file = args.out / "gpu.txt"
    card = card_file.read_text(encoding="utf-8").strip() if card_file.is_file() else ""
    att = args.out / "attention" / "attention.md"
    _write(
        args.out / "gpu.md",
        markdown(rows, card, att.read_text(encoding="utf-8") if att.is_file() else None),
    )
    print((args.out / "gpu.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
