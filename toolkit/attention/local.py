"""Sliding-window (banded) local attention: fused SDPA over query blocks, O(N·w) time and
memory, or dense SDPA under the band mask where that is faster."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import AttentionBase, Tensor, masked_softmax, zero_fully_masked
from .registry import Capabilities, register


def band_mask(tq: int, tk: int, window: int, causal: bool, device=None) -> Tensor:
    """``(Tq, Tk)`` mask of the band ``|i - j| <= window`` (``i - window <= j <= i`` if causal).

    Positions are aligned to the end as in ``causal_mask`` (query ``i`` sits at ``i + Tk - Tq``).
    """
    i = torch.arange(tq, device=device)[:, None] + (tk - tq)
    j = torch.arange(tk, device=device)[None, :]
    upper = i if causal else i + window
    return (j >= i - window) & (j <= upper)


class LocalPAttention(nn.Module):
    """Luong et al. (2015) local-p attention for a single query over a memory.

    The registered ``local`` core anchors its window at the query's own position, which a
    decoder step over a memory of another length does not have. Local-p predicts the centre
    instead: ``p = (L - 1) · sigmoid(v_pᵀ tanh(W_p h))`` for a memory of real length ``L``,
    scores the keys within ``window`` of ``round(p)`` by scaled dot product and multiplies
    the weights by ``exp(-(s - p)² / 2σ²)``, ``σ = window / 2``. Unlike the paper the
    weights are renormalised to sum to one.

    It is the single-query form of the registered ``local`` type (a window of keys around
    one position): ``local`` declares it as its ``single_query_form``, which
    ``toolkit.nn.MemoryAttention`` builds, and ``built_types`` counts it as ``local``
    (``attention_type``).

    Args:
        query_dim: query size; keys must have the same size.
        window: half-width ``D`` of the window.
        dropout: dropout on the weights.
        scale: score scale (default ``1/√d``).
    """

    # The registered type this block implements (read by ``toolkit.attention.built_types``
    # from this class's own body only: a subclass must declare its own).
    attention_type = "local"

    def __init__(
        self, query_dim: int, window: int = 8, dropout: float = 0.0, scale: float | None = None
    ) -> None:
        super().__init__()
        self.window = int(window)
        self.dropout = dropout
        self.scale = query_dim**-0.5 if scale is None else scale
        self.w_p = nn.Linear(query_dim, query_dim, bias=False)
        self.v_p = nn.Linear(query_dim, 1, bias=False)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``query (B, 1, D)``, ``key (B, S, D)``, ``value (B, S, Dv)``, ``mask (B, S)``
        -> ``output (B, 1, Dv)``, ``weights (B, 1, S)``."""
        s = key.shape[1]
        if mask is None:
            lengths = torch.full((key.shape[0],), s, device=key.device)
        else:
            lengths = mask.sum(dim=-1)
        lengths = lengths.clamp_min(1).to(query.dtype)[:, None, None]  # (B, 1, 1)
        centre = (lengths - 1) * torch.sigmoid(self.v_p(torch.tanh(self.w_p(query))))  # (B,1,1)
        pos = torch.arange(s, device=key.device, dtype=query.dtype)  # (S,)
        allowed = (pos - centre.round()).abs() <= self.window  # (B, 1, S)
        if mask is not None:
            allowed = allowed & mask[:, None, :]
        scores = torch.matmul(query, key.transpose(1, 2)) * self.scale  # (B, 1, S)
        weights = masked_softmax(scores, allowed)
        sigma = max(self.window, 1) / 2.0
        weights = weights * torch.exp(-((pos - centre) ** 2) / (2 * sigma**2))
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        dropped = F.dropout(weights, self.dropout, self.training) if self.dropout else weights
        return torch.matmul(dropped, value), weights


@register(
    "local",
    Capabilities(
        needs_positions=True,  # the window is centred on the query's own position
        pooling_query=False,
        single_query_form=LocalPAttention,  # one decoder query: a predicted centre
        # the blocked path runs at 11 steps: interior blocks 1-2, edge blocks 0 and 3
        test_options={"window": 2, "block_size": 3, "blocked_from": 1.0},
        # as a multihead core: a block smaller than the window
        test_multihead_options={"window": 2, "block_size": 2, "blocked_from": 1.0},
        test_model_options={"window": 2},  # a band that cuts a dozen steps
        # longer than block_size + 2 * window, and no whole number of blocks (3 or 2)
        test_gradcheck_length=11,
        benchmark_options={"window": 256},
        benchmark_growth=1.0,
    ),
)
class LocalAttention(AttentionBase):
    """Scaled dot-product attention restricted to a window of ``window`` keys on each side.

    Without weights it runs PyTorch's fused ``scaled_dot_product_attention`` (SDPA) in one of
    two ways (``uses_blocked``):

    * blocked, for self-attention over long inputs: the queries are cut into blocks of
      ``block_size``; block ``m`` attends to the ``block_size + 2·window`` keys around it
      (``block_size + window`` when causal), an overlapping strided view of the keys (no
      copy). The blocks whose window lies inside the sequence go through SDPA as one extra
      batch axis (a few calls of up to ``chunk_elements`` outputs each), under one small
      ``(block, span)`` band mask shared by every block (a key padding mask adds its
      windows); the first and last blocks, whose windows would leave the sequence, are
      small dense SDPA calls. Time and memory are ``O(N·w)``.
    * dense SDPA under the ``(Tq, Tk)`` band mask, for short inputs (where one dense call is
      faster), cross-attention and per-query masks.

    The eager path (weights, capture) is dense attention under the same band mask: the
    reference the tests hold both fused paths to.

    Args:
        window: keys visible on each side of a query (only the past when ``causal``).
        causal: also hide the future.
        dropout: dropout on attention weights.
        scale: score scale (default ``1/√d``).
        block_size: query block length of the blocked path (default
            ``max(window, MIN_BLOCK)``).
        blocked_from: the blocked path runs when ``T >= blocked_from · span`` (default
            ``BLOCKED_FROM``; see there).
    """

    #: The crossover of the dispatch: self-attention over ``T`` steps takes the blocked path
    #: when ``T >= BLOCKED_FROM · span`` (``span = block_size + 2·window``, the keys one
    #: block sees; ``block_size + window`` when causal), dense SDPA under the band mask
    #: otherwise. Dense costs ``∝ T²``, blocked ``∝ T·span`` plus the edge blocks and a few
    #: more calls, so the blocked path wins from some ``T/span`` above 1. The value
    #: comes from the benchmark: the smallest ``T/span`` at which ``local_blocked`` is no
    #: slower than ``local_dense`` in both passes, ``python benchmarks/attention.py --types
    #: local_blocked local_dense sdpa_masked --lengths 512 768 1024 1536 2048 3072``
    #: (``benchmarks/results/local/crossover.md``; window 256, span 768, fp32, 2 threads,
    #: AVX2): at T = 768 (1.0 · span) blocked won forward (12.2 vs 14.5 ms) but lost
    #: forward+backward (46.2 vs 44.8 ms); from T = 1024 (4/3 · span) it won both.
    BLOCKED_FROM = 4 / 3
    #: Devices on which the blocked path may run. On CUDA dense SDPA under the band mask was
    #: faster at every measured length (bf16, T 1024-8192, window 256: 0.76 vs 2.49 ms
    #: forward at 8192, ``benchmarks/results/gpu``), so there every call takes the dense path.
    BLOCKED_DEVICES = frozenset({"cpu"})
    #: Smallest default block: tiny blocks (a window of a few steps) would make SDPA calls
    #: of a few rows each.
    MIN_BLOCK = 32
    #: Output elements per SDPA call over interior blocks (bounds the transient output
    #: pieces when no gradient is kept; under autograd SDPA saves them anyway).
    chunk_elements = 1 << 19

    def __init__(
        self,
        query_dim: int | None = None,
        key_dim: int | None = None,
        window: int = 64,
        causal: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
        block_size: int | None = None,
        blocked_from: float | None = None,
    ) -> None:
        super().__init__(dropout=dropout, causal=causal)
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = int(window)
        self.scale = scale
        self.block_size = int(block_size) if block_size else max(self.MIN_BLOCK, self.window)
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.blocked_from = self.BLOCKED_FROM if blocked_from is None else float(blocked_from)

    def _scale(self, dim: int) -> float:
        return 1.0 / math.sqrt(dim) if self.scale is None else self.scale

    def dense_mask(self, mask, tq, tk, device):
        band = band_mask(tq, tk, self.window, self.causal, device)
        return band if mask is None else mask & band

    def eager(self, query, key, value, mask):
        scores = torch.matmul(query, key.transpose(-1, -2)) * self._scale(query.shape[-1])
        mask = self.dense_mask(mask, query.shape[-2], key.shape[-2], query.device)
        weights = masked_softmax(scores, mask)
        return torch.matmul(self.drop(weights), value), weights

    def span(self) -> int:
        """Keys one query block of the blocked path sees."""
        return self.block_size + self.window * (1 if self.causal else 2)

    def uses_blocked(
        self, tq: int, tk: int, mask: Tensor | None = None, device: torch.device | str = "cpu"
    ) -> bool:
        """The dispatch: whether the fused path takes the blocked form (else dense SDPA).

        Blocked needs a device in ``BLOCKED_DEVICES``, self-attention (``tq == tk``), a mask
        that is the same for every query (key padding), ``T >= blocked_from · span`` and at
        least one block whose window lies inside the sequence.
        """
        if torch.device(device).type not in self.BLOCKED_DEVICES:
            return False
        if tq != tk or (mask is not None and mask.shape[-2] != 1):
            return False
        if tq < self.blocked_from * self.span():
            return False
        m0, m1 = _interior_blocks(tq, self.block_size, self.window, self.causal)
        return m1 > m0

    def fast(self, query, key, value, mask):
        tq, tk = query.shape[-2], key.shape[-2]
        dropout_p = self.dropout if self.training else 0.0
        scale = self._scale(query.shape[-1])
        if not self.uses_blocked(tq, tk, mask, query.device):
            allowed = self.dense_mask(mask, tq, tk, query.device)
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=allowed, dropout_p=dropout_p, scale=scale
            )
            return zero_fully_masked(out, allowed)
        return blocked_band_attention(
            query,
            key,
            value,
            None if mask is None else mask[..., 0, :],
            window=self.window,
            block_size=self.block_size,
            causal=self.causal,
            scale=scale,
            dropout_p=dropout_p,
            chunk_elements=self.chunk_elements,
            global_pos=self.blocked_global_positions(tq, query.device),
        )

    def blocked_global_positions(self, length: int, device=None) -> Tensor | None:
        """Key positions every query of the blocked path also sees (none for ``local``;
        subclasses with global tokens return their indices)."""
        return None

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, block_size={self.block_size}, "
            f"blocked_from={self.blocked_from}, " + super().extra_repr()
        )


def _interior_blocks(n: int, block: int, window: int, causal: bool) -> tuple[int, int]:
    """Blocks ``[m0, m1)`` whose key windows lie inside ``n`` steps."""
    right = 0 if causal else window
    return -(-window // block), (n - block - right) // block + 1


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` for plain shapes (its first call imports modules that add
    tens of MiB to the resident set, which the benchmark would count)."""
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, start=rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                out[i] = size
    return tuple(out)


def blocked_band_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    valid: Tensor | None,
    *,
    window: int,
    block_size: int,
    causal: bool,
    scale: float,
    dropout_p: float = 0.0,
    chunk_elements: int = 1 << 19,
    global_pos: Tensor | None = None,
) -> Tensor:
    """Banded self-attention (``|i - j| <= window``; ``i - window <= j <= i`` if causal) by
    fused SDPA over query blocks: the blocked path of ``local`` (see ``LocalAttention``).

    Args:
        query, key, value: ``(*, T, D)``, ``(*, T, D)``, ``(*, T, Dv)`` (self-attention).
        valid: ``(*, T)`` boolean key mask (``True`` = may be attended; ``*`` broadcasts),
            or ``None``.
        global_pos: sorted distinct positions ``(G,)`` of global tokens (``longformer``):
            every query also sees them (the past ones when causal), and their own rows see
            every key (the past when causal). ``None``: plain local attention.

    Returns:
        ``(*, T, Dv)``; queries that may attend to nothing give 0.
    """
    shapes = [query.shape[:-2], key.shape[:-2], value.shape[:-2]]
    lead = _broadcast_shapes(*shapes, *([] if valid is None else [valid.shape[:-1]]))
    n, dv = query.shape[-2], value.shape[-1]
    x = lead[-1] if lead else 1

    def as4(t: Tensor) -> Tensor:  # (P, X, T, ·): SDPA runs on (X, blocks, rows, ·) per P
        return t.expand(*lead, n, t.shape[-1]).reshape(-1, x, n, t.shape[-1])

    q4, k4, v4 = as4(query), as4(key), as4(value)
    valid3 = None
    if valid is not None:
        valid = valid.reshape((1,) * (len(lead) - valid.dim() + 1) + valid.shape)
        # the X axis stays 1 where the mask does not vary along it (no per-head copies)
        xv = valid.shape[-2] if lead else 1
        valid3 = valid.expand(*lead[:-1], xv, n).reshape(-1, xv, n)
    band = _BandedBlocks(n, window, block_size, causal, scale, dropout_p, global_pos)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    # Without autograd every piece is written into one output as soon as it exists (no
    # second full-size copy); under autograd the pieces (which SDPA saves) are concatenated.
    full = None if grad else q4.new_empty(q4.shape[0], x, n, dv)
    outs = []
    for p in range(q4.shape[0]):
        vp = None if valid3 is None else valid3[p if valid3.shape[0] > 1 else 0]
        out = None if full is None else full[p]
        outs.append(band(q4[p], k4[p], v4[p], vp, out, chunk_elements))
    if full is None:
        full = outs[0][None] if len(outs) == 1 else torch.stack(outs)
    return full.reshape(*lead, n, dv)


class _BandedBlocks:
    """The blocked path over ``(X, T, ·)`` tensors (one slice of the leading axes)."""

    def __init__(self, n, window, block, causal, scale, dropout_p, global_pos) -> None:
        self.n, self.w, self.b = n, window, block
        self.left, self.right = window, (0 if causal else window)
        self.span = block + self.left + self.right
        self.m0, self.m1 = _interior_blocks(n, block, window, causal)
        if self.m1 <= self.m0:
            raise ValueError(f"{n} steps hold no interior block (block {block}, window {window})")
        self.causal, self.scale, self.dropout_p = causal, scale, dropout_p
        self.global_pos = global_pos
        self.device = None

    def attend(self, q, k, v, allowed, maybe_empty: bool) -> Tensor:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout_p, scale=self.scale
        )
        return zero_fully_masked(out, allowed) if maybe_empty else out

    def global_cols(self, qpos: Tensor, gvalid: Tensor | None) -> Tensor:
        """``(X|1, *qpos, G)``: which global keys the queries at ``qpos`` see."""
        g = self.global_pos
        cols = (g <= qpos[..., None]) if self.causal else torch.ones_like(g <= qpos[..., None])
        cols = cols[None]
        if gvalid is not None:
            cols = cols & gvalid.reshape(gvalid.shape[0], *(1,) * qpos.dim(), -1)
        return cols

    def with_globals(self, allowed, k, v, qpos, gk, gv, gvalid):
        """Global keys prepended to the keys (``k (X, ..., S, d)``), their columns to
        ``allowed``."""
        cols = self.global_cols(qpos, gvalid)  # (X|1, *qpos, G)
        rows = _broadcast_shapes(cols.shape[:-1], allowed.shape[:-1])
        allowed = torch.cat(
            [cols.expand(*rows, cols.shape[-1]), allowed.expand(*rows, allowed.shape[-1])], -1
        )
        if k.dim() == 4:  # one copy of the global keys per block
            gk = gk[:, None].expand(-1, k.shape[1], -1, -1)
            gv = gv[:, None].expand(-1, k.shape[1], -1, -1)
        return allowed, torch.cat([gk, k], dim=-2), torch.cat([gv, v], dim=-2)

    def __call__(self, q, k, v, valid, out, chunk_elements) -> Tensor:
        """``q, k, v (X, T, ·)``, ``valid (X|1, T)`` or None -> ``(X, T, Dv)``, written into
        ``out`` when it is given."""
        n, b, w, left, right, span = self.n, self.b, self.w, self.left, self.right, self.span
        device = q.device
        x, dv = q.shape[0], v.shape[-1]
        gk = gv = gvalid = None
        vis = valid  # keys the band part may see: not padded, and not global (those are
        if self.global_pos is not None:  # seen through their own columns)
            g = self.global_pos
            gk, gv = k[:, g], v[:, g]  # (X, G, ·)
            gvalid = None if valid is None else valid[:, g]  # (X|1, G)
            not_global = torch.ones(n, dtype=torch.bool, device=device)
            not_global[g] = False
            vis = not_global[None] if valid is None else valid & not_global
        maybe_empty = vis is not None  # rows with no key left (globals count as a mask)
        pieces: list[Tensor] = []

        def put(start: int, piece: Tensor) -> None:
            if out is None:
                pieces.append(piece)
            else:
                out[:, start : start + piece.shape[1]] = piece

        def edge(q0: int, q1: int) -> Tensor:
            """Queries ``[q0, q1)`` densely over the keys their windows reach."""
            k0, k1 = max(0, q0 - left), min(n, q1 + right)
            qpos = torch.arange(q0, q1, device=device)
            diff = torch.arange(k0, k1, device=device)[None, :] - qpos[:, None]
            allowed = (diff >= -w) & (diff <= right)  # (r, kc)
            if vis is not None:
                allowed = allowed & vis[:, None, k0:k1]  # (X|1, r, kc)
            ke, ve = k[:, k0:k1], v[:, k0:k1]
            if gk is not None:
                allowed, ke, ve = self.with_globals(allowed, ke, ve, qpos, gk, gv, gvalid)
            return self.attend(q[:, q0:q1], ke, ve, allowed, maybe_empty)

        if self.m0 > 0:
            put(0, edge(0, self.m0 * b))
        # Band inside an interior block: row r sits at m·b + r, column c at m·b - w + c.
        r = torch.arange(b, device=device)[:, None]
        c = torch.arange(span, device=device)[None, :]
        band = (c >= r) & (c <= r + left + right)  # (b, span), shared by every block
        per_call = max(1, chunk_elements // max(1, x * b * dv))
        for ma in range(self.m0, self.m1, per_call):
            mb = min(self.m1, ma + per_call)
            qa, qb = ma * b, mb * b
            qblk = q[:, qa:qb].unflatten(1, (mb - ma, b))  # (X, nb, b, d): a view
            # overlapping windows, strided views of the keys: block m's from m·b - w
            kwin = k[:, qa - left : qb + right].unfold(1, span, b).transpose(-1, -2)
            vwin = v[:, qa - left : qb + right].unfold(1, span, b).transpose(-1, -2)
            allowed, empty = band, False
            if vis is not None:
                seen = vis[:, qa - left : qb + right].unfold(-1, span, b)  # (X|1, nb, span)
                if not bool(seen.all()):
                    allowed, empty = band & seen[:, :, None, :], True
            if gk is not None:
                qpos = torch.arange(qa, qb, device=device).view(mb - ma, b)
                allowed, kwin, vwin = self.with_globals(allowed, kwin, vwin, qpos, gk, gv, gvalid)
                empty = True
            put(qa, self.attend(qblk, kwin, vwin, allowed, empty).flatten(1, 2))
        if self.m1 * b < n:
            put(self.m1 * b, edge(self.m1 * b, n))
        if out is None:
            out = torch.cat(pieces, dim=1)
        if self.global_pos is not None:  # global rows: every key (the past when causal)
            g = self.global_pos
            allowed = torch.ones(len(g), n, dtype=torch.bool, device=device)
            if self.causal:
                allowed = torch.arange(n, device=device)[None, :] <= g[:, None]
            if valid is not None:
                allowed = allowed & valid[:, None, :]
            rows = self.attend(q[:, g], k, v, allowed, True)
            if torch.is_grad_enabled() and rows.requires_grad:
                out = out.index_copy(1, g, rows)
            else:
                out.index_copy_(1, g, rows)
        return out
