"""The sweep: lengths outermost, then passes, then the types (each compared pair
together), every case in a fresh process, skipping what the shorter lengths predict to be
absurd."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import targets
from .cases import PASSES, growth_exponent
from .isolation import in_fresh_process, mem_available_mib
from .measure import FORCE_CAP_FACTOR, Mode, run_case, single_call, time_pair
from .report import write_csv

# A registered block and the reference its time is compared with, timed in turn.
PAIRS = targets.paired()


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
                        and targets.needed(name, seq_len, args.lengths)
                    ):  # a target needs it: one call, timed and measured at once
                        note, reason = f"1 call only ({reason}): a target needs it", None
                    if reason is not None:
                        results[key] = {"ms_median": None, "peak_mib": None, "reason": reason}
                        print(f"  {name:>16} {seq_len:>5} {pass_:>7}  skipped: {reason}")
                        continue
                    start = time.perf_counter()
                    res = in_fresh_process(
                        ctx,
                        run_case,
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
                        time_pair,
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
                            run_case,
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
