"""Translation export hook for ``python -m toolkit.export``: the decoder step graph
``(src (B,S) int64, src_mask (B,S) bool, prefix (B,P) int64) -> log_probs (B,V)`` of the
next token; greedy decoding is ``toolkit.commands.export.greedy_decode`` around it (BOS, EOS, the
length limit are in export.json). Beam search is not exported."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.commands.export import ExportGraph


class DecoderStep(nn.Module):
    """Translation step graph: source + target prefix -> next-token log-probabilities.

    Re-encodes the source and re-runs the decoder over the whole prefix every step (no
    cache tensors to carry between calls): simple to export for any seq2seq model of the
    recipe, quadratic in the output length.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_mask: Tensor, prefix: Tensor) -> Tensor:
        logits, _ = self.model(src, src_mask, prefix)
        return logits[:, -1].float().log_softmax(-1)  # (B, V)


def max_decode_len(module, n_src: int) -> int:
    """The eager decoder's length limit for a source of ``n_src`` subwords (EOS included):
    ``ratio * n_src + offset``, at most the module's ``max_source_len()``."""
    d = module.decode_cfg()
    limit = int(n_src * float(d["max_len_ratio"])) + int(d["max_len_offset"])
    return min(limit, module.max_source_len())


def export_graph(module) -> ExportGraph:
    tok = module.tokenizer

    def example(n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        src = torch.randint(4, len(tok), (n, length), generator=gen)
        mask = torch.ones(n, length, dtype=torch.bool)
        mask[1:, length - 2 :] = False
        src = src.masked_fill(~mask, tok.pad_id)
        prefix = torch.randint(4, len(tok), (n, 3), generator=gen)
        prefix[:, 0] = tok.bos_id
        return src, mask, prefix

    axes = {"src": {0: "batch", 1: "src_len"}, "src_mask": {0: "batch", 1: "src_len"},
            "prefix": {0: "batch", 1: "prefix_len"}, "log_probs": {0: "batch"}}  # fmt: skip
    return ExportGraph(
        DecoderStep(module.model).eval(), "decoder_step", ["src", "src_mask", "prefix"],
        ["log_probs"], axes, example,
        {"bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id,
         "decode": module.decode_cfg()},
    )  # fmt: skip
