"""compile=true: the model compiled in place trains to the same loss as eager, keeps its
checkpoint keys, and a run records the setting it used (compile: false after a fall-back)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from toolkit.commands.train import train
from toolkit.training import compile as compile_mod

TINY = ["data.limit=40", "data.extra_train_domains=[]", "data.batch_size=8",
        "data.eval_batch_size=16", "threads=1", "attention_examples=0",
        "trainer.enable_progress_bar=false", "trainer.max_epochs=null", "trainer.max_steps=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _losses(module: Tiny, steps: int = 2) -> list[float]:
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    out = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(module.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


def test_compiled_model_trains_like_eager_and_keeps_its_keys():
    """Inductor, the default backend, on this CPU: same losses as eager within float
    tolerance; the state_dict keys are the eager ones."""
    torch.manual_seed(0)
    eager = Tiny()
    compiled = Tiny()
    compiled.load_state_dict(eager.state_dict())
    state = compile_mod.apply(compiled, True)
    assert state.active and state.requested and len(state.modules) == 1 + 2  # model, 2 linears
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-5, abs=1e-6)
    assert state.active and state.compiled_calls >= 2 and state.record() == {
        "compile": True, "compile_fallbacks": 0}  # fmt: skip


def test_off_by_default_compiles_nothing():
    module = Tiny()
    state = compile_mod.apply(module, False)
    assert state.record() == {"compile": False, "compile_fallbacks": 0}
    assert module.model._compiled_call_impl is None


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler here")


def test_compiler_failure_falls_back_to_eager_and_is_counted(capsys):
    torch.manual_seed(0)
    eager, module = Tiny(), Tiny()
    module.load_state_dict(eager.state_dict())
    state = compile_mod.apply(module, True, backend=_failing_backend)
    assert _losses(module) == pytest.approx(_losses(eager))
    assert state.record() == {"compile": False, "compile_fallbacks": 1}
    assert "no C++ compiler here" in state.reason
    assert "fell back to eager" in capsys.readouterr().out
    assert all(m._compiled_call_impl is None for m in state.modules)


def test_run_records_compile(compose_cfg, tmp_path, monkeypatch):
    """A tiny sentiment run with compile=true records compile: true (Dynamo traces the real
    model; the cheap ``eager`` backend keeps the test short), and one whose compilation fails
    records compile: false with the fall-back counted."""
    real_apply = compile_mod.apply
    monkeypatch.setattr(compile_mod, "apply", lambda m, r: real_apply(m, r, backend="eager"))
    cfg = compose_cfg("recipe=sentiment", "compile=true", *TINY)
    result = train(cfg, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["throughput"]
    assert (recorded["compile"], recorded["compile_fallbacks"]) == (True, 0)
    assert result["throughput"]["compile"] is True
    assert "compile: true" in (tmp_path / "run" / "config.yaml").read_text()

    monkeypatch.setattr(compile_mod, "apply",
                        lambda m, r: real_apply(m, r, backend=_failing_backend))  # fmt: skip
    result = train(compose_cfg("recipe=sentiment", "compile=true", *TINY), tmp_path / "run2")
    assert (result["throughput"]["compile"], result["throughput"]["compile_fallbacks"]) == (
        False, 1)  # fmt: skip
