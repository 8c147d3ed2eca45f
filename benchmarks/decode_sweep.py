"""Translation decoding settings compared on the **validation** split of a checkpoint's own
data (never on test): chrF, BLEU and the share of looping / empty outputs per setting.

    python benchmarks/decode_sweep.py CKPT --no-repeat 0 3 4 --beams 4 --length-penalties 0.6
    python benchmarks/decode_sweep.py CKPT --out benchmarks/results/decode_sweep_quick

Writes ``<out>.csv`` and ``<out>.md``; the quick profile's ``decode.no_repeat_ngram`` was
chosen with it (benchmarks/results/decode_sweep_quick.md).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from toolkit.metrics.repetition import degenerate
from toolkit.metrics.translation import corpus_scores
from toolkit.training.checkpoints import build_datamodule, load_module
from toolkit.training.precision import describe_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--no-repeat", type=int, nargs="+", default=[0, 3, 4])
    parser.add_argument("--beams", type=int, nargs="+", default=[4])
    parser.add_argument("--length-penalties", type=float, nargs="+", default=[0.6])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/decode_sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    module = load_module(args.ckpt)
    saved = OmegaConf.create(module.hparams["cfg"])
    data = build_datamodule(saved.data, module.data_state)
    data.prepare_data()
    data.setup("fit")
    pairs = data.examples("valid")
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    rows = []
    for beam in args.beams:
        for alpha in args.length_penalties:
            for n in args.no_repeat:
                module.cfg = OmegaConf.merge(
                    module.cfg, {"decode": {"length_penalty": alpha, "no_repeat_ngram": n}}
                )
                start = time.perf_counter()
                hyps = [r["translation"] for r in module.translate(sources, beam_size=beam)]
                seconds = time.perf_counter() - start
                scores = corpus_scores(hyps, refs, module.target_lang)
                d = degenerate(hyps)
                rows.append({
                    "beam": beam, "length_penalty": alpha, "no_repeat_ngram": n,
                    "chrf": round(scores["chrf"], 2), "bleu": round(scores["bleu"], 2),
                    "loop_rate": round(d["looping"] / d["outputs"], 4),
                    "empty_rate": round(d["empty"] / d["outputs"], 4),
                    "sentences": d["outputs"], "seconds": round(seconds, 1),
                })  # fmt: skip
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    head = list(rows[0])
    lines = [f"Validation split ({len(pairs)} sentences) of `{args.ckpt}`; {describe_cpu()}, "
             f"{args.threads} threads.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
