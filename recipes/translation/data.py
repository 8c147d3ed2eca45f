"""Parallel text for the translation recipe: the embedded Debian-catalog corpus or own files,
a shared sentencepiece vocabulary trained on the training split, token-budget batches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from recipes.translation.catalogs import build_catalog_corpus, describe, load_catalog_splits
from recipes.translation.parallel import read_parallel
from toolkit.data.batching import LengthBucketBatches
from toolkit.data.cache import sha256_file
from toolkit.data.subword import SubwordTokenizer, train_sentencepiece

log = logging.getLogger(__name__)
Pair = tuple[str, str]


def join_pairs(pairs: list[Pair], min_tokens: int, count, target_sep: str = " ") -> list[Pair]:
    """The long-input setting: consecutive pairs joined, source with source and target with
    target, until the joined source holds at least ``min_tokens`` positions (``count`` of
    the joined source text).

    Every pair lands in exactly one joined pair, in the order of ``pairs``; joined pairs are
    built from ``pairs`` alone (one split at a time, so they never mix splits). The last
    pairs, too few to fill one, are appended to the previous joined pair (a split whose
    sources hold fewer than ``min_tokens`` positions in all gives one shorter pair).
    """
    out: list[Pair] = []
    src: list[str] = []
    tgt: list[str] = []
    total = 0  # positions of the buffered sources counted one by one (a cheap lower bound)
    for s, t in pairs:
        src.append(s)
        tgt.append(t)
        total += count(s)
        if total >= min_tokens and count(" ".join(src)) >= min_tokens:
            out.append((" ".join(src), target_sep.join(tgt)))
            src, tgt, total = [], [], 0
    if src:
        if out:
            s0, t0 = out.pop()
            out.append((" ".join([s0, *src]), target_sep.join([t0, *tgt])))
        else:
            out.append((" ".join(src), target_sep.join(tgt)))
    return out


class TranslationDataModule(pl.LightningDataModule):
    """Sentence pairs -> padded id tensors.

    Embedded default: en→``target_lang`` from Debian message catalogs
    (``recipes.translation.catalogs``). Own data: ``train_file`` (+ ``valid_file``/``test_file``),
    each one ``.tsv``/``.csv``/``.jsonl`` with ``source_field``/``target_field`` columns or
    a list ``[source.txt, target.txt]`` of aligned plain-text files. ``state`` (the
    sentencepiece model from a checkpoint) keeps ids fixed for evaluation and fine-tuning.
    """

    def __init__(
        self,
        target_lang: str = "de",
        include_iso: bool = False,
        keep_identical: bool = False,
        max_words: int = 40,
        limit: int | None = None,
        train_file: Any = None,
        valid_file: Any = None,
        test_file: Any = None,
        source_field: str = "source",
        target_field: str = "target",
        valid_fraction: float = 0.05,
        vocab_size: int = 8000,
        subword_model: str = "unigram",
        max_len: int = 96,
        batch_size: int = 128,
        max_tokens: int = 4096,
        eval_batch_size: int = 64,
        val_bleu_size: int = 300,
        split_seed: int = 0,
        num_workers: int = 0,
        join_min_tokens: int = 0,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.target_lang = target_lang
        self.include_iso, self.keep_identical = include_iso, keep_identical
        self.max_words, self.limit = max_words, limit
        self.train_file, self.valid_file, self.test_file = train_file, valid_file, test_file
        self.source_field, self.target_field = source_field, target_field
        self.valid_fraction = valid_fraction
        self.vocab_size, self.subword_model = vocab_size, subword_model
        self.max_len, self.batch_size, self.max_tokens = max_len, batch_size, max_tokens
        self.eval_batch_size, self.val_bleu_size = eval_batch_size, val_bleu_size
        self.split_seed, self.num_workers = split_seed, num_workers
        self._state = state
        # > 0: the long-input setting (join_pairs); 0 = one sentence pair per item
        self.join_min_tokens = int(join_min_tokens or 0)
        self.tokenizer: SubwordTokenizer | None = (
            SubwordTokenizer.from_state(state["subword"]) if state else None
        )
        self.splits: dict[str, list[Pair]] = {}
        self._manifest: dict[str, Any] = {}

    # ----- data -------------------------------------------------------------------------
    def _build(self) -> Path:
        """The embedded corpus folder (built on first use, then reused)."""
        return build_catalog_corpus(
            self.target_lang, include_iso=self.include_iso,
            keep_identical=self.keep_identical, max_words=self.max_words, limit=self.limit,
        )  # fmt: skip

    def prepare_data(self) -> None:
        if self.train_file is None and self.test_file is None:
            self._build()

    def _embedded(self) -> dict[str, list[Pair]]:
        folder = self._build()
        manifest = describe(folder)
        self._manifest = {
            "source": manifest["corpus"],
            "folder": str(folder),
            "counts": manifest["counts"],
            "params": manifest["params"],
        }
        return load_catalog_splits(folder)

    def _own(self) -> dict[str, list[Pair]]:
        read = lambda spec: read_parallel(spec, self.source_field, self.target_field)  # noqa: E731
        splits: dict[str, list[Pair]] = {}
        files: dict[str, Any] = {}
        if self.train_file is not None:
            splits["train"] = read(self.train_file)
            files["train"] = self.train_file
        if self.valid_file is not None:
            splits["valid"] = read(self.valid_file)
            files["valid"] = self.valid_file
        elif "train" in splits:  # hold out a deterministic slice of train
            n = max(1, int(len(splits["train"]) * self.valid_fraction))
            gen = torch.Generator().manual_seed(self.split_seed)
            order = torch.randperm(len(splits["train"]), generator=gen).tolist()
            held = set(order[:n])
            pairs = splits["train"]
            splits["valid"] = [p for i, p in enumerate(pairs) if i in held]
            splits["train"] = [p for i, p in enumerate(pairs) if i not in held]
        if self.test_file is not None:
            splits["test"] = read(self.test_file)
            files["test"] = self.test_file
        self._manifest = {
            "source": "own files",
            "files": {
                k: [str(p) for p in v] if isinstance(v, (list, tuple)) else str(v)
                for k, v in files.items()
            },
            "sha256": {
                k: [sha256_file(p) for p in v] if isinstance(v, (list, tuple)) else sha256_file(v)
                for k, v in files.items()
            },
        }
        return splits

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        own = self.train_file is not None or self.test_file is not None
        splits = self._own() if own else self._embedded()
        if own and "test" in splits and "train" not in splits:
            self.splits = {"test": splits["test"]}  # evaluating a checkpoint on own data
        else:
            self.splits = splits
        if self.tokenizer is None:
            if "train" not in self.splits:
                raise ValueError("no training data and no saved vocabulary (state) to use")
            sentences = [s for pair in self.splits["train"] for s in pair]
            coverage = 0.9995 if self.target_lang in ("ja", "zh") else 1.0
            model = train_sentencepiece(
                sentences, self.vocab_size, self.subword_model, character_coverage=coverage
            )
            self.tokenizer = SubwordTokenizer(model)
            log.info("sentencepiece: %d pieces", len(self.tokenizer))
        if self.join_min_tokens > 0:
            # after the splits are fixed and the vocabulary is trained on single sentences:
            # each split on its own, so a joined pair never mixes splits
            sep = "" if self.target_lang in ("ja", "zh") else " "
            self.splits = {
                name: join_pairs(pairs, self.join_min_tokens, self.source_positions, sep)
                for name, pairs in self.splits.items()
            }
            self._manifest["long_inputs"] = self.joined()
        self._manifest["counts"] = {k: len(v) for k, v in self.splits.items()}
        self._manifest["vocab_size"] = len(self.tokenizer)

    def source_positions(self, text: str) -> int:
        """Positions of ``text`` as a source sequence (pieces + EOS, before truncation)."""
        assert self.tokenizer is not None
        return len(self.tokenizer.encode(text)) + 1

    def joined(self) -> dict[str, Any]:
        """The long-input setting in the manifest: joined pairs per split and their source
        lengths in encoder positions (min / median / max, after ``max_len``)."""
        out: dict[str, Any] = {"join_min_tokens": self.join_min_tokens}
        for name, pairs in self.splits.items():
            lengths = sorted(len(self.encode(s)) for s, _ in pairs)
            if lengths:
                out[name] = {"items": len(lengths), "min": lengths[0],
                             "median": lengths[len(lengths) // 2], "max": lengths[-1]}  # fmt: skip
        return out

    def state(self) -> dict[str, Any]:
        assert self.tokenizer is not None, "call setup() first"
        return {"subword": self.tokenizer.state(), "target_lang": self.target_lang}

    def manifest(self) -> dict[str, Any]:
        return dict(self._manifest)

    # ----- tensors ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids + EOS, truncated to ``max_len``."""
        assert self.tokenizer is not None
        return self.tokenizer.encode(text)[: self.max_len - 1] + [self.tokenizer.eos_id]

    def _items(self, pairs: list[Pair]) -> list[tuple[list[int], list[int]]]:
        return [(self.encode(s), self.encode(t)) for s, t in pairs]

    def collate(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """``src (B, S)``, ``src_mask``, ``tgt_in`` (BOS + target), ``tgt_out`` (target +
        EOS) padded with 0; ``index`` = position in the split (to find the texts)."""
        pad, bos = self.tokenizer.pad_id, self.tokenizer.bos_id
        b = len(items)
        s_len = max(len(s) for s, *_ in items)
        t_len = max(len(t) for _, t, *_ in items)
        src = torch.full((b, s_len), pad, dtype=torch.long)
        tgt_in = torch.full((b, t_len), pad, dtype=torch.long)
        tgt_out = torch.full((b, t_len), pad, dtype=torch.long)
        for i, (s, t, *_) in enumerate(items):
            src[i, : len(s)] = torch.tensor(s)
            tgt_in[i, 0] = bos
            tgt_in[i, 1 : len(t)] = torch.tensor(t[:-1])
            tgt_out[i, : len(t)] = torch.tensor(t)
        batch = {"src": src, "src_mask": src != pad, "tgt_in": tgt_in, "tgt_out": tgt_out}
        if items and len(items[0]) > 2:
            batch["index"] = torch.tensor([it[2] for it in items])
        return batch

    def _loader(self, split: str, train: bool) -> DataLoader:
        items = [(s, t, i) for i, (s, t) in enumerate(self._items(self.splits[split]))]
        if train:
            lengths = [max(len(s), len(t)) for s, t, _ in items]
            sampler = LengthBucketBatches(
                lengths, self.batch_size, self.split_seed, max_tokens=self.max_tokens
            )
            return DataLoader(items, batch_sampler=sampler, collate_fn=self.collate,
                              num_workers=self.num_workers)  # fmt: skip
        # Evaluation: sorted by length (fast batched decoding); `index` restores the order.
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        return DataLoader([items[i] for i in order], batch_size=self.eval_batch_size,
                          collate_fn=self.collate, num_workers=self.num_workers)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def examples(self, split: str, n: int | None = None) -> list[Pair]:
        pairs = self.splits.get(split, [])
        return list(pairs if n is None else pairs[:n])
