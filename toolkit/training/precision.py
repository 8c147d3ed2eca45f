"""Numeric precision chosen for the machine: ``trainer.precision=auto``.

bf16 autocast pays off only where the hardware computes bf16 natively: AVX512-BF16 or AMX on
x86 CPUs, compute capability ≥ 8.0 on CUDA. Elsewhere PyTorch emulates it (on an AVX2-only
CPU about 100× slower) and some oneDNN kernels (the bf16 LSTM) fail outright. So ``auto``
resolves to ``bf16-mixed`` where bf16 is native and to ``32-true`` otherwise, and an explicit
bf16 request on a machine that would emulate it fails at start-up with a message that says
why, instead of a crash or an hour-long run.

Native bf16 is not faster for every model on a CPU: a recipe whose steps were measured slower
in bf16 there (``benchmarks/speed_defaults.py``) sets ``recipe.cpu_bf16: false`` and ``auto``
then runs it in fp32 on every CPU (GPUs keep bf16 where native). An explicit
``trainer.precision=bf16-mixed`` still runs bf16.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

AUTO = "auto"
FP32 = "32-true"
BF16 = "bf16-mixed"
# Lightning's spellings of a bf16 run
BF16_NAMES = {"bf16", "bf16-mixed", "bf16-true"}


def cpu_flags() -> dict[str, bool]:
    """The CPU features PyTorch reports (``torch.cpu.get_capabilities()``), booleans only."""
    get = getattr(torch.cpu, "get_capabilities", None)
    caps = get() if get is not None else {}
    return {k: bool(v) for k, v in caps.items() if isinstance(v, bool)}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_native(flags: dict[str, bool] | None = None) -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16 on x86; the
    BF16 extension reported by PyTorch on Arm)."""
    flags = cpu_flags() if flags is None else flags
    return any(flags.get(k, False) for k in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def cuda_bf16_native() -> bool:
    return bool(
        torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    )


def on_cuda(accelerator: str | None = "cpu") -> bool:
    """Whether ``accelerator`` (``cpu``, ``gpu``/``cuda``, ``auto``) trains on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (
        accelerator in (None, "auto") and torch.cuda.is_available()
    )


def bf16_native(accelerator: str | None = "cpu") -> bool:
    """Whether bf16 runs natively on ``accelerator`` (``cpu``, ``gpu``/``cuda``, ``auto``)."""
    return cuda_bf16_native() if on_cuda(accelerator) else cpu_bf16_native()


def recipe_cpu_bf16(cfg) -> bool:
    """A config's ``recipe.cpu_bf16`` (true when absent): whether ``auto`` may pick bf16 on a
    CPU for this recipe."""
    return bool((cfg.get("recipe") or {}).get("cpu_bf16", True))


def describe_cpu() -> str:
    """``"AMD EPYC (AVX2; no AVX512-BF16/AMX)"``: the line every timing is stated with."""
    flags = cpu_flags()
    isa = torch.backends.cpu.get_cpu_capability()
    bf16 = [
        n for n, k in (("AVX512-BF16", "avx512_bf16"), ("AMX-BF16", "amx_bf16")) if flags.get(k)
    ]
    native = ", ".join(bf16) if bf16 else "no AVX512-BF16/AMX: bf16 emulated"
    return f"{cpu_name()} ({isa}; {native})"


def describe_gpu() -> dict[str, object]:
    """The CUDA card a run used and its peak allocated memory (MiB); ``{}`` without CUDA."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    index = torch.cuda.current_device()
    return {
        "gpu": torch.cuda.get_device_name(index),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated(index) / 2**20, 1),
    }


@dataclass(frozen=True)
class Precision:
    """What was asked for, what runs, and why."""

    requested: str
    resolved: str
    reason: str


class PrecisionError(ValueError):
    """A precision the machine cannot run natively was asked for explicitly."""


def resolve(
    requested: str | int | None, accelerator: str | None = "cpu", cpu_bf16: bool = True
) -> Precision:
    """``auto`` → ``bf16-mixed`` where bf16 is native, else ``32-true``; an explicit bf16
    request where it is not native raises :class:`PrecisionError`; anything else is kept.
    ``cpu_bf16=False`` (the recipe's ``recipe.cpu_bf16``) makes ``auto`` run fp32 on a CPU
    even where bf16 is native, because the recipe was measured slower in bf16 there.

    Raises:
        PrecisionError: bf16 asked for on a CPU/GPU without native bf16.
    """
    asked = FP32 if requested is None else str(requested)
    where = "GPU" if on_cuda(accelerator) else "CPU"
    native = bf16_native(accelerator)
    if asked == AUTO:
        if native and where == "CPU" and not cpu_bf16:
            return Precision(
                asked,
                FP32,
                "auto: bf16 is native on this CPU, but this recipe's training steps were "
                "measured slower in bf16 on CPUs (recipe.cpu_bf16=false), fp32",
            )
        if native:
            return Precision(asked, BF16, f"auto: bf16 is native on this {where}")
        return Precision(asked, FP32, f"auto: bf16 is not native on this {where}, fp32")
    if asked in BF16_NAMES and not native:
        machine = describe_cpu() if where == "CPU" else "this GPU"
        raise PrecisionError(
            f"trainer.precision={asked}: bf16 is not native on {machine}; it would run "
            "emulated (about 100x slower, and oneDNN has no emulated bf16 LSTM). Use "
            "trainer.precision=auto (bf16 where native, fp32 elsewhere) or 32-true."
        )
    return Precision(asked, asked, "as requested")
