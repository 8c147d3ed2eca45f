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
memory high-water mark of one case cannot leak into another (see ``_peak_rss_kib``).

Outputs (under ``--out``, default ``runs/bench``): ``attention.csv`` (columns
``attention,seq_len,pass,ms_median,peak_mib``; skipped cases have empty cells),
``attention.md`` (settings, the table with a ``reason`` column for skipped cases, and the
targets) and ``attention.png`` (time and memory against length, log-log).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import dataclasses
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit import attention

BATCH, HEADS, HEAD_DIM = 1, 8, 64
EMBED = HEADS * HEAD_DIM
FULL_LENGTHS = [256, 512, 1024, 2048, 4096, 8192]
QUICK_LENGTHS = [1024, 8192]
PASSES = ("fwd", "fwd_bwd")
REFERENCES = ("naive", "sdpa", "sdpa_masked", "torch_mha")
EXTRA = ("scaled_dot_eager", "local_blocked", "local_dense")
# ``local`` held to one side of its dispatch: ``blocked_from`` for each extra row.
LOCAL_SIDES = {"local_blocked": 0.0, "local_dense": math.inf}
WARM_LEN = 128  # length of the warm-up call each case process makes before measuring
FIRST_CAP_FACTOR = 4  # first length of a type/pass: skip if est. > 4x the cap (from WARM_LEN)
FORCE_CAP_FACTOR = 4  # a case a target needs still runs (one call) up to 4x the cap
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Mode:
    """How hard to measure: full run or the quick smoke run."""

    quick: bool
    warmup_below_s: float  # an extra warm-up call when the first call is faster than this
    budget_s: float  # timed calls per case aim at about this much wall time ...
    min_repeats: int  # ... but never fewer ...
    max_repeats: int  # ... nor more
    reuse_first_above_s: float  # calls slower than this are timed once, by the memory run
    max_call_s: float  # skip a case whose predicted single call is slower than this
    case_timeout_s: float
    pair_scale: int = 1  # compared pairs (full run): budget and max repeats times this


def single_call(mode: Mode) -> Mode:
    """``mode`` where the memory call is also the one timed call."""
    return dataclasses.replace(mode, reuse_first_above_s=0.0)


FULL = Mode(False, 2.0, 2.0, 3, 40, math.inf, 25.0, 600.0, pair_scale=3)
QUICK = Mode(True, 0.05, 0.15, 1, 5, 0.5, 2.5, 60.0)


# --------------------------------------------------------------------------- the cases


def build_module(name: str) -> nn.Module | None:
    """The module benchmarked as ``name`` (None for the functional references)."""
    if name in ("naive", "sdpa", "sdpa_masked"):
        return None
    if name == "torch_mha":
        return nn.MultiheadAttention(EMBED, HEADS, dropout=0.0, batch_first=True)
    if name == "multihead":
        return attention.build("multihead", embed_dim=EMBED, num_heads=HEADS, dropout=0.0)
    if name == "scaled_dot_eager":
        module = attention.build("scaled_dot", query_dim=HEAD_DIM, key_dim=HEAD_DIM)
        module.fast_path = False  # eager maths, weights computed (not returned)
        return module
    options = {"query_dim": HEAD_DIM, "key_dim": HEAD_DIM, "dropout": 0.0}
    if name in LOCAL_SIDES:
        options["blocked_from"] = LOCAL_SIDES[name]
        name = "local"
    options.update(attention.capabilities(name).benchmark_options)  # declared at registration
    return attention.build(name, **options)


def band_window() -> int:
    """The window of ``sdpa_masked``'s band: ``local``'s benchmark window."""
    return int(attention.capabilities("local").benchmark_options.get("window", 64))


def growth_exponent(name: str) -> float:
    """Asymptotic growth of time and memory with the sequence length, for the skip
    predictor: the registered type's ``benchmark_growth``, 2 for the references."""
    if name in LOCAL_SIDES:
        return 1.0 if name == "local_blocked" else 2.0
    if name in attention.available():
        return attention.capabilities(name).benchmark_growth
    return 2.0


def takes_embeddings(name: str, module: nn.Module | None) -> bool:
    """Whether the block eats ``(B, T, E)`` (projections inside) instead of ``(B, H, T, hd)``."""
    return name == "torch_mha" or (
        module is not None and not isinstance(module, attention.AttentionBase)
    )


@dataclass
class Case:
    fn: object  # () -> output tensor
    leaves: list = field(default_factory=list)  # tensors whose .grad backward fills
    grad_out: torch.Tensor | None = None


def make_case(name: str, seq_len: int, pass_: str, device: str, dtype: torch.dtype) -> Case:
    train = pass_ == "fwd_bwd"
    gen = torch.Generator(device="cpu").manual_seed(seq_len)

    def randn(*shape):
        x = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
        return x.requires_grad_(train)

    module = build_module(name)
    if module is not None:
        module.to(device=device, dtype=dtype).train(train)
    if takes_embeddings(name, module):
        x = randn(BATCH, seq_len, EMBED)
        if name == "torch_mha":

            def fn():
                return module(x, x, x, need_weights=False)[0]

        else:

            def fn():
                return module(x, x, x)[0]

        leaves = [x]
    else:
        q, k, v = (randn(BATCH, HEADS, seq_len, HEAD_DIM) for _ in range(3))
        scale = 1.0 / math.sqrt(HEAD_DIM)
        if name == "naive":

            def fn():
                return torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1) @ v

        elif name == "sdpa":

            def fn():
                return F.scaled_dot_product_attention(q, k, v)

        elif name == "sdpa_masked":
            band = attention.band_mask(seq_len, seq_len, band_window(), False, device)

            def fn():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=band)

        else:

            def fn():
                return module(q, k, v)[0]

        leaves = [q, k, v]
    if module is not None:
        leaves += [p for p in module.parameters() if p.requires_grad]
    grad_out = None
    if train:
        with torch.no_grad():
            out = fn()
            shape = out.shape
            del out
        grad_out = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
        for t in leaves:
            t.grad = None
    return Case(fn, leaves if train else [], grad_out)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_once(case: Case, device: str) -> float:
    """One pass; returns its wall time in seconds (grads are dropped afterwards, untimed)."""
    _sync(device)
    start = time.perf_counter()
    if case.grad_out is None:
        with torch.no_grad():
            out = case.fn()
    else:
        out = case.fn()
        out.backward(case.grad_out)
    _sync(device)
    elapsed = time.perf_counter() - start
    del out
    for t in case.leaves:
        t.grad = None
    return elapsed


# --------------------------------------------------------------------------- memory


def _peak_rss_kib() -> int:
    # ru_maxrss is the process's resident-set high-water mark (KiB on Linux). It never goes
    # down, which is why every case gets a fresh process: a case's peak is ru_maxrss after
    # its measured call minus ru_maxrss just before it (after inputs and module exist). A
    # fork-server child starts with its own counter (= its RSS at fork), not the parent's.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _settle_memory() -> None:
    """Free what can be freed so the baseline is the resident set the case really needs."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc: hand freed heap back to the OS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    # Linux: reset the high-water mark to the current RSS (drops set-up transients).
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# --------------------------------------------------------------------------- one case


def _repeats(estimate_s: float, mode: Mode) -> int:
    return int(min(mode.max_repeats, max(mode.min_repeats, mode.budget_s // estimate_s)))


def run_case(
    name, seq_len, pass_, device, dtype_name, threads, mode: Mode, timed=True, predict=False
) -> dict:
    """Peak memory of one call in this fresh process; then, if ``timed``, its median time.

    With ``predict`` (no shorter length measured yet), first extrapolate the time of a call
    from a 128-step one and skip the case if it is over ``FIRST_CAP_FACTOR`` x the cap.
    """
    torch.set_num_threads(threads)
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    # Warm up on a short input first: pages in kernel code, starts the thread pool and
    # (on CUDA) the context, none of which should count as this case's memory or time.
    small = make_case(name, min(seq_len, WARM_LEN), pass_, device, dtype)
    run_once(small, device)
    if predict and seq_len > WARM_LEN:
        est_s = run_once(small, device) * (seq_len / WARM_LEN) ** growth_exponent(name)
        cap = FIRST_CAP_FACTOR * mode.max_call_s  # a rough guard: 128 steps say little
        if est_s > cap:
            return {"skip": f"est. {est_s:.3g} s per call (from {WARM_LEN}) > {cap:g} s cap"}
    del small
    case = make_case(name, seq_len, pass_, device, dtype)
    _settle_memory()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        first = run_once(case, device)
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = _peak_rss_kib()
        first = run_once(case, device)
        peak_mib = (_peak_rss_kib() - base) / 1024
    result = {"peak_mib": peak_mib, "first_ms": 1e3 * first}
    if not timed:
        return result
    # Timing: the memory call above doubles as the first warm-up.
    if first >= mode.reuse_first_above_s:
        times = [first]
    else:
        estimate = first
        if first < mode.warmup_below_s:
            estimate = run_once(case, device)
        times = [run_once(case, device) for _ in range(_repeats(estimate, mode))]
    result.update(ms_median=1e3 * statistics.median(times), runs=len(times))
    return result


def time_pair(names, seq_len, pass_, device, dtype_name, threads, mode: Mode) -> dict:
    """Median times of two cases timed in turn (A B B A ...) in one fresh process, so load
    changes on the machine hit both alike; their ratio is what the targets compare."""
    torch.set_num_threads(threads)
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    for name in names:
        run_once(make_case(name, min(seq_len, WARM_LEN), pass_, device, dtype), device)
    cases = {name: make_case(name, seq_len, pass_, device, dtype) for name in names}
    estimate = 0.0
    for name in names:  # warm-up, twice when cheap
        first = run_once(cases[name], device)
        if first < mode.warmup_below_s:
            first = run_once(cases[name], device)
        estimate += first
    k = mode.pair_scale  # a ratio of two medians needs more calls than one median
    repeats = _repeats(
        estimate,
        dataclasses.replace(mode, budget_s=k * mode.budget_s, max_repeats=k * mode.max_repeats),
    )
    times = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(run_once(cases[name], device))
    return {
        name: {"ms_median": 1e3 * statistics.median(t), "runs": len(t)} for name, t in times.items()
    }


def probe_sdpa(device: str, dtype_name: str, threads: int, seq_len: int) -> dict:
    """Which SDPA backends accept the benchmark's shapes (each tried alone), and which ran."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.set_num_threads(threads)
    dtype = DTYPES[dtype_name]
    info = {}
    for pass_ in PASSES:
        q, k, v = (
            torch.randn(BATCH, HEADS, seq_len, HEAD_DIM, device=device, dtype=dtype).requires_grad_(
                pass_ == "fwd_bwd"
            )
            for _ in range(3)
        )
        ok = []
        for backend in (
            SDPBackend.FLASH_ATTENTION,
            SDPBackend.EFFICIENT_ATTENTION,
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.MATH,
        ):
            try:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    if pass_ == "fwd_bwd":
                        out.sum().backward()
                ok.append(backend)
            except RuntimeError:
                pass
        try:  # the dispatcher takes the first eligible backend in this order
            order = [SDPBackend(i) for i in torch._C._get_sdp_priority_order()]
        except (AttributeError, ValueError):
            order = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
            order += [SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
        ran = next((b for b in order if b in ok), None)
        info[pass_] = {
            "ran": _backend_name(ran) if ran is not None else "none",
            "eligible": [_backend_name(b) for b in ok],
        }
    # torch_mha's inference fast path (eval + no_grad) may bypass SDPA entirely.
    from torch.profiler import profile

    mha = nn.MultiheadAttention(EMBED, HEADS, batch_first=True).to(device, dtype).eval()
    x = torch.randn(BATCH, seq_len, EMBED, device=device, dtype=dtype)
    devnull, saved = os.open(os.devnull, os.O_WRONLY), os.dup(2)
    os.dup2(devnull, 2)  # the profiler chatters on stderr
    try:
        with torch.no_grad(), profile() as prof:
            mha(x, x, x, need_weights=False)
        names = {e.name for e in prof.events()}
    except Exception:  # the profiler is best-effort here
        names = set()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    info["torch_mha_native_fwd"] = "aten::_native_multi_head_attention" in names
    info["torch_mha_fwd_uses_sdpa"] = any("scaled_dot_product" in n for n in names)
    return info


def _backend_name(backend) -> str:
    return {
        "FLASH_ATTENTION": "flash",
        "EFFICIENT_ATTENTION": "efficient",
        "CUDNN_ATTENTION": "cudnn",
        "MATH": "math",
    }.get(backend.name, backend.name.lower())


def _child(conn, fn_name, kwargs):
    try:
        result = globals()[fn_name](**kwargs)
    except Exception as err:  # reported as a failed case, the sweep goes on
        result = {"error": f"{type(err).__name__}: {err}"}
    conn.send(result)
    conn.close()


def in_fresh_process(ctx, fn_name: str, timeout: float, **kwargs) -> dict:
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn_name, kwargs))
    proc.start()
    send.close()
    result = None
    if recv.poll(timeout):
        try:
            result = recv.recv()
        except EOFError:
            result = None
    if result is None:
        if proc.is_alive():
            proc.kill()
            proc.join()
            return {"error": f"timed out after {timeout:.0f} s"}
        proc.join()
        if proc.exitcode == -9:
            return {"error": "killed (SIGKILL: probably out of memory)"}
        return {"error": f"worker died (exit code {proc.exitcode})"}
    proc.join()
    return result


# --------------------------------------------------------------------------- the sweep


def mem_available_mib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


def skip_reason(name, seq_len, pass_, results, mode: Mode, mem_cap_mib: float):
    """Predict a case from the same type/pass at the longest shorter length; skip if absurd.

    Returns ``(reason or None, forceable)``: ``forceable`` when only the time cap is over,
    by less than ``FORCE_CAP_FACTOR`` (a case a target needs is then run, with one call).
    """
    earlier = [r for (n, t, p), r in results.items() if n == name and p == pass_]
    if any(r.get("failed") for r in earlier):
        return "failed at a shorter length", False
    if any(r.get("peak_mib") is None for r in earlier):
        return "skipped at a shorter length", False
    shorter = [(t, r) for (n, t, p), r in results.items() if n == name and p == pass_]
    shorter = [(t, r) for t, r in shorter if t < seq_len]
    if not shorter:
        return None, False
    t0, prev = max(shorter, key=lambda item: item[0])
    growth = (seq_len / t0) ** growth_exponent(name)
    est_mib = prev["peak_mib"] * growth
    if est_mib > mem_cap_mib:
        cap = mem_cap_mib / 1024
        return f"est. peak {est_mib / 1024:.1f} GiB (from {t0}) > {cap:.1f} GiB cap", False
    est_s = (prev.get("ms_median") or prev["first_ms"]) * growth / 1e3
    if est_s > mode.max_call_s:
        reason = f"est. {est_s:.3g} s per call (from {t0}) > {mode.max_call_s:g} s cap"
        return reason, est_s <= FORCE_CAP_FACTOR * mode.max_call_s
    return None, False


def needed_by_targets(name: str, seq_len: int, lengths) -> bool:
    """Cases the targets section reads (see ``targets_md``)."""
    big = 8192 if 8192 in lengths else max(lengths)
    if name in ("scaled_dot", "sdpa", "multihead", "torch_mha"):
        return True
    if name in ("local", "sdpa_masked") and seq_len >= LOCAL_FROM:
        return True
    if name in ("local", "naive", "linear") and seq_len == big:
        return True
    return name in ("additive", "scaled_dot_eager") and seq_len == 2048


# A registered block and the reference its time is compared with (targets 1a/1b, 6).
PAIRS = (("scaled_dot", "sdpa"), ("multihead", "torch_mha"), ("local", "sdpa_masked"))
LOCAL_FROM = 1024  # target 6 holds local to sdpa_masked from this length on


def run_groups(names) -> list[tuple[str, ...]]:
    """``names`` in run order, each compared pair adjacent and grouped."""
    partner = {a: b for a, b in PAIRS if a in names and b in names}
    taken = set(partner.values())
    groups = []
    for name in names:
        if name in taken:
            continue
        groups.append((name, partner[name]) if name in partner else (name,))
    return groups


def _failed(reason: str) -> dict:
    return {"ms_median": None, "peak_mib": None, "reason": reason, "failed": True}


def sweep(args, names, mode: Mode, ctx) -> dict:
    results: dict[tuple[str, int, str], dict] = {}
    mem_cap = 0.6 * mem_available_mib() if args.device == "cpu" else math.inf
    if args.device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory / 2**20
        mem_cap = 0.8 * total
    common = dict(device=args.device, dtype_name=args.dtype, threads=args.threads, mode=mode)
    # Length outermost, so the cases compared in the targets run close together in time.
    for seq_len in args.lengths:
        for pass_ in PASSES:
            if results:  # the rows so far, so a stopped sweep leaves its finished cases
                write_csv(Path(args.out) / "attention.csv", results, names, args.lengths)
            for group in run_groups(names):
                # A compared pair (full run): memory in one fresh process per case, then
                # both timed in turn in another. Anything else: one process does both.
                paired = len(group) == 2 and not mode.quick
                ran = []
                for name in group:
                    key = (name, seq_len, pass_)
                    reason, forceable = skip_reason(name, seq_len, pass_, results, mode, mem_cap)
                    note = None
                    if (
                        reason is not None
                        and forceable
                        and not mode.quick
                        and needed_by_targets(name, seq_len, args.lengths)
                    ):  # a target needs it: one call, timed and measured at once
                        note, reason = f"1 call only ({reason}): a target needs it", None
                    if reason is not None:
                        results[key] = {"ms_median": None, "peak_mib": None, "reason": reason}
                        print(f"  {name:>16} {seq_len:>5} {pass_:>7}  skipped: {reason}")
                        continue
                    start = time.perf_counter()
                    res = in_fresh_process(
                        ctx,
                        "run_case",
                        mode.case_timeout_s,
                        name=name,
                        seq_len=seq_len,
                        pass_=pass_,
                        timed=not paired or note is not None,
                        predict=not any(n == name and p == pass_ for n, _, p in results),
                        **(common if note is None else {**common, "mode": single_call(mode)}),
                    )
                    if "skip" in res:
                        reason = res["skip"]
                        results[key] = {"ms_median": None, "peak_mib": None, "reason": reason}
                        print(f"  {name:>16} {seq_len:>5} {pass_:>7}  skipped: {reason}")
                        continue
                    if "error" in res:
                        res = _failed(f"failed: {res['error']}")
                    elif note is not None:
                        res["reason"] = note
                    else:
                        ran.append(name)
                    res["wall_s"] = time.perf_counter() - start
                    results[key] = res
                if paired and len(ran) == 2:
                    start = time.perf_counter()
                    timing = in_fresh_process(
                        ctx,
                        "time_pair",
                        2 * mode.case_timeout_s,
                        names=list(group),
                        seq_len=seq_len,
                        pass_=pass_,
                        **common,
                    )
                    wall = (time.perf_counter() - start) / 2
                    for name in group:
                        res = results[(name, seq_len, pass_)]
                        res["wall_s"] += wall
                        if "error" in timing:
                            results[(name, seq_len, pass_)] = _failed(
                                f"failed (timing): {timing['error']}"
                            )
                        else:
                            res.update(timing[name], paired=group)
                elif paired:  # one of the pair did not run: time the other alone
                    for name in ran:
                        res = in_fresh_process(
                            ctx,
                            "run_case",
                            mode.case_timeout_s,
                            name=name,
                            seq_len=seq_len,
                            pass_=pass_,
                            **common,
                        )
                        key = (name, seq_len, pass_)
                        if "error" in res:
                            results[key] = _failed(f"failed (timing): {res['error']}")
                        else:
                            results[key].update(ms_median=res["ms_median"], runs=res["runs"])
                for name in group:
                    res = results[(name, seq_len, pass_)]
                    if res.get("ms_median") is not None:
                        print(
                            f"  {name:>16} {seq_len:>5} {pass_:>7}  {res['ms_median']:10.2f} ms"
                            f"  {res['peak_mib']:9.1f} MiB  ({res['runs']} runs"
                            f"{', paired' if res.get('paired') else ''}, {res['wall_s']:.1f} s)",
                            flush=True,
                        )
                    elif res.get("failed"):
                        print(f"  {name:>16} {seq_len:>5} {pass_:>7}  {res['reason']}", flush=True)
    return results


# --------------------------------------------------------------------------- reporting


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


def _get(results, name, seq_len, pass_, what):
    r = results.get((name, seq_len, pass_))
    return None if r is None else r.get(what)


def _status(oks: list[bool | None]) -> str:
    measured = [ok for ok in oks if ok is not None]
    if not measured:
        return "N/A"
    if not all(measured):
        return "MISS"
    return "PASS" if len(measured) == len(oks) else "PASS (partial: some cases not measured)"


def loglog_slope(points: list[tuple[float, float]]) -> float | None:
    points = [(x, y) for x, y in points if x > 0 and y is not None and y > 0]
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def targets_md(results: dict, lengths) -> str:
    out = []

    def ratio_check(title, name, ref, limit=1.05, at=None):
        out.append(f"### {title}")
        oks = []
        for pass_ in PASSES:
            parts = []
            for seq_len in lengths if at is None else at:
                a = _get(results, name, seq_len, pass_, "ms_median")
                b = _get(results, ref, seq_len, pass_, "ms_median")
                if a is None or b is None:
                    oks.append(None)
                    parts.append(f"{seq_len}: n/a")
                    continue
                ok = a <= limit * b
                oks.append(ok)
                parts.append(
                    f"{seq_len}: {a:.3g}/{b:.3g} ms = {a / b:.3f}x {'ok' if ok else 'OVER'}"
                )
            out.append(f"- {pass_}: " + "; ".join(parts))
        out.append(f"- **{_status(oks)}** ({name} median <= {limit}x {ref} at every length)")
        out.append("")

    out.append("## Targets")
    out.append("")
    ratio_check("1a. scaled_dot vs sdpa (time <= 1.05x)", "scaled_dot", "sdpa")
    ratio_check("1b. multihead vs torch_mha (time <= 1.05x)", "multihead", "torch_mha")

    big = 8192 if 8192 in lengths else max(lengths)
    note = "" if big == 8192 else f" (8192 not run: using {big})"

    out.append(f"### 5. local vs fused dense sdpa at {big}{note}: >= 5x faster, peak memory <= 2x")
    oks = []
    for pass_ in PASSES:
        lt, st = (_get(results, n, big, pass_, "ms_median") for n in ("local", "sdpa"))
        lm, sm = (_get(results, n, big, pass_, "peak_mib") for n in ("local", "sdpa"))
        if None in (lt, st, lm, sm):
            oks.append(None)
            out.append(f"- {pass_}: n/a (a case was not measured)")
            continue
        fast_ok, mem_ok = st >= 5 * lt, lm <= 2 * sm
        oks.append(fast_ok and mem_ok)
        out.append(
            f"- {pass_}: time {lt:.1f} vs {st:.1f} ms = {st / lt:.1f}x faster "
            f"{'ok' if fast_ok else 'SHORT'}; memory {lm:.1f} vs {sm:.1f} MiB = "
            f"{lm / max(sm, 1e-9):.2f}x {'ok' if mem_ok else 'OVER'}"
        )
    out.append(f"- **{_status(oks)}**")
    out.append("")
    long_lengths = [t for t in lengths if t >= LOCAL_FROM]
    if long_lengths:
        ratio_check(
            f"6. local vs sdpa_masked (the same band, fused dense) at every length >= "
            f"{LOCAL_FROM} (time <= 1x)",
            "local",
            "sdpa_masked",
            limit=1.0,
            at=long_lengths,
        )
    else:
        out.append(f"### 6. local vs sdpa_masked at every length >= {LOCAL_FROM}: n/a")
        out.append("")

    out.append(f"### 2. local vs naive at {big}{note}: >= 10x less peak memory, and faster")
    oks = []
    for pass_ in PASSES:
        lm, nm = (_get(results, n, big, pass_, "peak_mib") for n in ("local", "naive"))
        lt, nt = (_get(results, n, big, pass_, "ms_median") for n in ("local", "naive"))
        if None in (lm, nm, lt, nt):
            oks.append(None)
            out.append(f"- {pass_}: n/a (a case was not measured)")
            continue
        mem_ok = lm * 10 <= nm
        fast_ok = lt < nt
        oks.append(mem_ok and fast_ok)
        out.append(
            f"- {pass_}: memory {lm:.1f} vs {nm:.1f} MiB = {nm / max(lm, 1e-9):.1f}x less "
            f"{'ok' if mem_ok else 'SHORT'}; time {lt:.1f} vs {nt:.1f} ms = "
            f"{nt / lt:.1f}x faster {'ok' if fast_ok else 'SLOWER'}"
        )
    out.append(f"- **{_status(oks)}**")
    out.append("")

    out.append(f"### 3. linear at {big}{note}: faster than naive; memory slope ~1 (log-log)")
    oks = []
    for pass_ in PASSES:
        lt, nt = (_get(results, n, big, pass_, "ms_median") for n in ("linear", "naive"))
        pts = [(t, _get(results, "linear", t, pass_, "peak_mib")) for t in lengths]
        slope = loglog_slope(pts)
        fast_ok = None if None in (lt, nt) else lt < nt
        slope_ok = None if slope is None else 0.8 <= slope <= 1.2
        oks += [fast_ok, slope_ok]
        time_txt = (
            "time n/a"
            if fast_ok is None
            else f"time {lt:.2f} vs {nt:.1f} ms = {nt / lt:.1f}x faster "
            f"{'ok' if fast_ok else 'SLOWER'}"
        )
        pts_txt = ", ".join(f"{t}: {'n/a' if m is None else f'{m:.1f}'}" for t, m in pts)
        slope_txt = (
            "slope n/a"
            if slope is None
            else f"slope {slope:.2f} {'ok' if slope_ok else 'NOT ~1'} (0.8..1.2 counts as ~1)"
        )
        out.append(f"- {pass_}: {time_txt}; peak MiB by length {{{pts_txt}}} -> {slope_txt}")
    out.append(f"- **{_status(oks)}**")
    out.append("")

    at = 2048 if 2048 in lengths else None
    out.append("### 4. additive peak memory at 2048 within 2x of scaled_dot_eager")
    oks = []
    for pass_ in PASSES:
        if at is None:
            oks.append(None)
            out.append(f"- {pass_}: n/a (2048 not run)")
            continue
        am, em = (_get(results, n, at, pass_, "peak_mib") for n in ("additive", "scaled_dot_eager"))
        if None in (am, em):
            oks.append(None)
            out.append(f"- {pass_}: n/a (a case was not measured)")
            continue
        ok = am <= 2 * em
        oks.append(ok)
        out.append(
            f"- {pass_}: {am:.1f} vs {em:.1f} MiB = {am / max(em, 1e-9):.2f}x "
            f"{'ok' if ok else 'OVER'}"
        )
    out.append(f"- **{_status(oks)}**")
    return "\n".join(out)


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
        hw = _cpu_name()
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
            else "; the compared pairs (scaled_dot & sdpa, multihead & torch_mha, local & "
            "sdpa_masked) are timed "
            "together in one more fresh process, their calls alternating A B B A ..., so "
            f"a change in machine load hits both alike ({mode.pair_scale}x the budget and "
            "the maximum number of calls)"
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


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _cpu_name() -> str:
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
                    (t, _get(results, name, t, pass_, what))
                    for t in lengths
                    if (_get(results, name, t, pass_, what) or 0) > 0
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


# --------------------------------------------------------------------------- CLI


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
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "toolkit.attention"])
    start = time.perf_counter()
    load_start = _loadavg()
    print(
        f"attention benchmark: {'quick' if mode.quick else 'full'}, device {args.device}, "
        f"{args.dtype}, {args.threads} threads, B={BATCH} H={HEADS} hd={HEAD_DIM}",
        flush=True,
    )
    probe = in_fresh_process(
        ctx,
        "probe_sdpa",
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
    settings = settings_md(args, mode, names, probe, elapsed, (load_start, _loadavg()))
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
