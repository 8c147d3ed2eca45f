"""Alignment diagnostics for speech: does the decoder's cross-attention follow the frames a
CTC forced alignment assigns to each token?

The CTC head and the attention decoder read the same encoder frames, so both give a
token -> frames alignment on one axis: CTC through ``torchaudio.functional.forced_align``
(Viterbi path of the target through the CTC posteriors), attention through the peak frame of
each decoder step's cross-attention. Agreement is measured in encoder frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class AlignmentAgreement:
    """Per-token attention peaks vs CTC spans, and their summary in frames."""

    attention_frames: list[int]  # peak frame of each token's cross-attention
    ctc_spans: list[tuple[int, int]]  # [start, end) frames of each token in the CTC path
    mean_abs_frame_error: float  # mean |peak - span centre| (frames)
    mean_frames_outside: float  # mean distance of the peak to its span (0 when inside)
    in_span: float  # share of tokens whose attention peak lies in its CTC span

    def as_metrics(self, prefix: str = "attention_ctc_") -> dict[str, float]:
        """Flat ``metrics.json`` entries (``attention_`` names for the report)."""
        return {
            f"{prefix}frame_error": self.mean_abs_frame_error,
            f"{prefix}frames_outside": self.mean_frames_outside,
            f"{prefix}in_span": self.in_span,
        }


def ctc_token_spans(
    log_probs: Tensor, targets: Sequence[int] | Tensor, blank: int = 0
) -> list[tuple[int, int]]:
    """Frame span ``[start, end)`` of each target token in the CTC forced alignment.

    Args:
        log_probs: ``(T, C)`` CTC log-posteriors of one utterance (log-softmax over C).
        targets: ``(L,)`` token ids (no blanks), ``L`` small enough to fit ``T`` frames.
        blank: the blank id.

    Returns:
        ``L`` spans, in target order.
    """
    import torchaudio.functional as F

    tgt = torch.as_tensor(targets, dtype=torch.int32).reshape(1, -1)  # (1, L)
    lp = log_probs.detach().float().cpu().unsqueeze(0)  # (1, T, C)
    path, scores = F.forced_align(lp, tgt, blank=blank)  # (1, T) each
    spans = F.merge_tokens(path[0], scores[0].exp(), blank=blank)
    if len(spans) != tgt.shape[1]:
        raise ValueError(f"forced alignment gave {len(spans)} spans for {tgt.shape[1]} tokens")
    return [(int(s.start), int(s.end)) for s in spans]


def attention_ctc_agreement(
    cross_attention: Tensor,
    ctc_log_probs: Tensor,
    targets: Sequence[int] | Tensor,
    blank: int = 0,
) -> AlignmentAgreement:
    """Compare a cross-attention path with the CTC forced alignment of the same targets.

    Args:
        cross_attention: ``(L' >= L, T)`` decoder cross-attention over the encoder frames,
            one row per target token (extra rows, e.g. for EOS, are ignored); for several
            heads or layers pass their mean.
        ctc_log_probs: ``(T, C)`` CTC log-posteriors over the same ``T`` frames.
        targets: ``(L,)`` target token ids (CTC vocabulary, no blank).
        blank: CTC blank id.

    Returns:
        :class:`AlignmentAgreement`; ``.as_metrics()`` gives ``attention_ctc_frame_error``,
        ``attention_ctc_frames_outside`` and ``attention_ctc_in_span``.
    """
    tgt = torch.as_tensor(targets).reshape(-1)
    n = tgt.numel()
    if cross_attention.shape[0] < n:
        raise ValueError(f"cross_attention has {cross_attention.shape[0]} rows for {n} tokens")
    if cross_attention.shape[-1] != ctc_log_probs.shape[0]:
        raise ValueError(
            f"frame axes differ: attention {cross_attention.shape[-1]}, "
            f"CTC {ctc_log_probs.shape[0]}"
        )
    spans = ctc_token_spans(ctc_log_probs, tgt, blank)
    peaks = cross_attention[:n].float().argmax(-1).tolist()  # (L,)
    errors, outside, inside = [], [], []
    for p, (s, e) in zip(peaks, spans, strict=True):
        centre = (s + e - 1) / 2
        errors.append(abs(p - centre))
        outside.append(max(0, s - p, p - (e - 1)))
        inside.append(float(s <= p < e))
    return AlignmentAgreement(
        attention_frames=[int(p) for p in peaks],
        ctc_spans=spans,
        mean_abs_frame_error=_mean(errors),
        mean_frames_outside=_mean(outside),
        in_span=_mean(inside),
    )


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
