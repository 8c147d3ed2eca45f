"""Captioning LightningModule: teacher-forced training, greedy/beam decoding, BLEU-1..4,
CIDEr-D, grounding (pointing game) vs chance, CHAIR, and the attention-overlay figures."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipes.captioning.scenes import OBJECT_WORDS
from toolkit.attention import coverage_loss
from toolkit.decoding import beam_search, greedy_search
from toolkit.metrics.attention import attention_entropy
from toolkit.metrics.caption import chair, cider_d, corpus_bleu, exact_match
from toolkit.metrics.grounding import PointingResult, pointing_game
from toolkit.training.module import RecipeModule

from .data import BOS, EOS, PAD, CaptionVocab

log = logging.getLogger(__name__)


class CaptioningModule(RecipeModule):
    """Image captioning with a region-attention decoder from ``cfg.model``."""

    def __init__(self, cfg: dict[str, Any], data_state: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, data_state)
        if not data_state:
            raise ValueError("CaptioningModule needs the data state (vocabulary)")
        self.vocab = CaptionVocab(list(data_state["vocab"]))
        attention = self.cfg.attention
        model_cfg = OmegaConf.to_container(self.cfg.model, resolve=True)
        self.model = instantiate(model_cfg, _partial_=True)(
            vocab_size=len(self.vocab),
            attention=attention.name,
            attention_options=OmegaConf.to_container(attention.options)
            if attention.get("options")
            else {},
        )
        self.attention_penalty = float(self.cfg.get("attention_penalty", 0.0) or 0.0)
        self.label_smoothing = float(self.cfg.get("label_smoothing", 0.0) or 0.0)
        # See et al. (2017): + weight * coverage_loss of the decoder's attention (0 = off)
        self.coverage_loss_weight = float(self.cfg.get("coverage_loss_weight", 0.0) or 0.0)
        self._val: dict[str, list] = {}
        self._test: dict[str, list] = {}
        self._results: dict[str, Any] = {}

    # ----- training ---------------------------------------------------------------------
    def _inputs(self, batch) -> tuple:
        return batch["images"], batch["boxes"], batch["box_mask"]

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy, doubly stochastic penalty and coverage loss (0 when off)."""
        images, boxes, box_mask = self._inputs(batch)
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits, weights = self.model(images, inputs, boxes, box_mask)  # (B,T,V), (B,T,S)
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
            ignore_index=PAD, label_smoothing=self.label_smoothing,
        )  # fmt: skip
        penalty = torch.zeros((), device=ce.device)
        if self.attention_penalty and weights is not None:
            # doubly stochastic attention (Xu et al. 2015, eq. 14): over the caption each
            # region should receive about one unit of attention in total. The paper adds it
            # to the caption's summed log-likelihood; our cross-entropy is a mean per token,
            # so the penalty is divided by the caption length to keep the paper's balance.
            real = (targets != PAD).to(weights.dtype)  # (B, T)
            total = (weights * real[..., None]).sum(dim=1)  # (B, S)
            penalty = (((1.0 - total) ** 2).sum(dim=1) / real.sum(dim=1).clamp_min(1)).mean()
        coverage = torch.zeros((), device=ce.device)
        if self.coverage_loss_weight and weights is not None:
            # See et al. (2017): sum_j min(a_tj, c_tj) per caption token, like the loss
            coverage = coverage_loss(weights.float(), targets != PAD)
        return ce, penalty, coverage

    def training_step(self, batch, batch_idx):
        ce, penalty, coverage = self._loss(batch)
        loss = ce + self.attention_penalty * penalty + self.coverage_loss_weight * coverage
        self.log("train/loss", ce, prog_bar=True)
        if self.attention_penalty:
            self.log("train/attention_penalty", penalty)
        if self.coverage_loss_weight:
            self.log("train/coverage_loss", coverage)
        self.count_train(batch["images"].shape[0])
        return loss

    # ----- decoding ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch, beam_size: int | None = None) -> list[tuple[list[str], Any]]:
        """Decode a batch: per image the words and their attention ``(len+1, S)``."""
        decode = self.cfg.get("decode") or {}
        beam = int(beam_size or decode.get("beam_size", 1) or 1)
        max_len = int(decode.get("max_len", self.data_state.get("max_len", 40)))
        coverage_penalty = float(decode.get("coverage_penalty", 0.0) or 0.0)  # GNMT beta
        images, boxes, box_mask = self._inputs(batch)
        memory, mask, _ = self.model.encode(images, boxes, box_mask)
        state = self.model.start(memory, mask)
        b = images.shape[0]
        if beam <= 1:
            hyps = greedy_search(
                self.model.step, state, b, BOS, EOS, max_len, return_attention=True,
                device=images.device,
            )  # fmt: skip
        else:
            hyps = [
                nbest[0]
                for nbest in beam_search(
                    self.model.step, self.model.reorder, state, b, BOS, EOS, beam_size=beam,
                    max_len=max_len, length_penalty=float(decode.get("length_penalty", 0.0)),
                    return_attention=True, device=images.device,
                    coverage_penalty=coverage_penalty, coverage_mask=mask,
                )
            ]  # fmt: skip
        return [(self.vocab.decode(h.tokens), h.attention) for h in hyps]

    def grid(self) -> tuple[int, int] | None:
        enc = self.model.regions.encoder
        if enc.regions == "boxes":
            return None
        size = enc.image_size or int(self.data_state.get("image_size", 64))
        probe = torch.zeros(1, 3, size, size, device=self.device)
        with torch.no_grad():
            return tuple(enc.backbone.features(probe).shape[-2:])

    def _collect(self, store: dict[str, list], batch, beam_size: int | None = None) -> None:
        t0 = time.perf_counter()
        out = self.generate(batch, beam_size)
        store["decode_seconds"].append(time.perf_counter() - t0)
        for (words, attn), refs, objects in zip(out, batch["refs"], batch["objects"], strict=True):
            store["hyps"].append(words)
            store["refs"].append(refs)
            store["objects"].append(objects)
            store["attention"].append(None if attn is None else attn.numpy())

    def _scores(self, store: dict[str, list]) -> dict[str, Any]:
        hyps, refs = store["hyps"], store["refs"]
        bleu = corpus_bleu(hyps, refs)
        metrics: dict[str, Any] = {f"bleu{n + 1}": 100 * b for n, b in enumerate(bleu)}
        metrics["cider"] = cider_d(hyps, refs)[0]
        metrics["exact_match"] = exact_match(hyps, refs)
        metrics["length_ratio"] = sum(map(len, hyps)) / max(1, sum(len(r[0]) for r in refs))
        if store["objects"] and store["objects"][0] is not None:
            present = [{o["label"] for o in objs} for objs in store["objects"]]
            ch = chair(hyps, present, set(OBJECT_WORDS))
            ref_mentions = sum(
                len({t for t in r[0] if t in OBJECT_WORDS}) for r in refs
            )  # fmt: skip
            metrics.update(
                chair_i=ch["chair_i"], chair_s=ch["chair_s"],
                mention_ratio=ch["mentions"] / max(1, ref_mentions),
            )  # fmt: skip
            point = PointingResult()
            grid = self.grid()
            size = int(self.data_state.get("image_size", 64))
            for words, attn, objs in zip(hyps, store["attention"], store["objects"], strict=True):
                if attn is not None:
                    point.add(pointing_game(words, attn, objs, (size, size), grid))
            metrics.update(
                grounding=point.accuracy, grounding_chance=point.chance,
                grounding_words=point.total,
            )  # fmt: skip
        return metrics

    # ----- validation / test ------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {k: [] for k in ("hyps", "refs", "objects", "attention", "decode_seconds")}

    def validation_step(self, batch, batch_idx):
        ce, _, _ = self._loss(batch)
        self.log("val/loss", ce, prog_bar=False, batch_size=batch["images"].shape[0])
        self._collect(self._val, batch, beam_size=1)

    def on_validation_epoch_end(self) -> None:
        if not self._val["hyps"]:
            return
        bleu = corpus_bleu(self._val["hyps"], self._val["refs"])
        self.log("val/bleu4", 100 * bleu[3], prog_bar=True)
        self.log("val/bleu1", 100 * bleu[0])

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._test = {k: [] for k in ("hyps", "refs", "objects", "attention", "decode_seconds")}

    def test_step(self, batch, batch_idx):
        self._collect(self._test, batch)

    def on_test_epoch_end(self) -> None:
        metrics = self._scores(self._test)
        entropies = [
            float(attention_entropy(torch.from_numpy(a)[None])[1].mean())
            for a in self._test["attention"]
            if a is not None and len(a)
        ]
        if entropies:
            metrics["attention_entropy"] = float(np.mean(entropies))
        self._results = {
            "metrics": metrics,
            "decode": OmegaConf.to_container(self.cfg.get("decode") or OmegaConf.create({})),
            "test_examples": len(self._test["hyps"]),
            "samples": [
                {"hypothesis": " ".join(h), "references": [" ".join(r) for r in refs]}
                for h, refs in list(zip(self._test["hyps"], self._test["refs"], strict=True))[:10]
            ],
        }
        self._per_example = (
            {"recipe": "captioning", "kind": "captioning"},
            [{"id": i, "hypothesis": " ".join(h), "references": [" ".join(r) for r in refs]}
             for i, (h, refs) in enumerate(zip(self._test["hyps"], self._test["refs"],
                                               strict=True))],
        )  # fmt: skip
        for key, value in metrics.items():
            self.log(f"test/{key}", float(value))

    def test_metrics(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._results.items()}

    # ----- pictures -----------------------------------------------------------------------
    @torch.no_grad()
    def export_attention(self, datamodule, out_dir: Path, n: int) -> dict[str, float]:
        """SAT-style figures (image + one overlay per generated word) and npz arrays."""
        from toolkit.viz.image import caption_attention_figure

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if n <= 0:
            return {}
        self.eval()
        batch = datamodule.examples("test", n)
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        grid = self.grid()
        for i, (words, attn) in enumerate(self.generate(batch)):
            image = (batch["images"][i].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
            attn = np.zeros((len(words) + 1, 1)) if attn is None else attn.numpy()
            objects = batch["objects"][i] or []
            boxes = np.array([o["box"] for o in objects], np.float32).reshape(-1, 4)
            np.savez_compressed(
                out_dir / f"example_{i:03d}.npz", image=image, words=np.array(words + ["<eos>"]),
                attention=attn, grid=np.array(grid or (0, 0)), boxes=boxes,
                references=np.array([" ".join(r) for r in batch["refs"][i]]),
            )  # fmt: skip
            caption_attention_figure(
                image, words + ["<eos>"], attn, grid, out_dir / f"example_{i:03d}.png",
                boxes=boxes if grid is None else None,
                title=" ".join(words),
            )  # fmt: skip
        return {}
