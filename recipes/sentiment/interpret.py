"""Measured interpretability for sentiment (``python -m toolkit.interpret ckpt=…``).

* Score: the softmax probability of the class the model predicts on the whole sentence.
* Inputs: the sentence's tokens (for the pretrained MiniLM tokenizer, ``[CLS]``/``[SEP]``
  are never removed).
* Removal: the token is replaced by ``<unk>`` (``[UNK]`` for MiniLM), the token the model
  met in training through word dropout; the padding mask is left alone, since the recurrent
  encoder packs sequences by their length and a hole in the mask would cut the sentence.
* Rankings: ``attention`` = the pooling weights (head mean for a multi-head pooling);
  ``attention_rollout`` (Transformer and MiniLM encoders) = the pooling weights carried to
  the input tokens through the rollout of the encoder's self-attention,
  ``w_j = Σ_i pool_i R_ij``; ``saliency`` = gradient × input norm at the token embeddings;
  ``random`` = the control. MiniLM with ``pooling=mean`` has no pooling attention (its
  weights are ``1/n``): no ``attention`` ranking there, only the rollout of the mean.
* Rollout pictures: ``interpret/rollout_XXX.png``, the last encoder layer's map beside the
  rollout (models with self-attention layers only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

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

MASKING = "token replaced by <unk> (the word-dropout token); padding mask unchanged"
SCORE = "softmax probability of the predicted class"


def _unk_and_specials(module, datamodule) -> tuple[int, set[int]]:
    if getattr(datamodule, "tokenizer_name", "word") == "word":
        return int(module.model.unk_id), set()
    tok = datamodule.pretrained_tokenizer().tokenizer
    specials = {tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
    return int(tok.token_to_id("[UNK]")), {s for s in specials if s is not None}


def _token_embedding(model: nn.Module) -> nn.Embedding:
    """The word embedding: ``embed`` (RNN, Transformer) or MiniLM's ``….word``."""
    if isinstance(getattr(model, "embed", None), nn.Embedding):
        return model.embed
    for name, sub in model.named_modules():
        if name.endswith("word") and isinstance(sub, nn.Embedding):
            return sub
    raise ValueError(f"{type(model).__name__}: no word embedding found for the saliency")


def interpret(module, datamodule, settings: Settings) -> dict[str, Any]:
    """Erasure test and rollout pictures over the first ``settings.examples`` test items."""
    module.eval()
    model = module.model
    pairs = datamodule.examples("test", settings.examples)
    unk, specials = _unk_and_specials(module, datamodule)
    embedding = _token_embedding(model)
    results = ErasureResults(list(settings.ks))
    gen = settings.generator()
    layer_names: list[str] | None = None
    pictures: list[str] = []
    has_pooling = True
    mean_pooled = getattr(model, "pooling", None) == "mean"
    for start in range(0, len(pairs), settings.batch_size):
        chunk = pairs[start : start + settings.batch_size]
        batch = datamodule.collate(
            [(datamodule.encode(t), module.label_map.encode(y)) for t, y in chunk]
        )
        ids, mask = batch["ids"].to(module.device), batch["mask"].to(module.device)
        valid = mask.clone()
        for s in specials:
            valid &= ids != s
        with torch.enable_grad(), capture_attention(model) as cap, embedding_tap(embedding) as emb:
            logits, pool = model(ids, mask, need_weights=True)
            pred = logits.argmax(-1)
            prob = torch.softmax(logits.float(), -1).gather(1, pred[:, None])[:, 0]
            saliency = grad_x_input(emb[0], prob)
        if pool is None:
            has_pooling = False
            break
        pool = pool.detach().float()
        pool = pool if pool.dim() == 2 else pool.mean(1).reshape(pool.shape[0], -1)
        # MiniLM with mean pooling: its "weights" are 1/n, not attention; only the rollout
        # (the mean carried through the encoder's self-attention) ranks tokens there
        rankings = (
            {"saliency": saliency} if mean_pooled else {"attention": pool, "saliency": saliency}
        )
        layers = self_attention_layers(cap.maps, ids.shape[1])
        rolled = rollout_of(layers, mask)
        if rolled is not None:
            layer_names = [name for name, _ in layers]
            rankings["attention_rollout"] = torch.einsum("bi,bij->bj", pool, rolled.to(pool))
            labels = [datamodule.tokens(t) for t, _ in chunk]
            pictures += rollout_pictures(layers, rolled, mask, labels, settings, start)

        def score(_batch, keep, ids=ids, mask=mask, pred=pred):
            erased = ids.masked_fill(mask & ~keep, unk)
            out, _ = model(erased, mask)
            return torch.softmax(out.float(), -1).gather(1, pred[:, None])[:, 0]

        base, drops = erasure_drops(score, None, valid, rankings, settings.ks, gen)
        results.add(base, drops)
        settings.report(min(start + len(chunk), len(pairs)), len(pairs))
    about = {"score": SCORE, "inputs": "tokens", "masking": MASKING,
             "ranking": "pooling attention weight per token"}  # fmt: skip
    if mean_pooled:
        about["ranking"] = ("mean pooling (no attention weights): attention_rollout only, the "
                            "mean carried through the encoder's self-attention")  # fmt: skip
    if not has_pooling:
        erasure = {**about, "value": None,
                   "reason": "the classifier returned no pooling weights"}  # fmt: skip
    else:
        erasure = erasure_section(results, settings, **about)
    return {
        "erasure": erasure,
        "rollout": rollout_section(
            layer_names,
            pictures,
            "no per-layer self-attention maps were captured (a recurrent encoder has none)",
        ),
    }
