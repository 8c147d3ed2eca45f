"""Markdown rows for the per-attention-type tables of the captioning and speech READMEs,
read from the run folders that ``benchmarks/recipe_runs.sh`` leaves.

    python benchmarks/type_tables.py captioning runs/types-captioning
    python benchmarks/type_tables.py asr runs/types-asr runs/asr/default-multihead
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def _runs(paths: list[str]) -> list[Path]:
    found = []
    for p in map(Path, paths):
        found += sorted(  # training runs only (evaluation folders have no train time)
            q.parent
            for q in p.rglob("metrics.json")
            if "train_seconds" in json.loads(q.read_text())
        )
    return found


def _steps(run: Path) -> str:
    """The last ``step`` in the run's CSV log (optimiser steps taken), or "—"."""
    steps = [
        int(row["step"])
        for log in run.glob("logs/**/metrics.csv")
        for row in csv.DictReader(log.open())
        if row.get("step")
    ]
    return str(max(steps)) if steps else "—"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def captioning(runs: list[Path]) -> list[str]:
    head = (
        "| decoder | attention | BLEU-4 | CIDEr-D | grounding (chance) | CHAIR-i | CHAIR-s "
        "| epochs | train s | params |"
    )
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        x = m["metrics"]
        model = "Transformer" if "transformer" in str(m.get("model", "")).lower() else "LSTM"
        rows.append(
            f"| {model} | `{m['attention']}` | {x['bleu4']:.1f} | {x['cider']:.2f} "
            f"| {_pct(x.get('grounding'))} % ({_pct(x.get('grounding_chance'))} %) "
            f"| {_pct(x.get('chair_i'))} % | {_pct(x.get('chair_s'))} % | {m.get('epochs', '—')} "
            f"| {m['train_seconds']:.0f} | {m['params']:,} |"
        )
    return rows


def asr(runs: list[Path]) -> list[str]:
    head = (
        "| self-attention | decoding | WER clean | WER 10 dB | WER 0 dB | CER clean | steps "
        "| train s | RTF batched | RTF batch 1 | params |"
    )
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        x, s = m["metrics"], m.get("speed", {})
        mode = (m.get("decode") or {}).get("mode", "?")
        rows.append(
            f"| `{m['attention']}` | {mode} | {_pct(x['wer'])} | {_pct(x.get('wer_avg_10'))} "
            f"| {_pct(x.get('wer_avg_0'))} | {_pct(x.get('cer'))} | {_steps(run)} "
            f"| {m['train_seconds']:.0f} | {s.get('rtf_batched', float('nan')):.3f} "
            f"| {s.get('rtf_batch1', float('nan')):.3f} | {m['params']:,} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", choices=["captioning", "asr"])
    ap.add_argument("paths", nargs="+", help="run folders or folders holding them")
    a = ap.parse_args()
    print("\n".join({"captioning": captioning, "asr": asr}[a.recipe](_runs(a.paths))))


if __name__ == "__main__":
    main()
