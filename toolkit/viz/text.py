"""Token heatmaps (attention over the words of a sentence) and attention matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG atomically (temp file, then rename) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


def token_heatmap(
    rows: Sequence[tuple[Sequence[str], Sequence[float], str]],
    path: str | Path,
    per_line: int = 12,
    cmap: str = "Reds",
) -> Path:
    """Draw each sentence's tokens shaded by their attention weight.

    Args:
        rows: ``(tokens, weights, title)`` per sentence; weights are scaled per sentence.
        path: PNG to write.
        per_line: tokens per text line before wrapping.
    """
    lines = sum(max(1, -(-len(t) // per_line)) + 1 for t, _, _ in rows)
    fig, ax = plt.subplots(figsize=(12, 0.42 * lines + 0.4))
    ax.set_axis_off()
    colours = plt.get_cmap(cmap)
    y = 0
    for tokens, weights, title in rows:
        ax.text(0, -y, title, fontsize=9, fontweight="bold", va="top", transform=ax.transData)
        y += 1
        w = np.asarray(weights, dtype=float)[: len(tokens)]
        top = w.max() if w.size and w.max() > 0 else 1.0
        for i, (tok, wi) in enumerate(zip(tokens, w, strict=False)):
            col, line = i % per_line, i // per_line
            ax.text(
                col / per_line,
                -(y + line),
                tok if len(tok) <= 13 else tok[:12] + "…",
                fontsize=9,
                va="top",
                transform=ax.transData,
                bbox={"facecolor": colours(0.85 * wi / top), "edgecolor": "none", "pad": 1.5},
            )
        y += max(1, -(-len(tokens) // per_line))
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-y - 0.5, 0.5)
    return save_figure(fig, path)


def attention_matrix(
    weights: np.ndarray,
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Draw a ``(len(y_labels), len(x_labels))`` attention matrix with its labels."""
    weights = np.asarray(weights, dtype=float)
    h, w = weights.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * w + 2), max(3, 0.35 * h + 1.5)))
    ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(w), list(x_labels)[:w], rotation=90, fontsize=7)
    ax.set_yticks(range(h), list(y_labels)[:h], fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
