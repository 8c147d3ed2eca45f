"""``compile=true`` (conf/train.yaml): the recipe's model compiled with ``torch.compile``.

:func:`apply` compiles the module's ``model`` and each of its direct submodules in place
(``nn.Module.compile``), so the model's ``forward`` and the methods a recipe calls instead
of it (ASR's ``encode``, the decoders' ``step``) all run compiled; the parameters and the
``state_dict`` keys stay those of the eager model, so checkpoints of either load in the other.

Compilation happens at the first call. Where it fails there (no C++ compiler, an operator
the compiler does not support: an error of ``torch._dynamo``), the whole model goes back to
eager, the fall-back is counted and logged, and :class:`CompileState` says ``active=False``,
which is what the run records. A compiler error after compiled calls already ran, or in a
backward pass, is not hidden: it raises :class:`CompileError`, which names the setting to
change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class CompileError(RuntimeError):
    """``torch.compile`` failed where the run could not go back to eager."""


@dataclass
class CompileState:
    """What was asked for and what runs: ``active`` is the value a run records."""

    requested: bool
    active: bool = False
    fallbacks: int = 0  # times the model went back to eager after a compiler error
    reason: str = ""
    compiled_calls: int = 0
    modules: list[nn.Module] = field(default_factory=list, repr=False)

    def record(self) -> dict[str, Any]:
        """The keys a run writes beside its precision (metrics.json ``throughput``)."""
        return {"compile": self.active, "compile_fallbacks": self.fallbacks}


def is_compiler_error(err: BaseException) -> bool:
    """An error raised by ``torch.compile`` itself (Dynamo, a backend compiler), not by the
    model's code."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(err, TorchDynamoException)


def targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model (name ``""``) and its direct submodules that hold parameters."""
    children = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
    return [("", model), *children]


def _uncompile(state: CompileState) -> None:
    for m in state.modules:
        m._compiled_call_impl = None
    state.active = False


def _guarded(state: CompileState, name: str, compiled: Callable, eager: Callable) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        # inside the compiled parent's trace, a submodule is traced into the parent's graph
        if torch.compiler.is_compiling() or not state.active:
            return eager(*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
        except Exception as err:
            if not is_compiler_error(err):
                raise
            if state.compiled_calls:
                raise CompileError(
                    f"compile=true: torch.compile failed on {name} after "
                    f"{state.compiled_calls} compiled calls ({type(err).__name__}: "
                    f"{' '.join(str(err).split())[:300]}); rerun with compile=false"
                ) from err
            _uncompile(state)
            state.fallbacks += 1
            state.reason = f"{type(err).__name__} on {name}: {' '.join(str(err).split())[:300]}"
            log.warning("compile=true: torch.compile failed (%s); the model runs eager, "
                        "recorded as compile: false", state.reason)  # fmt: skip
            print(f"[toolkit.train] compile fell back to eager ({state.fallbacks}): "
                  f"{state.reason}", flush=True)  # fmt: skip
            return eager(*args, **kwargs)
        state.compiled_calls += 1
        return out

    return call


def apply(module: nn.Module, requested: bool, attr: str = "model", **options: Any) -> CompileState:
    """Compile ``module.<attr>`` (and its direct submodules) in place when ``requested``;
    ``options`` go to ``torch.compile`` (``backend``, ``mode``, ...)."""
    state = CompileState(requested=bool(requested))
    if not requested:
        return state
    model = getattr(module, attr, None)
    if not isinstance(model, nn.Module):
        raise CompileError(f"compile=true: {type(module).__name__} has no nn.Module .{attr}")
    for n, m in targets(model):
        name = f"{attr}.{n}" if n else attr
        m.compile(**options)
        compiled = m._compiled_call_impl
        m._compiled_call_impl = _guarded(state, name, compiled, m._call_impl)
        state.modules.append(m)
    state.active = True
    log.info("compile=true: %d modules compiled (torch %s)", len(state.modules), torch.__version__)
    return state
