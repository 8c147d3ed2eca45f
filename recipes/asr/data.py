"""Speech data for the ASR recipe: the embedded espeak-ng corpus (commands or movie-review
sentences) or the user's own manifests, character or sentencepiece tokens, on-the-fly noise
in training, and the fixed grid of noisy test conditions."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from recipes.asr.corpus import (
    TEXT_SOURCES,
    build_speech_corpus,
    corpus_manifest,
    load_speech_splits,
)
from recipes.asr.noise import NoiseMixer, condition_grid, condition_name, stable_seed
from toolkit.data.audio import SAMPLE_RATE, Utterance, read_audio, read_speech_manifest
from toolkit.data.batching import LengthBucketBatches
from toolkit.data.cache import DataError, sha256_file
from toolkit.data.subword import SubwordTokenizer, train_sentencepiece
from toolkit.metrics.asr import TextNormalization

log = logging.getLogger(__name__)
BLANK, EOS = "<blank>", "<eos>"
TOKEN_KINDS = ("chars", "sentencepiece")


class CharTokenizer:
    """Characters of the normalised text; id 0 = CTC blank (and padding), 1 = BOS/EOS."""

    kind = "chars"
    blank_id, eos_id = 0, 1
    never_ids: tuple[int, ...] = ()  # ids that are never targets (the decoder never emits them)

    def __init__(self, chars: list[str]) -> None:
        self.tokens = [BLANK, EOS, *chars]
        self.stoi = {c: i for i, c in enumerate(self.tokens)}
        self.blank, self.eos = self.blank_id, self.eos_id

    @classmethod
    def build(cls, texts: list[str]) -> CharTokenizer:
        return cls(sorted({c for t in texts for c in t}))

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; characters outside the vocabulary are dropped."""
        return [self.stoi[c] for c in text if c in self.stoi and self.stoi[c] > 1]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[i] for i in ids if i > 1)

    def labels(self, ids: Sequence[int]) -> list[str]:
        """One label per id (attention picture rows)."""
        return [self.tokens[int(i)] for i in ids]

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)


class SentencePieceTokenizer(SubwordTokenizer):
    """Sentencepiece subwords (``toolkit.data.subword``) laid out for CTC/attention: the
    model's padding id 0 is the CTC blank (never a piece of a text), its EOS id 3 ends (and,
    as BOS, starts) decoder sequences; unknown pieces are dropped like unknown characters."""

    kind = "sentencepiece"
    blank_id = SubwordTokenizer.pad_id
    never_ids = (SubwordTokenizer.unk_id, SubwordTokenizer.bos_id)  # dropped / never targets

    @classmethod
    def build(cls, texts: list[str], vocab_size: int) -> SentencePieceTokenizer:
        return cls(train_sentencepiece(texts, vocab_size))

    def encode(self, text: str) -> list[int]:
        return [i for i in super().encode(text) if i != self.unk_id]

    def decode(self, ids: Sequence[int]) -> str:
        return super().decode([i for i in ids if int(i) != self.unk_id])

    def labels(self, ids: Sequence[int]) -> list[str]:
        """One piece per id (attention picture rows)."""
        return self.id_to_piece(ids)

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "subword": self.state()}

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers started with spawn get the dataset pickled: rebuild from bytes.
        return (type(self), (self.model,))


Tokenizer = CharTokenizer | SentencePieceTokenizer


@dataclass(frozen=True)
class JoinedUtterance(Utterance):
    """Several utterances of one split spoken one after another (the long-input setting):
    their audio joined with ``gap`` seconds of silence between them, their texts with a
    space. ``audio`` is the parts' paths joined with ``+`` (it seeds the test noise)."""

    parts: tuple[Utterance, ...] = ()
    gap: float = 0.0


def join_utterances(
    utts: Sequence[Utterance], min_seconds: float, gap: float = 0.0
) -> list[Utterance]:
    """Consecutive utterances joined until the audio (gaps included) lasts at least
    ``min_seconds``.

    Every utterance lands in exactly one joined utterance, in the order of ``utts``; joined
    utterances are built from ``utts`` alone (one split at a time, so they never mix
    splits). The last utterances, too few to fill one, are appended to the previous joined
    one (a split shorter than ``min_seconds`` in all gives one shorter utterance).
    """
    groups: list[list[Utterance]] = []
    group: list[Utterance] = []
    seconds = 0.0
    for u in utts:
        seconds += (gap if group else 0.0) + float(u.duration or 0.0)
        group.append(u)
        if seconds >= min_seconds:
            groups.append(group)
            group, seconds = [], 0.0
    if group:
        if groups:
            groups[-1].extend(group)
        else:
            groups.append(group)
    out: list[Utterance] = []
    for parts in groups:
        speakers = list(dict.fromkeys(p.speaker for p in parts if p.speaker))
        out.append(
            JoinedUtterance(
                audio="+".join(p.audio for p in parts),
                text=" ".join(p.text for p in parts),
                speaker=speakers[0] if len(speakers) == 1 else "+".join(speakers),
                duration=sum(float(p.duration or 0.0) for p in parts) + gap * (len(parts) - 1),
                source=parts[0].source,
                parts=tuple(parts),
                gap=float(gap),
            )
        )
    return out


def read_utterance(utt: Utterance) -> np.ndarray:
    """The waveform of ``utt``; a joined utterance's parts with its silences between them."""
    if not isinstance(utt, JoinedUtterance):
        return read_audio(utt.audio, SAMPLE_RATE, source=utt.source)
    silence = np.zeros(int(round(utt.gap * SAMPLE_RATE)), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, part in enumerate(utt.parts):
        if i and len(silence):
            pieces.append(silence)
        pieces.append(np.asarray(read_audio(part.audio, SAMPLE_RATE, source=part.source),
                                 dtype=np.float32))  # fmt: skip
    return np.concatenate(pieces)


def tokenizer_from_state(state: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer saved in a data state (a checkpoint's ``data_state``); states without
    ``kind`` (older checkpoints) are characters."""
    kind = state.get("kind", "chars")
    if kind == "chars" and state.get("tokens"):
        return CharTokenizer(list(state["tokens"])[2:])
    if kind == "sentencepiece" and state.get("subword"):
        return SentencePieceTokenizer.from_state(state["subword"])
    raise ValueError(f"data state holds no {kind!r} tokenizer (keys: {', '.join(state)})")


def noise_key(utt: Utterance) -> str:
    """What seeds an utterance's fixed test noise besides (seed, condition): its audio path
    relative to its manifest's folder, so the noisy test set is the same wherever the corpus
    lives (another cache folder, another machine); the path as given for audio outside that
    folder, and the parts' keys joined with ``+`` for a joined utterance."""
    if isinstance(utt, JoinedUtterance):
        return "+".join(noise_key(part) for part in utt.parts)
    manifest = utt.source.rsplit(":", 1)[0] if utt.source else ""
    if manifest:
        try:
            return Path(utt.audio).resolve().relative_to(Path(manifest).resolve().parent).as_posix()
        except ValueError:
            pass
    return utt.audio


class SpeechDataset(Dataset):
    """Utterances x conditions. Training: noise drawn per access; evaluation: condition
    ``(kind, level)`` applied with a seed fixed by (seed, condition, :func:`noise_key`)."""

    def __init__(
        self,
        utts: list[Utterance],
        tokenizer: Tokenizer,
        normalize: TextNormalization,
        mixer: NoiseMixer | None = None,
        conditions: list[tuple[str, float | None]] | None = None,
        train: bool = False,
        seed: int = 0,
    ) -> None:
        self.utts, self.tokenizer, self.normalize = utts, tokenizer, normalize
        self.mixer, self.train, self.seed = mixer, train, seed
        self.conditions = conditions or [("clean", None)]
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int] | None = None

    def rng(self) -> np.random.Generator:
        """Training noise RNG, reseeded per DataLoader worker and epoch (torch's worker
        seed), so workers never draw the same noise."""
        info = torch.utils.data.get_worker_info()
        owner = (info.id if info else -1, torch.initial_seed())
        if self._rng is None or owner != self._rng_owner:
            self._rng = np.random.default_rng([self.seed, owner[0] + 1, owner[1] % (1 << 32)])
            self._rng_owner = owner
        return self._rng

    def __len__(self) -> int:
        return len(self.utts) * len(self.conditions)

    def lengths(self) -> list[float]:
        return [u.duration or 1.0 for u in self.utts] * len(self.conditions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cond_index, utt_index = divmod(index, len(self.utts))
        utt = self.utts[utt_index]
        audio = read_utterance(utt)
        kind, level = self.conditions[cond_index]
        if self.train and self.mixer is not None:
            audio = self.mixer.augment(audio, self.rng())
        elif kind != "clean" and self.mixer is not None:
            audio = self.mixer.condition(
                audio, kind, level, stable_seed(self.seed, kind, level, noise_key(utt))
            )
        text = self.normalize(utt.text)
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "ids": self.tokenizer.encode(text),
            "text": text,
            "condition": cond_index,
            "index": utt_index,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad waveforms ``(B, N)`` and targets ``(B, L)`` (padded with 0; the lengths mask it)."""
    lengths = torch.tensor([len(it["audio"]) for it in items])
    wave = torch.zeros(len(items), int(lengths.max()))
    for i, it in enumerate(items):
        wave[i, : len(it["audio"])] = it["audio"]
    target_len = torch.tensor([len(it["ids"]) for it in items])
    targets = torch.zeros(len(items), max(1, int(target_len.max())), dtype=torch.long)
    for i, it in enumerate(items):
        targets[i, : len(it["ids"])] = torch.tensor(it["ids"], dtype=torch.long)
    return {
        "wave": wave,
        "lengths": lengths,
        "targets": targets,
        "target_lengths": target_len,
        "texts": [it["text"] for it in items],
        "condition": torch.tensor([it["condition"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }


class ASRDataModule(pl.LightningDataModule):
    """Embedded espeak-ng corpus (``text``: ``commands`` or ``sentences``, see
    ``recipes.asr.corpus``), or own data (``train_file``/``valid_file``/``test_file``:
    JSONL manifest, Kaldi folder or LibriSpeech tree).

    ``tokens``: ``chars`` or ``sentencepiece`` (``sp_vocab_size`` pieces at most, trained
    on the normalised training transcripts). A saved ``state`` (a checkpoint's) brings its
    own tokenizer, whatever ``tokens`` says.

    ``noise`` configures training augmentation (``prob``, ``snr_range``, ``types``,
    ``reverb_prob``, ``recorded``); ``test_noise`` the fixed test grid (``types``, ``snrs``,
    ``rt60s``, ``seed``). ``on_error: raise|skip`` decides what a bad utterance does.
    """

    def __init__(
        self,
        limit: int | None = None,
        corpus_seed: int = 0,
        train_file: str | None = None,
        valid_file: str | None = None,
        test_file: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        noise: dict[str, Any] | None = None,
        test_noise: dict[str, Any] | None = None,
        normalize: dict[str, Any] | None = None,
        on_error: str = "raise",
        max_seconds: float = 20.0,
        allow_paths_outside_manifest: bool = False,
        babble_pool: int = 200,
        text: str = "commands",
        tokens: str = "chars",
        sp_vocab_size: int = 256,
        join_min_seconds: float = 0.0,
        join_gap_seconds: float = 0.0,
        root: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be raise or skip, got {on_error!r}")
        if text not in TEXT_SOURCES:
            raise ValueError(f"unknown data.text {text!r}; valid: {', '.join(TEXT_SOURCES)}")
        if tokens not in TOKEN_KINDS:
            raise ValueError(f"unknown data.tokens {tokens!r}; valid: {', '.join(TOKEN_KINDS)}")
        self.text, self.tokens, self.sp_vocab_size = text, tokens, int(sp_vocab_size)
        self.limit, self.corpus_seed, self.root = limit, corpus_seed, root
        self.files = {"train": train_file, "valid": valid_file, "test": test_file}
        self.test_split = "test"
        self.allow_outside = bool(allow_paths_outside_manifest)
        self.too_long: dict[str, int] = {}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.on_error, self.max_seconds = num_workers, on_error, max_seconds
        self.noise_cfg = dict(noise or {})
        self.test_noise_cfg = dict(test_noise or {})
        saved = dict(state or {})
        self.normalize = TextNormalization(**(saved.get("normalize") or normalize or {}))
        self.saved_state = saved
        self.babble_pool_size = babble_pool
        # > 0: the long-input setting (join_utterances); 0 = one utterance per item
        self.join_min_seconds = float(join_min_seconds or 0.0)
        self.join_gap_seconds = float(join_gap_seconds or 0.0)
        self.folder: Path | None = None
        self.splits: dict[str, list[Utterance]] = {}
        self.skipped: dict[str, int] = {}
        self.tokenizer: Tokenizer | None = None
        self.conditions: list[tuple[str, float | None]] = []

    # ----- data ------------------------------------------------------------------------
    def embedded(self) -> bool:
        return not any(self.files.values())

    def prepare_data(self) -> None:
        if self.embedded():
            self.folder = build_speech_corpus(
                self.root, self.limit, self.corpus_seed, text=self.text
            )

    def _validate(self, split: str, utts: list[Utterance]) -> list[Utterance]:
        """Check every audio file's header (exists, readable, non-empty) up front, so a bad
        file fails here with its manifest line rather than later inside a worker."""
        kept = []
        for u in utts:
            try:
                if not Path(u.audio).is_file():
                    raise DataError(*_loc(u), "audio", f"audio file not found: {u.audio}")
                try:
                    info = sf.info(u.audio)
                except (sf.LibsndfileError, RuntimeError) as err:
                    raise DataError(
                        *_loc(u), "audio", f"unreadable audio {u.audio}: {err}"
                    ) from None
                if info.frames == 0:
                    raise DataError(*_loc(u), "audio", f"zero-length audio: {u.audio}")
                if not self.normalize(u.text):
                    raise DataError(*_loc(u), "text", "empty transcript after normalisation")
                duration = info.frames / info.samplerate
            except DataError as err:
                if self.on_error == "raise":
                    raise
                self.skipped[split] = self.skipped.get(split, 0) + 1
                log.warning("skipped (on_error=skip): %s", err)
                continue
            if duration <= self.max_seconds:
                kept.append(Utterance(u.audio, u.text, u.speaker, duration, u.source))
            else:  # counted per split in the manifest (metrics.json) and printed
                self.too_long[split] = self.too_long.get(split, 0) + 1
        if self.skipped.get(split):
            log.warning("%s: skipped %d bad utterances", split, self.skipped[split])
        if self.too_long.get(split):
            log.warning("%s: left out %d utterances longer than data.max_seconds=%s",
                        split, self.too_long[split], self.max_seconds)  # fmt: skip
        return kept

    def _load_splits(self) -> None:
        if self.embedded():
            self.prepare_data()
            splits = load_speech_splits(self.folder)
        else:
            splits = {s: read_speech_manifest(p, self.allow_outside)
                      for s, p in self.files.items() if p}  # fmt: skip
            if "train" in splits and "valid" not in splits:
                rng = np.random.default_rng(self.corpus_seed)
                order = rng.permutation(len(splits["train"]))
                n_valid = max(1, len(order) // 20)
                splits["valid"] = [splits["train"][i] for i in order[:n_valid]]
                splits["train"] = [splits["train"][i] for i in order[n_valid:]]
            if "test" not in splits:
                # scored on the validation split, which also picks the checkpoint: said here,
                # in the manifest (test_split) and so in metrics.json
                log.warning("no data.test_file: the test scores are on the validation split")
                splits["test"] = splits.get("valid", [])
                self.test_split = (
                    "valid (no test file given: the test scores are on the validation set "
                    "that picked the checkpoint)"
                )
        self.splits = {s: self._validate(s, u) for s, u in splits.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        self._load_splits()
        self.tokenizer = self._tokenizer()
        pool = []
        # Babble is made of training speech (never the test voices); a checkpoint
        # evaluated on own test data only has that to draw from.
        source = self.splits.get("train") or self.splits.get("test", [])
        for u in source[: self.babble_pool_size]:
            pool.append(read_audio(u.audio, SAMPLE_RATE, source=u.source))
        cfg = self.noise_cfg
        self.train_mixer = NoiseMixer(
            types=tuple(cfg.get("types", ())) if cfg.get("prob", 0) > 0 else (),
            snr_range=tuple(cfg.get("snr_range", (0.0, 20.0))),
            prob=float(cfg.get("prob", 0.0)),
            reverb_prob=float(cfg.get("reverb_prob", 0.0)),
            babble_pool=pool,
            recorded=cfg.get("recorded"),
        )
        tcfg = self.test_noise_cfg
        self.test_mixer = NoiseMixer(babble_pool=pool, recorded=tcfg.get("recorded"))
        self.conditions = condition_grid(
            tcfg.get("types", ()), tcfg.get("snrs", ()), tcfg.get("rt60s", ())
        )
        self.test_seed = int(tcfg.get("seed", 1234))
        if self.join_min_seconds > 0:
            # after the splits are fixed, the tokenizer is built and the babble pool is
            # read (from single utterances): each split on its own, so a joined utterance
            # never mixes splits
            self.splits = {
                name: join_utterances(utts, self.join_min_seconds, self.join_gap_seconds)
                for name, utts in self.splits.items()
            }

    def _tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer when there is a saved state, else one built from the
        normalised training transcripts."""
        if self.saved_state.get("tokens") or self.saved_state.get("subword"):
            tokenizer = tokenizer_from_state(self.saved_state)
            if tokenizer.kind != self.tokens:
                log.warning("data.tokens=%s ignored: the checkpoint's tokenizer is %s",
                            self.tokens, tokenizer.kind)  # fmt: skip
            return tokenizer
        texts = [self.normalize(u.text) for u in self.splits["train"]]
        if self.tokens == "sentencepiece":
            tokenizer = SentencePieceTokenizer.build(texts, self.sp_vocab_size)
            log.info("sentencepiece: %d pieces", len(tokenizer))
            return tokenizer
        return CharTokenizer.build(texts)

    def condition_names(self) -> list[str]:
        return [condition_name(k, lv) for k, lv in self.conditions]

    def dataset(self, split: str, conditions: bool = False) -> SpeechDataset:
        train = split == "train"
        return SpeechDataset(
            self.splits[split],
            self.tokenizer,
            self.normalize,
            self.train_mixer if train else self.test_mixer,
            self.conditions if conditions else None,
            train=train,
            seed=self.test_seed if not train else self.corpus_seed,
        )

    def _loader(self, ds: SpeechDataset, batch_size: int, shuffle: bool) -> DataLoader:
        lengths = [int(10 * x) for x in ds.lengths()]
        if shuffle:
            sampler = LengthBucketBatches(lengths, batch_size, self.corpus_seed, pool=20)
        else:  # sorted by length: less padding, deterministic
            order = sorted(range(len(ds)), key=lambda i: (i // len(ds.utts), lengths[i]))
            sampler = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return DataLoader(
            ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("valid"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test", conditions=True), self.eval_batch_size, False)

    # ----- contract ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            **self.tokenizer.to_state(),
            "normalize": self.normalize.to_dict(),
            "sample_rate": SAMPLE_RATE,
        }

    def manifest(self) -> dict[str, Any]:
        counts = {s: len(u) for s, u in self.splits.items()}
        hours = {
            s: round(sum(x.duration or 0 for x in u) / 3600, 3) for s, u in self.splits.items()
        }
        extra = {
            "counts_used": counts,
            "hours_used": hours,
            "skipped": dict(self.skipped),
            "longer_than_max_seconds": dict(self.too_long),  # left out of each split
            "test_conditions": self.condition_names(),
            "normalize": self.normalize.to_dict(),
            "tokens": {"kind": self.tokenizer.kind, "size": len(self.tokenizer)}
            if self.tokenizer is not None
            else None,
        }
        if self.join_min_seconds > 0:
            extra["long_inputs"] = self.joined()
        if self.folder is not None:
            return {
                "kind": "embedded",
                "folder": str(self.folder),
                "text": self.text,  # corpora built before the sentences source lack it
                **corpus_manifest(self.folder),
                **extra,
            }
        files = {s: {"path": str(p), **({"sha256": sha256_file(p)} if Path(p).is_file() else {})}
                 for s, p in self.files.items() if p}  # fmt: skip
        return {"kind": "own", "files": files, "test_split": self.test_split, **extra}

    def joined(self) -> dict[str, Any]:
        """The long-input setting in the manifest: joined utterances per split, their
        seconds and their encoder positions (log-mel frames at a 10 ms hop after the x4
        convolutional subsampling; min / median / max)."""
        out: dict[str, Any] = {
            "join_min_seconds": self.join_min_seconds,
            "join_gap_seconds": self.join_gap_seconds,
        }
        for name, utts in self.splits.items():
            seconds = sorted(float(u.duration or 0.0) for u in utts)
            if seconds:
                positions = [encoder_positions(s) for s in seconds]
                out[name] = {
                    "items": len(seconds),
                    "parts": sum(len(getattr(u, "parts", ())) or 1 for u in utts),
                    "seconds": {"min": round(seconds[0], 2),
                                "median": round(seconds[len(seconds) // 2], 2),
                                "max": round(seconds[-1], 2)},
                    "positions": {"min": positions[0], "median": positions[len(positions) // 2],
                                  "max": positions[-1]},
                }  # fmt: skip
        return out


def encoder_positions(seconds: float) -> int:
    """Encoder positions of ``seconds`` of 16 kHz audio: log-mel frames (25 ms window, 10 ms
    hop, ``toolkit.nn.speech.LogMelFrontend.frames``) after the two stride-2 convolutions
    (``Conv2dSubsampling.out_lengths``)."""
    samples = int(round(seconds * SAMPLE_RATE))
    frames = max(0, samples - 512 // 2) // 160 + 1
    return max(1, ((frames - 1) // 2 - 1) // 2)


def _loc(u: Utterance) -> tuple[str, int | None]:
    file, _, line = u.source.rpartition(":")
    return (file, int(line)) if line.isdigit() else (u.source or u.audio, None)
