"""A small Python API for notebooks, any recipe::

    from toolkit.api import load

    model = load("runs/.../checkpoints/last.ckpt")   # or an exported safetensors folder
    preds = model.predict(["A wonderful film.", "Dull."])
    preds[0]["output"], preds[0]["attention"].shape   # 'positive', (1, tokens)

``predict`` takes what the recipe reads: text lines (sentiment, translation), image paths,
arrays or PIL images (captioning), audio paths, ``(samples, rate)`` pairs or samples at the
model's rate (asr). Each prediction is a dict with ``output`` (the label, translation,
caption or transcript), the recipe's fields, and ``attention``: a numpy array ``(rows,
columns)`` whose rows each sum to 1, labelled by ``rows`` (output steps: the pooled vector,
target tokens, words, output tokens) and ``columns`` (input tokens, image regions, encoder
frames). The recipe's ``predict_arrays`` hook (``toolkit/recipe_hooks.py``) computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.recipe_hooks import call_hook


@dataclass
class Model:
    """A loaded checkpoint: ``recipe`` (its name), ``module`` (the LightningModule),
    ``input_kind`` (``text``, ``image`` or ``audio``)."""

    module: Any
    path: Path

    @property
    def recipe(self) -> str:
        return str(self.module.cfg.recipe.name)

    @property
    def input_kind(self) -> str:
        return self.module.input_kind

    def predict(self, inputs: Any, **options: Any) -> list[dict[str, Any]] | dict[str, Any]:
        """Predictions for a list of inputs (one dict each, in order), or for one input
        (a string, path, array or ``(samples, rate)`` pair: one dict). ``options`` go to the
        recipe (e.g. ``beam_size=1``; asr: ``mode="joint"``, ``max_seconds=30``)."""
        single = not isinstance(inputs, list)
        items = [inputs] if single else list(inputs)
        with torch.no_grad():
            out = call_hook(self.module, "predict", "predict_arrays", items, **options)
        return out[0] if single else out

    def predict_records(self, inputs: list[Any], out_dir: str | Path | None = None,
                        plot: bool = False, **options: Any) -> list[dict[str, Any]]:  # fmt: skip
        """What ``python -m toolkit.predict`` writes per input (JSON-able records; npz and
        PNG files under ``out_dir``)."""
        out = Path(out_dir) if out_dir is not None else None
        return self.module.predict_records(list(inputs), out, plot, **options)

    def export(self, out_dir: str | Path, fmt: str = "torchscript", **kwargs: Any) -> dict:
        """``python -m toolkit.export`` into ``out_dir``; returns the export.json object."""
        from toolkit.commands.export import export

        return export(self.module, fmt, Path(out_dir), **kwargs)


def load(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """Load a checkpoint (``.ckpt``) or an exported safetensors folder, in eval mode."""
    from toolkit.training.checkpoints import load_module

    module = load_module(path).to(device)
    module.eval()
    return Model(module, Path(path))
