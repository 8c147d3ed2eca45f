"""``additive`` now against an earlier revision of it, timed side by side in one process.

    python benchmarks/additive_speedup.py [--ref 708e64a] [--lengths 1024 2048] [--out DIR]

Loads ``toolkit/attention/additive.py`` as it was at ``--ref`` (``git show``) beside the
current one, copies the weights across, checks both give the same scores, and times the
forward (no grad) and forward + backward of the attention benchmark's shape (batch 1, 8
heads, head dim 64, self-attention, ``hidden_dim`` 64) with calls alternating
``ref new new ref ...`` after one warm-up each, so a change in machine load hits both alike.
Peak memory is not measured here (one process holds both): ``benchmarks/attention.py
--types additive scaled_dot_eager`` measures it in a fresh process per case. Writes
``additive_speedup.csv``, ``additive_speedup.md`` (CPU, threads, load) and
``additive_speedup.png``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.attention import build  # noqa: E402
from toolkit.training import precision  # noqa: E402


def load_ref(rev: str):
    """The ``AdditiveAttention`` class of ``toolkit/attention/additive.py`` at ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:toolkit/attention/additive.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    src = src.replace("from .base import", "from toolkit.attention.base import")
    src = src.replace(
        "from .registry import Capabilities, register",
        "from toolkit.attention.registry import Capabilities\n"
        "register = lambda *a, **k: (lambda cls: cls)  # noqa: E731",
    )
    path = Path(tempfile.mkdtemp()) / "additive_ref.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("additive_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AdditiveAttention


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="708e64a", help="the earlier revision (708e64a)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeats", type=int, default=2, help="rounds of ref new new ref")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/additive_speedup"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    new = build("additive", query_dim=64, hidden_dim=64)
    old = load_ref(args.ref)(64, hidden_dim=64)
    old.load_state_dict(new.state_dict())
    load_start = os.getloadavg()[0]
    rows = []
    for t in args.lengths:
        q, k, v = (torch.randn(1, 8, t, 64) for _ in range(3))

        def fwd(m, q=q, k=k, v=v):
            with torch.no_grad():
                return m(q, k, v, None)[0]

        def fwd_bwd(m, q=q, k=k, v=v):
            qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
            out = m(qg, kg, vg, None)[0]
            out.sum().backward()
            return out

        diff = (fwd(old) - fwd(new)).abs().max().item()
        for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            fn(old), fn(new)  # warm-up
            times: dict[str, list[float]] = {"ref": [], "new": []}
            for who in ["ref", "new", "new", "ref"] * args.repeats:
                start = time.perf_counter()
                fn(old if who == "ref" else new)
                times[who].append(time.perf_counter() - start)
            ref_ms = 1000 * statistics.median(times["ref"])
            new_ms = 1000 * statistics.median(times["new"])
            rows.append({"seq_len": t, "pass": name, "ref_ms": round(ref_ms, 1),
                         "new_ms": round(new_ms, 1), "speedup": round(ref_ms / new_ms, 2),
                         "max_abs_diff": f"{diff:.2e}"})  # fmt: skip
            print(rows[-1], flush=True)
    load_end = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "additive_speedup.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# additive: now against {args.ref}",
        "",
        f"CPU: {precision.describe_cpu()}; torch {torch.__version__}; {args.threads} threads; "
        f"load average {load_start:.1f} at start, {load_end:.1f} at end (2 CPUs); batch 1, "
        f"8 heads, head dim 64, hidden 64, fp32; median of {2 * args.repeats} calls each, "
        "alternating, after a warm-up.",
        "",
        "| T | pass | ref ms | now ms | speed-up | max abs diff (fwd) |",
        "|---:|---|---:|---:|---:|---:|",
    ] + [
        f"| {r['seq_len']} | {r['pass']} | {r['ref_ms']} | {r['new_ms']} | {r['speedup']}x "
        f"| {r['max_abs_diff']} |"
        for r in rows
    ]
    (args.out / "additive_speedup.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['pass']} T={r['seq_len']}" for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["ref_ms"] for r in rows], 0.4, label=args.ref)
    ax.bar([x + 0.2 for x in xs], [r["new_ms"] for r in rows], 0.4, label="now")
    ax.set_xticks(list(xs), labels, rotation=20)
    ax.set_ylabel("ms (median)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "additive_speedup.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
