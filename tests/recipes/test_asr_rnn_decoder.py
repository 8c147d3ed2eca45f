"""The speech recipe's recurrent attention decoder (``model.decoder=rnn``): stepping with
beam reordering equals teacher forcing, joint CTC/attention and attention beams decode with
it, it learns fixed utterances, the config composes, the stateful types are refused where
they have no decoder steps, and the CTC export ignores the decoder. No corpus is needed."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipes.asr.data import CharTokenizer
from recipes.asr.model import CTCAttentionASR, ctc_attention_loss
from toolkit.attention import built_types
from toolkit.decoding import beam_search
from toolkit.metrics.asr import TextNormalization
from toolkit.nn import AttentionGRUDecoder

SMALL = ["threads=1", "model.embed_dim=32", "model.ffn_dim=64", "model.encoder_layers=1",
         "model.decoder_layers=1", "model.decoder_hidden_dim=48"]  # fmt: skip
TEXTS = ["turn on the lights", "play some jazz"]


@pytest.fixture
def one_thread():
    """One torch thread for the test (2 threads oversubscribe a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(attention: str, cell: str = "gru", **kwargs) -> CTCAttentionASR:
    options = {"channels": 3, "kernel_size": 5} if attention == "location" else {}
    return CTCAttentionASR(
        vocab_size=12, embed_dim=32, num_heads=2, encoder_layers=1, ffn_dim=64,
        decoder="rnn", decoder_attention=attention, decoder_attention_options=options,
        decoder_cell=cell, decoder_hidden_dim=24, never=(2,), **kwargs,
    )  # fmt: skip


def _module(compose_cfg, *overrides: str):
    import recipes.asr.module as asr_module

    cfg = compose_cfg("recipe=asr", *SMALL, *overrides)
    tok = CharTokenizer.build(TEXTS)
    state = {**tok.to_state(), "normalize": TextNormalization().to_dict(), "sample_rate": 16000}
    return asr_module.ASRModule(OmegaConf.to_container(cfg, resolve=True), state).eval()


@pytest.mark.parametrize(
    ("attention", "cell"), [("location", "gru"), ("additive", "gru"), ("location", "lstm"),
                            ("coverage", "gru")],
)  # fmt: skip
def test_step_and_reorder_match_teacher_forcing(attention, cell):
    """Stepping + reordering rows (beam search) = teacher forcing, over padded frames: the
    log-probs (blank and never-ids at -inf) and the attention over the frames (location /
    coverage: the attention state rides in the decoder state and is reordered with it)."""
    torch.manual_seed(0)
    model = _tiny(attention, cell).eval()
    wave, lengths = torch.randn(2, 9000) * 0.1, torch.tensor([9000, 6000])
    inputs = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 10, 4, 3]])  # EOS as BOS + tokens
    with torch.no_grad():
        memory, mask, _, _ = model.encode(wave, lengths)
        assert not mask[1].all()  # the second row has padded frames
        logits, maps = model.decode_train(memory, mask, inputs, inputs > 0, need_weights=True)
        weights = maps["cross"][-1]  # (B, L, S)
        assert weights.shape == (2, 5, memory.shape[1])
        assert float(weights[1][:, ~mask[1]].abs().max()) == 0.0  # never on padding
        expected = logits.masked_fill(
            torch.isin(torch.arange(12), torch.tensor(model.never)), float("-inf")
        ).log_softmax(-1)
        state = model.reorder(model.init_state(memory, mask), torch.tensor([1, 0]))  # swap
        swapped = inputs[[1, 0]]
        for t in range(inputs.shape[1]):
            log_probs, state, attn = model.step(swapped[:, : t + 1], state, need_weights=True)
            torch.testing.assert_close(log_probs, expected[[1, 0], t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(attn, weights[[1, 0], t], atol=1e-6, rtol=1e-5)
        _, _, none = model.step(swapped, state)
        assert none is None  # attention only when asked


@pytest.mark.parametrize("mode", ["joint", "attention_beam"])
def test_beam_modes_decode_with_the_rnn_decoder(compose_cfg, mode):
    """decode.mode=joint (CTC prefix scores mixed in) and attention_beam run through the
    shared beam search with the location-aware decoder: hypotheses for every utterance, the
    beam's attention per output token and EOS over the frames, the coverage penalty fed."""
    module = _module(compose_cfg, "model.decoder=rnn", "model.decoder_attention=location",
                     "decode.beam_size=3", "decode.coverage_penalty=0.2")  # fmt: skip
    assert isinstance(module.model.decoder, AttentionGRUDecoder)
    torch.manual_seed(0)
    wave, lengths = torch.randn(3, 12000) * 0.1, torch.tensor([12000, 9000, 11000])
    out = module.transcribe(wave, lengths, mode=mode, return_attention=True)
    assert len(out["tokens"]) == 3 and out["beam_fallbacks"] == 0
    frames = out["mask"].sum(1)
    for tokens, attn, n in zip(out["tokens"], out["attention"], frames, strict=True):
        assert all(isinstance(t, int) and t not in module.model.never for t in tokens)
        assert attn.shape == (len(tokens) + 1, out["mask"].shape[1])
        torch.testing.assert_close(attn[:, :n].sum(-1), torch.ones(len(tokens) + 1))
        assert float(attn[:, n:].abs().sum()) == 0.0
        assert len(tokens) <= int(n)  # the beam's length limit: the frames


def test_location_decoder_learns_two_utterances(one_thread):
    """Attention only (ctc_weight 0), no dropout or SpecAugment: the location-aware GRU
    decoder learns two fixed utterances (random waves, 0.75 s), and the attention beam
    transcribes both exactly: the cross-entropy per utterance falls from > 10 to < 0.05
    within 150 steps (measured: 15.2 to 0.05 in 55 steps, about 2 s on one thread)."""
    torch.manual_seed(0)
    model = CTCAttentionASR(
        vocab_size=10, embed_dim=32, num_heads=2, encoder_layers=1, ffn_dim=64, dropout=0.0,
        decoder="rnn", decoder_attention="location", decoder_hidden_dim=64,
        decoder_attention_options={"channels": 4, "kernel_size": 7},
    )  # fmt: skip
    wave = torch.randn(2, 12000) * 0.1
    lengths = torch.tensor([12000, 12000])
    targets = torch.tensor([[2, 3, 4, 5, 6, 7], [8, 9, 4, 3, 2, 0]])
    target_lengths = torch.tensor([6, 5])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        memory, mask, _, _ = model.encode(wave, lengths)
        loss, parts = ctc_attention_loss(
            model, memory, mask, targets, target_lengths, ctc_weight=0.0, label_smoothing=0.0
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(parts["att"].detach()))
        if losses[-1] < 0.05:
            break
    assert losses[0] > 10 and losses[-1] < 0.05, (len(losses), losses[::10])
    model.eval()
    with torch.no_grad():
        memory, mask, _, _ = model.encode(wave, lengths)
        hyps = beam_search(
            lambda p, s: model.step(p, s), model.reorder, model.init_state(memory, mask), 2,
            bos=model.eos, eos=model.eos, beam_size=3, max_len=mask.sum(1),
        )  # fmt: skip
    assert [h[0].tokens for h in hyps] == [[2, 3, 4, 5, 6, 7], [8, 9, 4, 3, 2]]


def test_config_composes_and_builds_the_rnn_decoder(compose_cfg):
    """``python -m toolkit.train recipe=asr model.decoder=rnn model.decoder_attention=location``
    (composed only): the recurrent decoder with location attention, no Transformer decoder
    parts; the default stays the Transformer decoder with multihead attention."""
    for model_name in ("conformer", "transformer"):
        cfg = compose_cfg("recipe=asr", f"model={model_name}", "model.decoder=rnn",
                          "model.decoder_attention=location")  # fmt: skip
        assert cfg.model.decoder == "rnn" and cfg.model.decoder_attention == "location"
        model = instantiate(cfg.model, vocab_size=30)
        assert isinstance(model.decoder, AttentionGRUDecoder) and model.recurrent
        assert not hasattr(model, "embed") and not hasattr(model, "out")
        types = built_types(model)
        assert types["location"] == 1 and types["multihead"] == cfg.model.encoder_layers
        cfg = compose_cfg("recipe=asr", f"model={model_name}")
        assert cfg.model.decoder == "transformer" and cfg.model.decoder_attention == "multihead"
        model = instantiate(cfg.model, vocab_size=30)
        assert not model.recurrent and "location" not in built_types(model)
    # decoder_attention null: the decoder's own default
    cfg = compose_cfg("recipe=asr", "model.decoder=rnn", "model.decoder_attention=null")
    assert instantiate(cfg.model, vocab_size=30).decoder_attention == "location"
    cfg = compose_cfg("recipe=asr", "model.decoder_attention=null")
    assert instantiate(cfg.model, vocab_size=30).decoder_attention == "multihead"


@pytest.mark.parametrize("attention", ["location", "coverage"])
def test_stateful_types_are_refused_without_decoder_steps(compose_cfg, attention):
    """A stateful type is allowed with decoder=rnn only: refused (with the way out) for the
    Transformer decoder and for the encoder's self-attention."""
    cfg = compose_cfg("recipe=asr", f"model.decoder_attention={attention}")
    transformer = (
        rf"CTCAttentionASR: model.decoder_attention={attention} is stateful.*"
        r"model.decoder=transformer is a Transformer decoder.*parallel.*"
        rf"Use model.decoder=rnn model.decoder_attention={attention}"
    )
    with pytest.raises(ValueError, match=transformer):
        instantiate(cfg.model, _partial_=True)(vocab_size=30)
    encoder = (
        rf"CTCAttentionASR: attention={attention} is stateful.*"
        r"speech encoder's self-attention.*model.decoder=rnn"
    )
    for decoder in ("transformer", "rnn"):
        with pytest.raises(ValueError, match=encoder):
            CTCAttentionASR(vocab_size=12, embed_dim=32, num_heads=2, attention=attention,
                            decoder=decoder)  # fmt: skip
    with pytest.raises(ValueError, match="unknown model.decoder='lstm'; valid choices"):
        CTCAttentionASR(vocab_size=12, embed_dim=32, num_heads=2, decoder="lstm")


def test_interpret_score_and_predict_maps_work_with_the_rnn_decoder():
    """What interpret and predict read from ``decode_train(need_weights=True)``: the last
    ``cross`` map (B, L, S) rows are distributions over the real frames, and the score has
    gradients at the encoder frames (saliency)."""
    from recipes.asr.interpret import _logprob, _teacher_forced

    torch.manual_seed(0)
    model = _tiny("location").eval()
    with torch.no_grad():
        memory, mask, _, _ = model.encode(torch.randn(2, 8000) * 0.1, torch.tensor([8000, 5000]))
    inputs, gold, real = _teacher_forced(model, memory, mask, [[3, 4, 5], [6]])
    leaf = memory.detach().requires_grad_(True)
    logprob, maps = _logprob(model, leaf, mask, inputs, gold, real, need_weights=True)
    logprob.sum().backward()
    cross = maps["cross"][-1]
    assert cross.shape == (2, 4, memory.shape[1])
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, 4))
    assert leaf.grad is not None and float(leaf.grad[:, : int(mask[1].sum())].abs().sum()) > 0
    assert torch.isfinite(logprob).all() and (logprob < 0).all()


def test_ctc_export_ignores_the_rnn_decoder(compose_cfg, tmp_path):
    """``toolkit.export`` writes the encoder + CTC graph of a decoder=rnn model (TorchScript),
    matching the eager CTC log-posteriors."""
    from recipes.asr.export import CTCEncoder
    from toolkit.commands.export import export

    module = _module(compose_cfg, "model.decoder=rnn", "model.decoder_attention=location")
    info = export(module, "torchscript", tmp_path / "export", check_inputs=2)
    assert info["graph"] == "ctc_encoder.pt" and info["decode"] == "ctc_greedy"
    assert info["parity_random_inputs"]["max_abs_diff"] < 1e-4
    graph = CTCEncoder(module.model).eval()
    torch.manual_seed(0)
    wave, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
    with torch.no_grad():
        log_probs, frames = graph(wave, lengths)
        memory, mask, _, _ = module.model.encode(wave, lengths)
        eager = module.model.ctc_log_probs(memory)
    assert frames.tolist() == mask.sum(1).tolist()
    for i, n in enumerate(frames.tolist()):
        torch.testing.assert_close(log_probs[i, :n], eager[i, :n], atol=1e-4, rtol=1e-4)
