"""Exported inference graphs (TorchScript, ONNX via onnxruntime) against the eager model on
>= 20 real inputs: identical labels / greedy tokens, logits within 1e-4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from toolkit.commands.export import export, greedy_decode, load_runner, max_decode_len
from toolkit.commands.train import train
from toolkit.paths import CONF_DIR
from toolkit.training.checkpoints import load_module

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5  # the parity the README states (largest difference measured: 4.3e-6, ONNX)
FORMATS = [
    "torchscript",
    pytest.param("onnx", marks=pytest.mark.skipif(
        not all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxruntime")),
        reason="onnx/onnxruntime not installed (pip install .[export])",
    )),
]  # fmt: skip
TINY = {
    "sentiment": ["data.limit=60", "data.extra_train_domains=[]"],
    "translation": ["attention=multihead", "data.limit=40", "data.vocab_size=200",
                    "data.val_bleu_size=8"],
}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    os.environ["ATTN_TOOLKIT_CACHE"] = str(base / "cache")
    out = {}
    for recipe, tiny in TINY.items():
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name="train",
                overrides=[f"recipe={recipe}", *tiny, "debug=fast", "threads=1",
                           "trainer.enable_progress_bar=false", "attention_examples=1"],
            )  # fmt: skip
        GlobalHydra.instance().clear()
        result = train(cfg, base / recipe)
        out[recipe] = Path(result["checkpoint"])
    return out


def _sentences(recipe: str, n: int = 24) -> list[str]:
    """Real test sentences of the recipe's embedded corpus, of varied lengths."""
    from recipes.sentiment.corpus import build_sentiment_corpus, load_sentiment_splits
    from recipes.translation.catalogs import build_catalog_corpus, load_catalog_splits

    if recipe == "sentiment":
        pairs = load_sentiment_splits(build_sentiment_corpus("movie", limit=60, seed=0))
        texts = [t for split in ("test", "valid", "train") for t, _ in pairs[split]]
    else:
        pairs = load_catalog_splits(build_catalog_corpus("de", limit=40))
        texts = [s for split in ("test", "valid", "train") for s, _ in pairs[split]]
    # the shortest ones: an untrained tiny model decodes to the length limit, and the
    # exported step graph re-runs the whole prefix each step (quadratic)
    texts = sorted(set(texts), key=lambda t: (len(t), t))
    assert len(texts) >= n
    return texts[:n]


@pytest.mark.parametrize("fmt", FORMATS)
def test_sentiment_export_parity(checkpoints, tmp_path, fmt):
    from recipes.sentiment.predict import text_encoder

    module = load_module(checkpoints["sentiment"])
    info = export(module, fmt, tmp_path, check_inputs=4)
    run = load_runner(tmp_path / info["graph"])
    dm = text_encoder(module)
    texts = _sentences("sentiment")
    # one at a time (no padding) and as one padded batch
    batches = [[t] for t in texts] + [texts]
    n_checked = 0
    with torch.no_grad():
        for chunk in batches:
            batch = dm.collate([(dm.encode(t), 0) for t in chunk])
            eager, _ = module(batch["ids"], batch["mask"])
            exported = run(batch["ids"], batch["mask"])
            torch.testing.assert_close(exported, eager.float(), atol=TOL, rtol=0)
            assert exported.argmax(-1).tolist() == eager.argmax(-1).tolist()
            n_checked += len(chunk)
    assert n_checked >= 2 * 20
    assert info["labels"] == list(module.label_map.labels)


@pytest.mark.parametrize("fmt", FORMATS)
def test_translation_greedy_export_parity(checkpoints, tmp_path, fmt):
    module = load_module(checkpoints["translation"])
    info = export(module, fmt, tmp_path, check_inputs=4)
    step = load_runner(tmp_path / info["graph"])
    sources = _sentences("translation")
    eager = module.translate(sources, beam_size=1)
    tok = module.tokenizer
    for source, reference in zip(sources, eager, strict=True):
        ids = tok.encode(source)[:255] + [tok.eos_id]
        src = torch.tensor([ids])
        mask = torch.ones_like(src, dtype=torch.bool)
        tokens, steps = greedy_decode(step, src, mask, info["bos_id"], info["eos_id"],
                                      max_decode_len(module, len(ids)))  # fmt: skip
        assert tokens == reference["tokens"], source
        # every step's log-probabilities against the eager model, teacher-forced
        prefix = torch.tensor([[tok.bos_id, *tokens]])[:, : len(steps)]
        with torch.no_grad():
            logits, _ = module.model(src, mask, prefix)
        torch.testing.assert_close(
            torch.stack(steps), logits[0].float().log_softmax(-1), atol=TOL, rtol=0
        )


def test_export_cli_writes_graph_and_metadata(checkpoints, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.export", f"ckpt={checkpoints['sentiment']}",
         "format=torchscript", f"hydra.run.dir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["graph"] == "classifier.pt" and (tmp_path / "classifier.pt").is_file()
    assert info["parity_random_inputs"]["max_abs_diff"] < TOL
    bad = subprocess.run(
        [sys.executable, "-m", "toolkit.export", f"ckpt={checkpoints['sentiment']}",
         "format=tflite", f"hydra.run.dir={tmp_path / 'bad'}"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and "valid choices: torchscript, onnx" in bad.stderr


def test_safetensors_export_loads_without_pickle(checkpoints, tmp_path):
    """format=safetensors: weights + config.yaml + data_state.json; toolkit.evaluate's
    loader and init_from= read the folder and get the same weights and predictions."""
    from toolkit.commands.train import load_init_weights
    from toolkit.training.checkpoints import read_checkpoint

    for recipe, ckpt in checkpoints.items():
        module = load_module(ckpt)
        folder = tmp_path / recipe
        info = export(module, "safetensors", folder)
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.yaml", "data_state.json", "export.json", "model.safetensors"
        ]  # fmt: skip
        assert info["tensors"] == len(module.state_dict())
        assert (folder / "model.safetensors").read_bytes()[8:9] == b"{"  # a JSON header
        again = load_module(folder)
        for key, value in module.state_dict().items():
            assert torch.equal(again.state_dict()[key], value), key
        assert again.data_state == module.data_state
        fresh = load_module(ckpt)
        with torch.no_grad():
            for p in fresh.parameters():
                p.zero_()
        load_init_weights(fresh, str(folder / "model.safetensors"))
        for key, value in module.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key
        assert read_checkpoint(folder)["hyper_parameters"]["cfg"]["recipe"]["name"] == recipe
    sentences = _sentences("sentiment", 8)
    ours = load_module(checkpoints["sentiment"]).predict_records(sentences)
    theirs = load_module(tmp_path / "sentiment").predict_records(sentences)
    assert [(r["prediction"], r["scores"]) for r in ours] == [
        (r["prediction"], r["scores"]) for r in theirs
    ]


def test_safetensors_export_with_a_foreign_target_is_refused(checkpoints, tmp_path):
    from toolkit.training.checkpoints import CheckpointError

    folder = tmp_path / "sentiment"
    export(load_module(checkpoints["sentiment"]), "safetensors", folder)
    text = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(
        text.replace("recipes.sentiment.model.RNNClassifier", "os.system")
    )
    with pytest.raises(CheckpointError, match=r"refused: its config names model._target_='os"):
        load_module(folder)
