"""Sentiment LightningModule: cross-entropy training, accuracy / macro-F1, attention export."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from toolkit.attention import capture_attention
from toolkit.data.labelled import LabelMap
from toolkit.metrics.attention import attention_entropy, marked_mass
from toolkit.training.module import RecipeModule
from toolkit.viz.text import attention_matrix, token_heatmap

log = logging.getLogger(__name__)
# Pictures of longer inputs (the long-input setting's documents) show their first tokens
# only; the npz files keep every weight. A 1,000-token matrix would be a 40,000-pixel image.
PICTURE_TOKENS = 96


class SentimentModule(RecipeModule):
    """Sentence classification with an attention-pooling model from ``cfg.model``."""

    def __init__(self, cfg: dict[str, Any], data_state: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, data_state)
        if not data_state:
            raise ValueError("SentimentModule needs the data state (vocab and labels)")
        self.label_map = LabelMap.from_dict(data_state["labels"])
        n = len(self.label_map)
        attention = self.cfg.attention
        # Data-derived arguments go to the partial, not through OmegaConf: a vocabulary
        # token such as "???" would be read as a missing value there.
        build_model = instantiate(self.cfg.model, _partial_=True)
        self.model = build_model(
            vocab_size=len(data_state["vocab"]["tokens"]),
            vocab_tokens=list(data_state["vocab"]["tokens"]),
            num_classes=n,
            attention=attention.name,
            attention_options=OmegaConf.to_container(attention.options)
            if attention.get("options")
            else {},
        )
        self.label_smoothing = float(self.cfg.get("label_smoothing", 0.0) or 0.0)
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.val_f1 = MulticlassF1Score(n, average="macro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.test_f1 = MulticlassF1Score(n, average="macro")
        self.test_cm = MulticlassConfusionMatrix(n)
        self._test_entropy: list[torch.Tensor] = []
        self._results: dict[str, Any] = {}

    def forward(self, ids, mask, need_weights: bool = False):
        return self.model(ids, mask, need_weights=need_weights)

    def training_step(self, batch, batch_idx):
        logits, _ = self(batch["ids"], batch["mask"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        self.train_acc(logits.argmax(-1), batch["labels"])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/accuracy", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.count_train(batch["labels"].numel())
        return loss

    def validation_step(self, batch, batch_idx):
        logits, _ = self(batch["ids"], batch["mask"])
        loss = F.cross_entropy(logits, batch["labels"])
        preds = logits.argmax(-1)
        self.val_acc(preds, batch["labels"])
        self.val_f1(preds, batch["labels"])
        self.log("val/loss", loss, prog_bar=False)
        self.log("val/accuracy", self.val_acc, prog_bar=True)
        self.log("val/f1_macro", self.val_f1)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._test_entropy = []
        self._test_loss = []
        self._test_rows: list[tuple[int, int, float]] = []  # label, prediction, probability

    def test_step(self, batch, batch_idx):
        logits, weights = self(batch["ids"], batch["mask"], need_weights=True)
        preds = logits.argmax(-1)
        prob = torch.softmax(logits.float(), dim=-1).gather(1, preds[:, None])[:, 0]
        self._test_rows += zip(batch["labels"].tolist(), preds.tolist(), prob.tolist(),
                               strict=True)  # fmt: skip
        self.test_acc.update(preds, batch["labels"])
        self.test_f1.update(preds, batch["labels"])
        self.test_cm.update(preds, batch["labels"])
        self._test_loss.append(F.cross_entropy(logits, batch["labels"], reduction="sum").detach())
        if weights is not None:
            w = weights if weights.dim() == 2 else weights.mean(dim=1)  # heads -> mean map
            w = w.reshape(w.shape[0], -1)
            self._test_entropy.append(attention_entropy(w, batch["mask"])[1].detach())

    def on_test_epoch_end(self) -> None:
        n = int(self.test_cm.compute().sum())
        metrics = {
            "accuracy": float(self.test_acc.compute()),
            "f1_macro": float(self.test_f1.compute()),
            "loss": float(torch.stack(self._test_loss).sum() / max(n, 1)),
        }
        if self._test_entropy:
            metrics["attention_entropy"] = float(torch.cat(self._test_entropy).mean())
        self._results = {
            "metrics": metrics,
            "confusion_matrix": {
                "labels": list(self.label_map.labels),
                "matrix": self.test_cm.compute().tolist(),  # rows = true, cols = predicted
            },
            "test_examples": n,
            "samples": self._samples(5),
        }
        self._per_example = self._per_example_records()
        for key, value in metrics.items():
            self.log(f"test/{key}", value)
        self.test_acc.reset()
        self.test_f1.reset()
        self.test_cm.reset()

    def _per_example_records(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Per test sentence (test order): label, prediction, its probability, the text."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        texts = [t for t, _ in dm.examples("test", len(self._test_rows))] if dm else []
        records = [
            {"id": i, "label": self.label_map.decode(y), "predicted": self.label_map.decode(p),
             "probability": round(prob, 6), **({"text": texts[i]} if i < len(texts) else {})}
            for i, (y, p, prob) in enumerate(self._test_rows)
        ]  # fmt: skip
        header = {"recipe": "sentiment", "kind": "classification",
                  "labels": list(self.label_map.labels)}  # fmt: skip
        return header, records

    def _samples(self, n: int) -> list[dict[str, str]]:
        """The first ``n`` test sentences with their label and the model's prediction."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or n <= 0:
            return []
        pairs = dm.examples("test", n)
        preds = self._pooling_weights(dm, pairs)
        return [{"text": text, "label": label, "predicted": self.label_map.decode(pred)}
                for (text, label), (_, _, pred, _) in zip(pairs, preds, strict=True)]  # fmt: skip

    def test_metrics(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._results.items()}

    # ----- attention maps and diagnostics --------------------------------------------------
    @torch.no_grad()
    def _pooling_weights(
        self, datamodule, pairs, with_maps: bool = False
    ) -> list[tuple[list[str], np.ndarray, int, dict[str, np.ndarray]]]:
        """Pooling weights (and, with ``with_maps``, every captured map) per example."""
        self.eval()
        out = []
        for start in range(0, len(pairs), 128):
            chunk = pairs[start : start + 128]
            items = [(datamodule.encode(t), self.label_map.encode(y)) for t, y in chunk]
            batch = {k: v.to(self.device) for k, v in datamodule.collate(items).items()}
            # Capturing forces every block onto its eager path: only when maps are wanted.
            capture = capture_attention(self.model) if with_maps else contextlib.nullcontext()
            with capture as cap:
                logits, w = self(batch["ids"], batch["mask"], need_weights=True)
            captured = cap.maps.items() if with_maps else ()
            w = (w if w.dim() == 2 else w.mean(dim=1).reshape(w.shape[0], -1)).float().cpu()
            logits, mask = logits.cpu(), batch["mask"].cpu()
            for i, (text, _) in enumerate(chunk):
                n = int(mask[i].sum())
                maps = {
                    name: ws[0][i].float().cpu().numpy()
                    for name, ws in captured
                    if not name.startswith("pool") and ws[0].dim() >= 3
                }
                out.append(
                    (datamodule.tokens(text), w[i, :n].numpy(), int(logits[i].argmax()), maps)
                )
        return out

    def export_attention(self, datamodule, out_dir: Path, n: int) -> dict[str, float]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pairs = datamodule.examples("test", n)
        rows = []
        for i, ((text, label), (tokens, w, pred, maps)) in enumerate(
            zip(pairs, self._pooling_weights(datamodule, pairs, with_maps=True), strict=True)
        ):
            arrays = {f"self_attention/{k}": v[..., : len(w), : len(w)] for k, v in maps.items()}
            np.savez_compressed(
                out_dir / f"example_{i:03d}.npz",
                tokens=np.array(tokens[: len(w)]),
                pooling=w,
                label=label,
                predicted=self.label_map.decode(pred),
                text=text,
                **arrays,
            )
            title = f"#{i} true={label} pred={self.label_map.decode(pred)}"
            k, cut = len(w), ""
            if k > PICTURE_TOKENS:
                k, cut = PICTURE_TOKENS, f" (first {PICTURE_TOKENS} of {len(w)} tokens)"
            rows.append((tokens[:k], w[:k], title + cut))
            if maps and i < 2:  # first layer's head-averaged self-attention, as a matrix
                name, mat = sorted(maps.items())[0]
                mat = mat.mean(0) if mat.ndim == 3 else mat
                attention_matrix(
                    mat[:k, :k], tokens, tokens, out_dir / f"self_{i:03d}.png", name + cut
                )
        if rows:
            token_heatmap(rows, out_dir / "pooling.png")
        return self.lexicon_diagnostics(datamodule)

    def lexicon_diagnostics(self, datamodule) -> dict[str, float]:
        """Share of pooling attention on VADER-lexicon words vs their share of tokens."""
        try:
            from toolkit.data.vader import load_vader_lexicon

            lexicon = load_vader_lexicon()
        except Exception as err:  # offline without a cached lexicon: skip, say why
            log.warning("attention lexicon diagnostics skipped: %s", err)
            return {}
        pairs = datamodule.examples("test", len(datamodule.splits.get("test", [])))
        weights, marks = [], []
        for tokens, w, _, _ in self._pooling_weights(datamodule, pairs):
            toks = [t.lower().removeprefix("##") for t in tokens[: len(w)]]
            weights.append(w.tolist())
            marks.append([t in lexicon for t in toks])
        stats = marked_mass(weights, marks)
        return {
            "attention_lexicon_mass": stats["mass"],
            "attention_lexicon_token_share": stats["token_share"],
            "attention_lexicon_lift": stats["lift"],
        }
