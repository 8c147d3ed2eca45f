"""Pick ``additive``'s loop chunk (``toolkit.attention.additive.CACHE_CHUNK``) by measurement.

    python benchmarks/additive_chunks.py [--length 1024] [--chunks 14 16 18 20 22] [--out DIR]

Times the additive core's forward (no grad) and forward + backward on the attention
benchmark's shape (batch 1, 8 heads, head dim 64, self-attention, ``hidden_dim`` 64) for
chunk budgets of ``2**n`` elements, median of ``--repeats`` calls after one warm-up, with the
thread count given. Writes ``additive_chunks.csv`` and ``additive_chunks.md`` (CPU model and
flags stated).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

import torch

from toolkit.attention import additive, build
from toolkit.training import precision


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--chunks", type=int, nargs="+", default=[14, 16, 18, 20, 22])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/additive_chunks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t, heads, hd = args.length, 8, 64
    block = build("additive", query_dim=hd, hidden_dim=hd, chunk_elements=1 << 40)
    q, k, v = (torch.randn(1, heads, t, hd) for _ in range(3))
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    rows = []
    saved = additive.CACHE_CHUNK
    try:
        for n in args.chunks:
            additive.CACHE_CHUNK = 1 << n
            with torch.no_grad():
                fwd = _time(lambda: block(q, k, v, None), args.repeats)
            fwd_bwd = _time(lambda: block(qg, kg, vg, None)[0].sum().backward(), args.repeats)
            rows.append({"chunk_log2": n, "fwd_ms": round(fwd, 1), "fwd_bwd_ms": round(fwd_bwd, 1)})
            print(rows[-1], flush=True)
    finally:
        additive.CACHE_CHUNK = saved
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "additive_chunks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    load = os.getloadavg()[0]
    lines = [
        f"# additive loop chunk, T = {t}, B 1, 8 heads, head dim 64, fp32",
        "",
        f"CPU: {precision.describe_cpu()}; {args.threads} threads; load average {load:.1f}; "
        f"median of {args.repeats} calls after a warm-up.",
        "",
        "| chunk (elements) | fwd ms | fwd+bwd ms |",
        "|---|---:|---:|",
    ] + [f"| 2^{r['chunk_log2']} | {r['fwd_ms']} | {r['fwd_bwd_ms']} |" for r in rows]
    (args.out / "additive_chunks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
