"""The ASR recipe end to end on a tiny espeak-ng corpus: a fast run leaves the run folder
(WER per noise condition, tables, pictures), evaluate re-decodes with overrides, every
attention type trains in the encoder, and 20 utterances are overfit to WER 0."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recipes.asr.data import collate
from recipes.asr.model import CTCAttentionASR, ctc_attention_loss
from recipes.asr.noise import NOISE_TYPES, NoiseMixer
from toolkit.attention import available, capabilities, stateful
from toolkit.commands.evaluate import evaluate
from toolkit.commands.train import train
from toolkit.metrics.asr import error_rates
from toolkit.metrics.significance import corpus_metric
from toolkit.paths import CONF_DIR
from toolkit.runs import read_per_example
from toolkit.training.checkpoints import build_datamodule, load_module

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

SMALL = [
    "threads=1",
    "model.embed_dim=64",
    "model.ffn_dim=128",
    "model.encoder_layers=2",
    "model.decoder_layers=1",
    "trainer.max_time=null",
    "trainer.enable_progress_bar=false",
]
TINY = [
    "recipe=asr",
    "data.limit=16",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.test_noise.types=[white,babble]",
    "data.test_noise.snrs=[10,0]",
    "decode.mode=joint",  # the joint beam path (the recipe default is CTC greedy)
    "decode.beam_size=2",
    *SMALL,
]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fast_run_writes_asr_run_folder(compose_cfg, tmp_path):
    cfg = compose_cfg(*TINY, "debug=fast")
    result = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["recipe"] == "asr" and saved["attention"] == "multihead"
    metrics = saved["metrics"]
    for key in ("wer", "cer", "wer_white_10", "wer_babble_0", "wer_reverb_0.5", "wer_avg_0",
                "ctc_greedy_wer", "ctc_greedy_wer_babble_10"):  # fmt: skip
        assert 0.0 <= metrics[key] <= 5.0, key
    assert result["per_condition"]["babble_0"]["decode"]["utterances"] == 6
    # per utterance and condition the edit counts: the corpus rates recomputed from them
    header, records = read_per_example(run)
    assert header["kind"] == "asr" and "babble_0" in header["conditions"]
    assert sum(r["condition"] == "babble_0" for r in records) == 6
    for key in ("wer", "cer", "wer_babble_0", "cer_white_10", "wer_avg_0"):
        value = corpus_metric(header, records, key).value()
        assert value == pytest.approx(metrics[key], abs=1e-9), key
    if "attention_ctc_in_span" in metrics:  # needs a non-empty hypothesis that CTC can align
        assert 0.0 <= metrics["attention_ctc_in_span"] <= 1.0
        assert metrics["attention_ctc_frame_error"] >= 0.0
    assert saved["speed"]["rtf_batch1"] > 0 and saved["speed"]["train_audio_seconds_per_s"] > 0
    assert saved["decode"]["mode"] == "joint"
    assert saved["text_normalization"]["lowercase"] is True
    for name in ("wer_table.csv", "wer_table.md", "wer_vs_snr.png", "text_normalization.json"):
        assert (run / name).is_file(), name
    header = (run / "wer_table.csv").read_text().splitlines()[0]
    assert header == "noise,clean,10,0"
    assert (run / "attention" / "encoder_self_attention.png").is_file()
    arrays = dict(np.load(run / "attention" / "utt_000.npz"))
    assert arrays["feats"].shape[1] == 80
    enc = [k for k in arrays if k.startswith("encoder/")]
    assert len(enc) == 2  # one map per encoder layer, (S, S)
    assert arrays[enc[0]].shape[0] == arrays[enc[0]].shape[1]

    # Re-decode the checkpoint with CTC greedy through toolkit.evaluate's overrides.
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        ecfg = compose(
            config_name="evaluate",
            overrides=[
                f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                "decode.mode=ctc_greedy",
                "attention_examples=1",
            ],  # fmt: skip
        )
    again = evaluate(ecfg, tmp_path / "eval")
    assert again["decode"]["mode"] == "ctc_greedy"
    assert again["metrics"]["wer"] == pytest.approx(metrics["ctc_greedy_wer"])

    # The decoding sweep behind decode.ctc_weight: validation split only, its files written.
    sweep = _script("asr_decode_sweep")
    out = tmp_path / "sweep"
    argv = ["x", str(run / "checkpoints" / "last.ckpt"), "--ctc-weights", "0", "0.5",
            "--beams", "2", "--threads", "1", "--out", str(out)]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", argv)
        sweep.main()
    rows = list(csv.DictReader(out.with_suffix(".csv").read_text().splitlines()))
    assert [(r["mode"], r["ctc_weight"]) for r in rows] == [
        ("ctc_greedy", ""),
        ("attention_beam", ""),
        ("joint", "0.5"),
    ]
    assert all(int(r["utterances"]) == 6 for r in rows)  # the 6 validation utterances
    assert "Clean validation split (6 utterances" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("attention", available())
def test_every_attention_type_in_the_encoder(attention):
    options = dict(capabilities(attention).test_model_options)
    if stateful(attention):  # location, coverage: the recurrent decoder's attention only
        for key, kwargs, why in (
            ("attention", {"attention": attention}, "speech encoder's self-attention"),
            ("model.decoder_attention", {"decoder_attention": attention},
             "Transformer decoder.*parallel"),
        ):  # fmt: skip
            with pytest.raises(ValueError, match=rf"CTCAttentionASR: {key}={attention} is "
                               rf"stateful.*{why}.*model.decoder=rnn"):  # fmt: skip
                CTCAttentionASR(vocab_size=12, embed_dim=32, num_heads=2, **kwargs)
        return  # test_asr_rnn_decoder.py: location/coverage in the decoder=rnn model
    model = CTCAttentionASR(
        vocab_size=12, attention=attention, attention_options=options, embed_dim=32,
        num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64,
        spec_augment={"freq_masks": 1, "time_masks": 1},
    )  # fmt: skip
    wave = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 5000])
    memory, mask, maps, feats = model.encode(wave, lengths, need_weights=True)
    assert memory.shape[:2] == mask.shape and mask.sum(1).tolist() == [11, 6]
    assert maps[0].shape[-2:] == (12, 12) and feats.shape[-1] == 80
    targets = torch.tensor([[2, 3, 4], [5, 6, 0]])
    loss, parts = ctc_attention_loss(model, memory, mask, targets, torch.tensor([3, 2]), 0.3)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"ctc", "att"}
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_padding_does_not_change_an_utterance():
    """An utterance decodes the same alone and padded in a batch with a longer one."""
    model = CTCAttentionASR(vocab_size=12, embed_dim=32, num_heads=2, encoder_layers=2,
                            decoder_layers=1, ffn_dim=64).eval()  # fmt: skip
    short, long = torch.randn(6000) * 0.1, torch.randn(9000) * 0.1
    batch = torch.zeros(2, 9000)
    batch[0, :6000], batch[1] = short, long
    with torch.no_grad():
        alone, mask1, _, _ = model.encode(short[None], torch.tensor([6000]))
        both, mask2, _, _ = model.encode(batch, torch.tensor([6000, 9000]))
    n = int(mask1.sum())
    assert int(mask2[0].sum()) == n
    torch.testing.assert_close(both[0, :n], alone[0, :n], atol=1e-4, rtol=1e-4)


def test_tiny_overfit_reaches_wer_zero(compose_cfg, tmp_path):
    """20 training utterances, no noise/SpecAugment/dropout: CTC greedy transcribes them all
    exactly (WER 0) after 60 epochs (~30 s on one thread)."""
    cfg = compose_cfg(
        "recipe=asr", "data.limit=20", "data.batch_size=10", "data.eval_batch_size=20",
        "data.test_noise.snrs=[]", "data.test_noise.rt60s=[]", "data.noise.prob=0",
        "data.noise.reverb_prob=0", "model.spec_augment=null", "model.dropout=0",
        "model.embed_dim=96", "model.ffn_dim=192", "model.encoder_layers=2",
        "model.decoder_layers=1", "scheduler.warmup_steps=10", "trainer.max_epochs=60",
        "trainer.limit_val_batches=0", "trainer.limit_test_batches=0",
        "recipe.monitor=train/loss", "attention_examples=0", "label_smoothing=0",
        "threads=1", "trainer.max_time=null", "trainer.enable_progress_bar=false",
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt").eval()
    dm = build_datamodule(cfg.data, module.data_state)
    dm.setup("fit")
    ds = dm.dataset("train")
    ds.train = False  # the clean utterances, as trained on
    batch = collate([ds[i] for i in range(len(ds))])
    out = module.transcribe(batch["wave"], batch["lengths"], mode="ctc_greedy")
    hyps = [module.tokenizer.decode(t) for t in out["tokens"]]
    rates = error_rates(batch["texts"], hyps, module.normalize)
    assert rates["utterances"] == 20
    assert rates["wer"] == 0.0, list(zip(batch["texts"], hyps, strict=True))

    # The same fixed model on the same utterances with every noise type mixed in at 0 dB
    # (speech-band SNR): each must really degrade it (measured: WER 1.0-1.17 for every type).
    # A 1/f^2 noise generated down to the lowest FFT bin with its SNR over the full band got
    # this model only to WER 0.17, because nearly all its power lay below speech.
    waves = [batch["wave"][i, : int(n)].numpy() for i, n in enumerate(batch["lengths"])]
    mixer = NoiseMixer(babble_pool=waves[::-1])
    for kind in NOISE_TYPES:
        noisy = [
            torch.from_numpy(mixer.condition(w, kind, 0.0, seed=i)) for i, w in enumerate(waves)
        ]
        wave = torch.nn.utils.rnn.pad_sequence(noisy, batch_first=True)
        out = module.transcribe(wave, batch["lengths"], mode="ctc_greedy")
        noisy_rates = error_rates(
            batch["texts"], [module.tokenizer.decode(t) for t in out["tokens"]], module.normalize
        )
        assert noisy_rates["wer"] >= 0.3, (kind, noisy_rates["wer"])


def test_dead_joint_beam_falls_back_to_ctc_and_is_counted(monkeypatch):
    """A joint beam that dies out is replaced by the CTC greedy answer, and counted."""
    from omegaconf import OmegaConf

    import recipes.asr.module as asr_module
    from recipes.asr.data import CharTokenizer
    from toolkit.metrics.asr import TextNormalization

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["recipe=asr", *SMALL])
    GlobalHydra.instance().clear()
    tok = CharTokenizer.build(["turn on the lights", "play some jazz"])
    state = {**tok.to_state(), "normalize": TextNormalization().to_dict(), "sample_rate": 16000}
    module = asr_module.ASRModule(OmegaConf.to_container(cfg, resolve=True), state).eval()
    real = asr_module.beam_search

    def second_beam_dies(*args, **kwargs):
        hyps = real(*args, **kwargs)
        hyps[1] = []
        return hyps

    monkeypatch.setattr(asr_module, "beam_search", second_beam_dies)
    torch.manual_seed(0)
    wave, lengths = torch.randn(3, 12000) * 0.1, torch.tensor([12000, 9000, 11000])
    out = module.transcribe(wave, lengths, mode="joint")
    assert out["beam_fallbacks"] == 1
    assert out["tokens"][1] == out["ctc"][1] and out["attention"][1] is None
    monkeypatch.setattr(asr_module, "beam_search", real)
    assert module.transcribe(wave, lengths, mode="joint")["beam_fallbacks"] == 0


def test_coverage_penalty_reaches_the_beam_with_attention(monkeypatch):
    """decode.coverage_penalty > 0: the shared beam search gets it with the frame mask, and
    the decoder's step returns its cross-attention (which the penalty sums)."""
    from omegaconf import OmegaConf

    import recipes.asr.module as asr_module
    from recipes.asr.data import CharTokenizer
    from toolkit.metrics.asr import TextNormalization

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["recipe=asr", *SMALL,
                                                      "decode.coverage_penalty=0.5"])  # fmt: skip
    GlobalHydra.instance().clear()
    tok = CharTokenizer.build(["turn on the lights", "play some jazz"])
    state = {**tok.to_state(), "normalize": TextNormalization().to_dict(), "sample_rate": 16000}
    module = asr_module.ASRModule(OmegaConf.to_container(cfg, resolve=True), state).eval()
    real, seen = asr_module.beam_search, {}

    def spy(step, *args, **kwargs):
        def spied_step(prefix, st):
            out = step(prefix, st)
            seen.setdefault("attention", out[2])
            return out

        seen.update(kwargs)
        return real(spied_step, *args, **kwargs)

    monkeypatch.setattr(asr_module, "beam_search", spy)
    torch.manual_seed(0)
    wave, lengths = torch.randn(2, 12000) * 0.1, torch.tensor([12000, 9000])
    out = module.transcribe(wave, lengths, mode="attention_beam")
    assert seen["coverage_penalty"] == 0.5
    assert torch.equal(seen["coverage_mask"], out["mask"])
    attention, beam = seen["attention"], int(module.decode_cfg()["beam_size"])
    assert attention is not None and attention.shape == (2 * beam, out["mask"].shape[1])
    assert len(out["tokens"]) == 2


def test_decoding_defaults_are_the_validation_sweep_best():
    """conf/recipe/asr.yaml's decode.mode and decode.ctc_weight are the settings with the
    lowest WER in the committed validation sweep (recipes/asr/results/decode_sweep.csv)."""
    rows = list(csv.DictReader((ROOT / "recipes/asr/results/decode_sweep.csv").open()))
    best = min(rows, key=lambda r: float(r["wer"]))
    best_joint = min((r for r in rows if r["mode"] == "joint"), key=lambda r: float(r["wer"]))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["recipe=asr"])
    GlobalHydra.instance().clear()
    assert cfg.decode.mode == best["mode"]
    assert cfg.decode.ctc_weight == pytest.approx(float(best_joint["ctc_weight"]))
    assert {r["utterances"] for r in rows} == {"300"}  # the whole validation set


def test_fixed_test_noise_is_the_same_wherever_the_corpus_lives(tmp_path):
    """The noisy test audio is seeded by the audio path relative to its manifest, not by
    where the corpus folder is: a corpus copied elsewhere gives the same noisy test set, and
    two utterances of one corpus get different noise."""
    import soundfile as sf

    from recipes.asr.data import CharTokenizer, SpeechDataset, join_utterances, noise_key
    from toolkit.data.audio import read_speech_manifest
    from toolkit.metrics.asr import TextNormalization

    speech = (0.1 * np.sin(np.arange(8000) / 7.0)).astype(np.float32)
    datasets = []
    for place in ("a", "b/deeper"):
        root = tmp_path / place / "corpus"
        (root / "test").mkdir(parents=True)
        lines = []
        for i in range(2):
            sf.write(root / "test" / f"u{i}.wav", speech, 16000)
            lines.append(json.dumps({"audio": f"test/u{i}.wav", "text": "on", "duration": 0.5}))
        (root / "test.jsonl").write_text("\n".join(lines) + "\n")
        utts = read_speech_manifest(root / "test.jsonl")
        assert [noise_key(u) for u in utts] == ["test/u0.wav", "test/u1.wav"]
        assert noise_key(join_utterances(utts, 1.0)[0]) == "test/u0.wav+test/u1.wav"
        datasets.append(SpeechDataset(utts, CharTokenizer(list("no ")), TextNormalization(),
                                      mixer=NoiseMixer(types=["white"]),
                                      conditions=[("white", 0.0)], seed=3))  # fmt: skip
    a, b = ([d[i]["audio"] for i in range(2)] for d in datasets)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])  # the same speech, noise seeded per utterance
    assert not torch.allclose(a[0], torch.from_numpy(speech))  # noise was added
