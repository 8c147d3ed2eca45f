"""Behaviour of the shared building blocks in ``toolkit.nn``, for every attention type."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from torch.testing import assert_close

from toolkit.attention import (
    MultiHeadAttention,
    available,
    build,
    capabilities,
    capture_attention,
    cross_attention_for,
    set_fast_path,
    types_with,
)
from toolkit.nn import (
    AttentionGRUDecoder,
    AttentionPooling,
    AttentionRNNDecoderStep,
    LearnedPositionalEmbedding,
    MemoryAttention,
    SinusoidalPositionalEncoding,
    TransformerConfig,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    build_attention_layer,
    build_positions,
    decoder_from_config,
    encoder_from_config,
    reorder_cache,
)

# location, coverage: stateful (a state carried from one decoder step to the next), so one
# query over a memory only: refused by multi-head layers (Transformers) and pooling
STATEFUL = types_with(stateful=True)
ATTENTION = types_with(self_attention=True)  # every multi-head layer type
# rotary, alibi, relative are self-attention only: refused for cross-attention, memories and
# pooling (tests/unit/test_position_attention.py)
CROSS_OK = types_with(self_attention=True, cross_attention=True)  # Transformer cross-attention
MEMORY_OK = types_with(cross_attention=True)  # one RNN query over a memory (MemoryAttention)
POOLING_OK = types_with(pooling_query=True)  # a learned query (AttentionPooling)
B, T, S, E, H = 3, 12, 9, 32, 4


def options(name: str) -> dict:
    # declared at registration: e.g. local's small window, so the band actually cuts (and
    # the blockwise fast path runs at T=12)
    return dict(capabilities(name).test_model_options)


def lengths_mask(lengths: list[int], total: int) -> torch.Tensor:
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]  # (B, total)


def assert_all_grads(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


# ---------------------------------------------------------------- build_attention_layer


@pytest.mark.parametrize("name", ATTENTION)
def test_build_attention_layer_every_type(name):
    layer = build_attention_layer(name, E, H, kdim=20, vdim=24, **options(name))
    assert isinstance(layer, MultiHeadAttention)
    assert layer.core_name == ("scaled_dot" if name == "multihead" else name)
    out, w = layer(torch.randn(B, 5, E), torch.randn(B, 7, 20), torch.randn(B, 7, 24), None, True)
    assert out.shape == (B, 5, E) and w.shape == (B, H, 5, 7)


@pytest.mark.parametrize("name", STATEFUL)
def test_stateful_types_are_refused_by_layers_and_pooling(name):
    """A multi-head layer computes every position in one pass: no step to carry a state."""
    why = rf"attention '{name}' is stateful.*recurrent decoder.*'additive'"
    with pytest.raises(ValueError, match=why):
        build_attention_layer(name, E, H)
    with pytest.raises(ValueError, match=why):
        build_attention_layer("multihead", E, H, core=name)
    with pytest.raises(ValueError, match=why):
        TransformerEncoderLayer(E, H, 64, attention=name)
    with pytest.raises(ValueError, match=why):
        TransformerDecoderLayer(E, H, cross_attention=name)
    with pytest.raises(ValueError, match=rf"attention pooling cannot use '{name}'.*stateful"):
        AttentionPooling(E, attention=name)


def test_build_attention_layer_rejects_unknown_names():
    with pytest.raises(ValueError, match="valid choices: .*additive.*scaled_dot"):
        build_attention_layer("nope", E, H)
    with pytest.raises(ValueError, match="only an option of attention='multihead'"):
        build_attention_layer("additive", E, H, core="dot")
    assert build_attention_layer("multihead", E, H, core="linear").core_name == "linear"


# ---------------------------------------------------------------- transformer layers


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("name", ATTENTION)
def test_encoder_layer_shapes_and_backward(name, norm_first):
    layer = TransformerEncoderLayer(
        E, H, 64, attention=name, attention_options=options(name), norm_first=norm_first
    )
    x = torch.randn(B, T, E, requires_grad=True)
    out, w = layer(x, lengths_mask([T, 7, 3], T), need_weights=True)
    assert out.shape == (B, T, E) and w.shape == (B, H, T, T)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ATTENTION)
def test_decoder_layer_shapes_any_self_and_cross_type(name):
    cross = next(n for n in CROSS_OK if n != name)  # a different type
    layer = TransformerDecoderLayer(
        E,
        H,
        self_attention=name,
        cross_attention=cross,
        self_attention_options=options(name),
        cross_attention_options=options(cross),
        memory_dim=24,
    )
    out, sw, cw = layer(
        torch.randn(B, T, E),
        torch.randn(B, S, 24),
        memory_mask=lengths_mask([S, 4, 1], S),
        need_weights=True,
    )
    assert out.shape == (B, T, E) and sw.shape == (B, H, T, T) and cw.shape == (B, H, T, S)
    assert (sw.triu(diagonal=1) == 0).all(), "decoder self-attention must be causal"
    assert (cw[1, :, :, 4:] == 0).all(), "padded memory must get zero weight"


def _copy_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    ours.in_proj.weight.copy_(ref.in_proj_weight)
    ours.in_proj.bias.copy_(ref.in_proj_bias)
    ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def _copy_ffn_norms(ours: nn.Module, ref: nn.Module, norms: list[tuple[str, str]]) -> None:
    ours.ffn[0].load_state_dict(ref.linear1.state_dict())
    ours.ffn[3].load_state_dict(ref.linear2.state_dict())
    for mine, theirs in norms:
        getattr(ours, mine).load_state_dict(getattr(ref, theirs).state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
def test_layers_match_torch_reference(norm_first):
    kw = {"dim_feedforward": 64, "dropout": 0.0, "activation": "gelu", "batch_first": True}
    ref_enc = nn.TransformerEncoderLayer(E, H, norm_first=norm_first, **kw).eval()
    ref_dec = nn.TransformerDecoderLayer(E, H, norm_first=norm_first, **kw).eval()
    enc = TransformerEncoderLayer(E, H, 64, dropout=0.0, norm_first=norm_first).eval()
    dec = TransformerDecoderLayer(E, H, 64, dropout=0.0, norm_first=norm_first).eval()
    with torch.no_grad():
        _copy_mha(enc.self_attn, ref_enc.self_attn)
        _copy_ffn_norms(enc, ref_enc, [("norm1", "norm1"), ("norm2", "norm2")])
        _copy_mha(dec.self_attn, ref_dec.self_attn)
        _copy_mha(dec.cross_attn, ref_dec.multihead_attn)
        _copy_ffn_norms(dec, ref_dec, [("norm1", "norm1"), ("norm2", "norm2"), ("norm3", "norm3")])
        x, memory = torch.randn(B, T, E), torch.randn(B, S, E)
        mask, memory_mask = lengths_mask([T, 8, 3], T), lengths_mask([S, 4, 2], S)
        expected = ref_enc(x, src_key_padding_mask=~mask)
        assert_close(enc(x, mask)[0][mask], expected[mask], atol=1e-5, rtol=1e-5)
        causal = nn.Transformer.generate_square_subsequent_mask(T)
        expected = ref_dec(x, memory, tgt_mask=causal, memory_key_padding_mask=~memory_mask)
        out = dec(x, memory, memory_mask=memory_mask)[0]
        assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ATTENTION)
def test_encoder_padding_invariance(name):
    enc = TransformerEncoder(2, E, H, attention=name, attention_options=options(name)).eval()
    lengths = [T, 8, 3]
    mask = lengths_mask(lengths, T)
    x = torch.randn(B, T, E)
    noisy = torch.where(mask[..., None], x, torch.randn(B, T, E) * 5)
    with torch.no_grad():
        a, _ = enc(x, mask)
        b, _ = enc(noisy, mask)
        alone, _ = enc(x[2:, :3], None)  # the short row without any padding
    assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-5)
    assert_close(a[2:, :3], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ATTENTION)
def test_encoder_fast_path_equals_eager(name):
    enc = TransformerEncoder(2, E, H, attention=name, attention_options=options(name)).eval()
    x, mask = torch.randn(B, T, E), lengths_mask([T, 8, 3], T)
    with torch.no_grad():
        fast, _ = enc(x, mask)
        set_fast_path(enc, False)
        eager, _ = enc(x, mask)
    assert_close(fast[mask], eager[mask], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ATTENTION)
def test_decoder_causality(name):
    dec = TransformerDecoder(
        2, E, H, self_attention=name, self_attention_options=options(name)
    ).eval()
    x, memory = torch.randn(B, T, E), torch.randn(B, S, E)
    changed = x.clone()
    changed[:, 6:] = torch.randn(B, T - 6, E)
    with torch.no_grad():
        a, _ = dec(x, memory)
        b, _ = dec(changed, memory)
    assert_close(a[:, :6], b[:, :6], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("name,norm_first", [(n, True) for n in ATTENTION] + [("multihead", False)])
def test_incremental_decoding_equals_full_forward(name, norm_first):
    # local windows and positional types need the query position, which cross-attention lacks
    cross = cross_attention_for(name)
    dec = TransformerDecoder(
        2,
        E,
        H,
        self_attention=name,
        cross_attention=cross,
        self_attention_options=options(name),
        memory_dim=24,
        norm_first=norm_first,
    ).eval()
    x, memory = torch.randn(B, T, E), torch.randn(B, S, 24)
    memory_mask = lengths_mask([S, 5, 2], S)
    with torch.no_grad():
        full, full_maps = dec(x, memory, memory_mask=memory_mask, need_weights=True)
        cache = dec.init_cache()
        steps = [dec(x[:, :3], memory, memory_mask=memory_mask, cache=cache)[0]]  # prefill
        for t in range(3, T):
            assert dec.cache_length(cache) == t
            out, maps = dec(
                x[:, t : t + 1], memory, memory_mask=memory_mask, cache=cache, need_weights=True
            )
            steps.append(out)
    assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert maps["self"][0].shape == (B, H, 1, T)
    assert_close(maps["cross"][1][:, :, 0], full_maps["cross"][1][:, :, -1], atol=1e-5, rtol=1e-4)
    assert cache["layers"][0]["self"]["key"].shape == (B, H, T, E // H)


def test_reorder_cache_selects_beams():
    dec = TransformerDecoder(1, E, H).eval()
    cache = dec.init_cache()
    with torch.no_grad():
        dec(torch.randn(B, 2, E), torch.randn(B, S, E), cache=cache)
    index = torch.tensor([2, 2, 0])
    new = reorder_cache(cache, index)
    key = cache["layers"][0]["self"]["key"]
    assert_close(new["layers"][0]["self"]["key"], key[index])
    assert new["length"] == 2


def test_encoder_weights_and_capture():
    enc = TransformerEncoder(3, E, H).eval()
    x, mask = torch.randn(B, T, E), lengths_mask([T, 8, 3], T)
    with torch.no_grad():
        _, maps = enc(x, mask, need_weights=True)
        with capture_attention(enc) as cap:
            enc(x, mask)
    assert len(maps) == 3 and all(m.shape == (B, H, T, T) for m in maps)
    assert cap.names() == [f"layers.{i}.self_attn" for i in range(3)]
    assert_close(cap["layers.1.self_attn"][0], maps[1])
    assert_close(maps[0].sum(-1), torch.ones(B, H, T))
    assert (maps[0][2, :, :, 3:] == 0).all()


def test_transformer_gradients_reach_every_parameter():
    enc = TransformerEncoder(2, E, H, attention="additive", norm_first=False)
    dec = TransformerDecoder(2, E, H, self_attention="local", cross_attention="general")
    mask = lengths_mask([T, 8, 3], T)
    memory, _ = enc(torch.randn(B, T, E), mask)
    out, _ = dec(torch.randn(B, 6, E), memory, memory_mask=mask)
    (out**2).mean().backward()
    assert_all_grads(enc)
    assert_all_grads(dec)


def test_builders_from_dict_dictconfig_and_presets():
    cfg = {
        "num_layers": 2,
        "embed_dim": E,
        "num_heads": H,
        "attention": "local",
        "attention_options": {"window": 3},
    }
    enc = encoder_from_config(OmegaConf.create(cfg))
    assert len(enc.layers) == 2 and enc.layers[0].self_attn.core.window == 3
    dec = decoder_from_config(cfg)
    assert dec.layers[0].self_attn.core_name == "local"
    assert dec.layers[0].cross_attn.core_name == "scaled_dot"  # no window anchor in memory
    dec = decoder_from_config({**cfg, "cross_attention": "local"})
    assert dec.layers[0].cross_attn.core.window == 3
    dec = decoder_from_config(TransformerConfig.from_name("tiny", attention="additive"))
    assert dec.layers[0].cross_attn.core_name == "additive" and len(dec.layers) == 2
    with pytest.raises(ValueError, match="valid keys"):
        encoder_from_config({"num_layer": 2})
    with pytest.raises(ValueError, match="valid choices: tiny"):
        TransformerConfig.from_name("huge")
    with pytest.raises(ValueError, match="valid choices: gelu, relu"):
        TransformerEncoderLayer(E, H, activation="tanh")


# ---------------------------------------------------------------- positions


def test_sinusoidal_values_at_known_positions():
    pe = SinusoidalPositionalEncoding(6, max_len=16)
    x = torch.zeros(1, 10, 6)
    out = pe(x, offset=3)  # positions 3..12
    for row, pos in ((0, 3), (4, 7), (9, 12)):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert out[0, row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert out[0, row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    grown = pe(torch.zeros(1, 40, 6))  # past max_len: the table grows
    assert grown[0, 30, 0].item() == pytest.approx(math.sin(30), abs=1e-5)


def test_positions_add_and_offset():
    x = torch.randn(2, 5, 8)
    learned = LearnedPositionalEmbedding(16, 8)
    full = learned(torch.zeros(2, 7, 8))
    assert_close(learned(x[:, :2], offset=5) - x[:, :2], full[:, 5:7])
    with pytest.raises(ValueError, match="max_len=16"):
        learned(torch.zeros(1, 4, 8), offset=14)
    assert_close(build_positions("none", 8)(x), x)
    assert isinstance(build_positions("sinusoidal", 8), SinusoidalPositionalEncoding)
    with pytest.raises(ValueError, match="sinusoidal, learned, none"):
        build_positions("rotary", 8)


# ---------------------------------------------------------------- recurrent decoders


@pytest.mark.parametrize("style", ["bahdanau", "luong"])
@pytest.mark.parametrize("name", MEMORY_OK)
def test_rnn_step_shapes_and_weights(name, style):
    opts = {**options(name), **({"num_heads": 2} if capabilities(name).layer else {})}
    step = AttentionRNNDecoderStep(16, 20, 24, attention=name, style=style, output_dim=18, **opts)
    memory, mask = torch.randn(B, S, 24), lengths_mask([S, 5, 1], S)
    state = step.init_state(memory, mask)
    cache = step.precompute(memory)
    out = step(torch.randn(B, 16), state, memory, mask, cache)
    out = step(torch.randn(B, 16), out.state, memory, mask, cache)  # a second step from it
    assert out.output.shape == (B, 18) and out.state.hidden.shape == (1, B, 20)
    assert out.context.shape == (B, step.attn.context_dim) and out.weights.shape == (B, S)
    assert_close(out.weights.sum(-1), torch.ones(B), atol=1e-4, rtol=0)
    assert (out.weights[~mask] == 0).all()
    assert (out.weights >= 0).all()


@pytest.mark.parametrize("name", MEMORY_OK)
def test_memory_attention_cache_equals_uncached(name):
    """``precompute(memory)`` reused over steps gives the context, weights and gradients
    of attending without it (additive's cache holds its key projection)."""
    torch.manual_seed(0)
    opts = {**options(name), **({"num_heads": 2} if capabilities(name).layer else {})}
    attn = MemoryAttention(name, 20, 12, **opts).eval()
    memory, mask = torch.randn(B, S, 12, requires_grad=True), lengths_mask([S, 5, 1], S)
    query = torch.randn(B, 20)
    cache = attn.precompute(memory)
    outs = [attn(query, memory, mask, cache), attn(query, memory, mask)]
    grads = [torch.autograd.grad(ctx.square().sum(), memory, retain_graph=True)[0]
             for ctx, _ in outs]  # fmt: skip
    assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=1e-5)
    assert_close(outs[0][1], outs[1][1], atol=1e-5, rtol=1e-5)
    assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)


def test_additive_core_reuses_its_key_projection():
    core = build("additive", query_dim=8, key_dim=6)
    key = torch.randn(2, 5, 6)
    cache = core.precompute(key)
    assert_close(cache["key"], core.k_proj(key))
    # a cache with other keys' projection changes the scores: the cache is what is used
    q = torch.randn(2, 1, 8)
    _, w = core(q, key, key, need_weights=True, cache=cache)
    _, w_other = core(q, key, key, need_weights=True, cache={"key": cache["key"].flip(1)})
    assert_close(w, core(q, key, key, need_weights=True)[1])
    assert not torch.allclose(w, w_other)


@pytest.mark.parametrize("name", MEMORY_OK)
def test_rnn_decoder_ignores_padded_memory(name):
    opts = options(name)
    dec = AttentionGRUDecoder(11, 8, 16, 12, attention=name, style="luong", **opts).eval()
    memory, mask = torch.randn(B, S, 12), lengths_mask([S, 5, 2], S)
    noisy = torch.where(mask[..., None], memory, torch.randn(B, S, 12) * 5)
    tokens = torch.randint(1, 11, (B, 4))
    with torch.no_grad():
        a, wa, _ = dec(tokens, memory, mask)
        b, wb, _ = dec(tokens, noisy, mask)
    assert a.shape == (B, 4, 11) and wa.shape == (B, 4, S)
    assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert_close(wa, wb, atol=1e-5, rtol=1e-5)


def test_bahdanau_attends_before_the_cell_luong_after():
    memory = torch.randn(B, S, 16)
    for style, depends_on_input in (("bahdanau", False), ("luong", True)):
        step = AttentionRNNDecoderStep(8, 16, 16, attention="general", style=style)
        state = step.init_state(memory)
        w1 = step(torch.randn(B, 8), state, memory).weights
        w2 = step(torch.randn(B, 8), state, memory).weights
        assert torch.allclose(w1, w2) is not depends_on_input, style


def test_step_style_defaults_to_the_registered_feeding():
    # style=None: Luong's multiplicative scores attend with the new state (the step input
    # changes the weights), the additive family with the previous one; an explicit style wins
    memory = torch.randn(B, S, 16)
    expected = {"general": "luong", "dot": "luong", "additive": "bahdanau", "location": "bahdanau"}
    for name, style in expected.items():
        step = AttentionRNNDecoderStep(8, 16, 16, attention=name)
        assert step.style == style == capabilities(name).rnn_style, name
        state = step.init_state(memory)
        w1 = step(torch.randn(B, 8), state, memory).weights
        w2 = step(torch.randn(B, 8), state, memory).weights
        assert torch.allclose(w1, w2) is (style == "bahdanau"), name
    assert AttentionRNNDecoderStep(8, 16, 16, attention="general", style="bahdanau").style == (
        "bahdanau"
    )


def test_gate_scales_context_by_a_scalar_in_0_1():
    step = AttentionRNNDecoderStep(8, 16, 12, attention="additive", gate=True)
    memory = torch.randn(B, S, 12)
    state = step.init_state(memory)
    out = step(torch.randn(B, 8), state, memory)
    raw, _ = step.attn(state.hidden[-1], memory)
    beta = out.context / raw
    assert_close(beta, beta[:, :1].expand_as(beta))  # one scalar per row
    assert ((beta > 0) & (beta < 1)).all()


@pytest.mark.parametrize("cell,style", [("lstm", "luong"), ("gru", "bahdanau")])
def test_rnn_decoder_gradients_reach_every_parameter(cell, style):
    dec = AttentionGRUDecoder(
        11, 8, 16, 12, attention="additive", cell=cell, style=style, num_layers=2, gate=True
    )
    memory = torch.randn(B, S, 12, requires_grad=True)
    logits, _, state = dec(torch.randint(1, 11, (B, 5)), memory, lengths_mask([S, 5, 2], S))
    nn.functional.cross_entropy(logits.reshape(-1, 11), torch.randint(0, 11, (B * 5,))).backward()
    assert_all_grads(dec)
    assert state.hidden.shape == (2, B, 16) and (state.cell is not None) == (cell == "lstm")


def test_rnn_rejects_bad_names():
    with pytest.raises(ValueError, match="valid choices: .*additive"):
        AttentionRNNDecoderStep(8, 16, 16, attention="nope")
    with pytest.raises(ValueError, match="bahdanau, luong"):
        AttentionRNNDecoderStep(8, 16, 16, style="other")


# ---------------------------------------------------------------- attention pooling


@pytest.mark.parametrize("num_queries", [1, 3])
@pytest.mark.parametrize("name", POOLING_OK)
def test_attention_pooling_ignores_padding(name, num_queries):
    pool = AttentionPooling(E, attention=name, num_queries=num_queries).eval()
    x, mask = torch.randn(B, T, E), lengths_mask([T, 6, 2], T)
    noisy = torch.where(mask[..., None], x, torch.randn(B, T, E) * 5)
    pooled, w = pool(x, mask, need_weights=True)
    pooled2, _ = pool(noisy, mask)
    assert pooled.shape == (B, E) and w.shape == (B, T)
    assert_close(pooled, pooled2, atol=1e-5, rtol=1e-5)
    assert_close(w.sum(-1), torch.ones(B), atol=1e-4, rtol=0)
    assert (w[~mask] == 0).all()


@pytest.mark.parametrize("name", [n for n in available() if n not in POOLING_OK])
def test_attention_pooling_refuses_types_without_a_pooling_query(name):
    """local, rotary, alibi, relative (need the query's position), location, coverage."""
    with pytest.raises(ValueError, match=f"pooling.*'{name}'|'{name}'.*pooling"):
        AttentionPooling(E, attention=name)


def test_attention_pooling_classifier_overfits_toy_task():
    # label = "token 7 occurs in the real part"; padding holds random tokens, 7s included
    n, vocab, dim = 64, 10, 16
    lengths = torch.randint(2, T + 1, (n,))
    mask = torch.arange(T)[None, :] < lengths[:, None]
    tokens = torch.randint(1, vocab, (n, T))
    labels = ((tokens == 7) & mask).any(dim=1).long()
    embed, pool, head = (
        nn.Embedding(vocab, dim),
        AttentionPooling(dim, "additive"),
        nn.Linear(dim, 2),
    )
    model = nn.ModuleList([embed, pool, head])
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(200):
        logits = head(pool(embed(tokens), mask)[0])
        loss = nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (logits.argmax(-1) == labels).float().mean().item()
    assert acc >= 0.95, f"train accuracy {acc:.2f}"
    _, w = pool(embed(tokens), mask, need_weights=True)
    has7 = labels.bool()
    # the learned query looks at the 7s
    assert (w[has7] * ((tokens[has7] == 7) & mask[has7])).sum(-1).mean() > 0.5
