"""Tests for the attention block library (toolkit.attention).

Every registered name is exercised through one small factory (``make``); ``multihead`` is
also run around several cores. The eager maths (``need_weights=True``) is the reference for
the fused/blockwise paths, and hand-written formulas are the reference for the eager maths.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch.func import functional_call
from torch.testing import assert_close

from toolkit import attention
from toolkit.attention import (
    AttentionBase,
    available,
    band_mask,
    build,
    capabilities,
    capture_attention,
    causal_mask,
    normalize_mask,
    set_fast_path,
    types_with,
)
from toolkit.attention.base import zero_fully_masked

E, HEADS = 8, 2  # multihead width and heads (head_dim 4)
T = 11  # > local block_size + 2 * window = 7 and not a multiple of 3 (local) or 4 (linear)
TQ_CROSS = 6
B = 2
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Everything type-specific comes from the registry: each type declares its capabilities
# and its test options (``test_options``: small enough that every chunked/blockwise code
# path runs at T = 11; ``test_multihead_options`` as a multihead core) where it is
# registered, so a new type runs through every test here without editing this file.


@dataclass(frozen=True)
class Case:
    name: str
    core: str | None = None

    def __str__(self) -> str:
        return self.name if self.core is None else f"{self.name}-{self.core}"

    @property
    def multihead(self) -> bool:
        """A multi-head layer around ``core`` (``multihead``)."""
        return capabilities(self.name).layer

    @property
    def base(self) -> str:
        """The name whose maths runs per head."""
        return self.core if self.multihead else self.name

    @property
    def caps(self) -> attention.Capabilities:
        """The capabilities of the maths that runs (the core's, for a multihead layer)."""
        return capabilities(self.base)


def registry_cases() -> list[Case]:
    """Every registered core alone, and every multihead-capable core in every layer type,
    from the registry as it is now."""
    cases = [Case(n) for n in available() if not capabilities(n).layer]
    return cases + [
        Case(layer, core)
        for layer in types_with(layer=True)
        for core in types_with(multihead_core=True)
    ]


CASES = registry_cases()
CASE_IDS = [str(c) for c in CASES]


def case_dims(case: Case) -> tuple[int, int, int]:
    """``(Dq, Dk, Dv)`` of the inputs: query/key dims differ where the maths allows it."""
    if case.multihead:
        return E, E, E
    if case.caps.mixed_widths:
        return 5, 7, 3
    return 4, 4, 3


def make(
    case: Case,
    *,
    causal: bool = False,
    dropout: float = 0.0,
    dtype: torch.dtype = torch.float32,
    num_heads: int = HEADS,
    dims: tuple[int, int] | None = None,
    **overrides,
) -> nn.Module:
    """Build ``case`` with sensible test options (``overrides`` win)."""
    if case.multihead:
        embed = E if dims is None else dims[0]
        opts = {**case.caps.test_options, **case.caps.test_multihead_options}
        opts.update(overrides)
        block = build(
            case.name,
            embed_dim=embed,
            num_heads=num_heads,
            core=case.core,
            causal=causal,
            dropout=dropout,
            **opts,
        )
    else:
        dq, dk, _ = case_dims(case)
        if dims is not None:
            dq, dk = dims
        opts = {"query_dim": dq, "key_dim": dk, **case.caps.test_options, **overrides}
        block = build(case.name, causal=causal, dropout=dropout, **opts)
    return block.to(dtype)


def inputs(
    case: Case,
    b: int = B,
    tq: int = T,
    tk: int = T,
    dtype: torch.dtype = torch.float32,
    dims: tuple[int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = case_dims(case) if dims is None else dims
    return (
        torch.randn(b, tq, dq, dtype=dtype),
        torch.randn(b, tk, dk, dtype=dtype),
        torch.randn(b, tk, dv, dtype=dtype),
    )


def out_dim(case: Case) -> int:
    return E if case.multihead else case_dims(case)[2]


def weights_shape(case: Case, b: int, tq: int, tk: int, heads: int = HEADS) -> tuple:
    return (b, heads, tq, tk) if case.multihead else (b, tq, tk)


def empty_output(block: nn.Module, case: Case, dv: int | None = None) -> torch.Tensor:
    """What a query that may attend to nothing outputs: 0, for every block (a multihead
    zeroes such rows after its output projection, whatever its bias)."""
    if case.multihead:
        return torch.zeros(block.embed_dim)
    return torch.zeros(case_dims(case)[2] if dv is None else dv)


def key_padding(lengths: list[int], tk: int) -> torch.Tensor:
    return torch.arange(tk)[None, :] < torch.tensor(lengths)[:, None]


def make_mask(kind: str, b: int, tq: int, tk: int) -> torch.Tensor | None:
    """``none``, ``pad`` (B, Tk), ``bcast`` (B, 1, Tk) or ``query`` (B, Tq, Tk, one empty row)."""
    if kind == "none":
        return None
    lengths = [tk - 3 * (i % 2) for i in range(b)]
    if kind == "pad":
        return key_padding(lengths, tk)
    if kind == "bcast":
        return key_padding(lengths, tk)[:, None, :]
    if kind == "query":
        g = torch.Generator().manual_seed(tq * 100 + tk)
        mask = torch.rand(b, tq, tk, generator=g) < 0.6
        mask[:, :, 0] = True  # most rows may attend somewhere ...
        mask[:, :, -2] = False  # ... no row sees key Tk - 2 ...
        mask[0, 1] = False  # ... and one row sees nothing
        return mask
    raise ValueError(kind)


def structure(block: nn.Module, tq: int, tk: int) -> torch.Tensor:
    """``(Tq, Tk)`` keys a query may see before any user mask: what the block's maths adds to
    the mask (``local``'s band, causality), ``dense_mask`` of its core without a user mask."""
    (core,) = cores_of(block)
    allowed = core.dense_mask(None, tq, tk, None)
    return torch.ones(tq, tk, dtype=torch.bool) if allowed is None else allowed


def eager_of(block: nn.Module, q, k, v, mask=None) -> torch.Tensor:
    """Output of the eager path, forced with set_fast_path (restored afterwards)."""
    set_fast_path(block, False)
    try:
        return block(q, k, v, mask)[0]
    finally:
        set_fast_path(block, True)


def cores_of(block: nn.Module) -> list[AttentionBase]:
    return [m for m in block.modules() if isinstance(m, AttentionBase)]


def ref_softmax_attention(q, k, v, scale: float, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-written ``softmax(scale · q kᵀ) v``; fully masked rows are zero."""
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return w @ v, w


# ----------------------------------------------------------------------------- shapes, rows


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("mask_kind", ["none", "pad", "query"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shapes_and_weight_rows(case, mask_kind, cross):
    tq = TQ_CROSS if cross else T
    block = make(case)
    q, k, v = inputs(case, tq=tq)
    mask = make_mask(mask_kind, B, tq, T)
    out, w = block(q, k, v, mask)
    assert out.shape == (B, tq, out_dim(case))
    assert w is None
    out_e, w = block(q, k, v, mask, need_weights=True)
    assert out_e.shape == (B, tq, out_dim(case))
    assert w.shape == weights_shape(case, B, tq, T)
    assert torch.isfinite(w).all() and torch.isfinite(out).all()
    assert (w >= 0).all()
    allowed = structure(block, tq, T).expand(B, tq, T)
    if mask is not None:
        allowed = allowed & normalize_mask(mask, 3, tq, T)
    if case.multihead:
        allowed = allowed[:, None]
    expected = allowed.any(-1).to(w.dtype).expand(w.shape[:-1])  # 1, or 0 for empty rows
    assert_close(w.sum(-1), expected, atol=1e-4, rtol=0)
    assert (w[~allowed.expand_as(w)] == 0).all()


@pytest.mark.parametrize("name", [c.name for c in CASES if not c.multihead])
def test_core_on_4d_inputs_with_4d_masks(name):
    """Cores accept (B, H, T, D) inputs with (B, H|1, Tq|1, Tk) masks."""
    block = make(Case(name), dims=(4, 4))
    q, k, v = (torch.randn(B, 3, T, 4) for _ in range(3))
    for mask in (
        key_padding([T, 7], T)[:, None, None, :],
        torch.rand(B, 3, T, T) < 0.7,
        torch.rand(B, 1, T, T) < 0.7,
    ):
        out, _ = block(q, k, v, mask)
        out_e, w = block(q, k, v, mask, need_weights=True)
        assert out.shape == (B, 3, T, 4) and w.shape == (B, 3, T, T)
        assert_close(out, out_e, **TOL)
        assert (w[~mask.expand_as(w)] == 0).all()


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("variant", ["pad", "rows", "causal"])
@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradcheck(case, path, variant):
    """float64 gradcheck w.r.t. inputs and parameters (additive: tiny, recomputed chunks)."""
    # declared per type (local: longer than block_size + 2 * window, so the blockwise path
    # runs, and not a whole number of blocks)
    t = case.caps.test_gradcheck_length
    b = 2
    dims = (4, 4, 4) if case.multihead else case_dims(case)  # multihead: 2 heads of 2
    block = make(case, causal=variant == "causal", dtype=torch.float64, dims=dims[:2])
    q, k, v = inputs(case, b=b, tq=t, tk=t, dtype=torch.float64, dims=dims)
    if variant == "rows":
        mask = torch.rand(b, t, t) < 0.6
        mask[:, :, 0] = True
        mask[1, 2] = False  # a fully masked query row: zero output, zero (not NaN) grads
    else:
        mask = key_padding([t, t - 2], t)
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in block.named_parameters()]
    need = path == "eager"

    def fn(q, k, v, *ps):
        out, w = functional_call(
            block, dict(zip(names, ps)), (q, k, v), {"mask": mask, "need_weights": need}
        )
        return (out, w) if need else out

    args = tuple(x.requires_grad_(True) for x in (q, k, v)) + tuple(params)
    # re-running many small recomputed chunks per Jacobian entry is slow: multihead-additive
    # checks random projections of the Jacobian (the plain additive block checks it whole)
    fast_mode = case.multihead and case.core == "additive"
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast_mode)


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("mask_kind", ["pad", "bcast", "query"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_masked_keys_never_matter(case, mask_kind, path):
    block = make(case)
    if path == "eager":
        set_fast_path(block, False)
    q, k, v = inputs(case)
    mask = make_mask(mask_kind, B, T, T)
    out, _ = block(q, k, v, mask)
    _, w = block(q, k, v, mask, need_weights=True)
    full = normalize_mask(mask, 3, T, T).expand(B, T, T)
    hidden = (full[:, None] if case.multihead else full).expand_as(w)
    assert (w[~hidden] == 0).all()  # masked keys get exactly zero weight
    # keys masked for every query may be replaced by anything
    dead = ~full.any(dim=1)  # (B, Tk)
    assert dead.any()
    k2, v2 = k.clone(), v.clone()
    k2[dead] = torch.randn_like(k2[dead]) * 50
    v2[dead] = torch.randn_like(v2[dead]) * 50
    assert_close(block(q, k2, v2, mask)[0], out, atol=1e-6, rtol=0)
    # a key masked for some queries only: exactly those queries ignore it
    for j in (1, 5):
        k2, v2 = k.clone(), v.clone()
        k2[:, j] += 20 * torch.randn_like(k2[:, j])
        v2[:, j] += 20 * torch.randn_like(v2[:, j])
        rows = ~full[:, :, j]  # (B, Tq): queries that may not see key j
        assert_close(block(q, k2, v2, mask)[0][rows], out[rows], atol=1e-6, rtol=0)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_padding_invariance(case, path, causal):
    """Padding a batch (queries and keys) with masked steps leaves the real outputs alone."""
    block = make(case, causal=causal)
    if path == "eager":
        set_fast_path(block, False)
    pad = 4
    q, k, v = inputs(case, tq=T, tk=T)
    qp, kp, vp = inputs(case, tq=T + pad, tk=T + pad)
    qp[:, :T], kp[:, :T], vp[:, :T] = q, k, v
    lengths = [T, T - 2]
    out, _ = block(q, k, v, key_padding(lengths, T))
    out_p, _ = block(qp, kp, vp, key_padding(lengths, T + pad))
    assert_close(out_p[:, :T], out, atol=1e-5, rtol=1e-5)
    # keys-only padding (cross-attention); causal types and those that need positions
    # (local, rotary, ...) align queries to the end of the keys
    if not case.caps.needs_positions and not causal:
        out_k, _ = block(q, kp, vp, key_padding(lengths, T + pad))
        assert_close(out_k, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fully_masked_rows_are_zero_and_finite(case, path):
    block = make(case)
    if case.multihead and block.out_proj.bias is not None:
        nn.init.normal_(block.out_proj.bias)  # a non-zero bias must not leak into empty rows
    if path == "eager":
        set_fast_path(block, False)
    q, k, v = (x.requires_grad_(True) for x in inputs(case))
    # query 1 of batch 0 sees nothing (3-D mask); batch 1 is fully key-padded (2-D mask)
    mask3 = make_mask("query", B, T, T)
    mask2 = key_padding([T - 2, 0], T)
    empty = empty_output(block, case)
    for mask, rows in ((mask3, (0, 1)), (mask2, (1, slice(None)))):
        out, _ = block(q, k, v, mask, need_weights=path == "eager")
        assert torch.isfinite(out).all()
        assert_close(out[rows], empty.expand_as(out[rows]), atol=1e-6, rtol=0)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v, *block.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)
        # an empty row contributes no gradient to its query
        assert (grads[0][rows] == 0).all()


# ----------------------------------------------------------------------------- causal


@pytest.mark.parametrize("path", ["fast", "eager"])
@pytest.mark.parametrize("mask_kind", ["none", "pad"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_causal_never_sees_the_future(case, mask_kind, path):
    block = make(case, causal=True)
    if path == "eager":
        set_fast_path(block, False)
    q, k, v = inputs(case)
    mask = make_mask(mask_kind, B, T, T)
    out, _ = block(q, k, v, mask)
    _, w = block(q, k, v, mask, need_weights=True)
    assert (w.triu(1) == 0).all()
    assert (w.tril() > 0).any()
    for t in (0, 4, 7, T - 2):
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        for x in (q2, k2, v2):
            x[:, t + 1 :] = torch.randn_like(x[:, t + 1 :]) * 10
        out2, _ = block(q2, k2, v2, mask)
        assert_close(out2[:, : t + 1], out[:, : t + 1], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :])


# ----------------------------------------------------------------------------- fast == eager


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("mask_kind", ["none", "pad", "bcast", "query"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fast_matches_eager(case, causal, mask_kind, cross):
    tq = TQ_CROSS if cross else T
    block = make(case, causal=causal)
    q, k, v = inputs(case, tq=tq)
    mask = make_mask(mask_kind, B, tq, T)
    fast, _ = block(q, k, v, mask)
    eager, _ = block(q, k, v, mask, need_weights=True)
    forced = eager_of(block, q, k, v, mask)
    assert torch.isfinite(fast).all()
    assert_close(fast, eager, **TOL)
    assert_close(forced, eager, atol=0, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fast_path_is_as_declared(case):
    """A type registered with ``fast_path=True`` has one (every core of the block); one
    registered without has none, so every call runs its eager maths."""
    assert [c.has_fast_path() for c in cores_of(make(case))] == [case.caps.fast_path]


@pytest.mark.parametrize("length", [8, 11, 13, 20])
@pytest.mark.parametrize("case", [c for c in CASES if c.caps.fast_path], ids=str)
def test_fast_path_really_runs(case, length, monkeypatch):
    """Self-attention with key padding takes the fused/blockwise path, not the eager one."""
    block = make(case)
    assert all(c.has_fast_path() for c in cores_of(block))
    q, k, v = inputs(case, tq=length, tk=length)
    mask = key_padding([length, length - 3], length)
    expected, _ = block(q, k, v, mask, need_weights=True)

    def no_eager(*args, **kwargs):
        raise AssertionError("eager path used")

    for core in cores_of(block):
        monkeypatch.setattr(core, "eager", no_eager)
    out, _ = block(q, k, v, mask)
    assert_close(out, expected, **TOL)


# ----------------------------------------------------------------------------- equivalences


def _copy_into_torch_mha(ours, ref) -> None:
    with torch.no_grad():
        if ours.packed:
            ref.in_proj_weight.copy_(ours.in_proj.weight)
            ref.in_proj_bias.copy_(ours.in_proj.bias)
        else:
            ref.q_proj_weight.copy_(ours.q_proj.weight)
            ref.k_proj_weight.copy_(ours.k_proj.weight)
            ref.v_proj_weight.copy_(ours.v_proj.weight)
            ref.in_proj_bias.copy_(
                torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias])
            )
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal", "both", "causal_flag"])
@pytest.mark.parametrize("mode", ["self", "shared_kv", "distinct", "kdim_vdim"])
def test_multihead_matches_torch(mode, mask_kind):
    tq, tk = (T, T) if mode == "self" else (TQ_CROSS, 9)
    kdim, vdim = (5, 3) if mode == "kdim_vdim" else (None, None)
    causal = mask_kind == "causal_flag"
    ours = build("multihead", embed_dim=E, num_heads=HEADS, kdim=kdim, vdim=vdim, causal=causal)
    ref = nn.MultiheadAttention(E, HEADS, kdim=kdim, vdim=vdim, batch_first=True)
    for name, p in ours.named_parameters():  # non-zero biases so their wiring is checked
        if name.endswith("bias"):
            nn.init.normal_(p)
    _copy_into_torch_mha(ours, ref)
    ours.eval()
    ref.eval()
    x = torch.randn(B, tq, E)
    if mode == "self":
        q = k = v = x
    elif mode == "shared_kv":
        q, k = x, torch.randn(B, tk, E)
        v = k
    elif mode == "distinct":
        q, k, v = x, torch.randn(B, tk, E), torch.randn(B, tk, E)
    else:
        q, k, v = x, torch.randn(B, tk, 5), torch.randn(B, tk, 3)
    keep = key_padding([tk, tk - 3], tk)
    causal_keep = causal_mask(tq, tk)
    mask, kpm, attn_mask = None, None, None
    if mask_kind in ("padding", "both"):
        mask, kpm = keep, ~keep  # torch: True = ignore
    if mask_kind in ("causal", "both"):
        attn_mask = ~causal_keep
        mask = causal_keep[None] if mask is None else keep[:, None, :] & causal_keep
    if mask_kind == "causal_flag":
        attn_mask = ~causal_keep
    ref_out, ref_w = ref(
        q,
        k,
        v,
        key_padding_mask=kpm,
        attn_mask=attn_mask,
        need_weights=True,
        average_attn_weights=True,
    )
    fast, none = ours(q, k, v, mask)
    eager, w = ours(q, k, v, mask, need_weights=True)
    assert none is None
    assert w.shape == (B, HEADS, tq, tk)
    assert_close(fast, ref_out, **TOL)
    assert_close(eager, ref_out, **TOL)
    assert_close(w.mean(dim=1), ref_w, **TOL)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["scaled_dot", "dot"])
def test_dot_products_match_formula(name, masked):
    block = build(name)
    q, k, v = torch.randn(B, TQ_CROSS, 4), torch.randn(B, T, 4), torch.randn(B, T, 3)
    mask = key_padding([T, 5], T)[:, None, :] if masked else None
    scale = 1 / math.sqrt(4) if name == "scaled_dot" else 1.0
    ref_out, ref_w = ref_softmax_attention(q, k, v, scale, mask)
    out, _ = block(q, k, v, mask)
    out_e, w = block(q, k, v, mask, need_weights=True)
    assert_close(out, ref_out, **TOL)
    assert_close(out_e, ref_out, **TOL)
    assert_close(w, ref_w, **TOL)
    # an explicit scale overrides the default
    out_s, _ = build(name, scale=0.3)(q, k, v, mask)
    assert_close(out_s, ref_softmax_attention(q, k, v, 0.3, mask)[0], **TOL)


def test_dot_products_need_equal_dims():
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        build("dot", query_dim=4, key_dim=5)
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        build("scaled_dot", query_dim=4, key_dim=5)


def test_general_matches_bilinear_formula():
    block = build("general", query_dim=6, key_dim=4)
    q, k, v = torch.randn(B, TQ_CROSS, 6), torch.randn(B, T, 4), torch.randn(B, T, 3)
    W = block.W.weight.detach().T  # (Dq, Dk)
    for mask in (None, key_padding([T, 5], T)[:, None, :]):
        ref_out, ref_w = ref_softmax_attention(q @ W, k, v, 1.0, mask)
        out, _ = block(q, k, v, mask)
        out_e, w = block(q, k, v, mask, need_weights=True)
        assert_close(out, ref_out, **TOL)
        assert_close(out_e, ref_out, **TOL)
        assert_close(w, ref_w, **TOL)
        scores = torch.einsum("bqi,ij,bkj->bqk", q, W, k)
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        assert_close(w, torch.softmax(scores, dim=-1), **TOL)


def test_general_scale_multiplies_the_bilinear_score():
    block = build("general", query_dim=6, key_dim=4, scale=0.25)
    q, k, v = torch.randn(B, TQ_CROSS, 6), torch.randn(B, T, 4), torch.randn(B, T, 3)
    W = block.W.weight.detach().T  # (Dq, Dk)
    scores = 0.25 * torch.einsum("bqi,ij,bkj->bqk", q, W, k)
    out, _ = block(q, k, v)
    out_e, w = block(q, k, v, need_weights=True)
    assert_close(w, torch.softmax(scores, dim=-1), **TOL)
    assert_close(out, torch.softmax(scores, dim=-1) @ v, **TOL)
    assert_close(out_e, out, **TOL)
    # a smaller scale flattens the weights (higher entropy) on the same inputs
    unscaled = build("general", query_dim=6, key_dim=4)
    unscaled.load_state_dict(block.state_dict())
    _, w1 = unscaled(q, k, v, need_weights=True)
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1).mean()  # noqa: E731
    assert entropy(w) > entropy(w1)


@pytest.mark.parametrize("chunk_elements", [1, 40, 1 << 22])
def test_additive_matches_formula(chunk_elements):
    block = build("additive", query_dim=5, key_dim=7, hidden_dim=6, chunk_elements=chunk_elements)
    q, k, v = torch.randn(B, TQ_CROSS, 5), torch.randn(B, T, 7), torch.randn(B, T, 3)
    Wq, Wk, bk, vv = (
        block.q_proj.weight.detach(),
        block.k_proj.weight.detach(),
        block.k_proj.bias.detach(),
        block.v.detach(),
    )
    scores = torch.tanh((q @ Wq.T)[:, :, None, :] + (k @ Wk.T + bk)[:, None, :, :]) @ vv
    assert_close(block.scores(q, k), scores, atol=1e-6, rtol=1e-6)
    for mask in (None, key_padding([T, 5], T)):
        m = None if mask is None else mask[:, None, :]
        w_ref = torch.softmax(scores if m is None else scores.masked_fill(~m, -math.inf), -1)
        out, w = block(q, k, v, mask, need_weights=True)
        assert_close(w, w_ref, **TOL)
        assert_close(out, w_ref @ v, **TOL)


def test_additive_chunked_equals_unchunked_with_grads():
    small = build("additive", query_dim=5, key_dim=7, hidden_dim=6, chunk_elements=20)
    big = copy.deepcopy(small)
    big.chunk_elements = 1 << 30
    q, k, v = (x.requires_grad_(True) for x in inputs(Case("additive")))
    mask = key_padding([T, 6], T)
    results = []
    for block in (small, big):
        out, w = block(q, k, v, mask, need_weights=True)
        grads = torch.autograd.grad((out.square().sum() + w.sum()), (q, k, *block.parameters()))
        results.append((out, w, grads))
    (o1, w1, g1), (o2, w2, g2) = results
    assert_close(o1, o2, atol=1e-6, rtol=1e-6)
    assert_close(w1, w2, atol=1e-6, rtol=1e-6)
    for a, b in zip(g1, g2):
        assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_additive_scores_gradcheck_with_broadcast_leads():
    """The hand-written backward (σ form of tanh) against finite differences in float64,
    with query and key leading dims that broadcast and chunks cutting both axes."""
    from toolkit.attention.additive import _AdditiveScores

    torch.manual_seed(0)
    qp = torch.randn(2, 1, 4, 6, dtype=torch.double, requires_grad=True)
    kp = torch.randn(1, 3, 5, 6, dtype=torch.double, requires_grad=True)
    v = torch.randn(6, dtype=torch.double, requires_grad=True)
    fn = lambda a, c, w: _AdditiveScores.apply(a, c, w, 2, 3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (qp, kp, v))
    ref = torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3)) @ v
    assert_close(fn(qp, kp, v), ref, atol=1e-12, rtol=1e-12)


def test_additive_scores_outside_the_exponential_range():
    """Projections beyond ``EXP_BOUND`` (where e^{-2q} would overflow float32) take the
    logistic path: still the formula, finite, and gradients equal to autograd's."""
    from toolkit.attention import additive

    torch.manual_seed(0)
    qp = (30 * torch.randn(2, 5, 4)).requires_grad_()  # |2q| well over the bound
    kp = torch.randn(2, 6, 4, requires_grad=True)
    v = torch.randn(4, requires_grad=True)
    assert 2 * qp.abs().max() > additive.EXP_BOUND
    assert not additive._Logistic(2 * qp.detach(), 2 * kp.detach()).exp
    out = additive._AdditiveScores.apply(qp, kp, v, 2, 4)
    ref = torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3)) @ v
    assert torch.isfinite(out).all()
    assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (qp, kp, v), g)
    want = torch.autograd.grad(ref, (qp, kp, v), g)
    for a, b in zip(got, want):
        assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("tk", "budget"), [(8, 512), (24, 256)], ids=["query-chunks", "key-chunks"]
)  # a (B, 1, Tk, h) query row fits the budget / does not
def test_additive_memory_is_bounded(tk, budget, monkeypatch):
    bq, tq, h = 2, 16, 16
    small = build("additive", query_dim=5, key_dim=7, hidden_dim=h, chunk_elements=budget)
    big = copy.deepcopy(small)
    big.chunk_elements = 1 << 30
    q = torch.randn(bq, tq, 5, requires_grad=True)
    k = torch.randn(bq, tk, 7, requires_grad=True)
    full = bq * tq * tk * h  # the (B, Tq, Tk, h) tanh tensor
    assert full > 4 * budget

    largest = [0]
    # every element-wise pass over a chunk buffer goes through one of these
    wrapped = [(torch, "tanh"), (torch.Tensor, "tanh_"), (torch.Tensor, "sigmoid_"),
               (torch.Tensor, "reciprocal_")]  # fmt: skip
    real = {name: getattr(owner, name) for owner, name in wrapped}

    def recording(name):
        def call(x, *args, **kwargs):
            largest[0] = max(largest[0], x.numel())
            return real[name](x, *args, **kwargs)

        return call

    for owner, name in wrapped:
        monkeypatch.setattr(owner, name, recording(name))
    saved: dict[int, int] = {}  # storage -> elements, kept alive for backward

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scores = small.scores(q, k)
    # chunks are checkpointed, not kept for backward
    assert sum(saved.values()) < full // 2
    gq, gk = torch.autograd.grad(scores.square().sum(), (q, k))  # recomputes the chunks
    assert 0 < largest[0] <= budget
    for owner, name in wrapped:
        monkeypatch.setattr(owner, name, real[name])
    # the formula, unchunked
    ref = torch.tanh(big.q_proj(q).unsqueeze(-2) + big.k_proj(k).unsqueeze(-3)) @ big.v
    assert_close(scores, ref, atol=1e-6, rtol=1e-6)
    rq, rk = torch.autograd.grad(ref.square().sum(), (q, k))
    assert_close(gq, rq, atol=1e-5, rtol=1e-5)
    assert_close(gk, rk, atol=1e-5, rtol=1e-5)


def test_band_mask_pattern():
    i, j = torch.arange(6)[:, None], torch.arange(6)[None, :]
    assert torch.equal(band_mask(6, 6, 2, False), (i - j).abs() <= 2)
    assert torch.equal(band_mask(6, 6, 2, True), (j <= i) & (j >= i - 2))
    # queries aligned to the end of the keys, as causal_mask
    assert torch.equal(band_mask(2, 6, 1, True), band_mask(6, 6, 1, True)[4:])


# Both sides of local's dispatch: ``blocked_from=0`` takes the blocked path wherever one block
# lies inside the sequence, a huge ``blocked_from`` always takes dense SDPA.
DISPATCH = {"blocked": 0.0, "dense": 1e9}


@pytest.mark.parametrize("path", list(DISPATCH))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("t", "window", "block_size"),
    [(11, 2, 3), (13, 2, 4), (9, 1, 2), (101, 6, None), (6, 0, 1), (15, 4, 2), (10, 2, 1)],
)
def test_local_matches_banded_dense(t, window, block_size, causal, masked, path):
    block = build(
        "local", window=window, block_size=block_size, causal=causal, blocked_from=DISPATCH[path]
    )
    assert block.uses_blocked(t, t) == (path == "blocked")
    q, k, v = torch.randn(B, t, 4), torch.randn(B, t, 4), torch.randn(B, t, 3)
    allowed = band_mask(t, t, window, causal)
    mask = None
    if masked:
        mask = key_padding([t, t - 2], t)
        allowed = allowed & mask[:, None, :]
    ref_out, ref_w = ref_softmax_attention(q, k, v, 0.5, allowed)
    out, _ = block(q, k, v, mask)
    out_e, w = block(q, k, v, mask, need_weights=True)
    assert_close(out, ref_out, **TOL)
    assert_close(out_e, ref_out, **TOL)
    assert_close(w, ref_w, **TOL)


def _ref_grads(out, ref_out, inputs, seed):
    """Gradients of the same random projection of ``out`` and of ``ref_out``."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (
        torch.autograd.grad(out, inputs, g),
        torch.autograd.grad(ref_out, inputs, g, retain_graph=True),
    )


@pytest.mark.parametrize("path", list(DISPATCH))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize(
    ("t", "window", "block_size"),
    # odd lengths, no whole number of blocks, block < window, T < window, one interior block
    [(37, 4, 5), (53, 3, 8), (29, 5, 2), (5, 8, 3), (14, 2, 4), (101, 6, None), (64, 7, 16)],
)
def test_local_dispatch_sides_match_reference(t, window, block_size, causal, path):
    """Blocked and dense SDPA each equal the plain reference (outputs and gradients, fp32,
    1e-5) on random (B, H, T, d) inputs with key padding (one sequence fully padded past a
    few steps, one query window left empty)."""
    block = build(
        "local", window=window, block_size=block_size, causal=causal, blocked_from=DISPATCH[path]
    )
    blocked = block.uses_blocked(t, t)
    if path == "dense" or t < window:
        assert not blocked
    elif t >= block.block_size + block.span():
        assert blocked  # a block lies inside the sequence: the blocked path really runs
    g = torch.Generator().manual_seed(t * 10 + window)
    b, h = 3, 2
    q, k, v = (torch.randn(b, h, t, 5, generator=g).requires_grad_(True) for _ in range(3))
    lengths = [t, max(1, t - 7), max(1, t // 3)]
    keep = key_padding(lengths, t)
    keep[2, : min(t, 2 * window + 2)] = False  # early queries of batch 2 may see nothing
    allowed = band_mask(t, t, window, causal) & keep[:, None, None, :]
    scale = 5**-0.5
    for mask in (keep, keep[:, None, None, :], None):
        ref_allowed = allowed if mask is not None else band_mask(t, t, window, causal)
        ref_out, _ = ref_softmax_attention(q, k, v, scale, ref_allowed)
        out, _ = block(q, k, v, mask)
        assert torch.isfinite(out).all()
        assert_close(out, ref_out, **TOL)
        got, want = _ref_grads(out, ref_out, (q, k, v), seed=t)
        for a, r in zip(got, want):
            assert torch.isfinite(a).all()
            assert_close(a, r, **TOL)
        with torch.no_grad():  # the no-grad form writes one output in place
            assert_close(block(q, k, v, mask)[0], ref_out, **TOL)


def test_local_dispatch_rule():
    """Blocked from ``blocked_from · span`` steps (self-attention, key masks only)."""
    block = build("local", window=256)  # the benchmark's window
    assert block.block_size == 256 and block.span() == 768
    assert block.blocked_from == attention.LocalAttention.BLOCKED_FROM
    at = math.ceil(block.blocked_from * block.span())
    assert not block.uses_blocked(at - 1, at - 1)
    assert block.uses_blocked(at, at)
    assert block.uses_blocked(8192, 8192)
    assert not block.uses_blocked(6, 8192)  # cross-attention: dense
    pad = torch.ones(1, 1, 1, 8192, dtype=torch.bool)
    assert block.uses_blocked(8192, 8192, pad)
    assert not block.uses_blocked(8192, 8192, pad.expand(1, 1, 8192, 8192))  # per query
    # CUDA: dense SDPA under the band mask measured faster at every length, so never blocked
    assert not block.uses_blocked(8192, 8192, pad, device="cuda")
    assert not block.uses_blocked(8192, 8192, device=torch.device("cuda", 0))
    assert block.uses_blocked(8192, 8192, device=torch.device("cpu"))
    causal = build("local", window=256, causal=True)
    assert causal.span() == 512 and causal.uses_blocked(1024, 1024)
    small = build("local", window=8)
    assert small.block_size == attention.LocalAttention.MIN_BLOCK


@pytest.mark.parametrize("path", list(DISPATCH))
def test_local_fast_path_takes_the_dispatched_form(path, monkeypatch):
    """Dense: one SDPA call over (T, T); blocked: SDPA calls of at most ``block + 2w`` keys."""
    import toolkit.attention.local as local_module

    block = build("local", window=3, block_size=4, blocked_from=DISPATCH[path])
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        calls.append(k.shape[-2])
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(local_module.F, "scaled_dot_product_attention", spy)
    q = torch.randn(2, 2, 40, 4)
    block(q, q, q)
    assert calls and (calls == [40] if path == "dense" else max(calls) <= 4 + 2 * 3)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_size", [2, 3])
def test_local_block_groups_match_banded_dense(block_size, causal, grad):
    """Interior blocks split over several SDPA calls (bounded transients) give the same
    result."""
    t, window = 23, 2
    block = build("local", window=window, block_size=block_size, causal=causal)
    # two blocks of (B, block_size, 4) outputs per call
    block.chunk_elements = 2 * B * block_size * 4
    assert block.uses_blocked(t, t)
    q, k, v = (torch.randn(B, t, 4, requires_grad=grad) for _ in range(3))
    mask = key_padding([t, t - 5], t)
    band = band_mask(t, t, window, causal)
    ref_out, _ = ref_softmax_attention(q, k, v, 0.5, band & mask[:, None])
    with torch.set_grad_enabled(grad):
        out, _ = block(q, k, v, mask)
        out_nomask, _ = block(q, k, v)
    assert_close(out, ref_out, **TOL)
    assert_close(out_nomask, ref_softmax_attention(q, k, v, 0.5, band)[0], **TOL)
    if grad:
        g = torch.autograd.grad(out.square().sum(), (q, k, v))
        g_ref = torch.autograd.grad(ref_out.square().sum(), (q, k, v))
        for a, b in zip(g, g_ref):
            assert_close(a, b, **TOL)


def longformer_allowed(t: int, window: int, globals_: set[int], causal: bool) -> torch.Tensor:
    """The Longformer pattern, written out: the band, plus global rows and columns."""
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    is_global = torch.zeros(t, dtype=torch.bool)
    is_global[[p for p in globals_ if p < t]] = True
    allowed = ((i - j).abs() <= window) | is_global[:, None] | is_global[None, :]
    return allowed & (j <= i) if causal else allowed


@pytest.mark.parametrize("path", list(DISPATCH))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize(
    ("t", "window", "block_size", "num_global", "positions"),
    [
        (11, 2, 3, 1, (6,)),
        (37, 4, 5, 2, ()),
        (53, 3, 8, 0, (17, 52)),  # globals in the middle and last
        (29, 5, 2, 1, (40,)),  # a position past the end is ignored
        (5, 8, 3, 1, ()),  # shorter than the window
        (64, 7, 16, 3, (31, 32)),
    ],
)
def test_longformer_matches_dense_masked_reference(
    t, window, block_size, num_global, positions, causal, path
):
    """Outputs (both dispatch sides), weights and gradients equal dense masked attention."""
    block = build(
        "longformer",
        window=window,
        block_size=block_size,
        num_global=num_global,
        global_positions=positions,
        causal=causal,
        blocked_from=DISPATCH[path],
    )
    globals_ = set(range(num_global)) | set(positions)
    g = torch.Generator().manual_seed(t)
    b, h = 2, 2
    q, k, v = (torch.randn(b, h, t, 4, generator=g).requires_grad_(True) for _ in range(3))
    keep = key_padding([t, max(1, t - 6)], t)
    allowed = longformer_allowed(t, window, globals_, causal)
    assert torch.equal(block.dense_mask(None, t, t, None), allowed)
    allowed = allowed & keep[:, None, None, :]
    ref_out, ref_w = ref_softmax_attention(q, k, v, 0.5, allowed)
    out, _ = block(q, k, v, keep)
    out_e, w = block(q, k, v, keep, need_weights=True)
    assert_close(out, ref_out, **TOL)
    assert_close(out_e, ref_out, **TOL)
    assert_close(w, ref_w, **TOL)
    for got_out in (out, out_e):
        got, want = _ref_grads(got_out, ref_out, (q, k, v), seed=t)
        for a, r in zip(got, want):
            assert_close(a, r, **TOL)


def test_longformer_global_tokens_see_and_are_seen_by_everything():
    block = build("longformer", window=1, num_global=1, global_positions=[5])
    q = torch.randn(1, 9, 4)
    _, w = block(q, q, q, need_weights=True)
    assert (w[0, [0, 5]] > 0).all()  # global rows see every key
    assert (w[0, :, [0, 5]] > 0).all()  # every query sees the global keys
    assert w[0, 2, 7] == 0 and w[0, 7, 2] == 0  # two local tokens apart
    with pytest.raises(ValueError, match="num_global"):
        build("longformer", num_global=-1)
    with pytest.raises(ValueError, match="global_positions"):
        build("longformer", global_positions=[-2])
    assert build("longformer", num_global=2, global_positions=[9, 1]).global_positions == (
        0,
        1,
        9,
    )


def test_local_cross_attention_matches_banded_dense():
    block = build("local", window=2, causal=True)
    q, k, v = torch.randn(B, 4, 4), torch.randn(B, T, 4), torch.randn(B, T, 3)
    ref_out, _ = ref_softmax_attention(q, k, v, 0.5, band_mask(4, T, 2, True))
    assert_close(block(q, k, v)[0], ref_out, **TOL)


def _phi(x, name):
    return {"elu": F.elu(x) + 1, "relu": F.relu(x), "softplus": F.softplus(x)}[name]


@pytest.mark.parametrize("feature_map", ["elu", "relu", "softplus"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_matches_quadratic_form(causal, masked, feature_map):
    block = build("linear", causal=causal, chunk_size=4, feature_map=feature_map)
    q, k, v = torch.randn(B, T, 4), torch.randn(B, T, 4), torch.randn(B, T, 3)
    a = _phi(q, feature_map) @ _phi(k, feature_map).transpose(-1, -2)
    mask = key_padding([T, 6], T) if masked else None
    allowed = torch.ones(B, T, T, dtype=torch.bool)
    if causal:
        allowed = allowed & causal_mask(T)
    if masked:
        allowed = allowed & mask[:, None, :]
    a = a.masked_fill(~allowed, 0.0)
    w_ref = a / (a.sum(-1, keepdim=True) + block.eps)
    out, _ = block(q, k, v, mask)
    out_e, w = block(q, k, v, mask, need_weights=True)
    assert_close(out, w_ref @ v, **TOL)
    assert_close(out_e, w_ref @ v, **TOL)
    assert_close(w, w_ref, **TOL)


def test_linear_rejects_unknown_feature_map():
    with pytest.raises(ValueError, match="elu"):
        build("linear", feature_map="tanh")


# ----------------------------------------------------------------------------- registry, config

EXPECTED_NAMES = {
    "additive", "dot", "general", "scaled_dot", "multihead", "local", "linear",
    "rotary", "alibi", "relative", "location", "coverage", "uniform",
}  # fmt: skip


def config_kwargs(name: str) -> dict:
    """The sizes a model supplies; the config supplies the rest."""
    return {"embed_dim": E} if capabilities(name).layer else {"query_dim": E}


def test_registry_lists_the_library():
    names = available()
    assert set(names) >= EXPECTED_NAMES
    assert names == sorted(names)
    for name in names:
        assert attention.get(name).registry_name == name


def test_unknown_name_lists_valid_choices():
    with pytest.raises(ValueError) as err:
        build("nope")
    assert "'nope'" in str(err.value)
    for name in available():
        assert name in str(err.value)


def test_build_reports_bad_options():
    with pytest.raises(TypeError, match="attention 'local'"):
        build("local", no_such_option=1)


@pytest.mark.parametrize("name", available())
def test_every_name_has_a_config(name, conf_dir):
    path = conf_dir / "attention" / f"{name}.yaml"
    assert path.is_file(), f"missing {path}"
    cfg = OmegaConf.load(path)
    assert cfg.name == name
    assert OmegaConf.is_dict(cfg.options)
    block = build(cfg.name, **config_kwargs(name), **cfg.options)
    x = torch.randn(B, 5, E)
    out, w = block(x, x, x, key_padding([5, 3], 5), need_weights=True)
    assert out.shape == (B, 5, E)
    assert torch.isfinite(out).all()
    assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-4, rtol=0)


def test_every_config_names_a_registered_type(conf_dir):
    """``conf/attention/<name>.yaml`` <-> registered ``name``, both ways."""
    files = sorted(p.stem for p in (conf_dir / "attention").glob("*.yaml"))
    assert len(files) >= len(EXPECTED_NAMES)
    for stem in files:
        assert OmegaConf.load(conf_dir / "attention" / f"{stem}.yaml").name == stem
    assert files == available()


def test_config_defaults(conf_dir):
    assert OmegaConf.load(conf_dir / "attention" / "local.yaml").options.window == 64
    assert OmegaConf.load(conf_dir / "attention" / "linear.yaml").options.feature_map == "elu"


def test_config_group_composes_with_hydra(conf_dir):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir / "attention"), version_base=None):
        cfg = compose(config_name="local")
    assert cfg.name == "local" and cfg.options.window == 64


# ----------------------------------------------------------------------------- masks api


def test_mask_validation():
    q = torch.randn(B, 3, 4)
    block = build("scaled_dot")
    with pytest.raises(TypeError, match="boolean"):
        block(q, q, q, torch.ones(B, 3))
    with pytest.raises(ValueError, match="ambiguous"):
        block(q, q, q, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit"):
        block(q, q, q, torch.ones(B, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps"):
        block(q, q, torch.randn(B, 4, 4))


def test_zero_fully_masked_clears_empty_rows():
    """Fused kernels may give NaN (or a mean) for queries that see nothing: they become 0."""
    out = torch.full((2, 3, 4), float("nan"))
    out[:, 1] = 1.0
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[:, 1, 2] = True
    cleared = zero_fully_masked(out, mask)
    assert (cleared[:, 1] == 1).all()
    assert (cleared[:, [0, 2]] == 0).all()
    pad = torch.tensor([[True] * 5, [False] * 5])[:, None, :]  # (B, 1, Tk)
    cleared = zero_fully_masked(torch.ones(2, 3, 4), pad)
    assert (cleared[0] == 1).all() and (cleared[1] == 0).all()
    assert zero_fully_masked(out, None) is out


def test_causal_mask_aligns_to_the_end():
    assert torch.equal(causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(2, 4), torch.ones(4, 4, dtype=torch.bool).tril()[2:])


# ----------------------------------------------------------------------------- capture


class Stack(nn.Module):
    """Two attention blocks, one at ``first`` and one nested at ``layers.0``."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.layers = nn.Sequential(second)

    def forward(self, q, k, v, mask=None):
        h, w1 = self.first(q, k, v, mask)
        out, w2 = self.layers[0](q, k, h, mask)
        assert w1 is None and w2 is None  # not asked for, even while capturing
        return out


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_capture_collects_maps_by_path(case):
    model = Stack(make(case), make(case)).eval()
    q, k, v = inputs(case)
    mask = make_mask("pad", B, T, T)
    plain = model(q, k, v, mask)
    with capture_attention(model) as cap:
        captured = model(q, k, v, mask)
    assert sorted(cap.names()) == ["first", "layers.0"]
    assert all(len(cap[name]) == 1 for name in cap.names())
    for name in cap.names():
        assert cap[name][0].shape == weights_shape(case, B, T, T)
        assert not cap[name][0].requires_grad
    assert_close(captured, plain, **TOL)
    # the maps are the weights each block returns when asked
    _, w1 = model.first(q, k, v, mask, need_weights=True)
    h, _ = model.first(q, k, v, mask)
    _, w2 = model.layers[0](q, k, h, mask, need_weights=True)
    assert_close(cap["first"][0], w1, **TOL)
    assert_close(cap["layers.0"][0], w2, **TOL)
    assert all(c.fast_path for c in cores_of(model))  # capturing changes no setting
    # outside the context nothing is recorded
    model(q, k, v, mask)
    assert all(len(cap[name]) == 1 for name in cap.names())


def test_capture_names_a_root_block_after_itself():
    block = make(Case("multihead", "scaled_dot"))
    x = torch.randn(B, T, E)
    with capture_attention(block) as cap:
        out, w = block(x, x, x)
    assert w is None
    assert cap.names() == ["multihead"]
    assert cap["multihead"][0].shape == (B, HEADS, T, T)
    core = make(Case("local"))
    q, k, v = inputs(Case("local"))
    with capture_attention(core) as cap:
        core(q, k, v)
        core(q, k, v)
    assert cap.names() == ["local"] and len(cap["local"]) == 2


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_dropout_train_vs_eval(case):
    block = make(case, dropout=0.5)
    q, k, v = inputs(case)
    block.eval()
    o1, _ = block(q, k, v)
    o2, _ = block(q, k, v)
    o3, w_eval = block(q, k, v, need_weights=True)
    assert torch.equal(o1, o2)
    assert_close(o1, o3, **TOL)
    block.train()
    for need in (False, True):
        o1, w1 = block(q, k, v, need_weights=need)
        o2, _ = block(q, k, v, need_weights=need)
        assert not torch.allclose(o1, o2), "dropout did nothing in train mode"
        if need:  # returned weights are pre-dropout: rows still sum to 1
            assert_close(w1.sum(-1), torch.ones(w1.shape[:-1]), atol=1e-4, rtol=0)
            if case.caps.test_dropout_keeps_weights:  # linear drops key features instead
                assert_close(w1, w_eval, **TOL)


def test_dropout_must_be_a_probability():
    with pytest.raises(ValueError, match="dropout"):
        build("scaled_dot", dropout=1.0)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_property_fast_eager_and_masked_keys(case, data):
    b = data.draw(st.integers(1, 3), label="B")
    tk = data.draw(st.integers(1, 14), label="Tk")
    tq = tk if data.draw(st.booleans(), label="self") else data.draw(st.integers(1, 9), label="Tq")
    causal = data.draw(st.booleans(), label="causal")
    keep = torch.tensor(
        data.draw(
            st.lists(st.lists(st.booleans(), min_size=tk, max_size=tk), min_size=b, max_size=b),
            label="mask",
        )
    )
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    if case.multihead:
        heads = data.draw(st.sampled_from([1, 2]), label="heads")
        width = heads * data.draw(st.sampled_from([1, 2, 4]), label="head_dim")
        block = make(case, causal=causal, num_heads=heads, dims=(width, width))
        dims = (width, width, width)
    else:
        d = data.draw(st.sampled_from([1, 2, 5]), label="D")
        dq = d
        if case.caps.mixed_widths:  # query and key sizes may differ
            dq = data.draw(st.sampled_from([2, 3]), label="Dq")
        block = make(case, causal=causal, dims=(dq, d))
        dims = (dq, d, data.draw(st.sampled_from([1, 3]), label="Dv"))
    q, k, v = inputs(case, b=b, tq=tq, tk=tk, dims=dims)
    fast, _ = block(q, k, v, keep)
    eager, _ = block(q, k, v, keep, need_weights=True)
    assert torch.isfinite(fast).all()
    assert_close(fast, eager, **TOL)
    assert_close(eager_of(block, q, k, v, keep), eager, atol=0, rtol=0)
    # a batch element with every key padded outputs the empty output
    empty = empty_output(block, case, dims[2])
    for i in range(b):
        if not keep[i].any():
            assert_close(fast[i], empty.expand_as(fast[i]), atol=1e-6, rtol=0)
    # masked keys may hold anything
    k2, v2 = k.clone(), v.clone()
    k2[~keep] = torch.randn_like(k2[~keep]) * 30
    v2[~keep] = torch.randn_like(v2[~keep]) * 30
    assert_close(block(q, k2, v2, keep)[0], fast, atol=1e-5, rtol=1e-5)
    assert_close(block(q, k2, v2, keep, need_weights=True)[0], eager, atol=1e-5, rtol=1e-5)
