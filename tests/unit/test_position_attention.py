"""Positions inside attention: ``rotary``, ``alibi`` and ``relative``
(``toolkit.attention.positional``).

The references here are written from the papers' formulas (loops over ``i, j`` where that is
clearer), independently of the library's vectorised maths.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call
from torch.testing import assert_close

from toolkit.attention import (
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    available,
    build,
    capture_attention,
    causal_mask,
    self_attention_only,
    set_fast_path,
    types_with,
)
from toolkit.nn import (
    AttentionPooling,
    MemoryAttention,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    build_attention_layer,
    cached_attention,
    decoder_from_config,
    reorder_cache,
)

NAMES = ["rotary", "alibi", "relative"]
E, H, B, T = 8, 2, 2, 7
TOL = {"atol": 1e-5, "rtol": 1e-5}
# small enough that relative distances clip inside T = 7
OPTIONS = {"relative": {"max_relative_position": 2}}


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def layer(name: str, causal: bool = False, dtype=torch.float32, **extra) -> nn.Module:
    """A multi-head layer with ``name`` per head (what every recipe builds)."""
    opts = {**OPTIONS.get(name, {}), **extra}
    block = build_attention_layer(name, E, H, causal=causal, **opts).to(dtype)
    if name == "relative":  # larger than the 0.02 init, so that positions really matter
        with torch.no_grad():
            block.core.relative_keys.normal_()
    return block


def key_padding(lengths: list[int], tk: int) -> torch.Tensor:
    return torch.arange(tk)[None, :] < torch.tensor(lengths)[:, None]


def rotate_by_hand(x: torch.Tensor, positions: list[int], base: float) -> torch.Tensor:
    """RoFormer eq. 34, pair by pair: ``(x_2i, x_2i+1)`` turns by ``p · base^(-2i/d)``."""
    out = x.clone()
    d = x.shape[-1]
    for t, p in enumerate(positions):
        for i in range(d // 2):
            a = p * base ** (-2 * i / d)
            x1, x2 = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            out[..., t, 2 * i] = x1 * math.cos(a) - x2 * math.sin(a)
            out[..., t, 2 * i + 1] = x1 * math.sin(a) + x2 * math.cos(a)
    return out


def reference_weights(name, core, q, k, mask=None, causal=False) -> torch.Tensor:
    """Per-head weights ``(B, H, Tq, Tk)`` from the papers' formulas, on projected q/k."""
    b, h, tq, d = q.shape
    tk = k.shape[-2]
    qpos = [i + tk - tq for i in range(tq)]  # aligned to the end, as causal_mask
    scale = 1.0 / math.sqrt(d)
    if name == "rotary":
        q = rotate_by_hand(q, qpos, core.base)
        k = rotate_by_hand(k, list(range(tk)), core.base)
    scores = q @ k.transpose(-1, -2) * scale
    bias = torch.zeros(h, tq, tk, dtype=q.dtype)
    for i in range(tq):
        for j in range(tk):
            if name == "alibi":
                for head in range(h):
                    bias[head, i, j] = -(2.0 ** (-8 * (head + 1) / h)) * abs(qpos[i] - j)
    scores = scores + bias
    if name == "relative":
        kk = core.max_relative_position
        table = core.relative_keys.detach().to(q.dtype)
        for i in range(tq):
            for j in range(tk):
                a = table[max(-kk, min(kk, j - qpos[i])) + kk]
                scores[:, :, i, j] += (q[:, :, i] @ a) * scale
    allowed = torch.ones(b, 1, tq, tk, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    if causal:
        allowed = allowed & causal_mask(tq, tk)
    w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    return w.nan_to_num(0.0)


def heads(x: torch.Tensor) -> torch.Tensor:
    return x.view(x.shape[0], x.shape[1], H, E // H).transpose(1, 2)


# ----------------------------------------------------------------------------- registry


def test_registered_with_configs_and_self_attention_only(conf_dir):
    from omegaconf import OmegaConf

    for name in NAMES:
        assert name in available() and self_attention_only(name)
        cfg = OmegaConf.load(conf_dir / "attention" / f"{name}.yaml")
        assert cfg.name == name
    for name in ("scaled_dot", "multihead", "local", "additive"):
        assert not self_attention_only(name)
    assert OmegaConf.load(conf_dir / "attention" / "relative.yaml").options == {
        "max_relative_position": 16
    }


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="base"):
        build("rotary", base=1.0)
    with pytest.raises(ValueError, match="max_relative_position"):
        build("relative", query_dim=4, max_relative_position=0)
    with pytest.raises(ValueError, match="query_dim"):
        build("relative")
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        build("alibi", query_dim=4, key_dim=6)


# ----------------------------------------------------------------------------- rotary


def test_rotary_rotates_pairs_as_in_the_paper_and_keeps_norms():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    positions = [0, 1, 4, 9, 100]
    rotated = apply_rotary(x, torch.tensor(positions), base=100.0)
    assert_close(rotated, rotate_by_hand(x, positions, 100.0))
    assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert_close(rotated[..., 0, :], x[..., 0, :])  # position 0: identity
    # an odd size leaves its last feature alone; the rotated part keeps its norm
    odd = torch.randn(4, 5, dtype=torch.float64)
    out = apply_rotary(odd, torch.arange(4) * 3)
    assert_close(out[..., -1], odd[..., -1])
    assert_close(out.norm(dim=-1), odd.norm(dim=-1))


@pytest.mark.parametrize("dim", [8, 5])
def test_rotary_scores_depend_on_the_offset_only(dim):
    q = torch.randn(3, 6, dim, dtype=torch.float64)
    k = torch.randn(3, 9, dim, dtype=torch.float64)
    p = torch.randint(0, 50, (6,))
    r = torch.randint(0, 50, (9,))

    def scores(qp, kp):
        return apply_rotary(q, qp) @ apply_rotary(k, kp).transpose(-1, -2)

    base = scores(p, r)
    for c in (1, 7, 1000):
        assert_close(scores(p + c, r + c), base, atol=1e-9, rtol=1e-9)
    assert not torch.allclose(scores(p + 3, r), base)  # the offset itself does matter


@pytest.mark.parametrize("causal", [False, True])
def test_rotary_core_is_scaled_dot_on_rotated_inputs(causal):
    core = build("rotary", query_dim=6, key_dim=6, causal=causal, base=50.0)
    plain = build("scaled_dot", query_dim=6, key_dim=6, causal=causal)
    q, k, v = torch.randn(B, 4, 6), torch.randn(B, 9, 6), torch.randn(B, 9, 3)
    mask = key_padding([9, 6], 9)
    rq = apply_rotary(q, torch.arange(5, 9), 50.0)  # queries sit at the end of the keys
    rk = apply_rotary(k, torch.arange(9), 50.0)
    expected, w_ref = plain(rq, rk, v, mask, need_weights=True)
    for need in (False, True):
        out, w = core(q, k, v, mask, need_weights=need)
        assert_close(out, expected, **TOL)
    assert_close(w, w_ref, **TOL)


# ----------------------------------------------------------------------------- alibi


def test_alibi_slopes_follow_the_paper():
    assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    s16 = alibi_slopes(16)  # 1/2^0.5, 1/2^1, ... 1/2^8
    assert_close(s16, torch.tensor([2.0 ** (-i / 2) for i in range(1, 17)]))
    assert_close(alibi_slopes(1), torch.tensor([2.0**-8]))


def test_alibi_bias_by_hand():
    d = torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    expected = torch.stack([-d / 16, -d / 256])  # H = 2: slopes 2^-4, 2^-8
    assert_close(alibi_bias(2, 3, 3), expected)
    # one new query over three cached keys sits at position 2: the last row
    assert_close(alibi_bias(2, 1, 3), expected[:, 2:])


@pytest.mark.parametrize("causal", [False, True])
def test_alibi_scores_equal_the_hand_computed_bias(causal):
    core = build("alibi", query_dim=2, key_dim=2, causal=causal)
    q, k, v = (torch.randn(1, 2, 3, 2) for _ in range(3))  # (B, H=2, T=3, d=2)
    d = torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    bias = torch.stack([-d / 16, -d / 256])[None]  # (1, 2, 3, 3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(2) + bias
    if causal:
        scores = scores.masked_fill(~torch.ones(3, 3, dtype=torch.bool).tril(), float("-inf"))
    expected = torch.softmax(scores, -1)
    out, w = core(q, k, v, need_weights=True)
    assert_close(w, expected, **TOL)
    assert_close(out, expected @ v, **TOL)
    assert_close(core(q, k, v)[0], expected @ v, **TOL)  # fused path


# ----------------------------------------------------------------------------- relative


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("mask_kind", ["none", "pad", "rows"])
@pytest.mark.parametrize("causal", [False, True])
def test_relative_with_zero_embeddings_is_scaled_dot(causal, mask_kind, path):
    rel = layer("relative", causal=causal)
    plain = build_attention_layer("multihead", E, H, causal=causal)
    missing = plain.load_state_dict(rel.state_dict(), strict=False)
    assert missing.unexpected_keys == ["core.relative_keys"] and not missing.missing_keys
    with torch.no_grad():
        rel.core.relative_keys.zero_()
    x = torch.randn(B, T, E)
    mask = {
        "none": None,
        "pad": key_padding([T, 4], T),
        "rows": torch.rand(B, T, T) < 0.6,
    }[mask_kind]
    if path == "eager":
        set_fast_path(rel, False)
    out, w = rel(x, x, x, mask, need_weights=path == "eager")
    ref, w_ref = plain(x, x, x, mask, need_weights=path == "eager")
    assert_close(out, ref, **TOL)
    if path == "eager":
        assert_close(w, w_ref, **TOL)


def test_relative_clips_distances_and_shares_the_table_across_heads():
    core = build("relative", query_dim=3, key_dim=3, max_relative_position=1)
    with torch.no_grad():
        core.relative_keys.copy_(torch.randn(3, 3))
    index = core.relative_index(4, 4)
    assert index.tolist() == [[1, 2, 2, 2], [0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]]
    assert core.relative_index(1, 4).tolist() == [[0, 0, 0, 1]]  # a cached step at position 3
    q, k, v = (torch.randn(2, 3, 4, 3) for _ in range(3))  # 3 heads
    _, w = core(q, k, v, need_weights=True)
    assert_close(w, reference_weights("relative", core, q, k), **TOL)


# ----------------------------------------------------------------------------- all three


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_weights_and_capture_are_the_papers_formulas(name, causal):
    """``need_weights`` and ``capture_attention`` give the real (positional) weights, for self
    attention (Tq = Tk) and for new queries over a longer key sequence (a cache)."""
    block = layer(name, causal=causal).eval()
    for tq in (T, 3):
        x, mem = torch.randn(B, tq, E), torch.randn(B, T, E)
        kv = x if tq == T else mem
        mask = key_padding([T, 5], T)
        q, k, _ = block.project(x, kv, kv)
        expected = reference_weights(name, block.core, heads(q), heads(k), mask, causal)
        out, w = block(x, kv, kv, mask, need_weights=True)
        assert_close(w, expected, **TOL)
        with capture_attention(block) as cap:
            captured_out, none = block(x, kv, kv, mask)
        assert none is None
        assert_close(cap["multihead"][0], expected, **TOL)
        assert_close(captured_out, out, **TOL)


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_masked_keys_get_zero_weight_and_never_matter(name, causal, path):
    block = layer(name, causal=causal).eval()
    if path == "eager":
        set_fast_path(block, False)
    x = torch.randn(B, T, E)
    mask = key_padding([T, 4], T)
    out, _ = block(x, x, x, mask)
    _, w = block(x, x, x, mask, need_weights=True)
    hidden = ~mask[:, None, None, :].expand_as(w)
    if causal:
        hidden = hidden | ~causal_mask(T, T)
    assert (w[hidden] == 0).all()
    assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)
    # padded keys (and, causally, the future) may be anything: real outputs stay
    noisy = x.clone()
    noisy[1, 4:] = torch.randn(T - 4, E) * 10
    assert_close(block(noisy, noisy, noisy, mask)[0][1, :4], out[1, :4], **TOL)
    if causal:
        later = x.clone()
        later[:, 5:] = torch.randn(B, T - 5, E) * 10
        assert_close(block(later, later, later, mask)[0][:, :5], out[:, :5], **TOL)
    # padding whole steps onto the batch leaves the real outputs alone (positions from 0)
    longer = torch.cat([x, torch.randn(B, 3, E)], dim=1)
    out_long, _ = block(longer, longer, longer, key_padding([T, 4], T + 3))
    assert_close(out_long[:, :T][mask], out[mask], **TOL)


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_rows_follow_the_library_convention(name, path):
    """A query that may see nothing outputs 0 (after the output projection too), with finite
    gradients and none into that query, as for every other block."""
    block = layer(name)
    nn.init.normal_(block.out_proj.bias)  # a bias must not leak into empty rows
    if path == "eager":
        set_fast_path(block, False)
    x = torch.randn(B, T, E, requires_grad=True)
    rows = torch.rand(B, T, T) < 0.6
    rows[:, :, 0] = True
    rows[0, 2] = False  # query 2 of batch 0 sees nothing
    for mask, empty in ((rows, (0, 2)), (key_padding([T, 0], T), (1, slice(None)))):
        out, _ = block(x, x, x, mask, need_weights=path == "eager")
        assert torch.isfinite(out).all()
        assert (out[empty] == 0).all()
        q = x.detach().clone().requires_grad_(True)
        out_q, _ = block(q, x.detach(), x.detach(), mask, need_weights=path == "eager")
        (grad,) = torch.autograd.grad(out_q.square().sum(), q)
        assert torch.isfinite(grad).all() and (grad[empty] == 0).all()
        grads = torch.autograd.grad(out.square().sum(), (x, *block.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_fused_path_runs_sdpa(name, monkeypatch):
    """Without ``need_weights`` the block calls PyTorch's SDPA, never its eager maths."""
    block = layer(name, causal=True)
    x = torch.randn(B, T, E)
    mask = key_padding([T, 4], T)
    expected, _ = block(x, x, x, mask, need_weights=True)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return sdpa(*args, **kwargs)

    def no_eager(*args, **kwargs):
        raise AssertionError("eager path used")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    monkeypatch.setattr(block.core, "eager", no_eager)
    out, _ = block(x, x, x, mask)
    assert len(calls) == 1
    if name != "rotary":  # the bias travels as a float mask
        assert calls[0].is_floating_point()
    assert_close(out, expected, **TOL)
    # rotary without a mask keeps SDPA's own causal kernel
    calls.clear()
    block(x, x, x)
    if name == "rotary":
        assert calls == [None]


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name, causal, path):
    """float64 gradients w.r.t. inputs and parameters (the relative table included)."""
    block = build_attention_layer(name, 4, 2, causal=causal, **OPTIONS.get(name, {})).double()
    t = 4
    q, k, v = (torch.randn(2, t, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = key_padding([t, t - 1], t)
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in block.named_parameters()]
    need = path == "eager"

    def fn(q, k, v, *ps):
        out, w = functional_call(
            block, dict(zip(names, ps)), (q, k, v), {"mask": mask, "need_weights": need}
        )
        return (out, w) if need else out

    assert torch.autograd.gradcheck(fn, (q, k, v, *params), eps=1e-6, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", NAMES)
def test_cached_steps_equal_full_causal_attention(name):
    """A KV cache (prefill, then one step at a time, then a beam reorder) gives the outputs
    and weights of one causal pass: each new query sits at the cache length."""
    block = layer(name, causal=True).eval()
    x = torch.randn(3, T, E)
    with torch.no_grad():
        full, full_w = block(x, x, x, need_weights=True)
        cache: dict = {}
        outs = [cached_attention(block, x[:, :2], x[:, :2], x[:, :2], cache)[0]]
        for t in range(2, 5):
            out, w = cached_attention(
                block, x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], cache, need_weights=True
            )
            outs.append(out)
            assert_close(w[:, :, 0], full_w[:, :, t, : t + 1], **TOL)
        assert_close(torch.cat(outs, 1), full[:, :5], **TOL)
        # beams reordered: the continued cache follows the selected rows
        index = torch.tensor([2, 0, 0])
        cache = reorder_cache(cache, index)
        xr = x[index]
        rest = [cached_attention(block, xr[:, t : t + 1], xr[:, t : t + 1], xr[:, t : t + 1],
                                 cache)[0] for t in range(5, T)]  # fmt: skip
        assert_close(torch.cat(rest, 1), full[index, 5:], **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_transformer_decoder_incremental_equals_full(name):
    dec = TransformerDecoder(
        2, E, H, self_attention=name, cross_attention="multihead",
        self_attention_options=OPTIONS.get(name, {}), memory_dim=6,
    ).eval()  # fmt: skip
    x, memory = torch.randn(B, T, E), torch.randn(B, 5, 6)
    memory_mask = key_padding([5, 3], 5)
    with torch.no_grad():
        full, _ = dec(x, memory, memory_mask=memory_mask)
        cache = dec.init_cache()
        steps = [dec(x[:, :3], memory, memory_mask=memory_mask, cache=cache)[0]]
        for t in range(3, T):
            steps.append(dec(x[:, t : t + 1], memory, memory_mask=memory_mask, cache=cache)[0])
    assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_positions_change_the_output(name):
    """Without absolute positions a plain encoder is permutation-equivariant; these are not."""
    enc = TransformerEncoder(1, E, H, attention=name, attention_options=OPTIONS.get(name, {}))
    enc.eval()
    if name == "relative":
        with torch.no_grad():
            enc.layers[0].self_attn.core.relative_keys.normal_()
    x = torch.randn(1, T, E)
    perm = torch.randperm(T)
    with torch.no_grad():
        out, _ = enc(x)
        out_p, _ = enc(x[:, perm])
    assert not torch.allclose(out_p, out[:, perm], atol=1e-4)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", types_with(cross_attention=False))
def test_uses_without_a_shared_position_are_refused(name):
    with pytest.raises(ValueError, match=f"cross_attention='{name}'.*self-attention only"):
        TransformerDecoderLayer(E, H, cross_attention=name)
    with pytest.raises(ValueError, match="self-attention only"):
        TransformerDecoderLayer(E, H, cross_attention_options={"core": name})
    with pytest.raises(ValueError, match=f"'{name}' is self-attention only.*memory"):
        MemoryAttention(name, 8, 8)
    with pytest.raises(ValueError, match="self-attention only"):
        MemoryAttention("multihead", 8, 8, core=name)
    with pytest.raises(ValueError, match=f"'{name}' is self-attention only.*pooling"):
        AttentionPooling(8, attention=name)
    # the builder keeps the type for self-attention and falls back to multihead for the memory
    dec = decoder_from_config({"num_layers": 1, "embed_dim": E, "num_heads": H, "attention": name})
    assert dec.layers[0].self_attn.core_name == name
    assert dec.layers[0].cross_attn.core_name == "scaled_dot"
    with pytest.raises(ValueError, match="self-attention only"):
        decoder_from_config({"embed_dim": E, "num_heads": H, "cross_attention": name})
