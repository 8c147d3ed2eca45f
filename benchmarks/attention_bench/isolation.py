"""Process isolation: a fork server, one fresh process per case, peak-RSS measurement.

Every (type, length, pass) case runs in its own fresh process, forked from a
``multiprocessing`` fork server that has imported torch but never run an op, so the
memory high-water mark of one case cannot leak into another (see ``peak_rss_kib``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import multiprocessing as mp
import resource
from collections.abc import Callable

FORK_SERVER_PRELOAD = ["torch", "toolkit.attention"]


def fork_server():
    """The ``multiprocessing`` context whose processes fork from a server that has imported
    torch and the attention registry (and run no op)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORK_SERVER_PRELOAD)
    return ctx


def peak_rss_kib() -> int:
    # ru_maxrss is the process's resident-set high-water mark (KiB on Linux). It never goes
    # down, which is why every case gets a fresh process: a case's peak is ru_maxrss after
    # its measured call minus ru_maxrss just before it (after inputs and module exist). A
    # fork-server child starts with its own counter (= its RSS at fork), not the parent's.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def settle_memory() -> None:
    """Free what can be freed so the baseline is the resident set the case really needs."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc: hand freed heap back to the OS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    # Linux: reset the high-water mark to the current RSS (drops set-up transients).
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _child(conn, fn, kwargs):
    try:
        result = fn(**kwargs)
    except Exception as err:  # reported as a failed case, the sweep goes on
        result = {"error": f"{type(err).__name__}: {err}"}
    conn.send(result)
    conn.close()


def in_fresh_process(ctx, fn: Callable[..., dict], timeout: float, **kwargs) -> dict:
    """``fn(**kwargs)`` in a new process of ``ctx`` (``fn`` a module-level function); its
    result, or ``{"error": ...}`` when it raised, timed out or died."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, kwargs))
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


def mem_available_mib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf
