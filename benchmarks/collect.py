"""Collect run folders (metrics.json) into one Markdown table and a CSV.

    python benchmarks/collect.py runs/sentiment/*/* --out runs/sentiment_table

A thin command over :mod:`toolkit.report` (which reads only the run-folder contract of
docs/run-folder.md): one row per run with the named metrics and the costs.
``python -m toolkit.report runs=RUNS out=DIR`` writes the full report (CSV, Markdown, learning
curves, the cross-modal view, a self-contained HTML page) and ``python -m toolkit.compare``
runs a grid first.
"""

from __future__ import annotations

import argparse

from toolkit.report import collect, find_runs, metric_table, write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument(
        "--metrics", default="accuracy,f1_macro,attention_entropy,attention_lexicon_lift"
    )
    parser.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    args = parser.parse_args()
    table = metric_table(collect(find_runs(args.runs)), args.metrics.split(","))
    print(table.markdown())
    if args.out:
        write_table(table, args.out)


if __name__ == "__main__":
    main()
