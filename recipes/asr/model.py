"""Joint CTC/attention recogniser: speech encoder (any self-attention) + CTC head +
Transformer decoder, and the step/reorder functions the shared beam search drives."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.attention import stateful
from toolkit.nn import TransformerDecoder, build_positions, reorder_cache
from toolkit.nn.speech import SpeechEncoder

Tensor = torch.Tensor


class CTCAttentionASR(nn.Module):
    """``wave -> SpeechEncoder -> (CTC head, Transformer decoder over the encoder frames)``.

    Args:
        vocab_size: tokens (characters or sentencepiece pieces) including blank and EOS.
        attention, attention_options: encoder self-attention type (the ``attention`` group).
        layer: ``conformer`` or ``transformer`` encoder layers.
        embed_dim, num_heads, encoder_layers, decoder_layers, ffn_dim, dropout: sizes.
        decoder_attention: registered type of the decoder's self- and cross-attention
            (``multihead`` in the configs); it does not follow ``attention``, which is the
            encoder's, so ``attention_modules`` also lists this type (and its core).
        positions: encoder positions (``sinusoidal``/``learned``/``none``).
        spec_augment: ``SpecAugment`` options (None = off).
        kernel_size: Conformer convolution kernel.
        blank, eos: ids of the CTC blank and of EOS (also the decoder's BOS): 0 and 1 for
            characters, 0 (padding) and 3 for sentencepiece (the tokenizer's ``blank_id``,
            ``eos_id``).
        never: further ids the decoder never emits (the tokenizer's ``never_ids``).

    The stateful types (``location``, ``coverage``) are refused for both ``attention`` and
    ``decoder_attention``: the encoder's self-attention has no decoder steps, and the
    Transformer decoder computes every target position of a layer (in several heads and
    layers) in one parallel pass, with no single previous alignment to carry.
    """

    def __init__(
        self,
        vocab_size: int,
        attention: str = "multihead",
        attention_options: Mapping[str, Any] | None = None,
        layer: str = "conformer",
        embed_dim: int = 144,
        num_heads: int = 4,
        encoder_layers: int = 4,
        decoder_layers: int = 2,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        decoder_attention: str = "multihead",
        positions: str = "sinusoidal",
        spec_augment: Mapping[str, Any] | None = None,
        kernel_size: int = 15,
        subsample_channels: int = 64,
        blank: int = 0,
        eos: int = 1,
        never: Sequence[int] = (),
    ) -> None:
        super().__init__()
        for key, name in (("attention", attention), ("model.decoder_attention", decoder_attention)):
            if stateful(name):
                raise ValueError(
                    f"asr CTCAttentionASR: {key}={name} is stateful (each decoder step attends "
                    "with the previous step's weights or their running sum). `attention` is the "
                    "speech encoder's self-attention, which has no decoder steps, and the "
                    "attention decoder is a Transformer decoder: every target position of a "
                    "layer, in several heads and layers, is computed in one parallel pass, with "
                    "no single previous alignment to carry. This recipe has no recurrent "
                    "decoder; use location/coverage in translation model=rnn or captioning "
                    "model=lstm, and e.g. attention=multihead or local here."
                )
        self.blank, self.eos, self.embed_dim = blank, eos, embed_dim
        # Ids the decoder must not emit: the blank and ids that are never targets
        # (sentencepiece's unknown and BOS pieces).
        self.never = sorted({blank, *map(int, never)})
        self.encoder = SpeechEncoder(
            embed_dim, num_heads, encoder_layers, ffn_dim, dropout, layer, attention,
            attention_options, positions, spec_augment=spec_augment, kernel_size=kernel_size,
            subsample_channels=subsample_channels,
        )  # fmt: skip
        self.ctc_head = nn.Linear(embed_dim, vocab_size)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.dec_positions = build_positions("sinusoidal", embed_dim, 512, dropout)
        self.decoder = TransformerDecoder(
            decoder_layers, embed_dim, num_heads, ffn_dim=ffn_dim, dropout=dropout,
            self_attention=decoder_attention, cross_attention=decoder_attention,
        )  # fmt: skip
        self.out = nn.Linear(embed_dim, vocab_size)

    # ----- training ---------------------------------------------------------------------
    def encode(self, wave: Tensor, lengths: Tensor, need_weights: bool = False):
        """-> ``memory (B, S, E)``, ``mask (B, S)``, encoder maps, ``feats (B, T, 80)``."""
        return self.encoder(wave, lengths, need_weights)

    def ctc_log_probs(self, memory: Tensor, decoding: bool = True) -> Tensor:
        """``(B, S, V)`` CTC log-posteriors. When decoding, EOS gets probability 0 (CTC
        never emits it); in training it stays a normal class, since -inf inputs give NaN
        gradients in ``ctc_loss``."""
        logits = self.ctc_head(memory).float()
        if decoding:
            never = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            never[self.eos] = True
            logits = logits.masked_fill(never, float("-inf"))
        return logits.log_softmax(-1)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.dec_positions(self.embed(tokens) * math.sqrt(self.embed_dim), offset)

    def decode_train(
        self, memory: Tensor, memory_mask: Tensor, inputs: Tensor, input_mask: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Any]:  # fmt: skip
        """Teacher forcing: ``inputs (B, L)`` (BOS + targets) -> logits ``(B, L, V)``."""
        y, maps = self.decoder(
            self._embed(inputs), memory, mask=input_mask, memory_mask=memory_mask,
            need_weights=need_weights,
        )  # fmt: skip
        # Blank is never a target; it is masked only when decoding, since -inf logits would
        # make label smoothing's uniform term infinite.
        return self.out(y).float(), maps

    # ----- decoding (toolkit.decoding protocol) ------------------------------------------
    def init_state(self, memory: Tensor, memory_mask: Tensor) -> dict[str, Any]:
        return {"memory": memory, "mask": memory_mask, "cache": self.decoder.init_cache()}

    def step(
        self, prefix: Tensor, state: dict[str, Any], need_weights: bool = False
    ) -> tuple[Tensor, dict[str, Any], Tensor | None]:
        """Next-token log-probs ``(N, V)`` of the newest position; cross-attention of the
        last decoder layer over the encoder frames (head mean) ``(N, S)`` if asked."""
        cache = state["cache"]
        x = self._embed(prefix[:, -1:], self.decoder.cache_length(cache))
        y, maps = self.decoder(
            x, state["memory"], memory_mask=state["mask"], cache=cache, need_weights=need_weights
        )
        logits = self.out(y[:, -1]).float()
        logits[:, self.never] = float("-inf")
        attn = maps["cross"][-1][:, :, -1].mean(1) if need_weights else None
        return logits.log_softmax(-1), state, attn

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return reorder_cache(state, index)


def ctc_attention_loss(
    model: CTCAttentionASR,
    memory: Tensor,
    memory_mask: Tensor,
    targets: Tensor,
    target_lengths: Tensor,
    ctc_weight: float,
    label_smoothing: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``ctc_weight * CTC + (1 - ctc_weight) * cross-entropy`` (per-utterance means)."""
    b = targets.shape[0]
    parts: dict[str, Tensor] = {}
    loss = memory.new_zeros(())
    if ctc_weight > 0:
        log_probs = model.ctc_log_probs(memory, decoding=False)
        parts["ctc"] = F.ctc_loss(
            log_probs.transpose(0, 1), targets, memory_mask.sum(1), target_lengths,
            blank=model.blank, reduction="sum", zero_infinity=True,
        ) / b  # fmt: skip
        loss = loss + ctc_weight * parts["ctc"]
    if ctc_weight < 1:
        bos = torch.full((b, 1), model.eos, dtype=torch.long, device=targets.device)
        inputs = torch.cat([bos, targets], dim=1)  # (B, L + 1)
        gold = torch.cat([targets, torch.zeros_like(bos)], dim=1)
        gold[torch.arange(b), target_lengths] = model.eos
        steps = torch.arange(inputs.shape[1], device=targets.device)[None]
        valid = steps <= target_lengths[:, None]  # (B, L + 1): BOS + targets
        logits, _ = model.decode_train(memory, memory_mask, inputs, valid)
        gold = gold.masked_fill(~valid, -100)
        parts["att"] = F.cross_entropy(
            logits.transpose(1, 2), gold, ignore_index=-100, label_smoothing=label_smoothing,
            reduction="sum",
        ) / b  # fmt: skip
        loss = loss + (1 - ctc_weight) * parts["att"]
    return loss, parts
