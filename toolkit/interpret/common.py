"""What the recipe adapters share: settings, an embedding tap for gradient × input saliency,
the per-layer self-attention maps a capture holds, and the rollout picture."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .erasure import ErasureResults
from .rollout import attention_rollout, fuse_heads

Tensor = torch.Tensor


@dataclass
class Settings:
    """How an adapter runs: the first ``examples`` test items, ``ks`` inputs removed,
    ``seed`` for the random control and the bootstrap, ``resamples`` bootstrap draws,
    ``batch_size`` items per forward pass, ``figures`` rollout pictures written into
    ``figure_dir``; ``progress(done, total)`` is called after every batch."""

    examples: int = 200
    ks: list[int] = field(default_factory=lambda: [1, 2, 4])
    seed: int = 0
    resamples: int = 1000
    batch_size: int = 16
    figures: int = 4
    figure_dir: Path | None = None
    progress: Callable[[int, int], None] | None = None

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed))

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


def null(reason: str) -> dict[str, Any]:
    """A measurement that could not be made: ``None`` values and why (never a made-up one)."""
    return {"value": None, "reason": reason}


def erasure_section(results: ErasureResults, settings: Settings, **about: Any) -> dict[str, Any]:
    """The ``erasure`` entry of interpret.json: what was scored and masked, then the summary."""
    if results.rows == 0:
        return {**about, **null("no test example had an input to remove")}
    return {**about, **results.summary(settings.resamples, settings.seed)}


@contextlib.contextmanager
def embedding_tap(embedding: nn.Module) -> Iterator[list[Tensor]]:
    """Record the outputs of ``embedding`` (in call order) while the block runs, so the
    gradient × input saliency can be taken with respect to them."""
    outputs: list[Tensor] = []

    def hook(_module, _inputs, output):
        outputs.append(output)

    handle = embedding.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _layer_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def self_attention_layers(
    maps: Mapping[str, list[Tensor]], length: int, prefix: str = "encoder."
) -> list[tuple[str, Tensor]]:
    """The captured square ``(B, [H,] T, T)`` maps over ``length`` positions of the modules
    under ``prefix`` (capture the whole model, so names are module paths), one per layer (the
    first call of each module), in layer order; non-square maps are left out."""
    out = []
    for name, calls in maps.items():
        if not calls or not name.startswith(prefix):
            continue
        w = calls[0]
        if w is None or w.dim() not in (3, 4) or w.shape[-1] != length or w.shape[-2] != length:
            continue
        out.append((name, w))
    return sorted(out, key=lambda item: _layer_key(item[0]))


def rollout_of(layers: list[tuple[str, Tensor]], mask: Tensor) -> Tensor | None:
    """Rollout ``(B, T, T)`` of the layers (None without any)."""
    if not layers:
        return None
    return attention_rollout([w.float() for _, w in layers], mask)


def rollout_figure(
    raw: np.ndarray,
    rolled: np.ndarray,
    labels: list[str],
    path: Path,
    title: str,
    raw_title: str = "last layer (head mean)",
) -> Path:
    """Two panels side by side: the raw last-layer self-attention map and the rollout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = raw.shape[-1]
    side = min(6.0, 1.5 + 0.28 * n)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.0, side + 0.6))
    for ax, mat, name in ((axes[0], raw, raw_title), (axes[1], rolled, "rollout (all layers)")):
        im = ax.imshow(mat, cmap="viridis", vmin=0.0, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("input position (key)", fontsize=8)
        ax.set_ylabel("position (query)", fontsize=8)
        if labels and n <= 40:
            short = [t if len(t) <= 10 else t[:9] + "…" for t in labels[:n]]
            ax.set_xticks(range(n), short, rotation=90, fontsize=7)
            ax.set_yticks(range(n), short, fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def rollout_pictures(
    layers: list[tuple[str, Tensor]],
    rolled: Tensor,
    mask: Tensor,
    labels: list[list[str]],
    settings: Settings,
    start: int,
    prefix: str = "rollout",
) -> list[str]:
    """PNG per example (while fewer than ``settings.figures`` were drawn): the raw last-layer
    map beside the rollout, real positions only. Returns the file names written."""
    if settings.figure_dir is None:
        return []
    names = []
    last = fuse_heads(layers[-1][1].float())
    for b in range(rolled.shape[0]):
        index = start + b
        if index >= settings.figures:
            break
        n = int(mask[b].sum())
        name = f"{prefix}_{index:03d}.png"
        rollout_figure(
            last[b, :n, :n].cpu().numpy(), rolled[b, :n, :n].cpu().numpy(), labels[b][:n],
            settings.figure_dir / name, f"#{index}: {len(layers)} layers, {layers[-1][0]}",
        )  # fmt: skip
        names.append(name)
    return names


def rollout_section(
    layer_names: list[str] | None, pictures: list[str], reason: str | None = None
) -> dict[str, Any]:
    """The ``rollout`` entry of interpret.json."""
    if not layer_names:
        return null(reason or "the model captured no per-layer self-attention maps")
    return {"layers": layer_names, "head_fusion": "mean", "residual": True,
            "pictures": pictures}  # fmt: skip
