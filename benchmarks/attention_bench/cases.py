"""What each named case builds and runs: the shapes, the passes, the references."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit import attention

BATCH, HEADS, HEAD_DIM = 1, 8, 64
EMBED = HEADS * HEAD_DIM
FULL_LENGTHS = [256, 512, 1024, 2048, 4096, 8192]
QUICK_LENGTHS = [1024, 8192]
PASSES = ("fwd", "fwd_bwd")
REFERENCES = ("naive", "sdpa", "sdpa_masked", "torch_mha")
EXTRA = ("scaled_dot_eager", "local_blocked", "local_dense")
# ``local`` held to one side of its dispatch: ``blocked_from`` for each extra row.
LOCAL_SIDES = {"local_blocked": 0.0, "local_dense": math.inf}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_module(name: str) -> nn.Module | None:
    """The module benchmarked as ``name`` (None for the functional references)."""
    if name in ("naive", "sdpa", "sdpa_masked"):
        return None
    if name == "torch_mha":
        return nn.MultiheadAttention(EMBED, HEADS, dropout=0.0, batch_first=True)
    if name == "multihead":
        return attention.build("multihead", embed_dim=EMBED, num_heads=HEADS, dropout=0.0)
    if name == "scaled_dot_eager":
        module = attention.build("scaled_dot", query_dim=HEAD_DIM, key_dim=HEAD_DIM)
        module.fast_path = False  # eager maths, weights computed (not returned)
        return module
    options = {"query_dim": HEAD_DIM, "key_dim": HEAD_DIM, "dropout": 0.0}
    if name in LOCAL_SIDES:
        options["blocked_from"] = LOCAL_SIDES[name]
        name = "local"
    options.update(attention.capabilities(name).benchmark_options)  # declared at registration
    return attention.build(name, **options)


def band_window() -> int:
    """The window of ``sdpa_masked``'s band: ``local``'s benchmark window."""
    return int(attention.capabilities("local").benchmark_options.get("window", 64))


def growth_exponent(name: str) -> float:
    """Asymptotic growth of time and memory with the sequence length, for the skip
    predictor: the registered type's ``benchmark_growth``, 2 for the references."""
    if name in LOCAL_SIDES:
        return 1.0 if name == "local_blocked" else 2.0
    if name in attention.available():
        return attention.capabilities(name).benchmark_growth
    return 2.0


def takes_embeddings(name: str, module: nn.Module | None) -> bool:
    """Whether the block eats ``(B, T, E)`` (projections inside) instead of ``(B, H, T, hd)``."""
    return name == "torch_mha" or (
        module is not None and not isinstance(module, attention.AttentionBase)
    )


@dataclass
class Case:
    fn: object  # () -> output tensor
    leaves: list = field(default_factory=list)  # tensors whose .grad backward fills
    grad_out: torch.Tensor | None = None


def make_case(name: str, seq_len: int, pass_: str, device: str, dtype: torch.dtype) -> Case:
    train = pass_ == "fwd_bwd"
    gen = torch.Generator(device="cpu").manual_seed(seq_len)

    def randn(*shape):
        x = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
        return x.requires_grad_(train)

    module = build_module(name)
    if module is not None:
        module.to(device=device, dtype=dtype).train(train)
    if takes_embeddings(name, module):
        x = randn(BATCH, seq_len, EMBED)
        if name == "torch_mha":

            def fn():
                return module(x, x, x, need_weights=False)[0]

        else:

            def fn():
                return module(x, x, x)[0]

        leaves = [x]
    else:
        q, k, v = (randn(BATCH, HEADS, seq_len, HEAD_DIM) for _ in range(3))
        scale = 1.0 / math.sqrt(HEAD_DIM)
        if name == "naive":

            def fn():
                return torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1) @ v

        elif name == "sdpa":

            def fn():
                return F.scaled_dot_product_attention(q, k, v)

        elif name == "sdpa_masked":
            band = attention.band_mask(seq_len, seq_len, band_window(), False, device)

            def fn():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=band)

        else:

            def fn():
                return module(q, k, v)[0]

        leaves = [q, k, v]
    if module is not None:
        leaves += [p for p in module.parameters() if p.requires_grad]
    grad_out = None
    if train:
        with torch.no_grad():
            out = fn()
            shape = out.shape
            del out
        grad_out = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
        for t in leaves:
            t.grad = None
    return Case(fn, leaves if train else [], grad_out)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_once(case: Case, device: str) -> float:
    """One pass; returns its wall time in seconds (grads are dropped afterwards, untimed)."""
    _sync(device)
    start = time.perf_counter()
    if case.grad_out is None:
        with torch.no_grad():
            out = case.fn()
    else:
        out = case.fn()
        out.backward(case.grad_out)
    _sync(device)
    elapsed = time.perf_counter() - start
    del out
    for t in case.leaves:
        t.grad = None
    return elapsed
