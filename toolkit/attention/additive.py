"""Bahdanau (additive) attention, ``score = vᵀ tanh(W_q q + W_k k)``, with bounded memory."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .base import AttentionBase, Tensor, masked_softmax
from .registry import Capabilities, register

#: Elements of the tanh tensor one step of the loop handles: small enough to stay in the
#: CPU's cache across the add, tanh, product and (backward) reductions that read it, large
#: enough that the Python loop costs little. Measured by ``benchmarks/additive_chunks.py``.
CACHE_CHUNK = 1 << 20


def _chunks(tq: int, tk: int, pair: int, budget: int) -> tuple[int, int]:
    """Query and key steps of chunks holding at most ``budget`` elements of ``pair`` each
    (one ``(query, key)`` pair at least), as square as the lengths allow: backward sums
    each chunk over its queries and over its keys, and both sums stay short that way."""
    pairs = max(1, budget // pair)
    kstep = min(tk, max(1, math.isqrt(pairs), pairs // max(1, tq)))
    step = max(1, min(tq, pairs // kstep))
    return step, kstep


#: Largest ``|2q|`` and ``|2k|`` for which ``σ(2q + 2k)`` is taken as
#: ``1 / (1 + e^{-2q} e^{-2k})``: each factor then lies in ``[e^-42, e^42]`` and their product
#: in ``[e^-84, e^84]``, inside float32's range. Beyond it (``tanh`` is 1 to float32 there)
#: the logistic function runs on the sums instead.
EXP_BOUND = 42.0


class _Logistic:
    """``σ(a_i + b_j)`` for chunks of rows ``i`` and columns ``j``, as one buffer
    ``(*, c, kc, h)``: from ``e^{-a}`` and ``e^{-b}`` (computed once) when they are in range,
    as a product and a reciprocal — three cheap passes instead of an add and the far costlier
    logistic function — else from the sums."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        bound = max(a.abs().amax().item(), b.abs().amax().item()) if a.numel() else 0.0
        self.exp = bound <= EXP_BOUND
        self.a, self.b = (torch.exp(-a), torch.exp(-b)) if self.exp else (a, b)

    def __call__(self, i: slice, j: slice) -> Tensor:
        x, y = self.a[..., i, :].unsqueeze(-2), self.b[..., j, :].unsqueeze(-3)
        if self.exp:
            return torch.mul(x, y).add_(1).reciprocal_()
        return torch.add(x, y).sigmoid_()


class _AdditiveScores(torch.autograd.Function):
    """``s_ij = vᵀ tanh(q_i + k_j)`` in chunks, with a hand-written backward.

    ``tanh`` is taken as ``2σ(2x) - 1`` with ``σ(2q + 2k) = 1 / (1 + e^{-2q} e^{-2k})``
    (``_Logistic``): the exponentials are computed once per query and per key, so the loop
    over ``(query, key)`` pairs runs a product, an add and a reciprocal instead of ``tanh``,
    and the affine parts fold into the product with ``v``:
    ``s_ij = 2 vᵀ σ_ij - Σ v``. Forward never keeps a chunk; backward recomputes ``σ``
    chunk by chunk and uses ``∂tanh(a)/∂a = 1 - t² = 4σ(1 - σ)``:
    ``g_v = Σ g_ij t_ij = 2 Σ g_ij σ_ij - Σ g_ij``, ``g_q_i = 4v ⊙ Σ_j g_ij σ_ij(1 - σ_ij)``
    and ``g_k_j = 4v ⊙ Σ_i g_ij σ_ij(1 - σ_ij)``, in place on the one chunk buffer.
    Everything runs in the inputs' common dtype, outside autocast.
    """

    @staticmethod
    def forward(ctx, qp, kp, v, step, kstep):
        dtype = torch.promote_types(torch.promote_types(qp.dtype, kp.dtype), v.dtype)
        ctx.step, ctx.kstep = step, kstep
        ctx.dtypes = (qp.dtype, kp.dtype, v.dtype)
        ctx.shapes = (qp.shape, kp.shape)
        q2, k2, v = 2 * qp.to(dtype), 2 * kp.to(dtype), v.to(dtype)
        ctx.save_for_backward(q2, k2, v)
        tq, tk = qp.shape[-2], kp.shape[-2]
        lead = torch.broadcast_shapes(qp.shape[:-2], kp.shape[:-2])
        out = q2.new_empty(*lead, tq, tk)
        v2, vsum = 2 * v, v.sum()
        with torch.autocast(qp.device.type, enabled=False):
            sigma = _Logistic(q2, k2)
            for i in range(0, tq, step):
                for j in range(0, tk, kstep):
                    rows, cols = slice(i, i + step), slice(j, j + kstep)
                    out[..., rows, cols] = torch.matmul(sigma(rows, cols), v2).sub_(vsum)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q2, k2, v = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        step, kstep = ctx.step, ctx.kstep
        tq, tk = q2.shape[-2], k2.shape[-2]
        lead = torch.broadcast_shapes(q2.shape[:-2], k2.shape[:-2])
        grad = grad.to(q2.dtype)
        h = q2.shape[-1]
        # Σ_j and Σ_i of g σ(1 - σ) (times 4v at the end), and Σ_ij g σ
        sq = q2.new_zeros(*lead, tq, h) if need_q else None
        sk = q2.new_zeros(*lead, tk, h) if need_k else None
        gs = q2.new_zeros(h) if need_v else None
        with torch.autocast(q2.device.type, enabled=False):
            sigma = _Logistic(q2, k2)
            for i in range(0, tq, step):
                for j in range(0, tk, kstep):
                    rows, cols = slice(i, i + step), slice(j, j + kstep)
                    g = grad[..., rows, cols]
                    sig = sigma(rows, cols)
                    if need_v:  # Σ_ij g_ij σ_ij: (…, c, 1, kc) @ (…, c, kc, h)
                        gs += torch.matmul(g.unsqueeze(-2), sig).sum_to_size(h)
                    if need_q or need_k:
                        sig.addcmul_(sig, sig, value=-1).mul_(g.unsqueeze(-1))  # g σ(1 - σ)
                        if need_q:
                            sq[..., rows, :] += sig.sum(-2)
                        if need_k:
                            sk[..., cols, :] += sig.sum(-3)
        q_dtype, k_dtype, v_dtype = ctx.dtypes
        q_shape, k_shape = ctx.shapes
        gq = (sq * (4 * v)).sum_to_size(q_shape).to(q_dtype) if need_q else None
        gk = (sk * (4 * v)).sum_to_size(k_shape).to(k_dtype) if need_k else None
        gv = None if gs is None else (2 * gs - grad.sum()).to(v_dtype)
        return gq, gk, gv, None, None


@register(
    "additive",
    Capabilities(
        mixed_widths=True,
        fast_path=False,  # chunked eager scores; no fused kernel for tanh(W q + U k)
        test_options={"hidden_dim": 6, "chunk_elements": 48},  # query and key chunks run
        benchmark_options={"hidden_dim": 64},
    ),
)
class AdditiveAttention(AttentionBase):
    """Additive attention (Bahdanau et al. 2015); query and key dims may differ.

    The ``(*, Tq, Tk, hidden)`` tanh tensor is never materialised whole: scores are computed
    for chunks of queries (and of keys, when one query row is over budget) holding at most
    ``chunk_elements`` elements (or one ``(*, 1, 1, hidden)`` pair), and under autograd
    backward recomputes each chunk instead of storing it (as checkpointing every chunk
    would). Peak memory is therefore that of the ``(*, Tq, Tk)`` scores plus one chunk.

    Args:
        query_dim: size of the query vectors.
        key_dim: size of the key vectors (defaults to ``query_dim``).
        hidden_dim: size of the tanh layer (defaults to ``key_dim``).
        dropout: dropout on the attention weights.
        causal: let query ``i`` see keys ``j <= i`` only.
        chunk_elements: budget of one tanh chunk, in elements.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        key_dim = query_dim if key_dim is None else key_dim
        hidden_dim = key_dim if hidden_dim is None else hidden_dim
        self.q_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.k_proj = nn.Linear(key_dim, hidden_dim, bias=True)
        self.v = nn.Parameter(torch.empty(hidden_dim))
        nn.init.uniform_(self.v, -(hidden_dim**-0.5), hidden_dim**-0.5)
        self.chunk_elements = int(chunk_elements)

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Unnormalised scores ``(*, Tq, Tk)``."""
        return self.projected_scores(self.q_proj(query), self.k_proj(key))

    def projected_scores(self, qp: Tensor, kp: Tensor) -> Tensor:
        """Scores ``vᵀ tanh(qp_i + kp_j)`` ``(*, Tq, Tk)`` of projected queries ``(*, Tq, h)``
        and keys ``(*, Tk, h)``, in bounded-memory chunks (see the class).

        While a graph is being recorded for export (``torch.jit.trace``/``script``, ONNX),
        the formula is written out whole instead: an exported graph cannot hold the Python
        autograd function, and the whole formula serves every input length the graph sees.
        """
        exporting = torch.jit.is_tracing() or torch.jit.is_scripting()
        if exporting or torch.onnx.is_in_onnx_export() or qp.shape[-2] == 1:
            # also one query (a decoder step): its tanh tensor is no larger than the keys,
            # and per-key exponentials would cost as much as the tanh itself
            return torch.matmul(torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3)), self.v)
        lead = torch.broadcast_shapes(qp.shape[:-2], kp.shape[:-2]).numel()
        pair = max(1, lead * qp.shape[-1])  # elements of one (query, key) pair
        step, kstep = _chunks(
            qp.shape[-2], kp.shape[-2], pair, min(self.chunk_elements, CACHE_CHUNK)
        )
        return _AdditiveScores.apply(qp, kp, self.v, step, kstep)

    def precompute(self, key: Tensor) -> dict[str, Tensor]:
        """The key projection ``W_k k + b``, reused over calls with the same keys (``cache``)."""
        return {"key": self.k_proj(key)}

    def eager(self, query, key, value, mask, cache=None):
        keys = self.k_proj(key) if cache is None else cache["key"]
        scores = self.projected_scores(self.q_proj(query), keys)
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights
