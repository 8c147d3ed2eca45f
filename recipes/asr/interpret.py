"""Measured interpretability for speech recognition (``python -m toolkit.interpret ckpt=…``).

* Score: the log-probability per output token of the attention decoder's own greedy
  transcript (tokens + EOS), teacher-forced over the encoder frames.
* Inputs: the encoder's output frames (after the x4 subsampling), the memory the decoder's
  cross-attention reads; clean test utterances only.
* Removal: the frame's encoder output is set to zero *and* masked as a key of the decoder's
  cross-attention (the memory mask). The encoder itself still heard the whole utterance:
  this measures what the decoder takes from the frames it attends to. When every frame of
  an utterance is removed, the mask stays and the zero vectors alone remove them.
* Rankings: ``attention`` = the last decoder layer's cross-attention (head mean) summed
  over the output steps; ``saliency`` = gradient × input norm at the encoder frames;
  ``random`` = the control.
* A model trained with ``ctc_weight=1`` has an untrained attention decoder, and CTC has no
  attention weights to rank frames by: the erasure entry is then ``null`` with that reason.
* Rollout pictures: ``interpret/rollout_XXX.png``, the encoder's self-attention (last
  layer beside the rollout over all Transformer/Conformer layers).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from recipes.asr.data import collate
from toolkit.decoding import greedy_search
from toolkit.interpret.common import (
    Settings,
    erasure_section,
    null,
    rollout_of,
    rollout_pictures,
    rollout_section,
)
from toolkit.interpret.erasure import ErasureResults, erasure_drops, grad_x_input

SCORE = "log-probability per output token of the greedy attention transcript (teacher-forced)"
MASKING = "encoder output frame set to zero and masked as a key of the decoder cross-attention"


def _teacher_forced(model, memory, mask, hyps: list[list[int]]):
    """Inputs (EOS as BOS + tokens), gold (tokens + EOS) and the real-step mask."""
    b, width = len(hyps), max(len(h) for h in hyps) + 1
    inputs = torch.full((b, width), model.eos, dtype=torch.long, device=memory.device)
    gold = torch.zeros(b, width, dtype=torch.long, device=memory.device)
    real = torch.zeros(b, width, dtype=torch.bool, device=memory.device)
    for i, h in enumerate(hyps):
        inputs[i, 1 : len(h) + 1] = torch.tensor(h, dtype=torch.long)
        gold[i, : len(h) + 1] = torch.tensor([*h, model.eos], dtype=torch.long)
        real[i, : len(h) + 1] = True
    return inputs, gold, real


def _logprob(model, memory, mask, inputs, gold, real, need_weights: bool = False):
    logits, maps = model.decode_train(memory, mask, inputs, real, need_weights=need_weights)
    logp = F.log_softmax(logits.float(), -1).gather(-1, gold[..., None])[..., 0] * real
    return logp.sum(1) / real.sum(1).clamp_min(1), maps


def interpret(module, datamodule, settings: Settings) -> dict[str, Any]:
    """Erasure test and encoder rollout pictures over the first clean test utterances."""
    module.eval()
    model = module.model
    ds = datamodule.dataset("test")
    total = min(settings.examples, len(ds))
    results = ErasureResults(list(settings.ks))
    gen = settings.generator()
    decoder_trained = float(module.ctc_weight) < 1.0
    layer_names: list[str] | None = None
    pictures: list[str] = []
    for start in range(0, total, settings.batch_size):
        items = [ds[i] for i in range(start, min(start + settings.batch_size, total))]
        batch = collate(items)
        wave, lengths = batch["wave"].to(module.device), batch["lengths"].to(module.device)
        with torch.no_grad():
            memory, mask, enc_maps, _ = model.encode(wave, lengths, need_weights=True)
        layers = [(f"encoder.layers.{i}.self_attn", w) for i, w in enumerate(enc_maps or [])
                  if w is not None]  # fmt: skip
        rolled = rollout_of(layers, mask) if layers else None
        if rolled is not None:
            layer_names = [name for name, _ in layers]
            labels = [[str(i) for i in range(mask.shape[1])] for _ in items]
            pictures += rollout_pictures(layers, rolled, mask, labels, settings, start)
        if not decoder_trained:
            settings.report(start + len(items), total)
            continue
        with torch.no_grad():
            state = model.init_state(memory, mask)
            hyps = greedy_search(
                model.step, state, len(items), model.eos, model.eos, mask.sum(1).cpu(),
                device=memory.device,
            )  # fmt: skip
        inputs, gold, real = _teacher_forced(model, memory, mask, [h.tokens for h in hyps])
        with torch.enable_grad():
            leaf = memory.detach().requires_grad_(True)
            logprob, maps = _logprob(model, leaf, mask, inputs, gold, real, need_weights=True)
            saliency = grad_x_input(leaf, logprob)
        cross = maps["cross"][-1].detach().float()
        cross = cross.mean(1) if cross.dim() == 4 else cross  # (B, L, S)
        attention = (cross * real[..., None]).sum(1)
        rankings = {"attention": attention, "saliency": saliency}

        def score(_batch, keep, memory=memory, mask=mask, inputs=inputs, gold=gold, real=real):
            key_mask = torch.where(keep.any(-1, keepdim=True), keep, mask)
            return _logprob(model, memory * keep[..., None], key_mask, inputs, gold, real)[0]

        base, drops = erasure_drops(score, None, mask, rankings, settings.ks, gen)
        results.add(base, drops)
        settings.report(start + len(items), total)
    about = {"score": SCORE, "inputs": "encoder output frames (x4 subsampled)",
             "masking": MASKING, "ranking": "decoder cross-attention summed over output steps",
             "hypothesis": "greedy attention decoding", "condition": "clean"}  # fmt: skip
    if decoder_trained:
        erasure = erasure_section(results, settings, **about)
    else:
        erasure = {**about, **null("ctc_weight=1: the attention decoder was not trained, and CTC "
                                   "has no attention weights to rank frames by")}  # fmt: skip
    return {
        "erasure": erasure,
        "rollout": rollout_section(layer_names, pictures, "the encoder captured no maps"),
    }
