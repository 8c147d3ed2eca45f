"""Captioning export hook for ``python -m toolkit.export``: the decoder step graph
``(images (B,3,H,W) float32 in [0, 1], prefix (B,L) int64, length (B,) int64) -> log_probs
(B,V), attention (B,S)`` (box-region models also take ``boxes (B,K,4)``, ``box_mask (B,K)``
after the images): the next word's log-probabilities after the first ``length`` tokens of
the prefix (BOS + words, padded with PAD to the fixed ``L = max_len + 1``: the LSTM decoder's
loop over the prefix is traced, so its length is fixed) and the attention over the regions
of that step. Greedy decoding is :func:`greedy_caption` around it (BOS, EOS, ``L``, the
image size are in export.json); beam search is not exported. Like the translation step
graph it re-encodes the image and re-runs the decoder over the prefix every step (no state
to carry between calls)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recipes.captioning.data import BOS, EOS, PAD
from recipes.captioning.predict import input_size
from toolkit.commands.export import ExportGraph


class CaptionStep(nn.Module):
    """Image (+ boxes) + padded word prefix + its length -> next-word log-probabilities
    and region attention."""

    def __init__(self, model: nn.Module, boxes: bool) -> None:
        super().__init__()
        self.model, self.boxes = model, boxes

    def forward(self, images: Tensor, *rest: Tensor) -> tuple[Tensor, Tensor]:
        boxes, box_mask, prefix, length = rest if self.boxes else (None, None, *rest)
        logits, weights = self.model(images, prefix, boxes, box_mask)  # (B, L, V), (B, L, S)
        rows = torch.arange(prefix.shape[0], device=prefix.device)
        last = (length - 1).clamp(min=0)
        return logits[rows, last].float().log_softmax(-1), weights[rows, last].float()


def greedy_caption(
    step, inputs: tuple[Tensor, ...], bos_id: int, eos_id: int, prefix_len: int
) -> tuple[list[int], list[Tensor], list[Tensor]]:
    """Greedy decoding of ONE image (batch 1) with the exported step graph: the word ids
    (EOS excluded), and the log-probabilities and attention of every step."""
    prefix = torch.full((1, prefix_len), PAD, dtype=torch.long)
    prefix[0, 0] = bos_id
    tokens: list[int] = []
    steps: list[Tensor] = []
    maps: list[Tensor] = []
    for n in range(1, prefix_len + 1):
        log_probs, attention = step(*inputs, prefix, torch.tensor([n]))
        steps.append(log_probs[0])
        maps.append(attention[0])
        token = int(log_probs[0].argmax())
        if token == eos_id or n == prefix_len:
            break
        tokens.append(token)
        prefix[0, n] = token
    return tokens, steps, maps


def max_decode_len(module, n: int = 0) -> int:
    """The eager decoder's length limit (words, EOS included)."""
    decode = module.cfg.get("decode") or {}
    return int(decode.get("max_len", module.data_state.get("max_len", 40)))


def export_graph(module) -> ExportGraph:
    size = input_size(module)
    vocab = len(module.vocab)
    boxes = module.model.regions.encoder.regions == "boxes"
    prefix_len = max_decode_len(module) + 1  # BOS + every word the greedy loop may feed

    def example(n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        images = torch.rand(n, 3, size, size, generator=gen)
        lengths = torch.randint(1, prefix_len + 1, (n,), generator=gen)
        lengths[0] = min(length, prefix_len)
        prefix = torch.randint(EOS + 1, vocab, (n, prefix_len), generator=gen)
        prefix[:, 0] = BOS
        prefix = prefix.masked_fill(torch.arange(prefix_len)[None] >= lengths[:, None], PAD)
        if not boxes:
            return images, prefix, lengths
        k = 3
        corner = torch.rand(n, k, 2, generator=gen) * size / 2
        box = torch.cat([corner, corner + size / 4], dim=-1)
        box_mask = torch.ones(n, k, dtype=torch.bool)
        box_mask[1:, k - 1 :] = False
        return images, box, box_mask, prefix, lengths

    names = ["images", "prefix", "length"]
    axes = {"images": {0: "batch"}, "prefix": {0: "batch"}, "length": {0: "batch"},
            "log_probs": {0: "batch"}, "attention": {0: "batch"}}  # fmt: skip
    if boxes:
        names = ["images", "boxes", "box_mask", "prefix", "length"]
        axes.update(boxes={0: "batch", 1: "boxes"}, box_mask={0: "batch", 1: "boxes"},
                    attention={0: "batch", 1: "regions"})  # fmt: skip
    return ExportGraph(
        CaptionStep(module.model, boxes).eval(), "caption_step", names,
        ["log_probs", "attention"], axes, example,
        {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD, "image_size": size,
         "prefix_len": prefix_len, "regions": "boxes" if boxes else "grid",
         "grid": list(module.grid() or ())},
    )  # fmt: skip
