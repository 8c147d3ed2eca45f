"""Collect run folders (metrics.json) into one Markdown table and a CSV.

    python benchmarks/collect.py runs/sentiment/*/* --out runs/sentiment_table

A thin command over :mod:`toolkit.report` (which reads only the run-folder contract of
docs/run-folder.md); ``python -m toolkit.report RUNS --out DIR`` writes the full report (CSV,
Markdown, self-contained HTML with plots and attention pictures) and ``python -m toolkit.compare``
runs a grid first.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from toolkit.report import COST_COLUMNS, Table, collect, find_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument(
        "--metrics", default="accuracy,f1_macro,attention_entropy,attention_lexicon_lift"
    )
    parser.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    args = parser.parse_args()
    names = args.metrics.split(",")
    header = ["recipe", "model", "budget", "attention", "seed", *names, *COST_COLUMNS.values(),
              "run"]  # fmt: skip
    rows = []
    for r in sorted(collect(find_runs(args.runs)), key=lambda r: (r.recipe, r.model, r.attention)):
        rows.append(
            [r.recipe, r.model, r.budget, r.attention, str(r.seed),
             *[r.metrics.get(n) for n in names], *[r.costs.get(k) for k in COST_COLUMNS],
             r.run_dir]
        )  # fmt: skip
    table = Table(header, rows).markdown()
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(table + "\n")
        with open(out.with_suffix(".csv"), "w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])


if __name__ == "__main__":
    main()
