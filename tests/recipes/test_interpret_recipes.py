"""``python -m toolkit.interpret`` end to end on a tiny checkpoint of every recipe: the command
writes interpret.json with finite numbers (erasure drops, AOPC per ranking), the rollout
pictures where the encoder has self-attention layers (a ``null`` with a reason elsewhere),
and metrics.json gains the ``interpretability`` entry."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.captioning.scenes import FASHION_DIR
from toolkit.commands.interpret import main, parse_args
from toolkit.commands.train import train
from toolkit.interpret.checkpoint import run_folder

ROOT = Path(__file__).resolve().parents[2]
KS = ["1", "2"]


def _interpret(run: Path, *extra: str) -> dict:
    ckpt = run / "checkpoints" / "last.ckpt"
    before = json.loads((run / "metrics.json").read_text())
    code = main([f"ckpt={ckpt}", "examples=4", "ks=[1,2]", "resamples=50", "batch_size=4",
                 "figures=1", "threads=1", *extra])  # fmt: skip
    assert code == 0
    data = json.loads((run / "interpret.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    # the entry is added, nothing else of metrics.json changes
    assert {k: v for k, v in metrics.items() if k != "interpretability"} == before
    entry = metrics["interpretability"]
    assert entry["file"] == "interpret.json" and entry["ks"] == [1, 2] and entry["seed"] == 0
    assert entry["examples"] == data["erasure"]["examples"] >= 1
    return data


def _check_erasure(data: dict, rankings: set[str]) -> None:
    erasure = data["erasure"]
    assert set(erasure["methods"]) == rankings | {"random"}
    for name, method in erasure["methods"].items():
        for k in KS:
            assert math.isfinite(method["drop"][k]), (name, k)
        assert math.isfinite(method["aopc"])
        # AOPC over ks = [1, 2] is (drop_1 + drop_2) / 3
        assert method["aopc"] == pytest.approx(sum(method["drop"][k] for k in KS) / 3, abs=1e-9)
    assert math.isfinite(erasure["score_mean"])
    for name in rankings:
        ratio = erasure["ratio_to_random"][name]["aopc"]
        # no value or no interval: said why
        assert (ratio["value"] is None or ratio["ci95"] is None) == ("reason" in ratio)
        assert ratio["value"] is None or math.isfinite(ratio["value"])
        assert ratio["ci95"] is None or ratio["ci95"][0] <= ratio["ci95"][1]
    for key in ("score", "inputs", "masking", "ranking"):
        assert erasure[key], key


def _check_rollout(run: Path, data: dict, layers: int | None) -> None:
    rollout = data["rollout"]
    if layers is None:
        assert rollout["value"] is None and rollout["reason"]
        return
    assert len(rollout["layers"]) == layers and rollout["pictures"] == ["rollout_000.png"]
    assert (run / "interpret" / "rollout_000.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- sentiment
SENTIMENT = ["recipe=sentiment", "debug=fast", "data.limit=40", "data.batch_size=8",
             "data.eval_batch_size=16", "threads=1", "attention_examples=1"]  # fmt: skip


def test_sentiment_rnn(compose_cfg, tmp_path):
    train(compose_cfg(*SENTIMENT, "attention=additive"), tmp_path / "run")
    data = _interpret(tmp_path / "run")
    assert data["recipe"] == "sentiment" and data["erasure"]["examples"] == 4
    _check_erasure(data, {"attention", "saliency"})
    _check_rollout(tmp_path / "run", data, None)  # a BiGRU has no self-attention layers


@pytest.mark.slow
def test_sentiment_transformer_rollout(compose_cfg, tmp_path):
    cfg = compose_cfg(*SENTIMENT, "attention=multihead", "model=transformer")
    train(cfg, tmp_path / "run")
    data = _interpret(tmp_path / "run")
    _check_erasure(data, {"attention", "saliency", "attention_rollout"})
    _check_rollout(tmp_path / "run", data, 2)


# --------------------------------------------------------------------------- translation
@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/locale/de/LC_MESSAGES").is_dir(), reason="no Debian message catalogs"
)
def test_translation_transformer(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "recipe=translation", "debug=fast", "data.limit=40", "data.vocab_size=200",
        "data.val_bleu_size=8", "threads=1", "model.embed_dim=32", "model.ffn_dim=64",
        "model.encoder_layers=2", "model.decoder_layers=1", "decode.beam_size=1",
        "attention_examples=1", "trainer.enable_progress_bar=false",
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    data = _interpret(tmp_path / "run")
    assert data["erasure"]["hypothesis"] == "greedy"
    _check_erasure(data, {"attention", "saliency", "attention_rollout"})
    _check_rollout(tmp_path / "run", data, 2)


# ---------------------------------------------------------------------------- captioning
@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_captioning_lstm(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "recipe=captioning", "data.scenes.train=32", "data.scenes.valid=4",
        "data.scenes.test=4", "data.batch_size=16", "data.eval_batch_size=32", "threads=1",
        "trainer.enable_progress_bar=false", "debug=fast", "attention=additive",
        "attention_examples=1", "decode.max_len=6", "decode.beam_size=1",
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    data = _interpret(tmp_path / "run", "examples=2")
    erasure = data["erasure"]
    assert erasure["examples"] == 2 - erasure["images_with_empty_caption"]
    assert erasure["words"] >= erasure["examples"]
    _check_erasure(data, {"attention", "saliency"})
    _check_rollout(tmp_path / "run", data, None)


# ----------------------------------------------------------------------------------- asr
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_asr_conformer(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "recipe=asr", "data.limit=16", "data.batch_size=8", "data.eval_batch_size=32",
        "data.test_noise.types=[white]", "data.test_noise.snrs=[10]", "decode.mode=ctc_greedy",
        "threads=1", "model.embed_dim=64", "model.ffn_dim=128", "model.encoder_layers=2",
        "model.decoder_layers=1", "trainer.max_time=null", "trainer.enable_progress_bar=false",
        "debug=fast", "attention_examples=1",
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    data = _interpret(tmp_path / "run")
    _check_erasure(data, {"attention", "saliency"})
    _check_rollout(tmp_path / "run", data, 2)

    # a CTC-only model has no trained attention decoder: null with the reason, no number
    from recipes.asr import interpret as adapter
    from toolkit.interpret.common import Settings
    from toolkit.training.checkpoints import build_datamodule, load_module

    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt")
    module.ctc_weight = 1.0
    from omegaconf import OmegaConf

    saved = OmegaConf.create(module.hparams["cfg"])
    dm = build_datamodule(saved.data, module.data_state)
    dm.prepare_data()
    dm.setup("test")
    out = adapter.interpret(module, dm, Settings(examples=2, figures=0))
    assert out["erasure"]["value"] is None and "ctc_weight=1" in out["erasure"]["reason"]


# ------------------------------------------------------------------------------ command
def test_arguments_and_run_folder(tmp_path):
    opts = parse_args(["ckpt=a/checkpoints/last.ckpt", "ks=[4,1,2]", "examples=5",
                       "data.limit=3"])  # fmt: skip
    assert opts["ks"] == [1, 2, 4] and opts["examples"] == 5 and opts["seed"] == 0
    assert opts["data"] == {"limit": 3}
    with pytest.raises(SystemExit):
        parse_args(["ckpt=x", "ks=[0,1]"])
    with pytest.raises(SystemExit):
        parse_args(["ckpt=x", "exampels=3"])
    run = tmp_path / "run"
    assert run_folder(run / "checkpoints" / "last.ckpt") == run.resolve()
    assert run_folder(tmp_path / "model.ckpt") == tmp_path.resolve()


def test_command_needs_a_checkpoint():
    proc = subprocess.run([sys.executable, "-m", "toolkit.interpret"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "ckpt=PATH is required" in proc.stderr
