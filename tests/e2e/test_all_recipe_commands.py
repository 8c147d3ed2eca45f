"""Inference through the recipe hooks for all four recipes: ``toolkit.predict`` on audio
(any rate, folder, manifest, too-long and unreadable files) and images (folder, any mode and
size), the exported speech encoder and caption step against the eager model at the README's
parity (1e-5), and ``toolkit.api`` (maps of the right shape whose rows sum to 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from recipes.captioning.scenes import FASHION_DIR
from toolkit.commands.export import export, load_runner
from toolkit.commands.train import train
from toolkit.data.audio import read_audio, resample
from toolkit.paths import CONF_DIR
from toolkit.training.checkpoints import load_module

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5  # the export parity the README states
FORMATS = ["torchscript", "onnx"]
TINY = {
    "asr": ["data.limit=16", "data.batch_size=8", "data.test_noise.types=[]",
            "data.test_noise.snrs=[]", "data.test_noise.rt60s=[]", "model.embed_dim=64",
            "model.ffn_dim=128", "model.encoder_layers=2", "model.decoder_layers=1",
            "trainer.max_time=null"],
    "captioning": ["data.scenes.train=32", "data.scenes.valid=8", "data.scenes.test=8",
                   "data.batch_size=16", "data.eval_batch_size=32"],
    "sentiment": ["data.limit=60", "data.extra_train_domains=[]"],
    "translation": ["attention=multihead", "data.limit=40", "data.vocab_size=200",
                    "data.val_bleu_size=8"],
}  # fmt: skip
pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
    pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("hooks")
    os.environ["ATTN_TOOLKIT_CACHE"] = str(base / "cache")
    return base


@pytest.fixture(scope="module")
def ckpt(base):
    """A tiny (debug=fast) checkpoint per recipe, trained on first use."""
    done: dict[str, Path] = {}

    def get(recipe: str) -> Path:
        if recipe not in done:
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose(config_name="train", overrides=[
                    f"recipe={recipe}", *TINY[recipe], "debug=fast", "threads=1",
                    "attention_examples=0", "trainer.enable_progress_bar=false"])  # fmt: skip
            GlobalHydra.instance().clear()
            done[recipe] = Path(train(cfg, base / recipe)["checkpoint"])
        return done[recipe]

    return get


def corpus_wavs(base: Path, ckpt) -> list[Path]:
    ckpt("asr")  # training the tiny speech model builds the corpus these files come from
    wavs = sorted((base / "cache" / "asr").glob("*/*/*.wav"))
    assert len(wavs) >= 20
    return wavs


def predict_cli(args: list[str], cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "toolkit.predict", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def rows_of(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- speech


def test_speech_any_sample_rate_same_transcript(ckpt, base, tmp_path):
    """One utterance (band-limited to 4 kHz) as 16 kHz WAV, 8 kHz WAV and 44.1 kHz FLAC:
    the same transcript (attention decoder, so it is not empty), the same frames, maps
    within 1e-3."""
    from toolkit.api import load

    model = load(ckpt("asr"))
    audio = read_audio(corpus_wavs(base, ckpt)[0])
    band = resample(resample(audio, 16000, 8000), 8000, 16000)
    files = {16000: tmp_path / "a16.wav", 8000: tmp_path / "a8.wav", 44100: tmp_path / "a.flac"}
    for rate, path in files.items():
        sf.write(path, resample(band, 16000, rate), rate)
    preds = model.predict(list(files.values()), mode="attention_beam", beam_size=2)
    assert [p["sample_rate"] for p in preds] == list(files)
    assert preds[0]["output"] != ""
    for p in preds:
        assert p["output"] == preds[0]["output"]
        assert p["frames"] == preds[0]["frames"]
        assert p["duration"] == pytest.approx(len(band) / 16000, abs=1e-3)
        assert np.abs(p["attention"] - preds[0]["attention"]).max() < 1e-3


def test_speech_folder_and_manifest_one_record_per_file(ckpt, base, tmp_path):
    wavs = corpus_wavs(base, ckpt)[:3]
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, wav in enumerate(wavs):
        audio = read_audio(wav)
        rate = (16000, 8000, 22050)[i]
        sf.write(folder / f"u{i}.{'flac' if i == 2 else 'wav'}", resample(audio, 16000, rate), rate)
    (folder / "notes.txt").write_text("not audio\n")
    out = tmp_path / "out"
    proc = predict_cli([f"ckpt={ckpt('asr')}", f"input={folder}", "plot=true",
                        f"hydra.run.dir={out}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    assert [Path(r["source"]).name for r in rows] == ["u0.wav", "u1.wav", "u2.flac"]
    assert [r["sample_rate"] for r in rows] == [16000, 8000, 22050]
    for r in rows:
        maps = np.load(out / "attention" / r["attention_file"])
        cross = maps["cross_attention"]
        assert cross.shape[0] == len(r["tokens"]) + 1 == len(maps["tokens"])
        np.testing.assert_allclose(cross.sum(1), 1.0, atol=1e-4)
        assert (out / "attention" / r["picture"]).stat().st_size > 1000
    manifest = folder / "m.jsonl"
    manifest.write_text('{"audio": "u1.wav", "text": "ref"}\n\n{"audio": "u0.wav"}\n')
    proc = predict_cli([f"ckpt={ckpt('asr')}", f"input={manifest}", "output=-",
                        f"hydra.run.dir={tmp_path / 'o2'}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [r["source"] for r in again] == [f"{manifest}:1", f"{manifest}:3"]
    assert [r["transcript"] for r in again] == [rows[1]["transcript"], rows[0]["transcript"]]


@pytest.mark.parametrize("case", ["too_long", "unreadable", "empty", "manifest_missing"])
def test_speech_bad_inputs_fail_naming_the_file(ckpt, tmp_path, case):
    path = tmp_path / "bad.wav"
    if case == "too_long":  # the tiny model's limit is the config's data.max_seconds: 20 s
        sf.write(path, np.zeros(8000 * 21, dtype=np.float32), 8000)
        expected = f"{path} lasts 21.0 s, longer than this model's limit of 20 s"
    elif case == "unreadable":
        path.write_bytes(b"RIFF not really a wave file" * 10)
        expected = f"unreadable audio {path}"
    elif case == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
        expected = f"zero-length audio: {path}"
    else:
        path = tmp_path / "m.jsonl"
        path.write_text('{"audio": "nope.wav"}\n')
        expected = f"audio file not found: {tmp_path / 'nope.wav'}"
    proc = predict_cli([f"ckpt={ckpt('asr')}", f"input={path}",
                        f"hydra.run.dir={tmp_path / 'o'}"], tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr[-2000:]
    if case == "too_long":  # the stated way out works
        proc = predict_cli([f"ckpt={ckpt('asr')}", f"input={path}", "+options.max_seconds=22",
                            f"hydra.run.dir={tmp_path / 'o'}"], tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert rows_of(tmp_path / "o")[0]["duration"] == pytest.approx(21.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_speech_export_parity(ckpt, base, tmp_path, fmt):
    """The exported encoder + CTC head on >= 20 real utterances, one at a time and as one
    padded batch: log-posteriors within 1e-5, the same frames and CTC greedy transcript."""
    from toolkit.decoding.ctc import ctc_greedy

    module = load_module(ckpt("asr"))
    info = export(module, fmt, tmp_path, check_inputs=4)
    assert info["graph"] == f"ctc_encoder.{'pt' if fmt == 'torchscript' else 'onnx'}"
    assert info["parity_random_inputs"]["max_abs_diff"] < TOL
    run = load_runner(tmp_path / info["graph"])
    waves = [torch.from_numpy(read_audio(w)) for w in corpus_wavs(base, ckpt)[:20]]
    batches = [[w] for w in waves] + [waves[:8]]
    for chunk in batches:
        lengths = torch.tensor([len(w) for w in chunk])
        wave = torch.zeros(len(chunk), int(lengths.max()))
        for i, w in enumerate(chunk):
            wave[i, : len(w)] = w
        log_probs, frames = run(wave, lengths)
        eager = module.transcribe(wave, lengths, mode="ctc_greedy")
        with torch.no_grad():
            reference = module.model.ctc_log_probs(eager["memory"])
        assert frames.tolist() == eager["mask"].sum(1).tolist()
        torch.testing.assert_close(log_probs, reference, atol=TOL, rtol=0)
        assert ctc_greedy(log_probs, frames, info["blank_id"]) == eager["tokens"]


# ------------------------------------------------------------------------- captioning


def test_captioning_predict_folder_any_mode_and_size(ckpt, tmp_path):
    from recipes.captioning.predict import caption_images
    from recipes.captioning.predict import main as caption_main

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 80), dtype=np.uint8), "L").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (120, 90, 4), dtype=np.uint8), "RGBA").save(
        folder / "b.png"
    )
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "c.jpg")
    (folder / "notes.txt").write_text("not an image\n")
    out = tmp_path / "out"
    proc = predict_cli([f"ckpt={ckpt('captioning')}", f"input={folder}", "plot=true",
                        f"hydra.run.dir={out}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    assert [Path(r["source"]).name for r in rows] == ["a.png", "b.png", "c.jpg"]
    module = load_module(ckpt("captioning"))
    regions = int(np.prod(module.grid()))
    for r in rows:
        assert r["caption"] == " ".join(r["words"])
        maps = np.load(out / "attention" / r["attention_file"])
        assert maps["attention"].shape == (len(r["words"]) + 1, regions)
        np.testing.assert_allclose(maps["attention"].sum(1), 1.0, atol=1e-4)
        assert (out / "attention" / r["picture"]).stat().st_size > 1000
    # the recipe's own command and function give the same captions
    files = [str(folder / n) for n in ("a.png", "b.png", "c.jpg")]
    saved = caption_images(module, files, tmp_path / "own")
    assert [s["caption"] for s in saved] == [r["caption"] for r in rows]
    caption_main(["--ckpt", str(ckpt("captioning")), "--images", files[2],
                  "--out", str(tmp_path / "cli")])  # fmt: skip
    again = json.loads((tmp_path / "cli" / "captions.json").read_text())
    assert again[0]["caption"] == rows[2]["caption"]
    assert (tmp_path / "cli" / "c.png").stat().st_size > 1000
    # an unreadable image is named
    (folder / "d.png").write_bytes(b"not a png")
    proc = predict_cli([f"ckpt={ckpt('captioning')}", f"input={folder}",
                        f"hydra.run.dir={tmp_path / 'o2'}"], tmp_path)  # fmt: skip
    assert proc.returncode != 0 and f"unreadable image {folder / 'd.png'}" in proc.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_captioning_export_greedy_parity(ckpt, tmp_path, fmt):
    """The exported caption step, greedy, on 20 test scenes: the eager greedy words, and
    every step's log-probabilities and attention within 1e-5 of the eager teacher-forced
    model."""
    from recipes.captioning.data import CaptioningDataModule
    from recipes.captioning.export import greedy_caption

    module = load_module(ckpt("captioning"))
    info = export(module, fmt, tmp_path, check_inputs=4)
    assert info["parity_random_inputs"]["max_abs_diff"] < TOL
    step = load_runner(tmp_path / info["graph"])
    dm = CaptioningDataModule(scenes={"train": 32, "valid": 8, "test": 20},
                              state=module.data_state)  # fmt: skip
    dm.prepare_data()
    dm.setup()
    batch = dm.examples("test", 20)
    assert len(batch["images"]) == 20
    eager = module.generate(batch, beam_size=1)
    for i, (words, _) in enumerate(eager):
        image = batch["images"][i : i + 1]
        tokens, steps, maps = greedy_caption(step, (image,), info["bos_id"], info["eos_id"],
                                             info["prefix_len"])  # fmt: skip
        assert module.vocab.decode(tokens) == words
        prefix = torch.tensor([[info["bos_id"], *tokens]])[:, : len(steps)]
        with torch.no_grad():
            logits, weights = module.model(image, prefix)
        torch.testing.assert_close(torch.stack(steps), logits[0].float().log_softmax(-1),
                                   atol=TOL, rtol=0)  # fmt: skip
        torch.testing.assert_close(torch.stack(maps), weights[0].float(), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ api


def test_api_all_four_recipes(ckpt, base, tmp_path):
    """``toolkit.api.load(...).predict``: the answer of ``toolkit.predict``, and 2-D maps
    labelled by their axes, every row summing to 1."""
    from toolkit.api import load

    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    wav = corpus_wavs(base, ckpt)[0]
    cases = {
        "sentiment": (["A wonderful, moving film.", "Dull."], "prediction"),
        "translation": (["Open file", "Cancel"], "translation"),
        "captioning": ([image, Image.fromarray(image).convert("L")], "caption"),
        "asr": ([str(wav), (read_audio(wav, 8000), 8000)], "transcript"),
    }
    for recipe, (inputs, field) in cases.items():
        model = load(ckpt(recipe))
        assert model.recipe == recipe
        preds = model.predict(inputs)
        assert len(preds) == len(inputs)
        for p in preds:
            att = p["attention"]
            assert isinstance(att, np.ndarray) and att.ndim == 2, recipe
            assert att.shape == (len(p["rows"]), len(p["columns"])), recipe
            np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-4, err_msg=recipe)
            assert (att >= 0).all()
        if recipe in ("sentiment", "translation"):
            records = model.predict_records(inputs)
            assert [p["output"] for p in preds] == [r[field] for r in records], recipe
        single = model.predict(inputs[0])
        assert isinstance(single, dict) and single["output"] == preds[0]["output"]
    sentiment = load(ckpt("sentiment")).predict("Dull.")
    assert sentiment["columns"] == sentiment["tokens"] and sentiment["rows"] == ["pooling"]
    assert sentiment["output"] == max(sentiment["scores"], key=sentiment["scores"].get)
