"""Translation LightningModule: label-smoothed training, validation BLEU on a fixed subset
(checkpoints are chosen by it), beam-search test scoring with sacreBLEU, attention maps."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from toolkit.attention import coverage_loss
from toolkit.data.subword import SubwordTokenizer
from toolkit.decoding import Hypothesis, beam_search, greedy_search
from toolkit.metrics.attention import attention_entropy, diagonality, monotonicity
from toolkit.metrics.repetition import degenerate, repeated_ngram_rate
from toolkit.metrics.translation import CHAR_LANGS, corpus_scores
from toolkit.training.module import RecipeModule
from toolkit.viz.text import attention_matrix

# Pictures of longer sequences show their first pieces only (export_attention).
PICTURE_TOKENS = 128
DECODE_DEFAULTS = {
    "beam_size": 5,
    "length_penalty": 0.6,
    "max_len_ratio": 1.5,
    "max_len_offset": 10,
    "compare_greedy": True,  # also score greedy decoding on the test set
    "no_repeat_ngram": 0,  # > 0: never repeat an n-gram of sub-words (0 = off)
    "coverage_penalty": 0.0,  # GNMT beta: + beta * sum_j log(min(sum_t a_tj, 1)) (0 = off)
}


class TranslationModule(RecipeModule):
    """Sequence-to-sequence translation with a model from ``cfg.model``."""

    def __init__(self, cfg: dict[str, Any], data_state: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, data_state)
        if not data_state or "subword" not in data_state:
            raise ValueError("TranslationModule needs the data state (sentencepiece model)")
        self.tokenizer = SubwordTokenizer.from_state(data_state["subword"])
        self.target_lang = data_state.get("target_lang", "de")
        attention = self.cfg.attention
        build = instantiate(self.cfg.model, _partial_=True)
        self.model = build(
            vocab_size=len(self.tokenizer),
            pad_id=self.tokenizer.pad_id,
            attention=attention.name,
            attention_options=OmegaConf.to_container(attention.options)
            if attention.get("options")
            else {},
        )
        self.label_smoothing = float(self.cfg.get("label_smoothing", 0.1) or 0.0)
        # See et al. (2017): + weight * coverage_loss of the decoder's attention (0 = off)
        self.coverage_loss_weight = float(self.cfg.get("coverage_loss_weight", 0.0) or 0.0)
        self._val_loss: list[tuple[float, int]] = []
        self._test: dict[str, list] = {}
        self._results: dict[str, Any] = {}

    # ----- settings ----------------------------------------------------------------------
    def decode_cfg(self) -> dict[str, Any]:
        extra = self.cfg.get("decode") or {}
        return {**DECODE_DEFAULTS, **OmegaConf.to_container(OmegaConf.create(extra))}

    # ----- training ----------------------------------------------------------------------
    def _loss(self, batch, smoothing: float) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy and the number of target tokens."""
        loss, n, _ = self._loss_and_attention(batch, smoothing)
        return loss, n

    def _loss_and_attention(
        self, batch, smoothing: float, need_weights: bool = False
    ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """``_loss`` and, with ``need_weights``, the decoder's attention ``(B, T, S)``."""
        logits, weights = self.model(
            batch["src"], batch["src_mask"], batch["tgt_in"], need_weights=need_weights
        )
        target = batch["tgt_out"]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
            ignore_index=self.tokenizer.pad_id, label_smoothing=smoothing, reduction="sum",
        )  # fmt: skip
        n = int((target != self.tokenizer.pad_id).sum())
        return loss, n, weights

    def training_step(self, batch, batch_idx):
        b = batch["src"].shape[0]
        cover = self.coverage_loss_weight > 0
        loss_sum, n, weights = self._loss_and_attention(batch, self.label_smoothing, cover)
        loss = loss_sum / max(n, 1)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        if cover:
            real = batch["tgt_out"] != self.tokenizer.pad_id
            coverage = coverage_loss(weights.float(), real)  # per target token, like the loss
            self.log("train/coverage_loss", coverage, batch_size=b)
            loss = loss + self.coverage_loss_weight * coverage
        self.count_train(b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_loss = []

    def validation_step(self, batch, batch_idx):
        loss_sum, n = self._loss(batch, 0.0)
        self._val_loss.append((float(loss_sum), n))

    def on_validation_epoch_end(self) -> None:
        total = sum(n for _, n in self._val_loss)
        loss = sum(x for x, _ in self._val_loss) / max(total, 1)
        self.log("val/loss", loss)
        self.log("val/ppl", math.exp(min(loss, 50.0)))
        if self.trainer.sanity_checking:
            return
        dm = self.trainer.datamodule
        size = int(getattr(dm, "val_bleu_size", 300))
        pairs = dm.examples("valid", size)
        if pairs:
            hyps = self.translate([s for s, _ in pairs], beam_size=1)
            scores = corpus_scores([h["translation"] for h in hyps], [t for _, t in pairs],
                                   self.target_lang)  # fmt: skip
            self.log("val/bleu", scores["bleu"], prog_bar=True)
            self.log("val/chrf", scores["chrf"])

    # ----- decoding ------------------------------------------------------------------------
    def max_source_len(self) -> int:
        """Token limit of the data config the model was trained with (same in and out of a
        trainer, so a checkpoint decodes as it did when it was tested)."""
        return int(self.cfg.data.get("max_len", 96))

    def _decode_batch(
        self, src: torch.Tensor, src_mask: torch.Tensor, beam_size: int, return_attention: bool
    ) -> list[Hypothesis]:
        d = self.decode_cfg()
        lengths = src_mask.sum(1)
        max_len = (lengths.float() * float(d["max_len_ratio"])).long() + int(d["max_len_offset"])
        max_len = max_len.clamp(max=self.max_source_len())
        state = self.model.start(src, src_mask)
        tok = self.tokenizer
        coverage_penalty = float(d["coverage_penalty"]) if beam_size > 1 else 0.0
        # the coverage penalty sums the attention, so the beam asks for it
        need_weights = return_attention or coverage_penalty > 0

        def step(prefix, st):
            return self.model.step(prefix, st, need_weights=need_weights)

        if beam_size <= 1:
            return greedy_search(step, state, src.shape[0], tok.bos_id, tok.eos_id, max_len,
                                 return_attention=return_attention, device=src.device,
                                 no_repeat_ngram=int(d["no_repeat_ngram"]))  # fmt: skip
        nbest = beam_search(
            step, self.model.reorder, state, src.shape[0], tok.bos_id, tok.eos_id,
            beam_size=beam_size, max_len=max_len, length_penalty=float(d["length_penalty"]),
            return_attention=return_attention, device=src.device,
            no_repeat_ngram=int(d["no_repeat_ngram"]), coverage_penalty=coverage_penalty,
            coverage_mask=src_mask,
        )  # fmt: skip
        return [h[0] for h in nbest]

    @torch.no_grad()
    def translate(
        self,
        sources: list[str],
        beam_size: int | None = None,
        return_attention: bool = False,
        batch_size: int = 64,
    ) -> list[dict[str, Any]]:
        """Translate raw sentences; an empty source gives an empty translation."""
        was_training = self.training
        self.eval()
        beam = int(self.decode_cfg()["beam_size"] if beam_size is None else beam_size)
        max_len = self.max_source_len()
        encoded = [self.tokenizer.encode(s)[: max_len - 1] + [self.tokenizer.eos_id]
                   if s.strip() else [] for s in sources]  # fmt: skip
        out: list[dict[str, Any] | None] = [None] * len(sources)
        order = sorted((i for i, e in enumerate(encoded) if e), key=lambda i: len(encoded[i]))
        for i in range(len(sources)):
            if not encoded[i]:
                out[i] = {"translation": "", "tokens": [], "score": 0.0, "attention": None}
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            src = torch.full((len(idx), width), self.tokenizer.pad_id, dtype=torch.long)
            for row, i in enumerate(idx):
                src[row, : len(encoded[i])] = torch.tensor(encoded[i])
            src = src.to(self.device)
            hyps = self._decode_batch(src, src != self.tokenizer.pad_id, beam, return_attention)
            for i, h in zip(idx, hyps, strict=True):
                n_src = len(encoded[i])
                attn = h.attention[:, :n_src].numpy() if h.attention is not None else None
                out[i] = {"translation": self.tokenizer.decode(h.tokens), "tokens": h.tokens,
                          "score": h.score, "attention": attn}  # fmt: skip
        self.train(was_training)
        return out  # type: ignore[return-value]

    # ----- test ------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._test = {"index": [], "beam": [], "greedy": [], "attention": [], "loss": []}
        self._greedy_seconds = 0.0

    def test_step(self, batch, batch_idx):
        loss_sum, n = self._loss(batch, 0.0)
        self._test["loss"].append((float(loss_sum), n))
        d = self.decode_cfg()
        hyps = self._decode_batch(batch["src"], batch["src_mask"], int(d["beam_size"]), True)
        lengths = batch["src_mask"].sum(1).tolist()
        for h, n_src in zip(hyps, lengths, strict=True):
            self._test["beam"].append(self.tokenizer.decode(h.tokens))
            att = h.attention[:, :n_src] if h.attention is not None else None
            self._test["attention"].append(att)
        self._test["index"] += batch["index"].tolist()
        if d["compare_greedy"] and int(d["beam_size"]) > 1:
            t0 = time.perf_counter()
            greedy = self._decode_batch(batch["src"], batch["src_mask"], 1, False)
            self._greedy_seconds += time.perf_counter() - t0
            self._test["greedy"] += [self.tokenizer.decode(h.tokens) for h in greedy]

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        pairs = dm.examples("test")
        order = self._test["index"]
        refs = [pairs[i][1] for i in order]
        srcs = [pairs[i][0] for i in order]
        beam = corpus_scores(self._test["beam"], refs, self.target_lang)
        copy = corpus_scores(srcs, refs, self.target_lang)
        total = sum(n for _, n in self._test["loss"])
        loss = sum(x for x, _ in self._test["loss"]) / max(total, 1)
        d = self.decode_cfg()
        loops = degenerate(self._test["beam"])
        metrics = {
            "bleu": beam["bleu"],
            "chrf": beam["chrf"],
            "loop_rate": loops["looping"] / max(loops["outputs"], 1),
            "empty_rate": loops["empty"] / max(loops["outputs"], 1),
            # word trigrams repeating one earlier in the same output (what coverage targets)
            "repeated_trigram_rate": repeated_ngram_rate(self._test["beam"], 3),
            "copy_bleu": copy["bleu"],
            "copy_chrf": copy["chrf"],
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
        }
        if self._test["greedy"]:
            greedy = corpus_scores(self._test["greedy"], refs, self.target_lang)
            metrics["bleu_greedy"] = greedy["bleu"]
            metrics["chrf_greedy"] = greedy["chrf"]
        maps = [a for a in self._test["attention"] if a is not None and a.numel()]
        if maps:
            ents = [attention_entropy(a)[1].mean() for a in maps]
            metrics["attention_entropy"] = float(torch.stack(ents).mean())
            metrics["attention_monotonicity"] = float(np.mean([monotonicity(a) for a in maps]))
            metrics["attention_diagonality"] = float(np.mean([diagonality(a) for a in maps]))
        by_index = dict(zip(order, self._test["beam"], strict=True))
        self._per_example = (
            {"recipe": "translation", "kind": "translation", "target_lang": self.target_lang,
             "bleu_tokenize": "char" if self.target_lang in CHAR_LANGS else "13a",
             "signatures": {"bleu": beam["bleu_signature"], "chrf": beam["chrf_signature"]}},
            [{"id": i, "hypothesis": by_index[i], "reference": pairs[i][1]}
             for i in sorted(by_index)],
        )  # fmt: skip
        self._results = {
            "metrics": metrics,
            "signatures": {"bleu": beam["bleu_signature"], "chrf": beam["chrf_signature"]},
            "decode": d,
            "test_examples": len(refs),
            "decode_seconds_greedy": round(self._greedy_seconds, 3),
            "samples": [
                {"source": s, "reference": t, "translation": by_index[i]}
                for i, (s, t) in enumerate(pairs[:20])
                if i in by_index
            ],
        }
        for key, value in metrics.items():
            self.log(f"test/{key}", value)

    def test_metrics(self) -> dict[str, Any]:
        return dict(self._results)

    # ----- attention maps ----------------------------------------------------------------
    def export_attention(self, datamodule, out_dir: Path, n: int) -> dict[str, float]:
        """Source×target cross-attention of ``n`` test sentences (npz + png), the
        translations as TSV."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pairs = datamodule.examples("test", n)
        results = self.translate([s for s, _ in pairs], return_attention=True)
        lines = ["source\treference\ttranslation"]
        for i, ((src, ref), r) in enumerate(zip(pairs, results, strict=True)):
            lines.append(f"{src}\t{ref}\t{r['translation']}")
            if r["attention"] is None:
                continue
            src_tokens = self.tokenizer.pieces(src)[: r["attention"].shape[1] - 1] + ["</s>"]
            tgt_tokens = self.tokenizer.id_to_piece(r["tokens"]) + ["</s>"]
            att = r["attention"][: len(tgt_tokens), : len(src_tokens)]
            np.savez_compressed(
                out_dir / f"example_{i:03d}.npz", attention=att, source=src, reference=ref,
                translation=r["translation"], source_tokens=np.array(src_tokens),
                target_tokens=np.array(tgt_tokens),
            )  # fmt: skip
            # the picture of a long input (the long-input setting) shows its first pieces
            # only: a 1,000 x 1,000 matrix would be a 40,000-pixel image; the npz has it all
            picture, title = att, f"#{i} cross-attention (last decoder layer)"
            if max(att.shape) > PICTURE_TOKENS:
                picture = att[:PICTURE_TOKENS, :PICTURE_TOKENS]
                title += (f" (first {picture.shape[0]} x {picture.shape[1]} of {att.shape[0]} x "
                          f"{att.shape[1]})")  # fmt: skip
            attention_matrix(picture, src_tokens, tgt_tokens, out_dir / f"example_{i:03d}.png",
                             title)  # fmt: skip
        tmp = out_dir / "translations.tsv.tmp"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(out_dir / "translations.tsv")
        return {}
