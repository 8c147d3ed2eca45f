"""Speech data: noise at a requested SNR, audio I/O, own-data manifests and their errors,
the command grammar, a tiny espeak-ng corpus build, and WER/CER against jiwer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from recipes.asr.corpus import (
    SPLIT_SIZES,
    TEST_VOICES,
    TRAIN_VOICES,
    command_split,
    command_splits,
    grammar_vocabulary,
    held_out_record,
    number_words,
)
from recipes.asr.noise import (
    NOISE_TYPES,
    NoiseMixer,
    band_power,
    condition_grid,
    high_pass,
    mix_at_snr,
    realised_snr,
    reverb,
)
from toolkit.data.audio import read_audio, read_jsonl_manifest, read_kaldi_dir, read_librispeech
from toolkit.data.cache import DataError
from toolkit.metrics.asr import TextNormalization, error_rates, wer_grid

RECORDED = "/usr/share/sounds/alsa/Noise.wav"


def tone(seconds: float = 1.0, sr: int = 16000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def mixer() -> NoiseMixer:
    rng = np.random.default_rng(0)
    pool = [tone(0.7 + 0.1 * i) * rng.uniform(0.5, 1.0) for i in range(5)]
    recorded = RECORDED if Path(RECORDED).is_file() else None
    return NoiseMixer(babble_pool=pool, recorded=recorded)


@pytest.mark.parametrize("kind", NOISE_TYPES)
@pytest.mark.parametrize("snr", [20.0, 10.0, 5.0, 0.0, -5.0])
def test_realised_snr_equals_requested(kind, snr):
    m = mixer()
    if kind == "recorded" and m.recorded is None:
        pytest.skip("alsa-utils Noise.wav not installed")
    speech = tone()
    noise = m.noise(kind, len(speech), np.random.default_rng(1))
    mix, info = mix_at_snr(speech, noise, snr)
    # What was actually added: mix minus the (possibly rescaled) speech.
    added = mix - info["gain"] * speech
    assert abs(realised_snr(info["gain"] * speech, added) - snr) < 0.1
    assert np.abs(mix).max() <= 0.99 + 1e-6


def test_band_power_is_the_power_above_the_cut_off():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    low = np.sin(2 * np.pi * 20 * t)  # below 50 Hz: not counted
    high = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert band_power(low + high) == pytest.approx(0.125, rel=1e-6)  # 0.5^2 / 2
    x = rng.standard_normal(4001)
    assert band_power(x) == pytest.approx(float(np.mean(high_pass(x) ** 2)), rel=1e-9)


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_every_noise_has_its_power_where_speech_is(kind):
    """A noise at 0 dB must be loud where speech is: none of it below the 50 Hz cut-off,
    and at least a fifth of its power above 150 Hz (a 1/f^2 noise generated down to the
    lowest FFT bin had under 0.1 % there, so its "0 dB" mixes were nearly clean)."""
    m = mixer()
    if kind == "recorded" and m.recorded is None:
        pytest.skip("alsa-utils Noise.wav not installed")
    speech = tone(2.0)
    mix, info = mix_at_snr(speech, m.noise(kind, len(speech), np.random.default_rng(3)), 0.0)
    added = mix - info["gain"] * speech
    spectrum = np.abs(np.fft.rfft(added.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(added), 1 / 16000)
    assert spectrum[freqs < 50].sum() < 1e-9 * spectrum.sum()
    assert spectrum[freqs >= 150].sum() > 0.2 * spectrum.sum()


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_band_limited_noise_mixes_as_the_filtered_path_does(kind):
    """The generated colours have no power below the cut-off, so mixing them without the
    high-pass (``band_limited=True``, what the mixer does for them) gives the mix of the
    full path to float32 rounding."""
    speech = tone(1.37)  # an odd length, as real utterances have
    noise = mixer().noise(kind, len(speech), np.random.default_rng(5))
    full, info_full = mix_at_snr(speech, noise, 3.0)
    fast, info_fast = mix_at_snr(speech, noise, 3.0, band_limited=True)
    assert info_fast["noise_gain"] == pytest.approx(info_full["noise_gain"], rel=1e-6)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-6)


def test_high_pass_power_is_the_filtered_signals_power():
    from recipes.asr.noise import _high_pass_with_power

    x = np.random.default_rng(2).standard_normal(4001).astype(np.float32) + 0.3
    filtered, p = _high_pass_with_power(x)
    np.testing.assert_array_equal(filtered, high_pass(x))
    assert p == pytest.approx(band_power(filtered), rel=1e-6)
    assert p == pytest.approx(band_power(x), rel=1e-9)


def test_mix_never_clips_and_says_so():
    speech = tone(amp=0.95)
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    mix, info = mix_at_snr(speech, noise, 0.0)
    assert info["rescaled"] and info["gain"] < 1.0
    assert np.abs(mix).max() == pytest.approx(0.99, abs=1e-6)
    added = mix - info["gain"] * speech
    assert abs(realised_snr(info["gain"] * speech, added)) < 0.1
    quiet, info = mix_at_snr(tone(amp=0.1), noise, 30.0)
    assert not info["rescaled"] and info["gain"] == 1.0


@pytest.mark.parametrize(("kind", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colour_spectral_slope(kind, slope):
    x = mixer().noise(kind, 1 << 16, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x))
    band = (freqs > 0.01) & (freqs < 0.4)  # 160 Hz .. 6.4 kHz
    fit = np.polyfit(np.log(freqs[band]), np.log(spectrum[band]), 1)[0]
    assert fit == pytest.approx(slope, abs=0.15)


def test_reverb_keeps_length_and_peak_and_smears():
    x = np.zeros(16000, dtype=np.float32)
    x[100] = 0.5
    y = reverb(x, 0.5, np.random.default_rng(0))
    assert len(y) == len(x) and np.abs(y).max() == pytest.approx(0.5, rel=1e-5)
    assert np.count_nonzero(np.abs(y[200:]) > 1e-4) > 1000  # a decaying tail after the click


def test_fixed_conditions_are_reproducible_and_grid():
    m, speech = mixer(), tone()
    a = m.condition(speech, "babble", 5.0, seed=7)
    b = m.condition(speech, "babble", 5.0, seed=7)
    c = m.condition(speech, "babble", 5.0, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    grid = condition_grid(["white", "babble"], [20, 0], [0.5])
    assert grid == [("clean", None), ("white", 20.0), ("white", 0.0), ("babble", 20.0),
                    ("babble", 0.0), ("reverb", 0.5)]  # fmt: skip


def test_read_audio_resamples_and_mixes_down(tmp_path):
    stereo = np.stack([tone(0.5, 8000), tone(0.5, 8000)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, 8000)
    audio = read_audio(tmp_path / "a.wav", 16000)
    assert audio.dtype == np.float32 and len(audio) == 8000


# ----------------------------------------------------------------------------- manifests


def _write_wav(path: Path, seconds: float = 0.3) -> Path:
    sf.write(path, tone(seconds), 16000)
    return path


def test_jsonl_manifest_reads_relative_paths(tmp_path):
    _write_wav(tmp_path / "a.wav")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "a.wav", "text": "Hello", "speaker": "s1", "duration": 0.3}) + "\n"
    )
    (utt,) = read_jsonl_manifest(tmp_path / "m.jsonl")
    assert Path(utt.audio) == tmp_path / "a.wav" and utt.text == "Hello" and utt.speaker == "s1"


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("{not json", None, "not JSON"),
        ('{"audio": "a.wav", "text": "  "}', "text", "empty transcript"),
        ('{"text": "hi"}', "audio", "missing"),
        ('{"audio": "a.wav", "text": "hi", "duration": -1}', "duration", "positive"),
    ],
)
def test_jsonl_manifest_errors_name_file_line_field(tmp_path, line, field, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "ok"}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl_manifest(path)
    assert err.value.path == path and err.value.line == 2 and err.value.field == field
    assert message in str(err.value) and f"{path}:2" in str(err.value)


@pytest.mark.parametrize("problem", ["missing", "corrupt", "empty"])
def test_bad_audio_errors_name_manifest_line(tmp_path, problem):
    from recipes.asr.data import ASRDataModule

    _write_wav(tmp_path / "good.wav")
    if problem == "corrupt":
        (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    elif problem == "empty":
        sf.write(tmp_path / "bad.wav", np.zeros(0, dtype=np.float32), 16000)
    rows = [{"audio": "good.wav", "text": "one"}, {"audio": "bad.wav", "text": "two"}]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = ASRDataModule(train_file=str(manifest), test_noise={"recorded": None})
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    assert err.value.path == manifest and err.value.line == 2 and err.value.field == "audio"
    # on_error=skip: the bad line is counted and skipped, the rest is used.
    dm = ASRDataModule(train_file=str(manifest), on_error="skip")
    dm.setup("fit")
    assert dm.skipped == {"train": 1}
    assert sum(len(v) for k, v in dm.splits.items() if k != "test") == 1


def test_kaldi_and_librispeech_layouts(tmp_path):
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    _write_wav(kaldi / "u1.wav")
    (kaldi / "wav.scp").write_text("u1 u1.wav\n")
    (kaldi / "text").write_text("u1 TURN ON THE LIGHTS\n")
    (kaldi / "utt2spk").write_text("u1 spk7\n")
    (utt,) = read_kaldi_dir(kaldi)
    assert utt.text == "TURN ON THE LIGHTS" and utt.speaker == "spk7"
    (kaldi / "text").write_text("u1\n")
    with pytest.raises(DataError) as err:
        read_kaldi_dir(kaldi)
    assert err.value.line == 1 and err.value.field == "text"

    chapter = tmp_path / "libri" / "19" / "198"
    chapter.mkdir(parents=True)
    sf.write(chapter / "19-198-0001.flac", tone(0.3), 16000)
    (chapter / "19-198.trans.txt").write_text("19-198-0001 NORTHANGER ABBEY\n")
    (utt,) = read_librispeech(tmp_path / "libri")
    assert utt.text == "NORTHANGER ABBEY" and utt.speaker == "19"
    assert read_audio(utt.audio).shape == (4800,)


# ----------------------------------------------------------------------------- corpus


def test_grammar_vocabulary_and_numbers():
    vocab = grammar_vocabulary()
    assert 140 <= len(vocab) <= 180
    assert number_words(45) == "forty five" and number_words(100) == "one hundred"
    assert not set(TEST_VOICES) & set(TRAIN_VOICES) and len(TRAIN_VOICES) >= 12


def test_test_and_valid_commands_never_occur_in_training():
    """The default corpus's texts (what the full build speaks): held-out sentences, not only
    held-out voices. Before, 203 of the 240 test commands occurred word for word in training."""
    texts = command_splits(SPLIT_SIZES, seed=0)
    assert {k: len(v) for k, v in texts.items()} == SPLIT_SIZES
    train = set(texts["train"])
    assert not train & set(texts["test"]) and not train & set(texts["valid"])
    assert not set(texts["test"]) & set(texts["valid"])
    assert len(set(texts["test"])) == SPLIT_SIZES["test"]  # distinct, not a few repeated
    assert all(command_split(t, 0) == split for split, ts in texts.items() for t in ts)
    held = held_out_record(texts)
    assert held["test_sentences_in_train"] == 0 and held["test_words_unseen_in_train"] == 0
    assert command_splits(SPLIT_SIZES, seed=0) == texts  # reproducible
    assert command_splits(SPLIT_SIZES, seed=1)["test"] != texts["test"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tiny_corpus_build(tmp_path):
    from recipes.asr.corpus import build_speech_corpus, load_speech_splits

    folder = build_speech_corpus(tmp_path, limit=8, workers=1)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 8, "valid": 6, "test": 6}
    assert manifest["held_out"]["test_sentences_in_train"] == 0
    splits = load_speech_splits(folder)
    train_texts = {u.text for u in splits["train"]}
    assert not train_texts & {u.text for u in splits["test"] + splits["valid"]}
    assert {u.speaker for u in splits["test"]} <= set(TEST_VOICES)
    assert {u.speaker for u in splits["train"]} <= set(TRAIN_VOICES)
    info = sf.info(splits["train"][0].audio)
    assert info.samplerate == 16000 and info.channels == 1 and info.frames > 8000
    assert build_speech_corpus(tmp_path, limit=8) == folder  # reused, not rebuilt
    assert not list(folder.parent.glob(".*tmp*"))  # the atomic build left no temp folder


# ----------------------------------------------------------------------------- metrics


def test_wer_cer_equal_jiwer_after_normalisation():
    norm = TextNormalization()
    refs = ["Turn ON the kitchen lights.", "set an alarm for seven o'clock"]
    hyps = ["turn on the kitchen light", "set alarm for seven o'clock please"]
    rates = error_rates(refs, hyps, norm)
    n_refs, n_hyps = [norm(r) for r in refs], [norm(h) for h in hyps]
    assert n_refs[0] == "turn on the kitchen lights"
    assert rates["wer"] == pytest.approx(jiwer.wer(n_refs, n_hyps))
    assert rates["cer"] == pytest.approx(jiwer.cer(n_refs, n_hyps))
    # By hand: 1 substitution + 1 deletion + 1 insertion over 5 + 6 reference words.
    assert rates["wer"] == pytest.approx(3 / 11)


def test_wer_grid_reads_flat_keys():
    grid = wer_grid({"wer": 0.1, "wer_babble_10": 0.2, "wer_white_0": 0.3, "wer_avg_10": 0.5})
    assert grid == {"babble": {"10": 0.2}, "white": {"0": 0.3}}
