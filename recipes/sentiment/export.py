"""Sentiment export hook for ``python -m toolkit.export``: the classifier graph
``(ids (B,T) int64, mask (B,T) bool) -> logits (B,C)``; labels and max length in export.json."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.commands.export import ExportGraph


class Classifier(nn.Module):
    """Sentiment inference graph: token ids + mask -> class logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        logits, _ = self.model(ids, mask, need_weights=False)
        return logits.float()


def export_graph(module) -> ExportGraph:
    vocab = len(module.data_state["vocab"]["tokens"])

    def example(n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, vocab, (n, length), generator=gen)
        mask = torch.ones(n, length, dtype=torch.bool)
        mask[1:, length - 2 :] = False
        return ids.masked_fill(~mask, 0), mask

    axes = {"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
            "logits": {0: "batch"}}  # fmt: skip
    return ExportGraph(
        Classifier(module.model).eval(), "classifier", ["ids", "mask"], ["logits"], axes,
        example, {"labels": list(module.label_map.labels),
                  "max_len": int(module.data_state.get("max_len", 64))},
    )  # fmt: skip
