"""Measured interpretability for captioning (``python -m toolkit.interpret ckpt=…``).

* Score: per generated word, its probability under teacher forcing of the model's own
  greedy caption; drops are averaged over the words of a caption, then over images (the
  bootstrap resamples images). ``<eos>`` is not a word; images with an empty caption are
  left out and counted.
* Inputs: the image regions the decoder attends over (grid cells or object boxes).
* Removal: the region's feature vector is set to zero *and* the region is masked as a key of
  the decoder's attention (the region mask, also used for the LSTM's initial state). When
  every region of an image is removed, the mask stays and the zero features alone remove
  them (a fully masked attention row has no defined weights).
* Rankings: ``attention`` = that word's attention over the regions (the LSTM decoder's,
  or the last Transformer decoder layer's head mean); ``saliency`` = gradient × input norm
  of that word's probability at the region features; ``random`` = the control.
* Rollout: ``null``: the image encoder is convolutional, with no self-attention layers.
"""

from __future__ import annotations

from typing import Any

import torch

from recipes.captioning.data import BOS, PAD, collate
from toolkit.interpret.common import Settings, erasure_section, null
from toolkit.interpret.erasure import ErasureResults, erasure_drops, grad_x_input

SCORE = "probability of each generated word (teacher-forced), averaged over the caption's words"
MASKING = "region features set to zero and the region masked as a key of the decoder attention"


def _decode(model, memory, mask, tokens):
    """Teacher-forced ``logits (B, T, V)`` and attention ``(B, T, S)`` over ``memory``."""
    if hasattr(model, "generator"):  # CaptionTransformer
        y, maps = model.decoder(model._embed(tokens), memory, tokens != PAD, mask,
                                need_weights=True)  # fmt: skip
        return model.generator(y), model._cross_map(maps)
    logits, weights, _ = model.decoder(tokens, memory, mask)
    return logits, weights


def _word_prob(logits, rows, steps, targets):
    probs = torch.softmax(logits[rows, steps].float(), -1)
    return probs.gather(1, targets[:, None])[:, 0]


def interpret(module, datamodule, settings: Settings) -> dict[str, Any]:
    """Erasure test over the words of the greedy captions of the first test images."""
    module.eval()
    model = module.model
    data = datamodule.data["test"]
    total = min(settings.examples, len(data))
    results = ErasureResults(list(settings.ks))
    gen = settings.generator()
    empty = 0
    words = 0
    for start in range(0, total, settings.batch_size):
        chunk = [data[i] for i in range(start, min(start + settings.batch_size, total))]
        batch = {k: v.to(module.device) if torch.is_tensor(v) else v
                 for k, v in collate(chunk).items()}  # fmt: skip
        captions = [module.vocab.encode(w) for w, _ in module.generate(batch, beam_size=1)]
        # one row per (image, word): the caption's inputs, which step to read, which word
        image_of, step_of, word_of = [], [], []
        for b, ids in enumerate(captions):
            empty += not ids
            for t, w in enumerate(ids):
                image_of.append(b)
                step_of.append(t)
                word_of.append(w)
        if not image_of:
            settings.report(start + len(chunk), total)
            continue
        words += len(image_of)
        width = max(len(c) for c in captions) + 1
        inputs = torch.full((len(captions), width), PAD, dtype=torch.long)
        for b, ids in enumerate(captions):
            inputs[b, : len(ids) + 1] = torch.tensor([BOS, *ids])
        dev = module.device
        image_of_t = torch.tensor(image_of, device=dev)
        rows = torch.arange(len(image_of), device=dev)
        steps = torch.tensor(step_of, device=dev)
        targets = torch.tensor(word_of, device=dev)
        tokens = inputs.to(dev).index_select(0, image_of_t)
        with torch.no_grad():
            memory, mask, _ = model.encode(batch["images"], batch["boxes"], batch["box_mask"])
        memory_rows = memory.index_select(0, image_of_t)
        valid = mask.index_select(0, image_of_t).bool()
        with torch.enable_grad():
            leaf = memory_rows.detach().requires_grad_(True)
            logits, weights = _decode(model, leaf, valid, tokens)
            prob = _word_prob(logits, rows, steps, targets)
            saliency = grad_x_input(leaf, prob)
        attention = weights.detach().float()[rows, steps]  # (R, S): that word's attention
        rankings = {"attention": attention, "saliency": saliency}

        def score(_batch, keep, memory_rows=memory_rows, valid=valid, tokens=tokens,
                  rows=rows, steps=steps, targets=targets):  # fmt: skip
            some = keep.any(-1, keepdim=True)
            key_mask = torch.where(some, keep, valid)
            logits, _ = _decode(model, memory_rows * keep[..., None], key_mask, tokens)
            return _word_prob(logits, rows, steps, targets)

        base, drops = erasure_drops(score, None, valid, rankings, settings.ks, gen)
        results.add(base, drops, groups=image_of_t.cpu() + start)
        settings.report(start + len(chunk), total)
    about = {"score": SCORE, "inputs": "image regions", "masking": MASKING,
             "ranking": "the word's attention over the regions", "caption": "greedy",
             "words": words, "images_with_empty_caption": empty}  # fmt: skip
    return {
        "erasure": erasure_section(results, settings, **about),
        "rollout": null("the image encoder is convolutional: no self-attention layers"),
    }
