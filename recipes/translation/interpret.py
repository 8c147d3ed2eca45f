"""Measured interpretability for translation (``python -m toolkit.interpret ckpt=…``).

* Score: the log-probability per target token of the model's own greedy translation
  (hypothesis + EOS), teacher-forced; the same hypothesis is scored with and without the
  removed source tokens.
* Inputs: the source sub-words (the source EOS is never removed).
* Removal: the sub-word is replaced by padding (a zero embedding) *and* masked as a key of
  the decoder's cross-attention; in the Transformer also as a key of the encoder's
  self-attention (the key padding mask). The recurrent encoder keeps its length (it packs
  sequences by length), so there the zero embedding is what removes the token from it.
* Rankings: ``attention`` = the cross-attention (last decoder layer, head mean) summed over
  the target steps; ``attention_rollout`` (Transformer) = that sum carried to the source
  tokens through the rollout of the encoder's self-attention; ``saliency`` = gradient ×
  input norm at the source embeddings; ``random`` = the control.
* Rollout pictures: ``interpret/rollout_XXX.png`` (Transformer encoder).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from recipes.translation.model import Seq2SeqRNN
from toolkit.attention import capture_attention
from toolkit.interpret.common import (
    Settings,
    embedding_tap,
    erasure_section,
    rollout_of,
    rollout_pictures,
    rollout_section,
    self_attention_layers,
)
from toolkit.interpret.erasure import ErasureResults, erasure_drops, grad_x_input

SCORE = "log-probability per target token of the greedy hypothesis (teacher-forced)"
MASKING = (
    "source token replaced by padding (zero embedding) and masked as a key of the "
    "cross-attention (and, in the Transformer, of the encoder self-attention)"
)


def _decode(model, src, keep, tgt_in, need_weights: bool = False):
    """Teacher-forced logits ``(B, T, V)`` and cross-attention ``(B, T, S)`` with only the
    source tokens in ``keep`` left (see the module docstring)."""
    pad = model.pad_id
    src_mask = src != pad
    erased = src.masked_fill(src_mask & ~keep, pad)
    if not isinstance(model, Seq2SeqRNN):  # Transformer: the key padding mask
        return model(erased, keep, tgt_in, need_weights=need_weights)
    memory = model.encode(erased, src_mask)  # recurrent: the length stays
    logits, weights, _ = model.decoder(tgt_in, memory, keep)
    return logits, weights


def _token_logprob(logits, tgt_out, pad: int):
    logp = F.log_softmax(logits.float(), -1)
    real = tgt_out != pad
    picked = logp.gather(-1, tgt_out.clamp_min(0)[..., None])[..., 0] * real
    return picked.sum(1) / real.sum(1).clamp_min(1)


def interpret(module, datamodule, settings: Settings) -> dict[str, Any]:
    """Erasure test and rollout pictures over the first ``settings.examples`` test pairs."""
    module.eval()
    model = module.model
    tok = module.tokenizer
    pairs = datamodule.examples("test", settings.examples)
    results = ErasureResults(list(settings.ks))
    gen = settings.generator()
    layer_names: list[str] | None = None
    pictures: list[str] = []
    for start in range(0, len(pairs), settings.batch_size):
        chunk = pairs[start : start + settings.batch_size]
        sources = [datamodule.encode(s) for s, _ in chunk]
        hyps = module.translate([s for s, _ in chunk], beam_size=1)
        items = [(s, list(h["tokens"]) + [tok.eos_id]) for s, h in zip(sources, hyps, strict=True)]
        batch = datamodule.collate(items)
        src, tgt_in, tgt_out = (batch[k].to(module.device) for k in ("src", "tgt_in", "tgt_out"))
        src_mask = src != tok.pad_id
        valid = src_mask & (src != tok.eos_id)
        capture = capture_attention(model)
        with torch.enable_grad(), capture as cap, embedding_tap(model.embedding) as emb:
            logits, cross = _decode(model, src, src_mask, tgt_in, need_weights=True)
            logprob = _token_logprob(logits, tgt_out, tok.pad_id)
            saliency = grad_x_input(emb[0], logprob)  # the first call embeds the source
        real_t = (tgt_out != tok.pad_id).float()
        attention = (cross.detach().float() * real_t[..., None]).sum(1)  # (B, S)
        rankings = {"attention": attention, "saliency": saliency}
        layers = self_attention_layers(cap.maps, src.shape[1])
        rolled = rollout_of(layers, src_mask)
        if rolled is not None:
            layer_names = [name for name, _ in layers]
            rankings["attention_rollout"] = torch.einsum(
                "bi,bij->bj", attention, rolled.to(attention)
            )
            labels = [tok.id_to_piece(s) for s in sources]
            pictures += rollout_pictures(layers, rolled, src_mask, labels, settings, start)

        def score(_batch, keep, src=src, tgt_in=tgt_in, tgt_out=tgt_out):
            logits, _ = _decode(model, src, keep | (src == tok.eos_id), tgt_in)
            return _token_logprob(logits, tgt_out, tok.pad_id)

        base, drops = erasure_drops(score, None, valid, rankings, settings.ks, gen)
        results.add(base, drops)
        settings.report(min(start + len(chunk), len(pairs)), len(pairs))
    about = {
        "score": SCORE,
        "inputs": "source sub-words",
        "masking": MASKING,
        "ranking": "cross-attention summed over target steps",
        "hypothesis": "greedy",
    }
    return {
        "erasure": erasure_section(results, settings, **about),
        "rollout": rollout_section(
            layer_names, pictures, "the encoder is recurrent: no self-attention layers"
        ),
    }
