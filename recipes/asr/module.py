"""ASR LightningModule: joint CTC/attention training, decoding by CTC greedy, attention beam
or joint CTC/attention beam, WER/CER per noise condition, speed and attention pictures."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipes.asr.data import tokenizer_from_state
from recipes.asr.model import ctc_attention_loss
from toolkit.attention import capture_attention
from toolkit.decoding import beam_search
from toolkit.decoding.ctc import CTCPrefixScorer, ctc_greedy
from toolkit.metrics.alignment import attention_ctc_agreement
from toolkit.metrics.asr import TextNormalization, edit_counts, error_rates, write_wer_tables
from toolkit.metrics.attention import attention_entropy
from toolkit.runs import write_text_atomic
from toolkit.training.module import RecipeModule
from toolkit.viz.audio import self_attention_map, spectrogram_attention

log = logging.getLogger(__name__)
DECODE_MODES = ("ctc_greedy", "attention_beam", "joint")
RTF_UTTERANCES = 16
# The picture of a long transcript (the long-input setting's joined recordings) shows its
# first output tokens only (the npz keeps every row): one row per token would make it
# thousands of pixels high.
PICTURE_TOKENS = 200


class ASRModule(RecipeModule):
    """Speech recognition with ``cfg.model`` (a ``CTCAttentionASR``) and ``cfg.decode``."""

    def __init__(self, cfg: dict[str, Any], data_state: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, data_state)
        if not data_state:
            raise ValueError("ASRModule needs the data state (characters or sentencepiece model)")
        self.tokenizer = tokenizer_from_state(data_state)
        self.normalize = TextNormalization(**data_state.get("normalize", {}))
        attention = self.cfg.attention
        self.model = instantiate(self.cfg.model, _partial_=True)(
            vocab_size=len(self.tokenizer),
            blank=self.tokenizer.blank_id,
            eos=self.tokenizer.eos_id,
            never=self.tokenizer.never_ids,
            attention=attention.name,
            attention_options=OmegaConf.to_container(attention.options)
            if attention.get("options")
            else {},
        )
        self.ctc_weight = float(self.cfg.get("ctc_weight", 0.3))
        self.label_smoothing = float(self.cfg.get("label_smoothing", 0.1))
        self.train_audio_seconds = 0.0
        self.train_step_seconds = 0.0
        self._t0: float | None = None
        self._val: list[tuple[str, str]] = []
        self._results: dict[str, Any] = {}

    # ----- config ----------------------------------------------------------------------
    def decode_cfg(self) -> dict[str, Any]:
        d = {"mode": "joint", "beam_size": 5, "ctc_weight": 0.3, "length_penalty": 0.0,
             "coverage_penalty": 0.0}  # fmt: skip
        d.update(OmegaConf.to_container(self.cfg.get("decode") or OmegaConf.create({})))
        if d["mode"] not in DECODE_MODES:
            raise ValueError(f"unknown decode.mode {d['mode']!r}; valid: {', '.join(DECODE_MODES)}")
        return d

    # ----- training ----------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._t0 is not None:
            self.train_step_seconds += time.perf_counter() - self._t0

    def training_step(self, batch, batch_idx):
        memory, mask, _, _ = self.model.encode(batch["wave"], batch["lengths"])
        loss, parts = ctc_attention_loss(
            self.model, memory, mask, batch["targets"], batch["target_lengths"],
            self.ctc_weight, self.label_smoothing,
        )  # fmt: skip
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["texts"]))
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=len(batch["texts"]))
        self.count_train(len(batch["texts"]))
        self.train_audio_seconds += float(batch["lengths"].sum()) / 16000
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch, batch_idx):
        memory, mask, _, _ = self.model.encode(batch["wave"], batch["lengths"])
        loss, _ = ctc_attention_loss(
            self.model, memory, mask, batch["targets"], batch["target_lengths"], self.ctc_weight
        )
        self.log("val/loss", loss, batch_size=len(batch["texts"]))
        hyps = ctc_greedy(self.model.ctc_log_probs(memory), mask.sum(1), self.model.blank)
        self._val += list(zip(batch["texts"], map(self.tokenizer.decode, hyps), strict=True))

    def on_validation_epoch_end(self) -> None:
        if self._val:
            refs, hyps = zip(*self._val, strict=True)
            rates = error_rates(refs, hyps, self.normalize)
            self.log("val/wer", rates["wer"], prog_bar=True)  # CTC greedy: cheap to track
            self.log("val/cer", rates["cer"])

    # ----- decoding ----------------------------------------------------------------------
    @torch.no_grad()
    def transcribe(
        self, wave: torch.Tensor, lengths: torch.Tensor, mode: str | None = None,
        return_attention: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Decode a batch. Returns ``ctc`` (greedy ids), ``tokens`` (ids of ``mode``),
        ``attention`` (per item ``(len + 1, S)`` or None), and the encoder outputs."""
        d = self.decode_cfg()
        mode = mode or d["mode"]
        memory, mask, maps, feats = self.model.encode(wave, lengths, need_weights=False)
        log_probs = self.model.ctc_log_probs(memory)
        frames = mask.sum(1)
        ctc = ctc_greedy(log_probs, frames, self.model.blank)
        out = {"ctc": ctc, "tokens": ctc, "attention": [None] * len(ctc), "memory": memory,
               "mask": mask, "feats": feats, "ctc_log_probs": log_probs}  # fmt: skip
        if mode == "ctc_greedy":
            return out
        scorer = None
        if mode == "joint" and d["ctc_weight"] > 0:
            scorer = CTCPrefixScorer(log_probs, frames, self.model.blank, self.model.eos)

        coverage_penalty = float(d["coverage_penalty"])
        # the coverage penalty sums the decoder's cross-attention, so the beam asks for it
        need_weights = return_attention or coverage_penalty > 0

        def step(prefix, state):
            return self.model.step(prefix, state, need_weights=need_weights)

        hyps = beam_search(
            step, self.model.reorder, self.model.init_state(memory, mask), len(ctc),
            bos=self.model.eos, eos=self.model.eos, beam_size=int(d["beam_size"]),
            max_len=frames.cpu(), length_penalty=float(d["length_penalty"]),
            return_attention=return_attention, scorer=scorer,
            scorer_weight=float(d["ctc_weight"]) if scorer is not None else 0.0,
            device=memory.device, coverage_penalty=coverage_penalty, coverage_mask=mask,
        )  # fmt: skip
        # A joint beam can die out (every extension impossible under CTC): keep CTC's answer,
        # and count it (metrics.json: beam_fallbacks; printed at the end of the test).
        out["tokens"] = [h[0].tokens if h else c for h, c in zip(hyps, ctc, strict=True)]
        out["beam_fallbacks"] = sum(1 for h in hyps if not h)
        out["attention"] = [h[0].attention if h else None for h in hyps]
        return out

    # ----- testing -----------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._test: dict[int, list[tuple[str, str, str]]] = {}
        self._test_ids: dict[int, list[int]] = {}  # utterance index of each row of _test
        self._test_audio = 0.0
        self._rtf_items: list[torch.Tensor] = []
        self._beam_fallbacks = 0

    def test_step(self, batch, batch_idx):
        out = self.transcribe(batch["wave"], batch["lengths"])
        self._beam_fallbacks += int(out.get("beam_fallbacks", 0))
        for i, cond in enumerate(batch["condition"].tolist()):
            self._test.setdefault(cond, []).append(
                (batch["texts"][i], self.tokenizer.decode(out["tokens"][i]),
                 self.tokenizer.decode(out["ctc"][i]))
            )  # fmt: skip
            self._test_ids.setdefault(cond, []).append(int(batch["index"][i]))
            if cond == 0 and len(self._rtf_items) < RTF_UTTERANCES:
                self._rtf_items.append(batch["wave"][i, : int(batch["lengths"][i])])
        self._test_audio += float(batch["lengths"].sum()) / 16000

    def _rtf_batch1(self) -> float | None:
        if not self._rtf_items:
            return None
        start = time.perf_counter()
        for wave in self._rtf_items:
            self.transcribe(wave[None], torch.tensor([len(wave)], device=wave.device))
        seconds = sum(len(w) for w in self._rtf_items) / 16000
        return (time.perf_counter() - start) / seconds

    def on_test_epoch_end(self) -> None:
        names = self.trainer.datamodule.condition_names() if self.trainer.datamodule else []
        d = self.decode_cfg()
        metrics: dict[str, float] = {}
        per_condition = {}
        records: list[dict[str, Any]] = []
        for cond, rows in sorted(self._test.items()):
            name = names[cond] if cond < len(names) else f"condition{cond}"
            refs = [r for r, _, _ in rows]
            main = error_rates(refs, [h for _, h, _ in rows], self.normalize)
            counts = edit_counts(refs, [h for _, h, _ in rows], self.normalize)
            ids = self._test_ids.get(cond, [])
            records += [{"id": utt, "condition": name, **c}
                        for utt, c in sorted(zip(ids, counts, strict=True), key=lambda x: x[0])
                        if c is not None]  # fmt: skip
            ctc = error_rates(refs, [c for _, _, c in rows], self.normalize)
            suffix = "" if name == "clean" else f"_{name}"
            metrics[f"wer{suffix}"], metrics[f"cer{suffix}"] = main["wer"], main["cer"]
            if d["mode"] != "ctc_greedy":
                metrics[f"ctc_greedy_wer{suffix}"] = ctc["wer"]
            per_condition[name] = {"decode": main, "ctc_greedy": ctc}
        for level in sorted({n.rsplit("_", 1)[1] for n in per_condition if "_" in n
                             and not n.startswith("reverb")}, key=float):  # fmt: skip
            vals = [v["decode"]["wer"] for n, v in per_condition.items()
                    if n.endswith(f"_{level}") and not n.startswith("reverb")]  # fmt: skip
            metrics[f"wer_avg_{level}"] = float(np.mean(vals))
        self._per_example = (
            {"recipe": "asr", "kind": "asr", "decode_mode": d["mode"],
             "conditions": [names[c] if c < len(names) else f"condition{c}"
                            for c in sorted(self._test)],
             "text_normalization": self.normalize.to_dict()},
            records,
        )  # fmt: skip
        rtf_batched = self.test_seconds / max(self._test_audio, 1e-9)
        rtf1 = self._rtf_batch1()
        train_s = max(self.train_step_seconds, 1e-9)
        self._results = {
            "metrics": metrics,
            "per_condition": per_condition,
            "decode": d,
            # joint beams that died out and were replaced by the CTC greedy answer
            "beam_fallbacks": self._beam_fallbacks,
            "text_normalization": self.normalize.to_dict(),
            "speed": {
                "train_utterances_per_s": round(self.train_samples / train_s, 2),
                "train_audio_seconds_per_s": round(self.train_audio_seconds / train_s, 2),
                "train_step_seconds": round(self.train_step_seconds, 2),
                "rtf_batched": round(rtf_batched, 5),
                "rtf_batch1": None if rtf1 is None else round(rtf1, 5),
                "test_audio_seconds": round(self._test_audio, 1),
                "threads": torch.get_num_threads(),
            },
            "samples": [  # the first condition (clean) as the report shows them
                {"reference": r, "hypothesis": h}
                for r, h, _ in (self._test[min(self._test)] if self._test else [])[:5]
            ],
            "examples": {
                (names[c] if c < len(names) else f"condition{c}"): [
                    {"ref": r, "hyp": h} for r, h, _ in rows[:3]
                ]
                for c, rows in sorted(self._test.items())
            },
        }
        if self._beam_fallbacks:
            log.warning("%d joint beams died out and were replaced by the CTC greedy answer",
                        self._beam_fallbacks)  # fmt: skip
        for key, value in metrics.items():
            self.log(f"test/{key}", value)

    def test_metrics(self) -> dict[str, Any]:
        return dict(self._results) if self._results else {"metrics": {}}

    # ----- attention export --------------------------------------------------------------
    @torch.no_grad()
    def export_attention(self, datamodule, out_dir: Path, n: int) -> dict[str, float]:
        """Spectrogram + decoder cross-attention PNG and npz for ``n`` clean test
        utterances, one encoder self-attention map; WER tables beside metrics.json."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        run_dir = out_dir.parent
        if self._results.get("metrics"):
            write_wer_tables(self._results["metrics"], run_dir, "wer")
            if any(k.startswith("ctc_greedy_wer") for k in self._results["metrics"]):
                write_wer_tables(self._results["metrics"], run_dir, "ctc_greedy_wer")
        write_text_atomic(
            run_dir / "text_normalization.json",
            json.dumps(self.normalize.to_dict(), indent=2) + "\n",
        )
        if n <= 0:
            return {}
        self.eval()
        ds = datamodule.dataset("test")
        items = [ds[i] for i in range(min(n, len(ds)))]
        if not items:
            return {}
        from recipes.asr.data import collate

        batch = collate(items)
        wave, lengths = batch["wave"].to(self.device), batch["lengths"].to(self.device)
        mode = self.decode_cfg()["mode"]
        mode = "attention_beam" if mode == "ctc_greedy" else mode  # pictures need the decoder
        with capture_attention(self.model.encoder) as cap:
            self.model.encode(wave, lengths, need_weights=True)
        out = self.transcribe(wave, lengths, mode=mode, return_attention=True)
        enc_maps = {k: v[0] for k, v in cap.maps.items() if v and v[0] is not None}
        entropies, agreement = [], []
        for i, item in enumerate(items):
            frames = int(out["mask"][i].sum())
            n_feat = int(feature_frames(self, lengths[i]))
            attn = out["attention"][i]
            hyp = self.tokenizer.decode(out["tokens"][i])
            pieces = self.tokenizer.labels(out["tokens"][i])  # one per output token
            arrays = {f"encoder/{k}": v[i].mean(0)[:frames, :frames].float().cpu().numpy()
                      for k, v in enc_maps.items()}  # fmt: skip
            feats = out["feats"][i, :n_feat].float().cpu().numpy()
            if attn is not None:
                cross = attn[:, :frames].float().numpy()
                arrays["cross_attention"] = cross
                entropies.append(float(attention_entropy(torch.from_numpy(cross))[1].mean()))
                toks = list(out["tokens"][i])
                if toks:  # where attention looks vs the CTC forced alignment of the same text
                    try:
                        agreement.append(attention_ctc_agreement(
                            torch.from_numpy(cross), out["ctc_log_probs"][i, :frames].float().cpu(),
                            toks, blank=self.model.blank,
                        ).as_metrics())  # fmt: skip
                    except (ValueError, RuntimeError) as err:  # e.g. too few frames for CTC
                        log.warning("attention/CTC agreement skipped for utt %d: %s", i, err)
                labels, picture = [*pieces, "</s>"], cross
                title = f"ref: {item['text']}\nhyp: {hyp}"
                if len(labels) > PICTURE_TOKENS:
                    labels, picture = labels[:PICTURE_TOKENS], cross[:PICTURE_TOKENS]
                    title = (f"ref: {item['text'][:200]}…\nhyp: {hyp[:200]}… (first "
                             f"{PICTURE_TOKENS} of {len(pieces) + 1} output tokens)")  # fmt: skip
                spectrogram_attention(
                    feats, picture, labels, out_dir / f"utt_{i:03d}.png", title
                )  # fmt: skip
            np.savez_compressed(out_dir / f"utt_{i:03d}.npz", feats=feats, text=item["text"],
                                hypothesis=hyp, tokens=np.array(pieces, dtype=str),
                                **arrays)  # fmt: skip
            if i == 0 and enc_maps:
                name = sorted(enc_maps)[0]
                self_attention_map(
                    arrays[f"encoder/{name}"],
                    out_dir / "encoder_self_attention.png",
                    f"{name} (head mean)",
                )
        result = {"attention_cross_entropy": float(np.mean(entropies))} if entropies else {}
        for key in agreement[0] if agreement else ():
            result[key] = float(np.mean([a[key] for a in agreement]))
        return result


def feature_frames(module: ASRModule, length: torch.Tensor) -> int:
    """Log-mel frames of a waveform of ``length`` samples."""
    return int(module.model.encoder.frontend.frames(length.reshape(1))[0])
