"""Sentiment inference for ``python -m toolkit.predict``: label + class probabilities per
line, the pooling attention over its tokens (npz, and a PNG heatmap with ``plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from recipes.sentiment.data import SentimentDataModule
from toolkit.data.text import Vocab
from toolkit.viz.text import token_heatmap


def text_encoder(module) -> SentimentDataModule:
    """A data module that only encodes: the checkpoint's vocabulary, tokenizer, max length."""
    state = module.data_state
    dm = SentimentDataModule(
        tokenizer=state.get("tokenizer", "word"), max_len=int(state.get("max_len", 64)),
        state=state,
    )  # fmt: skip
    dm.vocab = Vocab.from_dict(state["vocab"])
    return dm


@torch.no_grad()
def predict_records(
    module, inputs: list[str], out_dir: Path | None = None, plot: bool = False,
    batch_size: int = 128,
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per text: ``prediction``, ``scores`` (probability per label), ``tokens``
    and their pooling ``attention`` weights; ``attention_file``/``picture`` when written."""
    module.eval()
    dm = text_encoder(module)
    labels = list(module.label_map.labels)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        batch = dm.collate([(dm.encode(text), 0) for text in chunk])
        batch = {k: v.to(module.device) for k, v in batch.items()}
        logits, weights = module(batch["ids"], batch["mask"], need_weights=True)
        probs = logits.float().softmax(-1).cpu()
        if weights is not None:
            weights = weights if weights.dim() == 2 else weights.float().mean(1)
            weights = weights.reshape(weights.shape[0], -1).float().cpu()
        for i, text in enumerate(chunk):
            index = start + i
            n = int(batch["mask"][i].sum())
            tokens = dm.tokens(text)[:n]
            best = int(probs[i].argmax())
            record: dict[str, Any] = {
                "prediction": labels[best],
                "scores": {label: round(float(probs[i, j]), 6) for j, label in enumerate(labels)},
                "tokens": tokens,
            }
            if not text.strip():
                record["warning"] = "empty input: predicted from the unknown token alone"
            if weights is not None:
                w = weights[i, :n].numpy()
                record["attention"] = [round(float(x), 6) for x in w]
                if out_dir is not None:
                    name = f"{index:06d}.npz"
                    np.savez_compressed(
                        Path(out_dir) / name, text=text, tokens=np.array(tokens), pooling=w,
                        prediction=labels[best], probabilities=probs[i].numpy(),
                    )  # fmt: skip
                    record["attention_file"] = name
                    if plot:
                        picture = f"{index:06d}.png"
                        title = f"#{index} {labels[best]} ({float(probs[i, best]):.2f})"
                        token_heatmap([(tokens, w, title)], Path(out_dir) / picture)
                        record["picture"] = picture
            records.append(record)
    return records


def predict_arrays(module, inputs: list[str], batch_size: int = 128) -> list[dict[str, Any]]:
    """``toolkit.api``: per text the label (``output``), ``scores`` and the pooling
    attention as a ``(1, tokens)`` array (one row: the pooled vector) with its labels."""
    out = []
    for r in predict_records(module, list(inputs), None, False, batch_size):
        weights = r.get("attention")
        out.append({
            "output": r["prediction"], **{k: v for k, v in r.items() if k != "attention"},
            "attention": None if weights is None else np.asarray([weights], dtype=np.float32),
            "rows": ["pooling"], "columns": list(r["tokens"]),
        })  # fmt: skip
    return out
