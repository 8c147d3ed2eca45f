"""trainer.precision=auto: bf16 only where the hardware runs it, with the capability faked
both ways; an explicit bf16 request on an emulating machine fails with a clear message; no
shipped config forces a precision."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from toolkit.training import precision

CONF = Path(__file__).resolve().parents[2] / "conf"
AVX2_ONLY = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}
SAPPHIRE = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True}


@pytest.fixture
def fake_cpu(monkeypatch):
    def set_flags(flags: dict[str, bool]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: dict(flags))
        monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)

    return set_flags


def test_native_detection_reads_the_bf16_flags(fake_cpu):
    assert precision.cpu_bf16_native(SAPPHIRE)
    assert precision.cpu_bf16_native({"avx512_bf16": True})
    assert precision.cpu_bf16_native({"amx_bf16": True})
    assert not precision.cpu_bf16_native(AVX2_ONLY)  # AVX512 without BF16 still emulates
    assert not precision.cpu_bf16_native({})


def test_auto_picks_bf16_only_where_native(fake_cpu):
    fake_cpu(SAPPHIRE)
    chosen = precision.resolve("auto", "cpu")
    assert (chosen.requested, chosen.resolved) == ("auto", "bf16-mixed")
    assert precision.resolve("bf16-mixed", "cpu").resolved == "bf16-mixed"
    fake_cpu(AVX2_ONLY)
    chosen = precision.resolve("auto", "cpu")
    assert (chosen.requested, chosen.resolved) == ("auto", "32-true")
    assert "not native" in chosen.reason


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true", "bf16"])
def test_explicit_bf16_where_emulated_is_a_clear_error(fake_cpu, asked):
    fake_cpu(AVX2_ONLY)
    with pytest.raises(precision.PrecisionError) as err:
        precision.resolve(asked, "cpu")
    message = str(err.value)
    assert f"trainer.precision={asked}" in message
    assert "not native" in message and "trainer.precision=auto" in message


@pytest.mark.parametrize("asked", ["32-true", "32", "64-true", "16-mixed"])
def test_other_precisions_are_kept(fake_cpu, asked):
    fake_cpu(AVX2_ONLY)
    assert precision.resolve(asked, "cpu").resolved == asked


def test_describe_cpu_names_the_bf16_support(fake_cpu):
    fake_cpu(AVX2_ONLY)
    assert "bf16 emulated" in precision.describe_cpu()
    fake_cpu(SAPPHIRE)
    assert "AVX512-BF16" in precision.describe_cpu()


def _yaml_values(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _yaml_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _yaml_values(v, f"{path}[{i}]")
    else:
        yield path, node


def test_no_shipped_config_forces_a_precision():
    """Every precision in conf/ is `auto`, and no override list (profiles, recipe report
    budgets, experiments) sets trainer.precision: the machine decides."""
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) > 20
    seen = 0
    for f in files:
        data = OmegaConf.to_container(OmegaConf.load(f), resolve=False)
        for key, value in _yaml_values(data):
            if key.endswith("precision"):
                seen += 1
                assert value == "auto", f"{f}: {key}={value}"
            if isinstance(value, str):
                assert not re.search(r"precision=", value), f"{f}: {key}: {value}"
    assert seen >= 3  # cpu, gpu, fsdp trainers and evaluate


def test_a_recipe_measured_slower_in_bf16_runs_fp32_on_cpus(fake_cpu, monkeypatch):
    """recipe.cpu_bf16=false: auto runs fp32 on a native-bf16 CPU; an explicit bf16 request
    is still honoured; on a GPU with native bf16 auto keeps bf16."""
    fake_cpu(SAPPHIRE)
    chosen = precision.resolve("auto", "cpu", cpu_bf16=False)
    assert chosen.resolved == "32-true" and "recipe.cpu_bf16=false" in chosen.reason
    assert precision.resolve("auto", "cpu", cpu_bf16=True).resolved == "bf16-mixed"
    assert precision.resolve("bf16-mixed", "cpu", cpu_bf16=False).resolved == "bf16-mixed"
    fake_cpu(AVX2_ONLY)
    assert precision.resolve("auto", "cpu", cpu_bf16=False).resolved == "32-true"
    monkeypatch.setattr(precision, "cuda_bf16_native", lambda: True)
    assert precision.resolve("auto", "gpu", cpu_bf16=False).resolved == "bf16-mixed"
    # accelerator=auto on a machine with a CUDA card trains on the GPU: bf16 stays
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    chosen = precision.resolve("auto", "auto", cpu_bf16=False)
    assert chosen.resolved == "bf16-mixed" and "GPU" in chosen.reason


def test_train_reads_the_recipes_cpu_bf16(fake_cpu):
    from toolkit.commands.train import resolve_precision

    fake_cpu(SAPPHIRE)
    for flag, expected in ((False, "32-true"), (True, "bf16-mixed"), (None, "bf16-mixed")):
        recipe = {"name": "x"} if flag is None else {"name": "x", "cpu_bf16": flag}
        cfg = OmegaConf.create({"recipe": recipe, "trainer": {"precision": "auto"}})
        assert resolve_precision(cfg).resolved == expected
        assert cfg.trainer.precision == expected
