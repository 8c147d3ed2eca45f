"""Collect run folders (metrics.json) into one Markdown table and a CSV.

    python benchmarks/collect.py runs/sentiment/*/* --out runs/sentiment_table

Reads only the run-folder contract of DESIGN.md.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def load_runs(paths: list[str]) -> list[dict]:
    runs = []
    for p in paths:
        f = Path(p) / "metrics.json"
        if f.is_file():
            m = json.loads(f.read_text())
            m["_dir"] = str(p)
            runs.append(m)
    return runs


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument(
        "--metrics", default="accuracy,f1_macro,attention_entropy,attention_lexicon_lift"
    )
    parser.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    args = parser.parse_args()
    names = args.metrics.split(",")
    header = [
        "recipe",
        "model",
        "attention",
        *names,
        "train_s",
        "epochs",
        "params",
        "train_samples/s",
        "threads",
        "run",
    ]
    rows = []
    for m in sorted(
        load_runs(args.runs), key=lambda m: (m["recipe"], m.get("model", ""), m["attention"])
    ):
        t = m.get("throughput", {})
        rows.append(
            [
                m["recipe"],
                m.get("model", ""),
                m["attention"],
                *[m["metrics"].get(n) for n in names],
                m.get("train_seconds"),
                m.get("epochs"),
                m.get("params"),
                t.get("train_samples_per_s"),
                t.get("threads"),
                m["_dir"],
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(table + "\n")
        with open(out.with_suffix(".csv"), "w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])


if __name__ == "__main__":
    main()
