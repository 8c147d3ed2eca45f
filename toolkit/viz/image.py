"""Image attention overlays: the Show-Attend-Tell figure (one panel per generated word)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .text import plt, save_figure


def upsample_attention(
    weights: np.ndarray, grid: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """Grid weights ``(h·w,)`` -> a smooth ``size = (H, W)`` map scaled to [0, 1]."""
    h, w = grid
    cells = np.asarray(weights[: h * w], np.float32).reshape(h, w)
    top = cells.max()
    cells = cells / top if top > 0 else cells
    img = Image.fromarray((cells * 255).astype(np.uint8)).resize(size[::-1], Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def box_attention(weights: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-region weights ``(K,)`` painted into their boxes: a ``(H, W)`` map in [0, 1]."""
    out = np.zeros(size, np.float32)
    for wgt, (x0, y0, x1, y1) in zip(weights, boxes, strict=False):
        region = out[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))]
        np.maximum(region, wgt, out=region)
    top = out.max()
    return out / top if top > 0 else out


def caption_attention_figure(
    image: np.ndarray,
    words: Sequence[str],
    attention: np.ndarray,
    grid: tuple[int, int] | None,
    path: str | Path,
    boxes: np.ndarray | None = None,
    title: str = "",
    per_row: int = 6,
    cmap: str = "jet",
) -> Path:
    """The image, then one panel per word with that step's attention over the image.

    Args:
        image: ``(H, W, 3)`` uint8.
        words: generated words (``<eos>`` included if wanted).
        attention: ``(len(words), S)`` weights of the step that produced each word.
        grid: ``(h, w)`` of grid regions, or ``None`` with ``boxes`` for box regions.
        path: PNG to write (atomically).
    """
    size = image.shape[:2]
    panels = len(words) + 1
    rows = -(-panels // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(2.0 * per_row, 2.15 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image", fontsize=9)
    for k, word in enumerate(words):
        ax = axes.flat[k + 1]
        ax.imshow(image)
        if k < len(attention):
            if grid is not None:
                heat = upsample_attention(attention[k], grid, size)
            else:
                heat = box_attention(attention[k], boxes, size)
            ax.imshow(heat, cmap=cmap, alpha=0.5, vmin=0, vmax=1)
        ax.set_title(word, fontsize=10)
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize=9)
    return save_figure(fig, path)
