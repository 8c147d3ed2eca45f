"""Speech pictures: a log-mel spectrogram with the decoder's attention aligned under it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.viz.text import plt, save_figure


def spectrogram_attention(
    feats: np.ndarray,
    attention: np.ndarray,
    tokens: Sequence[str],
    path: str | Path,
    title: str = "",
    subsampling: int = 4,
) -> Path:
    """Draw ``feats (T, n_mels)`` on top and ``attention (len(tokens), S)`` under it.

    Encoder frame ``s`` covers feature frames ``[s * subsampling, (s + 1) * subsampling)``,
    so the attention image is stretched to the spectrogram's time axis.
    """
    feats = np.asarray(feats, dtype=float)
    attention = np.asarray(attention, dtype=float)
    frames = feats.shape[0]
    height = 2.0 + 0.16 * len(tokens)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6, frames / 40), 2.2 + height), sharex=True,
        gridspec_kw={"height_ratios": [2.2, height]},
    )  # fmt: skip
    top.imshow(
        feats.T, origin="lower", aspect="auto", cmap="magma", extent=(0, frames, 0, feats.shape[1])
    )
    top.set_ylabel("mel bin")
    top.set_title(title, fontsize=9)
    span = attention.shape[1] * subsampling
    bottom.imshow(attention, aspect="auto", cmap="viridis", vmin=0,
                  extent=(0, span, len(tokens) - 0.5, -0.5), interpolation="nearest")  # fmt: skip
    bottom.set_yticks(range(len(tokens)), [t if t != " " else "␣" for t in tokens], fontsize=6)
    bottom.set_xlabel("feature frame (10 ms)")
    bottom.set_ylabel("output token")
    bottom.set_xlim(0, frames)
    return save_figure(fig, path)


def self_attention_map(weights: np.ndarray, path: str | Path, title: str = "") -> Path:
    """An encoder self-attention map ``(S, S)`` (head-averaged) over encoder frames."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(np.asarray(weights, dtype=float), cmap="viridis", vmin=0, origin="upper")
    ax.set_xlabel("key frame")
    ax.set_ylabel("query frame")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
