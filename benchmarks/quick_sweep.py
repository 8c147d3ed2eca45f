"""The sweep behind the `quick` profile's budgets (`make demo`): candidate settings per
recipe, each trained once, compared on the **validation** set only (the last validation row
of each run's CSV log), never on test.

    python benchmarks/quick_sweep.py                    # run what is missing, then tabulate
    python benchmarks/quick_sweep.py --collect-only     # tabulate existing run folders
    python benchmarks/quick_sweep.py --recipes asr translation

Runs go to ``runs/quick-sweep/<recipe>/<candidate>`` (a folder with metrics.json is reused);
the table goes to ``benchmarks/results/quick_sweep.{csv,md}``. The chosen candidate of each
recipe is the cheapest one whose validation metric reaches the recipe's demo target; its
overrides are the recipe's ``report.quick`` list in ``conf/recipe/<name>.yaml``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

TEST_NOISE = ['"data.test_noise.types=[babble]"', '"data.test_noise.snrs=[10,0]"',
              '"data.test_noise.rt60s=[]"']  # fmt: skip
# the small Transformer of the translation candidates, and its batches of 64 sentences
SMALL_MT = ["scheduler.warmup_steps=100", "optimizer.lr=3e-3", "model.embed_dim=128",
            "model.ffn_dim=512", "model.encoder_layers=2", "model.decoder_layers=2",
            "data.vocab_size=4000", "data.val_bleu_size=100"]  # fmt: skip
B64 = ["data.batch_size=64", "data.max_tokens=2048", "label_smoothing=0.0"]


def steps(n: int) -> list[str]:
    """A budget of ``n`` optimiser steps."""
    return ["trainer.max_epochs=null", f"trainer.max_steps={n}"]


# recipe -> (validation metric, demo target on it, higher is better, candidates)
SWEEP: dict[str, tuple[str, float, bool, dict[str, list[str]]]] = {
    "sentiment": (
        "val/accuracy",
        0.74,
        True,
        {
            "2ep-movie": ["trainer.max_epochs=2", "data.extra_train_domains=[]"],
            "3ep-movie": ["trainer.max_epochs=3", "data.extra_train_domains=[]"],
            "2ep-all-domains": ["trainer.max_epochs=2"],
            "3ep-movie-multihead": [
                "attention=multihead",
                "trainer.max_epochs=3",
                "data.extra_train_domains=[]",
            ],
        },
    ),
    "asr": (
        "val/wer",
        0.32,
        False,
        {
            "default-300steps": [
                "trainer.max_epochs=null",
                "trainer.max_steps=300",
                "scheduler.warmup_steps=100",
                "decode.mode=ctc_greedy",
                *TEST_NOISE,
            ],
            "small-350steps": [
                "trainer.max_epochs=null",
                "trainer.max_steps=350",
                "scheduler.warmup_steps=60",
                "optimizer.lr=3e-3",
                "model.embed_dim=96",
                "model.ffn_dim=384",
                "model.encoder_layers=3",
                "model.decoder_layers=1",
                "model.subsample_channels=32",
                "model.dropout=0.0",
                "decode.mode=ctc_greedy",
                *TEST_NOISE,
            ],
            "nodrop-ch32-300steps": [
                "trainer.max_epochs=null",
                "trainer.max_steps=300",
                "scheduler.warmup_steps=60",
                "model.dropout=0.0",
                "model.subsample_channels=32",
                "decode.mode=ctc_greedy",
                *TEST_NOISE,
            ],
            "nodrop-ch32-400steps": [
                "trainer.max_epochs=null",
                "trainer.max_steps=400",
                "scheduler.warmup_steps=60",
                "model.dropout=0.0",
                "model.subsample_channels=32",
                "decode.mode=ctc_greedy",
                *TEST_NOISE,
            ],
        },
    ),
    "translation": (
        "val/chrf",
        25.0,
        True,
        {
            "default-450steps-small": [
                *steps(450),
                *SMALL_MT,
                "decode.beam_size=1",
                "decode.compare_greedy=false",
            ],
            "small-b64-900steps": [
                *steps(900),
                *SMALL_MT,
                *B64,
                "decode.beam_size=1",
                "decode.compare_greedy=false",
            ],
            # the quick list: no_repeat_ngram=2 from benchmarks/decode_sweep.py (validation)
            "small-b64-1000steps": [
                *steps(1000),
                *SMALL_MT,
                *B64,
                "decode.beam_size=4",
                "decode.compare_greedy=false",
                "decode.no_repeat_ngram=2",
            ],
            "small-b64-1200steps": [
                *steps(1200),
                *SMALL_MT,
                *B64,
                "decode.beam_size=4",
                "decode.compare_greedy=true",
            ],
        },
    ),
    "captioning": (
        "val/bleu4",
        40.0,
        True,
        {
            "additive-1ep": ["attention=additive", "trainer.max_epochs=1", "decode.beam_size=1"],
            "multihead-1ep": ["attention=multihead", "trainer.max_epochs=1", "decode.beam_size=1"],
            "dot-1ep": ["attention=dot", "trainer.max_epochs=1", "decode.beam_size=1"],
            "multihead-1ep-warm30-lr3e-3": [
                "attention=multihead",
                "trainer.max_epochs=1",
                "scheduler.warmup_steps=30",
                "optimizer.lr=3e-3",
                "decode.beam_size=1",
            ],
            "multihead-2ep-warm50": [
                "attention=multihead",
                "trainer.max_epochs=2",
                "scheduler.warmup_steps=50",
                "decode.beam_size=1",
            ],
        },
    ),
}


def last_validation(run: Path, key: str) -> tuple[float | None, int | None]:
    """The last logged value of ``key`` in the run's CSV log, and its step."""
    logs = sorted(run.glob("**/metrics.csv"))
    value = step = None
    for log in logs:
        with open(log, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get(key):
                    value, step = float(row[key]), int(float(row["step"]))
    return value, step


def run(recipe: str, name: str, overrides: list[str], out: Path, threads: int) -> None:
    if (out / "metrics.json").is_file():
        return
    cmd = [sys.executable, "-m", "toolkit.train", f"recipe={recipe}", f"threads={threads}",
           "trainer.enable_progress_bar=false", *[o.strip('"') for o in overrides],
           f"hydra.run.dir={out}"]  # fmt: skip
    print(f"[quick_sweep] {recipe}/{name}: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="*", default=list(SWEEP))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "quick-sweep"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args()
    rows = []
    for recipe in args.recipes:
        key, target, higher, candidates = SWEEP[recipe]
        for name, overrides in candidates.items():
            folder = Path(args.runs) / recipe / name
            if not args.collect_only:
                run(recipe, name, overrides, folder, args.threads)
            if not (folder / "metrics.json").is_file():
                continue
            m = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            value, step = last_validation(folder, key)
            ok = value is not None and (value >= target if higher else value <= target)
            rows.append({
                "recipe": recipe, "candidate": name, "metric": key,
                "value": None if value is None else round(value, 4), "target": target,
                "meets_target": ok,
                    "val_step": step, "steps": (m.get("budget") or {}).get("steps", step),
                "train_s": m.get("train_seconds"),
                "threads": (m.get("throughput") or {}).get("threads"),
                "cpu": (m.get("throughput") or {}).get("cpu", ""),
                "overrides": " ".join(overrides),
            })  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = ["recipe", "candidate", "metric", "value", "val_step", "target", "meets_target",
              "steps",
              "train_s", "threads", "cpu", "overrides"]  # fmt: skip
    with open(RESULTS / "quick_sweep.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    lines = [
        "Validation metric of each candidate (its last validation, at step `val step`); the "
        "test set plays no part. `train s` is wall time with the stated threads, often beside "
        "other runs: not a clean timing.",
        "",
        "| recipe | candidate | validation metric | value | val step | target | steps | "
        "train s | threads |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['candidate']} | {r['metric']} | {r['value']} | "
            f"{r['val_step']} | {r['target']} | {r['steps']} | {r['train_s']} | "
            f"{r['threads']} |"
        )
    (RESULTS / "quick_sweep.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
