"""Captioners: an image encoder's regions, then a decoder attending over them.

* ``ShowAttendTell`` (Xu et al. 2015): LSTM decoder, soft attention over regions with any
  registered attention type (``toolkit.nn.AttentionRNNDecoderStep``, Bahdanau order: attend
  with the previous hidden state), the gating scalar ``β = σ(f_β(h))`` and, in the loss, the
  doubly-stochastic regulariser ``λ Σ_s (1 - Σ_t α_ts)²`` (``attention_penalty``).
  ``attend=mean`` replaces attention by the mean over regions (the ablation); that is the
  ``uniform`` attention type, so it is accepted with ``attention=uniform`` only (a run
  records its attention type, and the mean uses no other).
* ``CaptionTransformer``: a Transformer decoder (causal self-attention, cross-attention
  over the regions with the chosen attention type), incremental decoding with a cache. A
  self-attention-only type (``rotary``, ``alibi``, ``relative``) goes into the causal
  self-attention instead, and the cross-attention is then ``multihead``.

``ShowAttendTell`` refuses the self-attention-only types: its only attention is the LSTM
state over the regions, which shares no position axis with them. It takes the stateful types
(``location``, ``coverage``), whose state rides in the LSTM decoder state; the
``CaptionTransformer`` refuses those (a Transformer computes every position in one pass).

Both return teacher-forced ``logits (B, T, V)`` and attention ``(B, T, S)``, and give the
``step``/``reorder`` pair that ``toolkit.decoding`` searches with.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.attention import self_attention_only, stateful
from toolkit.nn import (
    AttentionGRUDecoder,
    TransformerDecoder,
    reorder_cache,
    reorder_search_state,
)
from toolkit.nn.positions import build_positions
from toolkit.nn.vision import ImageEncoder

Tensor = torch.Tensor


class MeanOverRegions(nn.Module):
    """Stand-in for attention: the context is the mean of the real regions (uniform weights),
    i.e. the ``uniform`` attention type for one query (counted as such by ``built_types``)."""

    attention_type = "uniform"

    def precompute(self, memory: Tensor) -> dict[str, Tensor]:
        return {}

    def forward(self, query, memory, mask=None, cache=None) -> tuple[Tensor, Tensor]:
        b, s, _ = memory.shape
        m = torch.ones(b, s, device=memory.device) if mask is None else mask.to(memory.dtype)
        weights = m / m.sum(-1, keepdim=True).clamp_min(1.0)  # (B, S)
        return torch.einsum("bs,bsd->bd", weights, memory), weights


class RegionEncoder(nn.Module):
    """``ImageEncoder`` + a learned embedding per region position (grid cells carry where
    they are; box regions get none: their order carries no place)."""

    def __init__(self, encoder: dict[str, Any], dim: int, max_regions: int = 256) -> None:
        super().__init__()
        self.encoder = ImageEncoder(**dict(encoder), out_dim=dim)
        self.position = nn.Parameter(torch.zeros(max_regions, dim))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, images: Tensor, boxes=None, box_mask=None):
        regions, mask, grid = self.encoder(images, boxes, box_mask)  # (B, S, D), (B, S)
        if self.encoder.regions == "grid":
            if regions.shape[1] > self.position.shape[0]:
                raise ValueError(
                    f"captioning: the encoder gives {regions.shape[1]} regions ({grid[0]} x "
                    f"{grid[1]}) but the model has positions for {self.position.shape[0]}; "
                    f"set ++model.max_regions={regions.shape[1]} (or more)"
                )
            regions = regions + self.position[: regions.shape[1]]
        return regions, mask, grid


class ShowAttendTell(nn.Module):
    """LSTM captioner with soft attention over image regions.

    Args:
        vocab_size: output vocabulary.
        encoder: ``ImageEncoder`` arguments (the ``encoder`` config group).
        attention: registered attention name; options in ``attention_options``.
        embed_dim / hidden_dim / memory_dim: word embedding, LSTM and region sizes.
        gate: the gating scalar on the context.
        attend: ``attention`` or ``mean`` (ablation: no attention, mean of the regions;
            needs ``attention="uniform"``, the type it computes).
        dropout: on embeddings, step outputs and regions.
        max_regions: grid regions the learned region positions cover (256 = a 16 x 16 grid;
            the long-input setting's 32 x 32 grid needs 1,024).
    """

    def __init__(
        self,
        vocab_size: int,
        encoder: dict[str, Any],
        attention: str = "additive",
        attention_options: dict[str, Any] | None = None,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        memory_dim: int = 128,
        gate: bool = True,
        attend: str = "attention",
        dropout: float = 0.2,
        max_regions: int = 256,
    ) -> None:
        super().__init__()
        if self_attention_only(attention):
            raise ValueError(
                f"captioning ShowAttendTell: attention={attention} is self-attention only (it "
                "scores a query and a key by their positions in one sequence), and this "
                "model's only attention is the LSTM state over the image regions. Use "
                f"model=transformer attention={attention} (its causal self-attention; the "
                "cross-attention over the regions is then multihead)."
            )
        if attend not in ("attention", "mean"):
            raise ValueError(f"unknown attend {attend!r}; valid choices: attention, mean")
        mean_type = MeanOverRegions.attention_type  # the type the mean over regions computes
        if attend == "mean" and attention != mean_type:
            # the run would record `attention` while the decoder only averages the regions
            raise ValueError(
                f"captioning ShowAttendTell: model.attend=mean averages the regions (the "
                f"{mean_type!r} type), so attention={attention} would be recorded but never "
                f"used; run the ablation as attention={mean_type} model.attend=mean (or "
                f"attention={mean_type})"
            )
        self.regions = RegionEncoder(encoder, memory_dim, max_regions)
        self.decoder = AttentionGRUDecoder(
            vocab_size, embed_dim, hidden_dim, memory_dim, attention, padding_idx=0,
            dropout=dropout, cell="lstm", style="bahdanau", gate=gate,
            **dict(attention_options or {}),
        )  # fmt: skip
        step = self.decoder.step_module
        if attend == "mean":
            step.attn = MeanOverRegions()

    def encode(self, images: Tensor, boxes=None, box_mask=None):
        """``images (B, 3, H, W)`` -> ``regions (B, S, D)``, ``mask (B, S)``, grid ``(h, w)``."""
        return self.regions(images, boxes, box_mask)

    def forward(self, images, tokens, boxes=None, box_mask=None) -> tuple[Tensor, Tensor]:
        """Teacher forcing on ``tokens (B, T)`` (inputs) -> ``logits (B, T, V)``,
        ``weights (B, T, S)``."""
        memory, mask, _ = self.encode(images, boxes, box_mask)
        logits, weights, _ = self.decoder(tokens, memory, mask)
        return logits, weights

    def start(self, memory: Tensor, mask: Tensor) -> dict[str, Any]:
        """Decoding state for ``toolkit.decoding``."""
        return {
            "memory": memory,
            "mask": mask,
            "cache": self.decoder.precompute(memory),
            "rnn": self.decoder.init_state(memory, mask),
        }

    def step(self, prefix: Tensor, state: dict[str, Any]):
        logits, rnn, weights = self.decoder.step(
            prefix[:, -1], state["rnn"], state["memory"], state["mask"], state["cache"]
        )
        return F.log_softmax(logits.float(), -1), {**state, "rnn": rnn}, weights

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return reorder_search_state(state, index)


class CaptionTransformer(nn.Module):
    """Transformer decoder over image regions (cross-attention = the chosen type).

    The decoder's causal self-attention is standard ``multihead`` (``scaled_dot`` core) and
    the cross-attention over the regions follows the run's type (so ``attention_modules``
    also lists ``multihead`` and ``scaled_dot``), except for the self-attention-only types
    (``rotary``, ``alibi``, ``relative``: positions of caption tokens, which the regions do
    not share): those become the causal self-attention and the cross-attention is
    ``multihead``.

    Args:
        vocab_size: output vocabulary.
        encoder: ``ImageEncoder`` arguments.
        attention: registered name of the cross-attention (self-attention is multi-head),
            or of the self-attention for a self-attention-only type.
        embed_dim / num_heads / num_layers / ffn_dim: decoder size.
        positions: ``sinusoidal`` or ``learned`` token positions.
        max_regions: grid regions the learned region positions cover (as ShowAttendTell).
    """

    def __init__(
        self,
        vocab_size: int,
        encoder: dict[str, Any],
        attention: str = "multihead",
        attention_options: dict[str, Any] | None = None,
        embed_dim: int = 256,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_dim: int = 512,
        dropout: float = 0.1,
        positions: str = "sinusoidal",
        max_len: int = 64,
        max_regions: int = 256,
    ) -> None:
        super().__init__()
        if stateful(attention):
            raise ValueError(
                f"captioning CaptionTransformer: attention={attention} is stateful (each "
                "decoder step attends with the previous step's weights or their running sum), "
                "and a Transformer computes every position of its self- and cross-attention in "
                f"one parallel pass. Use model=lstm attention={attention} (the LSTM decoder's "
                "attention over the regions), or attention=additive here."
            )
        self.regions = RegionEncoder(encoder, embed_dim, max_regions)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.positions = build_positions(positions, embed_dim, max_len=max_len + 2)
        options = dict(attention_options or {})
        if self_attention_only(attention):  # positions of caption tokens: self-attention
            types = {"self_attention": attention, "self_attention_options": options,
                     "cross_attention": "multihead"}  # fmt: skip
        else:
            types = {"cross_attention": attention, "cross_attention_options": options}
        self.decoder = TransformerDecoder(
            num_layers, embed_dim, num_heads, ffn_dim=ffn_dim, dropout=dropout, **types
        )
        self.generator = nn.Linear(embed_dim, vocab_size)
        self.scale = embed_dim**0.5

    def encode(self, images: Tensor, boxes=None, box_mask=None):
        return self.regions(images, boxes, box_mask)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * self.scale, offset=offset)

    @staticmethod
    def _cross_map(maps: dict[str, list[Tensor]]) -> Tensor:
        """Last layer's cross-attention, averaged over heads: ``(B, T, S)``."""
        w = maps["cross"][-1]
        return w.mean(dim=1) if w.dim() == 4 else w

    def forward(self, images, tokens, boxes=None, box_mask=None) -> tuple[Tensor, Tensor]:
        memory, mask, _ = self.encode(images, boxes, box_mask)
        y, maps = self.decoder(self._embed(tokens), memory, tokens != 0, mask, need_weights=True)
        return self.generator(y), self._cross_map(maps)

    def start(self, memory: Tensor, mask: Tensor) -> dict[str, Any]:
        return {"memory": memory, "mask": mask, "cache": self.decoder.init_cache()}

    def step(self, prefix: Tensor, state: dict[str, Any]):
        cache = state["cache"]
        offset = self.decoder.cache_length(cache)
        x = self._embed(prefix[:, -1:], offset)
        y, maps = self.decoder(
            x, state["memory"], None, state["mask"], cache=cache, need_weights=True
        )
        logits = self.generator(y[:, -1])
        return F.log_softmax(logits.float(), -1), state, self._cross_map(maps)[:, -1]

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        cache = reorder_cache(state["cache"], index)
        cache["length"] = state["cache"].get("length", 0)
        return {
            "memory": state["memory"].index_select(0, index),
            "mask": state["mask"].index_select(0, index),
            "cache": cache,
        }
