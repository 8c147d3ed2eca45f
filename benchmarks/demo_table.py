"""The README's `make demo` table, regenerated from the committed demo results.

    python benchmarks/demo_table.py            # print the table from docs/demo/results.csv
    python benchmarks/demo_table.py --write    # replace the table in README.md
    python benchmarks/demo_table.py --check    # exit 1 when README.md differs (a test runs it)

``docs/demo/results.csv`` is the ``results.csv`` of a `make demo` report
(``report/results.csv``), copied as is; ``docs/demo/results.md`` is its ``results.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "demo" / "results.csv"
README = ROOT / "README.md"
START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"


def _f(row: dict[str, str], key: str) -> float | None:
    value = row.get(key, "")
    return float(value) if value not in ("", None) else None


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def task_metric(row: dict[str, str]) -> str:
    """The demo's figure of merit of one run, in words."""
    recipe = row["recipe"]
    if recipe == "sentiment":
        return f"accuracy {_pct(_f(row, 'accuracy'))}, macro-F1 {_pct(_f(row, 'f1_macro'))}"
    if recipe == "captioning":
        return (
            f"BLEU-4 {_f(row, 'bleu4'):.1f}, CIDEr-D {_f(row, 'cider'):.2f}, grounding "
            f"{_pct(_f(row, 'grounding'))} (chance {_pct(_f(row, 'grounding_chance'))})"
        )
    if recipe == "asr":
        return (
            f"WER {_pct(_f(row, 'wer'))} clean, {_pct(_f(row, 'wer_avg_10'))} at 10 dB, "
            f"{_pct(_f(row, 'wer_avg_0'))} at 0 dB (babble; CTC greedy)"
        )
    if recipe == "translation":
        return (
            f"chrF {_f(row, 'chrf'):.1f} (copy baseline {_f(row, 'copy_chrf'):.1f}), "
            f"BLEU {_f(row, 'bleu'):.1f} (copy {_f(row, 'copy_bleu'):.1f})"
        )
    return ""


def table(path: Path = RESULTS) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] in ("ok", "reused")]
    lines = ["| recipe | attention | budget | trained | test-set result | train s | "
             "peak RSS MiB | params |", "|---|---|---|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['attention']} | {r['budget']} | {r['trained']} | "
            f"{task_metric(r)} | {float(r['train_s']):.0f} | {float(r['peak_rss_mib']):,.0f} | "
            f"{int(float(r['params'])):,} |"
        )
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{README}: no {START} marker")
    return f"{head}{START}\n{block}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    block = table()
    text = README.read_text(encoding="utf-8")
    new = replace_block(text, block)
    if args.check:
        if new != text:
            print("README.md's demo table differs from docs/demo/results.csv; run "
                  "python benchmarks/demo_table.py --write", file=sys.stderr)  # fmt: skip
            raise SystemExit(1)
    elif args.write:
        README.write_text(new, encoding="utf-8")
    else:
        print(block)


if __name__ == "__main__":
    main()
