"""Speech decoding settings compared on the **validation** split of a checkpoint's own data
(clean, never the test set): WER/CER of CTC greedy and of the joint CTC/attention beam search
at each CTC weight (weight 0 = the attention beam alone), with how many joint beams died out.

    python benchmarks/asr_decode_sweep.py CKPT --ctc-weights 0 0.3 0.5 0.7 0.9 --beams 5
    python benchmarks/asr_decode_sweep.py CKPT --out recipes/asr/results/decode_sweep

Writes ``<out>.csv`` and ``<out>.md``. The recipe's ``decode.ctc_weight`` default is the
weight with the lowest validation WER in ``recipes/asr/results/decode_sweep.md``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from toolkit.metrics.asr import error_rates
from toolkit.training.checkpoints import build_datamodule, load_module
from toolkit.training.precision import describe_cpu


def decode_rows(module, batches, settings, refs) -> list[dict]:
    """One row per ``(mode, beam, ctc_weight)`` setting: WER, CER, fall-backs, seconds."""
    rows = []
    for mode, beam, weight in settings:
        module.cfg = OmegaConf.merge(
            module.cfg, {"decode": {"mode": mode, "beam_size": beam, "ctc_weight": weight}}
        )
        hyps, fallbacks, start = [], 0, time.perf_counter()
        for batch in tqdm(batches, desc=f"{mode} beam {beam} ctc {weight}", leave=False):
            out = module.transcribe(batch["wave"], batch["lengths"])
            hyps += [module.tokenizer.decode(t) for t in out["tokens"]]
            fallbacks += int(out.get("beam_fallbacks", 0))
        rates = error_rates(refs, hyps, module.normalize)
        rows.append({
            "mode": mode, "beam": beam if mode != "ctc_greedy" else 1,
            "ctc_weight": weight if mode == "joint" else "",
            "wer": round(100 * rates["wer"], 2), "cer": round(100 * rates["cer"], 2),
            "beam_fallbacks": fallbacks, "utterances": rates["utterances"],
            "seconds": round(time.perf_counter() - start, 1),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--ctc-weights", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--beams", type=int, nargs="+", default=[5])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="recipes/asr/results/decode_sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    module = load_module(args.ckpt).eval()
    saved = OmegaConf.create(module.hparams["cfg"])
    data = build_datamodule(saved.data, module.data_state)
    data.prepare_data()
    data.setup("fit")
    loader = data._loader(data.dataset("valid"), args.batch_size, shuffle=False)
    batches = list(loader)
    refs = [t for b in batches for t in b["texts"]]
    settings = [("ctc_greedy", 1, 0.0)]
    for beam in args.beams:
        settings += [("joint", beam, w) if w > 0 else ("attention_beam", beam, 0.0)
                     for w in args.ctc_weights]  # fmt: skip
    with torch.no_grad():
        rows = decode_rows(module, batches, settings, refs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    best = min((r for r in rows if r["mode"] == "joint"), key=lambda r: r["wer"], default=None)
    head = list(rows[0])
    corpus = data.folder.name if getattr(data, "folder", None) else "own data"
    lines = [f"Clean validation split ({len(refs)} utterances, training voices, sentences "
             f"never in training) of `{Path(args.ckpt).name}` (data `{corpus}`); "
             f"{describe_cpu()}, {args.threads} threads.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    if best is not None:
        lines += ["", f"Lowest joint WER: ctc_weight {best['ctc_weight']} "
                  f"(beam {best['beam']}), {best['wer']} %."]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
