"""Recipe models against the peers a user would otherwise train: step time and memory.

Full measurement (2 threads; training steps of about 1-7 s, so about 5 minutes on an idle
machine and up to 10 under load; run it on an otherwise idle machine)::

    nice -n 19 .venv/bin/python benchmarks/peers.py --out runs/peers

Smoke run (tiny sizes, a few seconds)::

    .venv/bin/python benchmarks/peers.py --quick --out runs/peers-quick

Options: ``--threads N`` (``torch.set_num_threads``, default 2), ``--pairs conformer
transformer seq2seq encoder`` (default all), ``--repeats N`` (timed steps per case),
``--dropout P`` (default 0: timing without dropout masks on either side).

Each pair builds our model and the peer at the same dimensions, fp32, in training mode,
and times one training step = forward, loss and backward (gradients of every parameter and
of the input; no optimizer step, which costs the same for equal parameter counts):

* ``conformer``: the speech recipe's Conformer encoder layers (``toolkit.nn.speech.
  SpeechEncoder(layer="conformer").layers``, ``multihead`` self-attention) against
  ``torchaudio.models.Conformer`` and, where importable, SpeechBrain's ``ConformerEncoder``
  (``attention_type="regularMHA"``), on the same ``(B, T, E)`` frames (the output of the
  subsampling) with the same lengths; loss ``sum(out * g)`` with a fixed random ``g``.
* ``transformer``: the translation recipe's encoder and decoder stacks
  (``recipes.translation.model.Seq2SeqTransformer(attention="multihead")``'s ``encoder`` /
  ``decoder``) against ``torch.nn.Transformer(norm_first=True, activation="gelu")``, on the
  same source/target embeddings, masks (key padding + causal) and loss ``sum(out * g)``:
  the stacks alone, no embeddings or output projection on either side.
* ``seq2seq``: the whole translation model on token ids (tied embedding, sinusoidal
  positions, stacks, tied output projection, label-smoothed cross-entropy) against the same
  embedding/positions/projection around ``torch.nn.Transformer``.
* ``encoder``: our ``TransformerEncoder`` against ``x_transformers.Encoder`` (only where
  ``x-transformers`` is importable).

A peer that is not importable is a ``not installed`` row (nothing is installed here).

Measurements: each case's peak memory is the peak RSS growth of one step in its own fresh
process (forked from a ``multiprocessing`` fork server that imported torch and ran no op);
the step times of a pair are taken in one more fresh process, ours and the peers' steps
alternating (A B, B A, ...) so a change in machine load hits both alike; the median is
reported. Outputs under ``--out`` (default ``runs/peers``): ``peers.csv``, ``peers.md``
(settings, CPU, threads, load, the tables, ratios ours/peer and the <= 1.1x target) and
``peers.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib.metadata
import importlib.util
import math
import multiprocessing as mp
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):  # run as a script from anywhere
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from attention_bench.isolation import peak_rss_kib, settle_memory  # noqa: E402

TARGET = 1.1  # ours / fastest peer, step time


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes of every pair."""

    # conformer pair: the issue's probe (B 32, T 150 frames after x4 subsampling, E 144,
    # 4 layers, 4 heads, FFN 576, kernel 31; the asr recipe's config uses kernel 15)
    conf_batch: int = 32
    conf_frames: int = 150
    conf_embed: int = 144
    conf_layers: int = 4
    conf_heads: int = 4
    conf_ffn: int = 576
    conf_kernel: int = 31
    # transformer / seq2seq / encoder pairs: the translation recipe's model config
    # (E 256, 4 heads, 3 + 3 layers, FFN 1024, vocabulary 8000) and a full batch of its
    # data config (max_tokens 4096 = 128 sentences x 32 tokens)
    tr_batch: int = 128
    tr_src_len: int = 32
    tr_tgt_len: int = 32
    tr_embed: int = 256
    tr_heads: int = 4
    tr_enc_layers: int = 3
    tr_dec_layers: int = 3
    tr_ffn: int = 1024
    tr_vocab: int = 8000
    dropout: float = 0.0


QUICK_SIZES = Sizes(
    conf_batch=4, conf_frames=24, conf_embed=32, conf_layers=2, conf_heads=4, conf_ffn=64,
    conf_kernel=7, tr_batch=4, tr_src_len=10, tr_tgt_len=9, tr_embed=32, tr_heads=4,
    tr_enc_layers=1, tr_dec_layers=1, tr_ffn=64, tr_vocab=100,
)  # fmt: skip


@dataclass(frozen=True)
class Mode:
    quick: bool
    warmup_steps: int  # untimed steps per case before timing
    budget_s: float  # timed steps per case aim at about this much wall time ...
    min_repeats: int  # ... but never fewer ...
    max_repeats: int  # ... nor more
    case_timeout_s: float


FULL = Mode(False, 3, 40.0, 15, 151, 900.0)
QUICK = Mode(True, 1, 0.5, 3, 5, 120.0)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Spec:
    """One case: which pair, whose, from which package (None = always there), and how the
    peer's parameter count relates to ours (``params_delta``: peer minus ours, a function
    of the sizes; 0 = equal)."""

    pair: str
    side: str  # "ours" | "peer"
    package: str | None
    label: str
    params_delta: Callable[[Sizes], int] | None = None  # None: not claimed (unverified)


SPECS: dict[str, Spec] = {
    "ours_conformer": Spec("conformer", "ours", None, "ours: SpeechEncoder Conformer layers"),
    "torchaudio_conformer": Spec(
        "conformer", "peer", "torchaudio", "torchaudio.models.Conformer", lambda s: 0
    ),
    # SpeechBrain's encoder ends with one more LayerNorm (2 E parameters) than ours.
    "speechbrain_conformer": Spec(
        "conformer",
        "peer",
        "speechbrain",
        "speechbrain ConformerEncoder (regularMHA)",
        lambda s: 2 * s.conf_embed,
    ),  # fmt: skip
    "ours_transformer": Spec("transformer", "ours", None, "ours: Seq2SeqTransformer stacks"),
    "torch_transformer": Spec("transformer", "peer", "torch", "torch.nn.Transformer", lambda s: 0),
    "ours_seq2seq": Spec("seq2seq", "ours", None, "ours: Seq2SeqTransformer (token ids)"),
    "torch_seq2seq": Spec(
        "seq2seq", "peer", "torch", "embedding + torch.nn.Transformer", lambda s: 0
    ),
    "ours_encoder": Spec("encoder", "ours", None, "ours: TransformerEncoder"),
    "xtransformers_encoder": Spec("encoder", "peer", "x_transformers", "x_transformers.Encoder"),
}
PAIRS = ("conformer", "transformer", "seq2seq", "encoder")

# The maths of each pair: what is equal and every difference that remains.
NOTES = {
    "conformer": [
        "Equal: macaron block `x + ½·FFN(x)`, pre-norm MHSA, convolution module, "
        "`x + ½·FFN(x)`, final LayerNorm per block; FFN = LayerNorm, Linear E→F, SiLU, "
        "dropout, Linear F→E; convolution module = LayerNorm, pointwise conv E→2E + GLU, "
        "depthwise conv (kernel k, bias), BatchNorm1d, SiLU, pointwise conv E→E; MHSA with "
        "biased packed in-projection and output projection; no relative positions in any; "
        "dropout at the same places (p = `--dropout`); both get the same padding lengths.",
        "Differences (ours vs torchaudio): ours zeroes padded frames after the GLU before "
        "the depthwise conv (torchaudio lets them leak into valid frames; with the full "
        "lengths used here nothing is padded, the multiply still runs); torchaudio runs on "
        "(T, B, E) with `nn.MultiheadAttention` (key padding merged into a float mask), ours "
        "on (B, T, E) with our `multihead` layer (boolean mask into the fused SDPA); ours "
        "checks for fully masked queries after the attention.",
        "Differences (ours vs SpeechBrain, when installed): SpeechBrain's convolution module "
        "uses LayerNorm instead of BatchNorm and a Linear for the second pointwise conv, "
        "masks the convolution output instead of its input, has no dropout on the attention "
        "output, its attention wrapper asks `nn.MultiheadAttention` for the weights (its "
        "default `return_attn_weights=True`, so the unfused path runs), and its stack ends "
        "with one more LayerNorm (eps 1e-6): +2E parameters.",
        "Not in the comparison: the log-mel front end, SpecAugment, the x4 conv subsampling "
        "and the positions (torchaudio's Conformer has none of them; the input is the "
        "subsampled frames).",
    ],
    "transformer": [
        "Equal: pre-norm layers (`norm_first=True`), GELU (exact erf) FFN E→F→E with biases, "
        "biased packed in-projections in self- and cross-attention, a final LayerNorm after "
        "each stack (eps 1e-5), the same dropout places (p = `--dropout`, attention-weight "
        "dropout 0 as in the recipe's config); the same inputs: source/target embeddings "
        "requiring grad, key padding masks of source and target, causal target "
        "self-attention, memory key padding in cross-attention.",
        "Compared: the encoder and decoder stacks only; no embedding, positions or output "
        "projection on either side (see `seq2seq` for those).",
        "Differences: our causal mask is built inside the attention from `causal=True` and "
        "combined with the key padding into one boolean mask per batch; `nn.Transformer` "
        "gets a boolean (T, T) causal mask and boolean key padding masks, which "
        "`F.multi_head_attention_forward` merges into a float mask; ours checks for fully "
        "masked queries after each attention.",
    ],
    "seq2seq": [
        "Equal on both sides: one embedding (V×E, padding row, N(0, E^-½) init) shared by "
        "source and target, scaled by √E, plus the same fixed sinusoidal table; the output "
        "projection is the tied embedding (`x @ Wᵀ`, no bias); label-smoothed (0.1) "
        "cross-entropy over target tokens; the stacks as in `transformer`.",
        "Differences: as in `transformer`; the peer's layers are `nn.Transformer`'s.",
    ],
    "encoder": [
        "Ours: `TransformerEncoder` (pre-norm, GELU, biased projections, final LayerNorm) at "
        "the transformer pair's sizes. x-transformers' `Encoder` (dim E, heads H, "
        "`attn_dim_head` E/H, `ff_mult` F/E) is also pre-norm with a GELU FFN and a final "
        "norm, but its attention projections have no biases: its parameter count is lower "
        "(stated in the table) and the comparison is not at equal parameters.",
    ],
}


@dataclass
class Workload:
    """A built case: the module and one training step (forward + loss, untimed grads reset)."""

    module: nn.Module
    loss: Callable[[], torch.Tensor]
    inputs: list[torch.Tensor]

    def step(self) -> float:
        """One training step (forward, loss, backward); returns its wall time in seconds."""
        self.zero_grad()
        start = time.perf_counter()
        loss = self.loss()
        loss.backward()
        elapsed = time.perf_counter() - start
        del loss
        self.zero_grad()
        return elapsed

    def zero_grad(self) -> None:
        self.module.zero_grad(set_to_none=True)
        for t in self.inputs:
            t.grad = None


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def available(name: str) -> bool:
    package = SPECS[name].package
    return package is None or importlib.util.find_spec(package) is not None


def package_version(name: str) -> str:
    package = SPECS[name].package
    dist = {None: "attention-toolkit", "x_transformers": "x-transformers"}.get(package, package)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _lengths(batch: int, frames: int) -> torch.Tensor:
    return torch.full((batch,), frames, dtype=torch.long)


class _OursConformer(nn.Module):
    """The speech recipe's encoder layers (and final norm) on subsampled frames."""

    def __init__(self, s: Sizes) -> None:
        super().__init__()
        from toolkit.nn.speech import SpeechEncoder

        encoder = SpeechEncoder(
            s.conf_embed, s.conf_heads, s.conf_layers, s.conf_ffn, s.dropout, "conformer",
            "multihead", positions="none", kernel_size=s.conf_kernel,
        )  # fmt: skip
        self.layers, self.norm = encoder.layers, encoder.norm  # norm: Identity for Conformer

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
        for layer in self.layers:
            x, _ = layer(x, mask)
        return self.norm(x)


class _SpeechBrainConformer(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder

        self.encoder = ConformerEncoder(
            s.conf_layers, s.conf_embed, s.conf_ffn, s.conf_heads, kernel_size=s.conf_kernel,
            dropout=s.dropout, attention_type="regularMHA",
        )  # fmt: skip

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = torch.arange(x.shape[1], device=x.device)[None] >= lengths[:, None]
        return self.encoder(x, src_key_padding_mask=pad)[0]


def _conformer_module(name: str, s: Sizes) -> nn.Module:
    if name == "ours_conformer":
        return _OursConformer(s)
    if name == "torchaudio_conformer":
        import torchaudio

        return torchaudio.models.Conformer(
            s.conf_embed, s.conf_heads, s.conf_ffn, s.conf_layers, s.conf_kernel, s.dropout
        )
    return _SpeechBrainConformer(s)


def _seq2seq(s: Sizes) -> nn.Module:
    from recipes.translation.model import Seq2SeqTransformer

    return Seq2SeqTransformer(
        s.tr_vocab, pad_id=0, embed_dim=s.tr_embed, num_heads=s.tr_heads,
        encoder_layers=s.tr_enc_layers, decoder_layers=s.tr_dec_layers, ffn_dim=s.tr_ffn,
        dropout=s.dropout, attention_dropout=0.0, attention="multihead",
        max_positions=max(512, s.tr_src_len, s.tr_tgt_len),
    )  # fmt: skip


def _torch_transformer(s: Sizes) -> nn.Transformer:
    with warnings.catch_warnings():  # nested tensors are an eval-only fast path
        warnings.simplefilter("ignore")
        return nn.Transformer(
            s.tr_embed, s.tr_heads, s.tr_enc_layers, s.tr_dec_layers, s.tr_ffn, s.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )  # fmt: skip


class _OursStacks(nn.Module):
    """The translation model's encoder and decoder stacks (no embedding/projection)."""

    def __init__(self, s: Sizes) -> None:
        super().__init__()
        model = _seq2seq(s)
        self.encoder, self.decoder = model.encoder, model.decoder

    def forward(self, src, src_mask, tgt, tgt_mask):
        memory, _ = self.encoder(src, src_mask)
        out, _ = self.decoder(tgt, memory, mask=tgt_mask, memory_mask=src_mask)
        return out


class _TorchStacks(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        self.transformer = _torch_transformer(s)

    def forward(self, src, src_mask, tgt, tgt_mask):
        t = tgt.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt.device).triu(1)  # True = hidden
        return self.transformer(
            src, tgt, tgt_mask=causal, src_key_padding_mask=~src_mask,
            tgt_key_padding_mask=~tgt_mask, memory_key_padding_mask=~src_mask,
            tgt_is_causal=True,
        )  # fmt: skip


class _TorchSeq2Seq(nn.Module):
    """``Seq2SeqTransformer``'s embedding, positions and tied projection around
    ``nn.Transformer``."""

    def __init__(self, s: Sizes) -> None:
        super().__init__()
        from toolkit.nn import sinusoidal_table

        self.pad_id, self.scale = 0, math.sqrt(s.tr_embed)
        self.embedding = nn.Embedding(s.tr_vocab, s.tr_embed, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=s.tr_embed**-0.5)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        table = sinusoidal_table(max(512, s.tr_src_len, s.tr_tgt_len), s.tr_embed)
        self.register_buffer("table", table, persistent=False)
        self.drop = nn.Dropout(s.dropout)
        self.stacks = _TorchStacks(s)

    def embed(self, tokens):
        return self.drop(self.embedding(tokens) * self.scale + self.table[: tokens.shape[1]])

    def forward(self, src, src_mask, tgt_in):
        out = self.stacks(self.embed(src), src_mask, self.embed(tgt_in), tgt_in != self.pad_id)
        return out @ self.embedding.weight.t(), None


class _OursEncoder(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        from toolkit.nn import TransformerEncoder

        self.encoder = TransformerEncoder(
            s.tr_enc_layers, s.tr_embed, s.tr_heads, ffn_dim=s.tr_ffn, dropout=s.dropout,
            attention_dropout=0.0, attention="multihead",
        )  # fmt: skip

    def forward(self, x, mask):
        return self.encoder(x, mask)[0]


class _XEncoder(nn.Module):
    def __init__(self, s: Sizes) -> None:
        super().__init__()
        from x_transformers import Encoder

        self.encoder = Encoder(
            dim=s.tr_embed, depth=s.tr_enc_layers, heads=s.tr_heads,
            attn_dim_head=s.tr_embed // s.tr_heads, ff_mult=s.tr_ffn / s.tr_embed,
            attn_dropout=0.0, ff_dropout=s.dropout,
        )  # fmt: skip

    def forward(self, x, mask):
        return self.encoder(x, mask=mask)


def build(name: str, s: Sizes, seed: int = 0, small: bool = False) -> Workload:
    """Build case ``name`` in training mode with its batch (``small``: a warm-up batch of
    a quarter of the lengths). Inputs come from ``seed`` alone, so ours and the peer get
    the same batch."""
    spec = SPECS[name]
    torch.manual_seed(seed)
    if spec.pair == "conformer":
        module = _conformer_module(name, s)
    elif spec.pair == "transformer":
        module = _OursStacks(s) if spec.side == "ours" else _TorchStacks(s)
    elif spec.pair == "seq2seq":
        module = _seq2seq(s) if spec.side == "ours" else _TorchSeq2Seq(s)
    else:
        module = _OursEncoder(s) if spec.side == "ours" else _XEncoder(s)
    module.train()
    gen = torch.Generator().manual_seed(seed + 1)

    def shrink(n: int) -> int:
        return max(4, n // 4) if small else n

    if spec.pair == "conformer":
        b, t, e = s.conf_batch, shrink(s.conf_frames), s.conf_embed
        x = torch.randn(b, t, e, generator=gen).requires_grad_()
        g = torch.randn(b, t, e, generator=gen)
        lengths = _lengths(b, t)

        def conformer_loss() -> torch.Tensor:
            out = module(x, lengths)
            return ((out[0] if isinstance(out, tuple) else out) * g).sum()

        return Workload(module, conformer_loss, [x])
    b, e = s.tr_batch, s.tr_embed
    ls, lt = shrink(s.tr_src_len), shrink(s.tr_tgt_len)
    if spec.pair == "seq2seq":
        src = torch.randint(1, s.tr_vocab, (b, ls), generator=gen)
        tgt = torch.randint(1, s.tr_vocab, (b, lt + 1), generator=gen)
        tgt_in, gold = tgt[:, :-1], tgt[:, 1:]
        src_mask = src != 0

        def loss() -> torch.Tensor:
            logits, _ = module(src, src_mask, tgt_in)
            return F.cross_entropy(
                logits.transpose(1, 2), gold, ignore_index=0, label_smoothing=0.1
            )

        return Workload(module, loss, [])
    src = torch.randn(b, ls, e, generator=gen).requires_grad_()
    src_mask = torch.ones(b, ls, dtype=torch.bool)
    if spec.pair == "encoder":
        g = torch.randn(b, ls, e, generator=gen)
        return Workload(module, lambda: (module(src, src_mask) * g).sum(), [src])
    tgt = torch.randn(b, lt, e, generator=gen).requires_grad_()
    tgt_mask = torch.ones(b, lt, dtype=torch.bool)
    g = torch.randn(b, lt, e, generator=gen)
    return Workload(module, lambda: (module(src, src_mask, tgt, tgt_mask) * g).sum(), [src, tgt])


# Peer parameter names -> ours (regex, replacement), applied in order: with these the
# peer's weights load into our module (``load_state_dict(strict=True)``), which is how
# ``check_equal`` shows the two compute the same function.
RENAMES: dict[str, list[tuple[str, str]]] = {
    "torchaudio_conformer": [
        (r"^conformer_layers\.", "layers."),
        (r"\.ffn(\d)\.sequential\.0\.", r".ffn\1.0."),
        (r"\.ffn(\d)\.sequential\.1\.", r".ffn\1.1.0."),
        (r"\.ffn(\d)\.sequential\.4\.", r".ffn\1.1.3."),
        (r"\.self_attn_layer_norm\.", ".norm_attn."),
        (r"\.in_proj_(weight|bias)$", r".in_proj.\1"),
        (r"\.conv_module\.layer_norm\.", ".conv.norm."),
        (r"\.conv_module\.sequential\.0\.", ".conv.pointwise1."),
        (r"\.conv_module\.sequential\.2\.", ".conv.depthwise."),
        (r"\.conv_module\.sequential\.3\.", ".conv.bn."),
        (r"\.conv_module\.sequential\.5\.", ".conv.pointwise2."),
        (r"\.final_layer_norm\.", ".norm."),
    ],
    "torch_transformer": [
        (r"^(stacks\.)?transformer\.", ""),
        (r"\.in_proj_(weight|bias)$", r".in_proj.\1"),
        (r"\.multihead_attn\.", ".cross_attn."),
        (r"\.linear1\.", ".ffn.0."),
        (r"\.linear2\.", ".ffn.3."),
    ],
}
RENAMES["torch_seq2seq"] = RENAMES["torch_transformer"]


def peer_state_as_ours(peer_name: str, state: dict[str, torch.Tensor]) -> dict:
    """The peer's ``state_dict`` under our module's names (peers in ``RENAMES`` only)."""
    out = {}
    for key, value in state.items():
        for pattern, repl in RENAMES[peer_name]:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def check_equal(pair: str) -> dict[str, dict]:
    """At tiny sizes, load each importable peer's weights into ours and compare the losses
    and every parameter gradient of one training step: ``{peer: {loss_diff, grad_diff}}``
    (relative max differences), or ``{peer: {"skip": why}}``."""
    ours_name = next(n for n, sp in SPECS.items() if sp.pair == pair and sp.side == "ours")
    results = {}
    for name, spec in SPECS.items():
        if spec.pair != pair or spec.side != "peer" or not available(name):
            continue
        if name not in RENAMES:
            results[name] = {"skip": "no weight mapping"}
            continue
        ours, peer = build(ours_name, QUICK_SIZES), build(name, QUICK_SIZES)
        ours.module.load_state_dict(peer_state_as_ours(name, peer.module.state_dict()))
        grads = []
        for work in (ours, peer):
            work.zero_grad()
            loss = work.loss()
            loss.backward()
            grads.append((loss.detach(), {n: p.grad for n, p in work.module.named_parameters()}))
        (l_ours, g_ours), (l_peer, g_peer) = grads
        g_peer = peer_state_as_ours(name, g_peer)
        grad_diff = max(
            float((g_ours[n] - g).abs().max() / g.abs().max().clamp_min(1e-12))
            for n, g in g_peer.items()
        )
        loss_diff = float((l_ours - l_peer).abs() / l_peer.abs().clamp_min(1e-12))
        results[name] = {"loss_diff": loss_diff, "grad_diff": grad_diff}
    return results


# --------------------------------------------------------------------------- memory


# --------------------------------------------------------------------------- in a process


def measure_memory(name: str, sizes: dict, threads: int) -> dict:
    """Peak RSS growth (MiB) of one training step of ``name``, after a warm-up step on a
    batch of a quarter of the lengths (thread pool, kernels paged in)."""
    torch.set_num_threads(threads)
    s = Sizes(**sizes)
    small = build(name, s, small=True)
    small.step()
    del small
    work = build(name, s)
    settle_memory()
    base = peak_rss_kib()
    first = work.step()
    peak = (peak_rss_kib() - base) / 1024
    return {"peak_mib": peak, "first_ms": 1e3 * first, "params": param_count(work.module)}


def time_group(names: list[str], sizes: dict, threads: int, mode: dict) -> dict:
    """Median step times of ``names`` built side by side in this process, their steps
    alternating (forward order on even rounds, reversed on odd ones)."""
    torch.set_num_threads(threads)
    m = Mode(**mode)
    s = Sizes(**sizes)
    works = {name: build(name, s) for name in names}
    estimate = 0.0
    for name in names:
        for _ in range(m.warmup_steps):
            last = works[name].step()
        estimate += last
    repeats = int(min(m.max_repeats, max(m.min_repeats, m.budget_s * len(names) // estimate)))
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(works[name].step())
    out = {}
    for name, t in times.items():
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0], t[0], t[0]]
        out[name] = {"ms_median": 1e3 * statistics.median(t), "ms_q1": 1e3 * q[0],
                     "ms_q3": 1e3 * q[2], "runs": len(t)}  # fmt: skip
    return out


def _child(conn, fn_name, kwargs):
    try:
        result = globals()[fn_name](**kwargs)
    except Exception as err:  # reported in the row, the run goes on
        result = {"error": f"{type(err).__name__}: {err}"}
    conn.send(result)
    conn.close()


def in_fresh_process(ctx, fn_name: str, timeout: float, **kwargs) -> dict:
    """``fn_name(**kwargs)`` in a new process of ``ctx``. By name, unlike the attention
    benchmark's runner: this script's functions live in ``__main__``."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn_name, kwargs))
    proc.start()
    send.close()
    result = None
    if recv.poll(timeout):
        with contextlib.suppress(EOFError):
            result = recv.recv()
    if result is None:
        if proc.is_alive():
            proc.kill()
            proc.join()
            return {"error": f"timed out after {timeout:.0f} s"}
        proc.join()
        return {"error": f"worker died (exit code {proc.exitcode})"}
    proc.join()
    return result


# --------------------------------------------------------------------------- the run


def run(args, sizes: Sizes, mode: Mode, ctx) -> dict[str, dict]:
    """Every case of the chosen pairs -> its row (memory, time, ratios, status)."""
    rows: dict[str, dict] = {}
    sizes_d, mode_d = dataclasses.asdict(sizes), dataclasses.asdict(mode)
    for pair in args.pairs:
        names = [n for n, spec in SPECS.items() if spec.pair == pair]
        peers = [n for n in names if SPECS[n].side == "peer"]
        present = [n for n in peers if available(n)]
        for name in names:
            spec = SPECS[name]
            rows[name] = {
                "pair": pair, "case": name, "side": spec.side, "label": spec.label,
                "package": spec.package or "toolkit", "version": package_version(name),
            }  # fmt: skip
            if spec.side == "peer" and name not in present:
                rows[name]["status"] = "not installed"
        if not present:
            for name in names:
                rows[name].setdefault("status", "no peer installed")
                print(f"{pair:>12}: {rows[name]['case']:<24} {rows[name]['status']}", flush=True)
            continue
        group = [n for n in names if SPECS[n].side == "ours"] + present
        for name in group:
            result = in_fresh_process(ctx, "measure_memory", mode.case_timeout_s,
                                      name=name, sizes=sizes_d, threads=args.threads)  # fmt: skip
            rows[name].update(result)
            print(f"{pair:>12}: {name:<24} memory "
                  + (f"{result['peak_mib']:.1f} MiB, {result['params']:,} parameters"
                     if "error" not in result else result["error"]), flush=True)  # fmt: skip
        timed = in_fresh_process(
            ctx, "time_group", mode.case_timeout_s * len(group), names=group, sizes=sizes_d,
            threads=args.threads, mode=mode_d,
        )  # fmt: skip
        for name in group:
            if "error" in timed:
                rows[name]["error"] = (rows[name].get("error", "") + " " + timed["error"]).strip()
            else:
                rows[name].update(timed[name])
                print(f"{pair:>12}: {name:<24} {timed[name]['ms_median']:.1f} ms median "
                      f"({timed[name]['runs']} steps)", flush=True)  # fmt: skip
        same = in_fresh_process(ctx, "check_equal", mode.case_timeout_s, pair=pair)
        for name, diff in same.items():
            if name == "error":
                print(f"{pair:>12}: equality check failed: {diff}", flush=True)
                continue
            if "skip" in diff:
                rows[name]["same_function"] = f"not checked ({diff['skip']})"
            else:
                rows[name].update(rel_diff_loss=diff["loss_diff"], rel_diff_grad=diff["grad_diff"])
                rows[name]["same_function"] = (
                    f"loss {diff['loss_diff']:.1e}, grads {diff['grad_diff']:.1e}"
                )
            print(f"{pair:>12}: {name:<24} same function: {rows[name]['same_function']}")
        ours = rows[group[0]]
        for name in group:
            row = rows[name]
            row["status"] = "failed: " + row["error"] if "error" in row else "measured"
            if name != group[0] and "ms_median" in row and "ms_median" in ours:
                row["time_ratio"] = ours["ms_median"] / row["ms_median"]
            if name != group[0] and row.get("peak_mib") and "peak_mib" in ours:
                row["mem_ratio"] = ours["peak_mib"] / row["peak_mib"]
            if name != group[0] and "params" in row and "params" in ours:
                row["params_delta"] = row["params"] - ours["params"]
    return rows


# --------------------------------------------------------------------------- outputs

COLUMNS = ["pair", "case", "side", "package", "version", "params", "params_delta", "ms_median",
           "ms_q1", "ms_q3", "runs", "peak_mib", "time_ratio", "mem_ratio", "rel_diff_loss",
           "rel_diff_grad", "status"]  # fmt: skip


def _fmt(value, digits: int = 1) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_csv(path: Path, rows: dict[str, dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows.values():
            writer.writerow({c: _fmt(row.get(c), 3) for c in COLUMNS})


def verdicts(rows: dict[str, dict]) -> list[str]:
    """Per pair: ours against the fastest measured peer, target ≤ 1.1×."""
    lines = []
    for pair in dict.fromkeys(r["pair"] for r in rows.values()):
        ours = next(r for r in rows.values() if r["pair"] == pair and r["side"] == "ours")
        peers = [r for r in rows.values() if r["pair"] == pair and r["side"] == "peer"
                 and "ms_median" in r]  # fmt: skip
        if not peers or "ms_median" not in ours:
            missing = [r["case"] for r in rows.values() if r["pair"] == pair
                       and r["side"] == "peer"]  # fmt: skip
            lines.append(f"- `{pair}`: not measured ({', '.join(missing)}: "
                         f"{ours.get('status', '')})")  # fmt: skip
            continue
        best = min(peers, key=lambda r: r["ms_median"])
        ratio = ours["ms_median"] / best["ms_median"]
        ok = "**met**" if ratio <= TARGET else "**missed**"
        equal = "equal parameters" if best.get("params_delta") == 0 else (
            f"peer has {best.get('params_delta', 0):+,} parameters")  # fmt: skip
        lines.append(
            f"- `{pair}`: ours {ours['ms_median']:.1f} ms vs fastest peer `{best['case']}` "
            f"{best['ms_median']:.1f} ms = **{ratio:.2f}×** (target ≤ {TARGET}×): {ok}; "
            f"peak memory {_fmt(ours.get('peak_mib'))} vs {_fmt(best.get('peak_mib'))} MiB "
            f"({_fmt(best.get('mem_ratio'), 2)}×); {equal}"
        )
    return lines


def table_md(rows: dict[str, dict]) -> str:
    head = ("| pair | case | package | parameters | step ms (median) | q1–q3 ms | steps | "
            "peak MiB | ours/peer time | ours/peer memory | same function | status |")  # fmt: skip
    lines = [head, "|" + "---|" * 12]
    for r in rows.values():
        version = f" {r['version']}" if r.get("version") else ""
        params = f"{r['params']:,}" if "params" in r else ""
        if r.get("params_delta"):
            params += f" ({r['params_delta']:+,})"
        spread = f"{r['ms_q1']:.1f}–{r['ms_q3']:.1f}" if "ms_q1" in r else ""
        lines.append(
            f"| {r['pair']} | `{r['case']}` | {r['package']}{version} | {params} | "
            f"{_fmt(r.get('ms_median'))} | {spread} | {_fmt(r.get('runs'))} | "
            f"{_fmt(r.get('peak_mib'))} | {_fmt(r.get('time_ratio'), 2)} | "
            f"{_fmt(r.get('mem_ratio'), 2)} | {r.get('same_function', '')} | "
            f"{r.get('status', '')} |"
        )
    return "\n".join(lines)


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan,) * 3


def settings_md(args, sizes: Sizes, mode: Mode, elapsed: float, load) -> str:
    from toolkit.training.precision import describe_cpu

    s = sizes
    return "\n".join(
        [
            "# Recipes against peers",
            "",
            f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}` "
            f"({'quick' if mode.quick else 'full'} run, {elapsed:.0f} s)",
            f"- torch {torch.__version__}, Python {platform.python_version()}, CPU "
            f"{describe_cpu()}, {os.cpu_count()} logical CPUs; fp32",
            f"- threads: `torch.set_num_threads({args.threads})` in every case process",
            f"- load average (1/5/15 min) at start {load[0][0]:.2f}/{load[0][1]:.2f}/"
            f"{load[0][2]:.2f}, at end {load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f}",
            f"- conformer: B {s.conf_batch}, T {s.conf_frames} frames, E {s.conf_embed}, "
            f"{s.conf_layers} layers, {s.conf_heads} heads, FFN {s.conf_ffn}, kernel "
            f"{s.conf_kernel}; all lengths T (no padding; the padding mask is passed)",
            f"- transformer / seq2seq: B {s.tr_batch}, source {s.tr_src_len} and target "
            f"{s.tr_tgt_len} tokens, E {s.tr_embed}, {s.tr_heads} heads, {s.tr_enc_layers} + "
            f"{s.tr_dec_layers} layers, FFN {s.tr_ffn}, vocabulary {s.tr_vocab} (seq2seq); no "
            "padding (the masks are passed)",
            f"- dropout {s.dropout} everywhere; training mode (`module.train()`)",
            "- step: forward, loss, `backward()`; gradients of all parameters and of the input "
            "frames/embeddings; gradients are dropped (`set_to_none`) between steps, untimed; no "
            "optimizer step (the same cost for equal parameter counts)",
            f"- time: each pair's cases are built side by side in one fresh process, "
            f"{mode.warmup_steps} warm-up steps each, then timed steps alternating between "
            f"them (A B, B A, ...), {mode.min_repeats}..{mode.max_repeats} per case (about "
            f"{mode.budget_s:g} s of steps per case); median and quartiles of "
            "`time.perf_counter` around each step",
            "- peak memory: peak RSS growth of one step in a fresh process per case (forked from "
            "a fork server that imported torch and ran no op); after one warm-up step on a "
            "batch of a quarter of the lengths, the module and batch are built, garbage is "
            "collected, malloc arenas are trimmed and the high-water mark is reset "
            "(`/proc/self/clear_refs`); the peak is `getrusage(RUSAGE_SELF).ru_maxrss` after "
            "the step minus that before it (activations, saved tensors, gradients)",
            "- same function: the peer's weights loaded into our module (parameter names mapped "
            "one to one, `load_state_dict(strict=True)`), one training step of each on the same "
            "batch at the quick sizes; the relative max difference of the loss and of every "
            "parameter gradient (fp32 rounding is ~1e-7..1e-6)",
            f"- target: ours ≤ {TARGET}× the step time of the fastest measured peer of the pair",
        ]
    )


def notes_md(pairs) -> str:
    parts = []
    for pair in pairs:
        parts.append(f"### `{pair}`\n\n" + "\n".join(f"- {n}" for n in NOTES[pair]))
    return "\n\n".join(parts)


def plot(path: Path, rows: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows.values() if "ms_median" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(measured) + 2))
    labels = [f"{r['pair']}: {r['case']}" for r in measured][::-1]
    colors = ["tab:blue" if r["side"] == "ours" else "tab:gray" for r in measured][::-1]
    for ax, key, title in ((axes[0], "ms_median", "step time (ms, median)"),
                           (axes[1], "peak_mib", "peak RSS growth per step (MiB)")):  # fmt: skip
        values = [r.get(key) or 0.0 for r in measured][::-1]
        ax.barh(labels, values, color=colors)
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    fig.suptitle("recipes against peers (blue = ours), fp32, training step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few steps (smoke)")
    parser.add_argument("--out", default="runs/peers", help="output folder (runs/peers)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, default=list(PAIRS))
    parser.add_argument("--repeats", type=int, help="timed steps per case (fixed)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout of every model")
    return parser.parse_args(argv)


def main(argv=None) -> dict[str, dict]:
    args = parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.repeats:
        mode = dataclasses.replace(mode, min_repeats=args.repeats, max_repeats=args.repeats)
    sizes = dataclasses.replace(QUICK_SIZES if args.quick else Sizes(), dropout=args.dropout)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    load_start, start = _loadavg(), time.perf_counter()
    print(f"peers benchmark: {'quick' if mode.quick else 'full'}, {args.threads} threads, "
          f"pairs {', '.join(args.pairs)}", flush=True)  # fmt: skip
    rows = run(args, sizes, mode, ctx)
    elapsed = time.perf_counter() - start
    settings = settings_md(args, sizes, mode, elapsed, (load_start, _loadavg()))
    text = (f"{settings}\n\n## Results\n\n{table_md(rows)}\n\n## Target\n\n"
            + "\n".join(verdicts(rows))
            + f"\n\n## The maths of each pair\n\n{notes_md(args.pairs)}\n")  # fmt: skip
    write_csv(out_dir / "peers.csv", rows)
    (out_dir / "peers.md").write_text(text)
    plot(out_dir / "peers.png", rows)
    print()
    print(text)
    print(f"wrote {out_dir}/peers.csv, peers.md, peers.png ({elapsed:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
