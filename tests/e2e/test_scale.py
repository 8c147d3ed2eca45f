"""Scale-out: a 2-process DDP fit on CPU (gloo) through the CLI, the multi-node / FSDP /
SLURM configs compose, and every recipe trains under bf16 autocast (fast_dev_run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from toolkit.commands.train import train
from toolkit.paths import CONF_DIR
from toolkit.training.precision import bf16_native, describe_cpu

ROOT = Path(__file__).resolve().parents[2]
LANDED = {"sentiment", "translation", "captioning", "asr"}  # each runs in the fast suite (~6 s)


def compose_train(*overrides: str, hydra_config: bool = False):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(
                config_name="train", overrides=list(overrides), return_hydra_config=hydra_config
            )
    finally:
        GlobalHydra.instance().clear()


def test_ddp_two_cpu_processes(tmp_path):
    """No hydra.run.dir given: the default `runs/…/${now:…}` must still give ONE folder,
    although Lightning's launcher restarts the script for rank 1 seconds later."""
    env = {**os.environ, "ATTN_TOOLKIT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    args = [
        "recipe=sentiment", "debug=fast", "data.limit=40", "threads=1",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.train", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    runs = [p.parent for p in (tmp_path / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    assert len(runs) == 1, runs  # not one folder per rank
    run = runs[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "runs"]  # no outputs/
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["throughput"]["processes"] == 2
    assert metrics["test_examples"] == 4  # the whole (limited) test set, tested once
    # rank 1 ran in the same folder (its Hydra job log is there) but wrote no report files
    assert (run / "train_ddp_process_1.log").is_file()
    assert not list(run.rglob("*.hydra*/*process_1*"))
    assert len(list(run.glob("**/metrics.json"))) == 1
    assert sorted(p.name for p in (run / "attention").iterdir()) == [
        "example_000.npz", "example_001.npz", "pooling.png"
    ]  # fmt: skip
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_scale_configs_compose(monkeypatch):
    cfg = compose_train("trainer=ddp", "trainer.num_nodes=2")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2
    assert cfg.trainer.use_distributed_sampler is False

    monkeypatch.setenv("SLURM_NNODES", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8")
    cfg = compose_train("trainer=slurm")
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (4, 8)

    cfg = compose_train("trainer=fsdp", "recipe=translation")
    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy).__name__ == "FSDPStrategy"
    assert cfg.trainer.precision == "auto"  # bf16-mixed on GPUs that run it natively


def test_submitit_launcher_config_composes():
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher not installed"
    )
    cfg = compose_train("launcher=slurm", hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 1


def _tiny_overrides(recipe: str) -> list[str] | None:
    """The recipe's own tiny setting (``TINY`` in tests/recipes/test_<recipe>.py)."""
    path = ROOT / "tests" / "recipes" / f"test_{recipe}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"_tiny_{recipe}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a broken import is a failure, not a skip
    tiny = getattr(module, "TINY", None)
    return [t for t in tiny if not t.startswith("recipe=")] if tiny else None


def _recipe_params():
    names = sorted(p.stem for p in (Path(CONF_DIR) / "recipe").glob("*.yaml"))
    return [pytest.param(n, marks=() if n in LANDED else pytest.mark.slow, id=n) for n in names]


@pytest.mark.skipif(
    not bf16_native("cpu"),
    reason=f"bf16 is not native on this CPU ({describe_cpu()}): the bf16 path runs only "
    "where it is (an explicit request fails at start-up, tests/unit/test_precision.py)",
)
@pytest.mark.parametrize("recipe", _recipe_params())
def test_bf16_mixed_fast_dev_run(recipe, tmp_path, monkeypatch):
    tiny = _tiny_overrides(recipe)
    if tiny is None:
        pytest.skip(f"no tiny data setting for {recipe} (TINY in tests/recipes/test_{recipe}.py)")
    monkeypatch.setenv("ATTN_TOOLKIT_CACHE", str(tmp_path / "cache"))
    cfg = compose_train(
        f"recipe={recipe}", *tiny, "threads=1", "trainer.precision=bf16-mixed",
        "+trainer.fast_dev_run=true", "attention_examples=1",
    )  # fmt: skip
    result = train(cfg, tmp_path / "run")  # a corpus that cannot be built fails the test
    assert result["throughput"]["precision"] == "bf16-mixed"
    assert result["metrics"], result
    values = [v for v in result["metrics"].values() if isinstance(v, float)]
    assert values and all(v == v for v in values)  # no NaN under autocast
