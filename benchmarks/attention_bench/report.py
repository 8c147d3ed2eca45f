"""The outputs: ``attention.csv``, the Markdown (settings and the results table; the
targets come from ``targets``) and ``attention.png``."""

from __future__ import annotations

import csv
import os
import platform
import sys
from pathlib import Path

import torch

from toolkit import attention

from .cases import BATCH, EMBED, EXTRA, HEAD_DIM, HEADS, PASSES, REFERENCES, band_window
from .measure import FIRST_CAP_FACTOR, FORCE_CAP_FACTOR, WARM_LEN, Mode
from .targets import get, paired


def fmt_ms(value) -> str:
    return "skipped" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_mib(value) -> str:
    return "skipped" if value is None else f"{value:.1f}"


def write_csv(path: Path, results: dict, names, lengths) -> None:
    """The finished cases (a stopped sweep keeps the rows it measured), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["attention", "seq_len", "pass", "ms_median", "peak_mib"])
        for name in names:
            for seq_len in lengths:
                for pass_ in PASSES:
                    r = results.get((name, seq_len, pass_))
                    if r is None:
                        continue
                    ms, mib = r["ms_median"], r["peak_mib"]
                    writer.writerow(
                        [
                            name,
                            seq_len,
                            pass_,
                            "" if ms is None else f"{ms:.4f}",
                            "" if mib is None else f"{mib:.2f}",
                        ]
                    )
    os.replace(tmp, path)


def table_md(results: dict, names, lengths) -> str:
    lines = [
        "| attention | seq_len | pass | ms_median | peak_mib | runs | reason |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for name in names:
        for seq_len in lengths:
            for pass_ in PASSES:
                r = results[(name, seq_len, pass_)]
                lines.append(
                    f"| {name} | {seq_len} | {pass_} | {fmt_ms(r['ms_median'])} | "
                    f"{fmt_mib(r['peak_mib'])} | {r.get('runs', '')} | {r.get('reason', '')} |"
                )
    return "\n".join(lines)


def options_text(names) -> str:
    """The benchmark options of the registered types among ``names`` (declared with their
    capabilities at registration), e.g. ``local window=256; linear feature_map=elu``."""
    parts = []
    for name in names:
        if name in attention.available():
            options = attention.capabilities(name).benchmark_options
            if options:
                parts.append(f"{name} " + " ".join(f"{k}={v}" for k, v in options.items()))
    return "; ".join(parts) or "defaults"


def settings_md(args, mode: Mode, names, probe: dict | None, elapsed: float, load) -> str:
    if args.device == "cuda":
        hw = torch.cuda.get_device_name(0)
        mem = "`torch.cuda.max_memory_allocated()` minus the allocated bytes at the baseline"
    else:
        hw = cpu_name()
        mem = (
            "peak RSS growth: each (type, length, pass) case runs in a fresh process (forked "
            "from a fork server that imported torch but ran no op); after a warm-up call on a "
            "128-step input, the inputs and module are built, garbage is collected, malloc "
            "arenas are trimmed and the kernel's high-water mark is reset "
            "(`/proc/self/clear_refs`); the baseline is `getrusage(RUSAGE_SELF).ru_maxrss` "
            "then, and the peak is `ru_maxrss` after one call minus that baseline. It counts "
            "everything the call makes resident (activations, saved tensors, gradients)."
        )
    lines = [
        "# Attention benchmark",
        "",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`"
        f" ({'quick' if mode.quick else 'full'} run, {elapsed:.0f} s)",
        f"- torch {torch.__version__}, Python {platform.python_version()}, device "
        f"{args.device} ({hw}), dtype {args.dtype}",
        f"- threads: `torch.set_num_threads({args.threads})`",
        f"- machine load (1-min load average) at start / end: {load[0]:.2f} / {load[1]:.2f} "
        f"on {os.cpu_count()} CPUs (other processes running during the benchmark slow it down "
        "and add noise)",
        f"- batch {BATCH}, heads {HEADS}, head_dim {HEAD_DIM} (E = {EMBED}); self-attention, "
        "no mask, non-causal, dropout 0",
        f"- lengths: {', '.join(map(str, args.lengths))}",
        "- types: " + ", ".join(names),
        f"- options: {options_text(names)}; "
        "registered cores get (B, H, T, hd) q/k/v (the same shapes `sdpa` and `naive` get); "
        "`multihead` and `torch_mha` (`nn.MultiheadAttention(E, H, batch_first=True)`, "
        "`need_weights=False`) get one (B, T, E) input as query, key and value; "
        "`scaled_dot_eager` is `scaled_dot` with `fast_path = False`; `sdpa_masked` is `sdpa` "
        f"under a boolean (T, T) band mask of window {band_window()} (local's); "
        "`local_blocked` / `local_dense` are `local` held to its blocked path / to dense SDPA "
        "under the band mask (`blocked_from` 0 / inf)",
        "- passes: `fwd` = eval mode under `torch.no_grad()`; `fwd_bwd` = train mode, inputs "
        "and parameters requiring grad, forward then `out.backward(g)` with a fixed random `g`",
        "- timing: `time.perf_counter` around each call"
        + (" (with `torch.cuda.synchronize()`)" if args.device == "cuda" else "")
        + "; the memory call doubles as warm-up"
        + ("" if mode.quick else ", plus one more warm-up call when it took < 2 s")
        + f"; then the median of {mode.min_repeats}..{mode.max_repeats} calls (about "
        f"{mode.budget_s:g} s of calls, fewer for slow cases; `runs` in the table)"
        + (
            f"; quick run: a case slower than {mode.reuse_first_above_s:g} s is timed by "
            "its memory call alone (a smoke test: its times are noisy)"
            if mode.quick
            else "; the compared pairs ("
            + ", ".join(f"{a} & {b}" for a, b in paired())
            + ") are timed together in one more fresh process, their calls alternating "
            f"A B B A ..., so a change in machine load hits both alike ({mode.pair_scale}x "
            "the budget and the maximum number of calls)"
        ),
        f"- peak memory (MiB): {mem}",
        f"- skips: a case is skipped when the same type/pass at the previous length predicts "
        f"(time and memory ~ T^2, T for local/linear) more than {mode.max_call_s:g} s per "
        "call or more than 60% of the memory available at start; at a type/pass's first "
        f"length, when a {WARM_LEN}-step call predicts more than "
        f"{FIRST_CAP_FACTOR * mode.max_call_s:g} s; and after a skip or failure at a shorter "
        "length (the reason is in the table)"
        + (
            ""
            if mode.quick
            else f". A case the targets need that is over the time cap by less than "
            f"{FORCE_CAP_FACTOR}x still runs, as one call both measured and timed (runs = 1)"
        ),
    ]
    if probe is not None and "error" not in probe:
        lines.append(
            f"- SDPA backend at T={probe['seq_len']} (each of flash/efficient/cudnn/math tried "
            "alone with `torch.nn.attention.sdpa_kernel`): "
            + "; ".join(
                f"{p}: ran **{probe[p]['ran']}** (eligible: {', '.join(probe[p]['eligible'])})"
                for p in PASSES
            )
        )
        if probe.get("torch_mha_native_fwd"):
            lines.append(
                "- `torch_mha` fwd (eval + no_grad) takes PyTorch's native fused MHA fast path "
                "(`aten::_native_multi_head_attention`)"
                + (
                    ", which does not call SDPA here"
                    if not probe.get("torch_mha_fwd_uses_sdpa")
                    else ""
                )
                + "; its fwd_bwd goes through `F.multi_head_attention_forward` + SDPA"
            )
    elif probe is not None:
        lines.append(f"- SDPA backend probe failed: {probe['error']}")
    return "\n".join(lines)


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return platform.processor() or "cpu"


def plot(path: Path, results: dict, names, lengths) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 10), sharex=True)
    cmap = plt.get_cmap("tab20")
    for row, pass_ in enumerate(("fwd_bwd", "fwd")):
        for col, (what, label) in enumerate((("ms_median", "ms"), ("peak_mib", "peak MiB"))):
            ax = axes[row][col]
            for i, name in enumerate(names):
                pts = [
                    (t, get(results, name, t, pass_, what))
                    for t in lengths
                    if (get(results, name, t, pass_, what) or 0) > 0
                ]
                if not pts:
                    continue
                ref = name in REFERENCES or name in EXTRA
                ax.plot(
                    *zip(*pts),
                    marker="o",
                    markersize=3,
                    linestyle="--" if ref else "-",
                    color=cmap(i % 20),
                    label=name,
                )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{pass_}: {label} vs seq_len")
            ax.set_xlabel("seq_len")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"attention: B={BATCH}, H={HEADS}, head_dim={HEAD_DIM} (dashed = references)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
