"""Joint CTC/attention recogniser: speech encoder (any self-attention) + CTC head + an
attention decoder (Transformer, or a recurrent decoder whose attention may be stateful), and
the step/reorder functions the shared beam search drives."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from toolkit.attention import stateful
from toolkit.nn import (
    AttentionGRUDecoder,
    TransformerDecoder,
    build_positions,
    reorder_search_state,
)
from toolkit.nn.speech import SpeechEncoder

Tensor = torch.Tensor
DECODERS = ("transformer", "rnn")


class CTCAttentionASR(nn.Module):
    """``wave -> SpeechEncoder -> (CTC head, attention decoder over the encoder frames)``.

    Args:
        vocab_size: tokens (characters or sentencepiece pieces) including blank and EOS.
        attention, attention_options: encoder self-attention type (the ``attention`` group).
        layer: ``conformer`` or ``transformer`` encoder layers.
        embed_dim, num_heads, encoder_layers, decoder_layers, ffn_dim, dropout: sizes
            (``num_heads``, ``decoder_layers`` and ``ffn_dim`` of the decoder: Transformer
            decoder only).
        decoder: ``transformer`` (the default) or ``rnn``: a one-step-at-a-time recurrent
            decoder (``toolkit.nn.AttentionGRUDecoder``, ``decoder_cell`` of
            ``decoder_hidden_dim`` units, one layer) whose attention over the encoder frames
            is ``decoder_attention``; the stateful types (``location``, ``coverage``) carry
            their state in its decoder state, so beam search and joint CTC/attention
            decoding need nothing more.
        decoder_attention: registered attention type of the decoder; ``None`` = ``multihead``
            for the Transformer decoder (its self- and cross-attention), ``location``
            (Chorowski et al. 2015) for the recurrent one. It does not follow ``attention``,
            which is the encoder's, so ``attention_modules`` also lists this type (and its
            core).
        decoder_attention_options: options of ``decoder_attention`` (e.g. ``channels``,
            ``kernel_size`` for ``location``; ``None`` = the type's defaults).
        decoder_cell, decoder_hidden_dim: ``gru`` or ``lstm`` and its size (``rnn`` only).
        positions: encoder positions (``sinusoidal``/``learned``/``none``).
        spec_augment: ``SpecAugment`` options (None = off).
        kernel_size: Conformer convolution kernel.
        blank, eos: ids of the CTC blank and of EOS (also the decoder's BOS): 0 and 1 for
            characters, 0 (padding) and 3 for sentencepiece (the tokenizer's ``blank_id``,
            ``eos_id``).
        never: further ids the decoder never emits (the tokenizer's ``never_ids``).

    The stateful types (``location``, ``coverage``: each decoder step attends with the
    previous step's weights or their running sum) are ``decoder_attention`` of the recurrent
    decoder only. They are refused as ``attention``, the encoder's self-attention, which has
    no decoder steps, and as the Transformer decoder's, which computes every target position
    of a layer (in several heads and layers) in one parallel pass, with no single previous
    alignment to carry.
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
        decoder: str = "transformer",
        decoder_attention: str | None = None,
        decoder_attention_options: Mapping[str, Any] | None = None,
        decoder_cell: str = "gru",
        decoder_hidden_dim: int = 256,
        positions: str = "sinusoidal",
        spec_augment: Mapping[str, Any] | None = None,
        kernel_size: int = 15,
        subsample_channels: int = 64,
        blank: int = 0,
        eos: int = 1,
        never: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(
                f"asr CTCAttentionASR: unknown model.decoder={decoder!r}; valid choices: "
                f"{', '.join(DECODERS)}"
            )
        if decoder_attention is None:
            decoder_attention = "location" if decoder == "rnn" else "multihead"
        if stateful(attention):
            raise ValueError(
                f"asr CTCAttentionASR: attention={attention} is stateful (each decoder step "
                "attends with the previous step's weights or their running sum), and "
                "`attention` is the speech encoder's self-attention, which has no decoder "
                f"steps. Use it in the recurrent attention decoder: model.decoder=rnn "
                f"model.decoder_attention={attention}, with e.g. attention=multihead or local "
                "for the encoder."
            )
        if decoder == "transformer" and stateful(decoder_attention):
            raise ValueError(
                f"asr CTCAttentionASR: model.decoder_attention={decoder_attention} is stateful "
                "(each decoder step attends with the previous step's weights or their running "
                "sum), and model.decoder=transformer is a Transformer decoder: every target "
                "position of a layer, in several heads and layers, is computed in one parallel "
                "pass, with no single previous alignment to carry. Use model.decoder=rnn "
                f"model.decoder_attention={decoder_attention} (the recurrent decoder's "
                "attention over the encoder frames), or multihead here."
            )
        self.blank, self.eos, self.embed_dim = blank, eos, embed_dim
        self.decoder_type, self.decoder_attention = decoder, decoder_attention
        # Ids the decoder must not emit: the blank and ids that are never targets
        # (sentencepiece's unknown and BOS pieces).
        self.never = sorted({blank, *map(int, never)})
        self.encoder = SpeechEncoder(
            embed_dim, num_heads, encoder_layers, ffn_dim, dropout, layer, attention,
            attention_options, positions, spec_augment=spec_augment, kernel_size=kernel_size,
            subsample_channels=subsample_channels,
        )  # fmt: skip
        self.ctc_head = nn.Linear(embed_dim, vocab_size)
        options = dict(decoder_attention_options or {})
        if decoder == "rnn":
            # fed as each type's registration says (the step's style=None): the additive
            # family (location, coverage, additive) attends with the previous state, Luong's
            # multiplicative scores with the new one
            self.decoder = AttentionGRUDecoder(
                vocab_size, embed_dim, decoder_hidden_dim, embed_dim, decoder_attention,
                padding_idx=None, dropout=dropout, cell=decoder_cell,
                **options,
            )  # fmt: skip
        else:
            self.embed = nn.Embedding(vocab_size, embed_dim)
            self.dec_positions = build_positions("sinusoidal", embed_dim, 512, dropout)
            self.decoder = TransformerDecoder(
                decoder_layers, embed_dim, num_heads, ffn_dim=ffn_dim, dropout=dropout,
                self_attention=decoder_attention, cross_attention=decoder_attention,
                self_attention_options=options, cross_attention_options=options,
            )  # fmt: skip
            self.out = nn.Linear(embed_dim, vocab_size)

    @property
    def recurrent(self) -> bool:
        """Whether the attention decoder is the recurrent one (``decoder=rnn``)."""
        return self.decoder_type == "rnn"

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
        """Teacher forcing: ``inputs (B, L)`` (BOS + targets) -> logits ``(B, L, V)`` and,
        with ``need_weights``, ``{"cross": [...]}`` whose last entry is the attention over
        the frames (``(B, H, L, S)`` per Transformer layer; ``(B, L, S)`` for ``rnn``)."""
        if self.recurrent:
            # steps after a row's end (input_mask False) come after its real ones: a
            # recurrent decoder's real steps never see them, and the loss ignores them
            logits, weights, _ = self.decoder(inputs, memory, memory_mask)
            return logits.float(), ({"cross": [weights]} if need_weights else None)
        y, maps = self.decoder(
            self._embed(inputs), memory, mask=input_mask, memory_mask=memory_mask,
            need_weights=need_weights,
        )  # fmt: skip
        # Blank is never a target; it is masked only when decoding, since -inf logits would
        # make label smoothing's uniform term infinite.
        return self.out(y).float(), maps

    # ----- decoding (toolkit.decoding protocol) ------------------------------------------
    def init_state(self, memory: Tensor, memory_mask: Tensor) -> dict[str, Any]:
        if self.recurrent:  # the attention state (location, coverage) rides in `rnn`
            return {"memory": memory, "mask": memory_mask,
                    "rnn": self.decoder.init_state(memory, memory_mask),
                    "pre": self.decoder.precompute(memory)}  # fmt: skip
        return {"memory": memory, "mask": memory_mask, "cache": self.decoder.init_cache()}

    def step(
        self, prefix: Tensor, state: dict[str, Any], need_weights: bool = False
    ) -> tuple[Tensor, dict[str, Any], Tensor | None]:
        """Next-token log-probs ``(N, V)`` of the newest position; the attention over the
        encoder frames ``(N, S)`` if asked (Transformer: the last layer's cross-attention,
        head mean)."""
        if self.recurrent:
            logits, rnn, weights = self.decoder.step(
                prefix[:, -1], state["rnn"], state["memory"], state["mask"], state["pre"]
            )
            logits = logits.float()
            logits[:, self.never] = float("-inf")
            state = {**state, "rnn": rnn}
            return logits.log_softmax(-1), state, weights if need_weights else None
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
        """Rows ``index`` of a decoding state: the recurrent state with its attention state
        (``reorder_state``), every other tensor (memory, mask, Transformer cache) by rows."""
        return reorder_search_state(state, index)


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
