"""Sentence-polarity data: the embedded VADER corpora or the user's own labelled files."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from recipes.sentiment.corpus import build_sentiment_corpus, load_sentiment_splits
from toolkit.data.batching import LengthBucketBatches
from toolkit.data.cache import sha256_file
from toolkit.data.labelled import LabelMap, load_labelled_splits, read_labelled_file
from toolkit.data.text import Vocab, tokenize

log = logging.getLogger(__name__)
TEST_FROM_VALID = (
    "valid (no test file given: the test scores are on the validation set that picked the "
    "checkpoint)"
)


def join_documents(
    pairs: list[tuple[str, str]], min_tokens: int, count=lambda text: len(tokenize(text))
) -> list[tuple[str, str]]:
    """The long-input setting: consecutive items of one label joined into documents of at
    least ``min_tokens`` tokens (``count``), in the order of ``pairs``.

    Every item lands in exactly one document, documents are built from ``pairs`` alone (one
    split at a time, so a document never mixes splits), and a label's last items, too few
    to fill a document, are appended to that label's previous document (a label whose
    items hold fewer than ``min_tokens`` tokens in all gives one shorter document).
    """
    out: list[tuple[str, str]] = []
    buffers: dict[str, tuple[list[str], int]] = {}
    last: dict[str, int] = {}  # label -> index in `out` of its latest document
    for text, label in pairs:
        texts, n = buffers.get(label, ([], 0))
        texts.append(text)
        n += count(text)
        if n >= min_tokens:
            last[label] = len(out)
            out.append((" ".join(texts), label))
            texts, n = [], 0
        buffers[label] = (texts, n)
    for label, (texts, _) in buffers.items():
        if not texts:
            continue
        if label in last:
            i = last[label]
            out[i] = (" ".join([out[i][0], *texts]), label)
        else:
            out.append((" ".join(texts), label))
    return out


class SentimentDataModule(pl.LightningDataModule):
    """Text classification data.

    Embedded default: ``recipes.sentiment.corpus`` builds the corpus of ``domain`` once into
    the cache. Own data: ``train_file`` (+ optional ``valid_file``/``test_file``) in
    TSV/CSV/JSONL with ``text_field``/``label_field`` columns; labels may be any strings.
    ``state`` (vocab + labels saved in a checkpoint) makes evaluation and fine-tuning use
    the checkpoint's ids.
    """

    def __init__(
        self,
        domain: str = "movie",
        extra_train_domains: list[str] | tuple[str, ...] = (),
        limit: int | None = None,
        split_seed: int = 0,
        train_file: str | None = None,
        valid_file: str | None = None,
        test_file: str | None = None,
        text_field: str = "text",
        label_field: str = "label",
        valid_fraction: float = 0.1,
        max_len: int = 64,
        min_freq: int = 1,
        max_vocab: int = 30000,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        tokenizer: str = "word",
        join_min_tokens: int = 0,
        root: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.domain, self.limit, self.split_seed = domain, limit, split_seed
        self.extra_train_domains = list(extra_train_domains or [])
        self.train_file, self.valid_file, self.test_file = train_file, valid_file, test_file
        self.test_split = "test"
        self.text_field, self.label_field = text_field, label_field
        self.valid_fraction = valid_fraction
        self.max_len, self.min_freq, self.max_vocab = max_len, min_freq, max_vocab
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.tokenizer_name, self.root = num_workers, tokenizer, root
        self.saved_state = state
        # > 0: the long-input setting (join_documents); 0 = one sentence per item
        self.join_min_tokens = int(join_min_tokens or 0)
        self.folder: Path | None = None
        self.splits: dict[str, list[tuple[str, str]]] = {}
        self.vocab: Vocab | None = None
        self.labels: LabelMap | None = None
        self._encoded: dict[str, list[tuple[list[int], int]]] = {}
        self._pretrained_tokenizer = None

    # ----- data ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.train_file is None and self.test_file is None:
            self.folder = build_sentiment_corpus(
                self.domain, root=self.root, limit=self.limit, seed=self.split_seed
            )

    def _load_splits(self) -> None:
        self._read_splits()
        if self.join_min_tokens > 0:
            # the long-input setting: after the splits are fixed, each split on its own, so
            # a document never mixes splits (the embedded corpus' training domains are
            # joined one by one in _read_splits, so a document never mixes domains either)
            self.splits = {
                name: pairs if name in self._joined else self.join(pairs)
                for name, pairs in self.splits.items()
            }

    def join(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``pairs`` as documents of at least ``join_min_tokens`` tokens (join_documents)."""
        return join_documents(pairs, self.join_min_tokens)

    def _read_splits(self) -> None:
        self._joined: set[str] = set()
        if self.train_file is None and self.test_file is None:
            self.prepare_data()
            self.splits = load_sentiment_splits(self.folder)
            if not self.extra_train_domains:
                return
            # Training data from other domains of the archive; valid/test stay in-domain.
            trains = [self.splits["train"]] + [
                load_sentiment_splits(
                    build_sentiment_corpus(
                        extra, root=self.root, limit=self.limit, seed=self.split_seed
                    )
                )["train"]
                for extra in self.extra_train_domains
            ]
            if self.join_min_tokens > 0:
                trains = [self.join(pairs) for pairs in trains]
                self._joined.add("train")
            self.splits["train"] = [pair for pairs in trains for pair in pairs]
            return
        if self.train_file is None:  # evaluation of a checkpoint on an own test file only
            self.splits = {
                "test": read_labelled_file(self.test_file, self.text_field, self.label_field)
            }
            return
        _, splits = load_labelled_splits(
            self.train_file, self.valid_file, self.test_file, self.text_field, self.label_field
        )
        if "valid" not in splits:
            rng = random.Random(self.split_seed)
            train = list(splits["train"])
            rng.shuffle(train)
            n_valid = max(1, int(len(train) * self.valid_fraction))
            splits["valid"], splits["train"] = train[:n_valid], train[n_valid:]
        if "test" not in splits:
            # No test file: the run is scored on the validation split, which also picked
            # the checkpoint. Said here, in the manifest (test_split) and so in metrics.json.
            log.warning("no data.test_file: the test scores are on the validation split")
            splits["test"] = splits["valid"]
            self.test_split = TEST_FROM_VALID
        self.splits = splits

    def setup(self, stage: str | None = None) -> None:
        if self._encoded:
            return
        self._load_splits()
        if self.saved_state:
            self.vocab = Vocab.from_dict(self.saved_state["vocab"])
            self.labels = LabelMap.from_dict(self.saved_state["labels"])
        else:
            texts = [t for t, _ in self.splits["train"]]
            self.vocab = Vocab.build(texts, min_freq=self.min_freq, max_size=self.max_vocab)
            self.labels = LabelMap.from_examples(self.splits["train"])
        for name in ("valid", "test"):
            if name in self.splits:
                self.labels.check(self.splits[name], self._path_of(name))
        for name, pairs in self.splits.items():
            self._encoded[name] = [(self.encode(t), self.labels.encode(y)) for t, y in pairs]

    def _path_of(self, split: str) -> str:
        own = {"train": self.train_file, "valid": self.valid_file, "test": self.test_file}
        if own.get(split):
            return str(own[split])
        return str(Path(self.folder or ".") / f"{split}.jsonl")

    def encode(self, text: str) -> list[int]:
        if self.tokenizer_name == "word":
            return self.vocab.encode(text, self.max_len) or [self.vocab.stoi["<unk>"]]
        return self.pretrained_tokenizer().encode_ids(text, self.max_len)

    def tokens(self, text: str) -> list[str]:
        """The tokens the model sees for ``text`` (for attention pictures)."""
        if self.tokenizer_name == "word":
            return tokenize(text)[: self.max_len] or ["<unk>"]
        return self.pretrained_tokenizer().tokens(text, self.max_len)

    def pretrained_tokenizer(self):
        if self._pretrained_tokenizer is None:
            from toolkit.nn.minilm import MiniLMTokenizer

            self._pretrained_tokenizer = MiniLMTokenizer()
        return self._pretrained_tokenizer

    def pad_id(self) -> int:
        return 0

    def collate(self, items: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        longest = max(len(ids) for ids, _ in items)
        ids = torch.full((len(items), longest), self.pad_id(), dtype=torch.long)
        for row, (seq, _) in enumerate(items):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        lengths = torch.tensor([len(seq) for seq, _ in items])
        mask = torch.arange(longest)[None, :] < lengths[:, None]  # (B, T) True = token
        labels = torch.tensor([y for _, y in items], dtype=torch.long)
        return {"ids": ids, "mask": mask, "labels": labels}

    def train_dataloader(self) -> DataLoader:
        data = self._encoded["train"]
        sampler = LengthBucketBatches([len(x) for x, _ in data], self.batch_size, self.split_seed)
        return DataLoader(
            data, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self._encoded[split],
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # ----- contract with the recipe module and the run folder ----------------------------
    def state(self) -> dict[str, Any]:
        return {
            "vocab": self.vocab.to_dict(),
            "labels": self.labels.to_dict(),
            "tokenizer": self.tokenizer_name,
            "max_len": self.max_len,
        }

    def examples(self, split: str, n: int) -> list[tuple[str, str]]:
        return self.splits[split][:n]

    def joined(self) -> dict[str, Any]:
        """The long-input setting in the manifest: documents per split and their lengths in
        model positions (min / median / max)."""
        out: dict[str, Any] = {"join_min_tokens": self.join_min_tokens}
        for name, items in self._encoded.items():
            lengths = sorted(len(ids) for ids, _ in items)
            if lengths:
                out[name] = {"items": len(lengths), "min": lengths[0],
                             "median": lengths[len(lengths) // 2], "max": lengths[-1]}  # fmt: skip
        return out

    def manifest(self) -> dict[str, Any]:
        counts = {name: len(pairs) for name, pairs in self.splits.items()}
        extra = {"long_inputs": self.joined()} if self.join_min_tokens > 0 else {}
        if self.folder is not None:
            import json

            built = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
            return {"kind": "embedded", "folder": str(self.folder), **built, **extra}
        files = {}
        for split, path in (
            ("train", self.train_file),
            ("valid", self.valid_file),
            ("test", self.test_file),
        ):
            if path:
                files[split] = {"path": str(path), "sha256": sha256_file(path)}
        return {"kind": "own", "files": files, "counts": counts, "test_split": self.test_split,
                **extra}  # fmt: skip
