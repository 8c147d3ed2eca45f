"""What runs inside a case's fresh process: peak memory and median time of one case, two
cases timed in turn, and the SDPA backend probe; and how hard to measure (``Mode``)."""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cases import (
    BATCH,
    DTYPES,
    EMBED,
    HEAD_DIM,
    HEADS,
    PASSES,
    growth_exponent,
    make_case,
    run_once,
)
from .isolation import peak_rss_kib, settle_memory

WARM_LEN = 128  # length of the warm-up call each case process makes before measuring
FIRST_CAP_FACTOR = 4  # first length of a type/pass: skip if est. > 4x the cap (from WARM_LEN)
FORCE_CAP_FACTOR = 4  # a case a target needs still runs (one call) up to 4x the cap


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
    settle_memory()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        first = run_once(case, device)
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = peak_rss_kib()
        first = run_once(case, device)
        peak_mib = (peak_rss_kib() - base) / 1024
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
