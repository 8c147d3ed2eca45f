"""Benchmark every registered attention block against plain-PyTorch references.

Usage::

    python benchmarks/attention.py [--quick] [--out DIR] [--threads N]
                                   [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                   [--lengths 256 512 ...] [--types scaled_dot sdpa ...]

For each attention type and sequence length it measures the forward pass (``fwd``: eval
mode, under ``torch.no_grad()``) and forward + backward (``fwd_bwd``: train mode, dropout 0,
inputs requiring grad), reporting the median wall time and the peak memory. Besides the
registered types it runs four references and three extra rows:

* ``naive``: ``softmax(Q Kᵀ / √d) V`` written with plain PyTorch ops on ``(B, H, T, hd)``;
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` on ``(B, H, T, hd)``;
* ``sdpa_masked``: the same fused call under ``local``'s band mask (its benchmark window;
  a boolean ``(T, T)`` mask built before the measured call, as a user would pass it);
* ``torch_mha``: ``torch.nn.MultiheadAttention(E, H, batch_first=True)``, self-attention,
  called with ``need_weights=False``;
* ``scaled_dot_eager``: the ``scaled_dot`` block with its fused path switched off;
* ``local_blocked`` / ``local_dense``: ``local`` held to one side of its dispatch (the
  blocked path wherever a block fits / dense SDPA under the band mask): where they cross
  is ``LocalAttention.BLOCKED_FROM``.

Registered cores see ``(B, H, T, hd)`` query/key/value tensors (the shapes ``sdpa`` sees);
``multihead`` and ``torch_mha`` see one ``(B, T, E)`` input used as query, key and value.

Every (type, length, pass) case runs in its own fresh process, forked from a
``multiprocessing`` fork server that has imported torch but never run an op, so the
memory high-water mark of one case cannot leak into another (see
``attention_bench/isolation.py``).

Outputs (under ``--out``, default ``runs/bench``): ``attention.csv`` (columns
``attention,seq_len,pass,ms_median,peak_mib``; skipped cases have empty cells),
``attention.md`` (settings, the table with a ``reason`` column for skipped cases, and the
targets, from ``attention_bench/targets.yaml``) and ``attention.png`` (time and memory
against length, log-log).

The parts live in ``benchmarks/attention_bench/``: ``cases`` (what each named case builds
and runs), ``isolation`` (fork server, fresh process per case, peak RSS), ``measure`` (what
runs in a case's process), ``sweep`` (order and skip rules), ``targets`` (+ ``targets.yaml``)
and ``report`` (CSV, Markdown, plot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from attention_bench.cases import (
    BATCH,
    DTYPES,
    EXTRA,
    FULL_LENGTHS,
    HEAD_DIM,
    HEADS,
    QUICK_LENGTHS,
    REFERENCES,
)
from attention_bench.isolation import fork_server, in_fresh_process
from attention_bench.measure import FULL, QUICK, probe_sdpa
from attention_bench.report import loadavg, plot, settings_md, table_md, write_csv
from attention_bench.sweep import sweep
from attention_bench.targets import targets_md

from toolkit import attention


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="lengths 1024 and 8192, few repeats")
    parser.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths")
    parser.add_argument(
        "--types", nargs="+", help="attention names (default: all but stateful + references)"
    )
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
    args.lengths = sorted(set(args.lengths))
    all_names = [*attention.available(), *EXTRA, *REFERENCES]
    if args.types is None:
        # Types that cannot self-attend (the stateful decoder types: location, coverage)
        # attend one decoder step at a time; a whole-sequence timing says nothing about them.
        self_attending = attention.types_with(self_attention=True)
        args.types = [n for n in all_names if n not in attention.available()
                      or n in self_attending]  # fmt: skip
    unknown = [n for n in args.types if n not in all_names]
    if unknown:
        parser.error(f"unknown types {unknown}; choose from {', '.join(all_names)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    mode = QUICK if args.quick else FULL
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come
    names = list(dict.fromkeys(args.types))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = fork_server()
    start = time.perf_counter()
    load_start = loadavg()
    print(
        f"attention benchmark: {'quick' if mode.quick else 'full'}, device {args.device}, "
        f"{args.dtype}, {args.threads} threads, B={BATCH} H={HEADS} hd={HEAD_DIM}",
        flush=True,
    )
    probe = in_fresh_process(
        ctx,
        probe_sdpa,
        120.0,
        device=args.device,
        dtype_name=args.dtype,
        threads=args.threads,
        seq_len=min(args.lengths),
    )
    probe["seq_len"] = min(args.lengths)
    (out_dir / "sdpa_backend.json").write_text(json.dumps(probe, indent=1) + "\n")
    print(f"SDPA backend probe (T={probe['seq_len']}): {json.dumps(probe)}", flush=True)
    results = sweep(args, names, mode, ctx)
    elapsed = time.perf_counter() - start

    write_csv(out_dir / "attention.csv", results, names, args.lengths)
    table = table_md(results, names, args.lengths)
    targets = targets_md(results, args.lengths)
    settings = settings_md(args, mode, names, probe, elapsed, (load_start, loadavg()))
    (out_dir / "attention.md").write_text(f"{settings}\n\n## Results\n\n{table}\n\n{targets}\n")
    plot(out_dir / "attention.png", results, names, args.lengths)
    print()
    print(settings)
    print()
    print(table)
    print()
    print(targets)
    print(f"\nwrote {out_dir}/attention.csv, attention.md, attention.png ({elapsed:.0f} s)")
    return results


if __name__ == "__main__":
    main()
