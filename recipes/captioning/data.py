"""Captioning data: the generated scene corpus or the user's own captioned images.

Embedded default: ``recipes.captioning.scenes`` builds the scene corpus once into the cache.
Own data (``format=coco|karpathy|flickr8k`` with ``train_file``/``valid_file``/``test_file``
and ``image_dir``): images are read, converted to RGB and resized to ``image_size`` once at
set-up (fine for thousands of images; bigger sets want a streaming reader).

A batch is a dict: ``images (B, 3, S, S)`` float in [0, 1], ``tokens (B, T)`` = BOS +
caption + EOS (padded with 0), ``boxes (B, K, 4)`` / ``box_mask (B, K)`` (zeros when the data
has no boxes), and the Python lists ``refs`` (tokenised references) and ``objects``.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from recipes.captioning.captions import (
    CaptionRecord,
    load_image,
    read_coco_captions,
    read_flickr8k_tokens,
    read_karpathy_split,
)
from recipes.captioning.scenes import SceneConfig, build_scene_corpus, load_scene_split
from toolkit.data.cache import DataError, sha256_file
from toolkit.data.text import tokenize

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(4)
FORMATS = ("scenes", "coco", "karpathy", "flickr8k")


class CaptionVocab:
    """Word vocabulary built from training captions: ``<pad> <unk> <bos> <eos>`` + words."""

    def __init__(self, tokens: list[str]) -> None:
        if list(tokens[:4]) != list(SPECIALS):
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, captions: list[list[str]], min_freq: int = 1) -> CaptionVocab:
        counts = Counter(t for cap in captions for t in cap)
        words = sorted(
            (t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t)
        )
        return cls(list(SPECIALS) + [w for w in words if w not in SPECIALS])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.itos[i] for i in ids if i not in (PAD, BOS, EOS)]


class CaptionSplit(Dataset):
    """Images ``(N, S, S, 3)`` uint8 with their tokenised references and objects.

    ``train=True`` yields one random reference per image and fetch; otherwise the first.
    """

    def __init__(self, images, refs, objects, vocab: CaptionVocab, max_len: int, train: bool):
        self.images, self.refs, self.objects = images, refs, objects
        self.vocab, self.max_len, self.train = vocab, max_len, train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        refs = self.refs[i]
        caption = refs[random.randrange(len(refs))] if self.train else refs[0]
        ids = [BOS, *self.vocab.encode(caption[: self.max_len]), EOS]
        return {"image": self.images[i], "ids": ids, "refs": refs, "objects": self.objects[i]}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images, pad token ids, pad boxes; keep references and objects as lists."""
    images = torch.from_numpy(np.stack([it["image"] for it in items]))  # (B, S, S, 3)
    images = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S)
    longest = max(len(it["ids"]) for it in items)
    tokens = torch.full((len(items), longest), PAD, dtype=torch.long)
    for row, it in enumerate(items):
        tokens[row, : len(it["ids"])] = torch.tensor(it["ids"])
    k = max(1, max(len(it["objects"] or []) for it in items))
    boxes = torch.zeros(len(items), k, 4)
    box_mask = torch.zeros(len(items), k, dtype=torch.bool)
    for row, it in enumerate(items):
        for j, obj in enumerate(it["objects"] or []):
            boxes[row, j] = torch.tensor(obj["box"], dtype=torch.float32)
            box_mask[row, j] = True
    return {
        "images": images,
        "tokens": tokens,
        "boxes": boxes,
        "box_mask": box_mask,
        "refs": [it["refs"] for it in items],
        "objects": [it["objects"] for it in items],
    }


class CaptioningDataModule(pl.LightningDataModule):
    """Scenes (default) or own captioned images; see the module docstring.

    Args:
        format: ``scenes``, ``coco``, ``karpathy`` or ``flickr8k``.
        scenes: ``SceneConfig`` fields of the embedded corpus (counts, image size, seed...).
        train_file / valid_file / test_file: own caption files (``karpathy``: one file with
            the splits in it, given as ``train_file``). Missing valid/test are held out from
            train by a hash of the image name (``valid_fraction`` each).
        image_dir: folder the caption files' image names are relative to.
        image_size: side images are resized to (scenes: their native size).
        max_len: longest caption (tokens) used for training and decoding.
        min_freq: rarer words become ``<unk>``.
        state: vocabulary saved in a checkpoint (evaluation / fine-tuning).
    """

    def __init__(
        self,
        format: str = "scenes",
        scenes: dict[str, Any] | None = None,
        train_file: str | None = None,
        valid_file: str | None = None,
        test_file: str | None = None,
        image_dir: str | None = None,
        image_size: int = 64,
        valid_fraction: float = 0.05,
        max_len: int = 40,
        min_freq: int = 1,
        batch_size: int = 64,
        eval_batch_size: int = 250,
        num_workers: int = 0,
        root: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"unknown data format {format!r}; valid choices: {', '.join(FORMATS)}")
        self.format = format
        self.scene_cfg = SceneConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in (scenes or {}).items()}
        )
        self.files = {"train": train_file, "valid": valid_file, "test": test_file}
        self.image_dir = image_dir
        self.image_size = self.scene_cfg.image_size if format == "scenes" else image_size
        self.valid_fraction, self.max_len, self.min_freq = valid_fraction, max_len, min_freq
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.root, self.saved_state = num_workers, root, state
        self.folder: Path | None = None
        self.vocab: CaptionVocab | None = None
        self.data: dict[str, CaptionSplit] = {}

    # ----- reading -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.format == "scenes":
            self.folder = build_scene_corpus(self.scene_cfg, root=self.root)

    def _scenes(self) -> dict[str, tuple]:
        self.prepare_data()
        out = {}
        for split in ("train", "valid", "test"):
            images, records = load_scene_split(self.folder, split)
            refs = [[c["text"].split() for c in r["captions"]] for r in records]
            objects = [
                [{k: o[k] for k in ("label", "colour", "size", "box")} for o in r["objects"]]
                for r in records
            ]
            out[split] = (images, refs, objects)
        return out

    def _read(self, path: str) -> list[CaptionRecord]:
        if self.image_dir is None:
            raise ValueError(f"data.format={self.format} needs data.image_dir")
        reader = {"coco": read_coco_captions, "flickr8k": read_flickr8k_tokens}
        if self.format == "karpathy":
            return read_karpathy_split(path, self.image_dir)
        return reader[self.format](path, self.image_dir)

    def _own(self) -> dict[str, tuple]:
        if self.format == "karpathy":
            split_of = {}
            for rec in self._read(self.files["train"] or self.files["test"]):
                split_of.setdefault(rec.split, []).append(rec)
            records = split_of
        else:
            records = {s: self._read(p) for s, p in self.files.items() if p}
            if "train" in records:
                held = {"valid": [], "test": []}
                keep = []
                for rec in records["train"]:
                    bucket = zlib.crc32(str(rec.image.name).encode()) % 1000 / 1000
                    if "valid" not in records and bucket < self.valid_fraction:
                        held["valid"].append(rec)
                    elif "test" not in records and bucket > 1 - self.valid_fraction:
                        held["test"].append(rec)
                    else:
                        keep.append(rec)
                records["train"] = keep
                for s in ("valid", "test"):
                    records.setdefault(s, held[s])
        out = {}
        for split, recs in records.items():
            source = Path(self.files.get(split) or self.files["train"] or self.files["test"])
            images = np.zeros((len(recs), self.image_size, self.image_size, 3), np.uint8)
            for i, rec in enumerate(recs):
                images[i] = load_image(rec.image, self.image_size, (source, None, rec.id))
            refs = []
            for rec in recs:
                toks = [tokenize(c) for c in rec.captions]
                if not all(toks):
                    raise DataError(source, None, rec.id, "a caption has no words")
                refs.append(toks)
            out[split] = (images, refs, [None] * len(recs))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        raw = self._scenes() if self.format == "scenes" else self._own()
        if self.saved_state:
            self.vocab = CaptionVocab(list(self.saved_state["vocab"]))
        else:
            if "train" not in raw or not len(raw["train"][0]):
                raise ValueError("no training images: set data.train_file")
            self.vocab = CaptionVocab.build(
                [c for refs in raw["train"][1] for c in refs], self.min_freq
            )
        for split, (images, refs, objects) in raw.items():
            self.data[split] = CaptionSplit(
                images, refs, objects, self.vocab, self.max_len, split == "train"
            )

    # ----- loaders -------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.data["train"], batch_size=self.batch_size, shuffle=True, collate_fn=collate,
            num_workers=self.num_workers, drop_last=len(self.data["train"]) > self.batch_size,
        )  # fmt: skip

    def _eval(self, split: str) -> DataLoader:
        return DataLoader(
            self.data[split], batch_size=self.eval_batch_size, shuffle=False,
            collate_fn=collate, num_workers=self.num_workers,
        )  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return self._eval("valid")

    def test_dataloader(self) -> DataLoader:
        return self._eval("test")

    # ----- contract ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "vocab": list(self.vocab.itos),
            "image_size": self.image_size,
            "max_len": self.max_len,
            "has_boxes": self.format == "scenes",
        }

    def examples(self, split: str, n: int) -> dict[str, Any]:
        """The first ``n`` items of ``split`` as one batch (for attention pictures)."""
        data = self.data[split]
        return collate([data[i] for i in range(min(n, len(data)))])

    def manifest(self) -> dict[str, Any]:
        counts = {s: len(d) for s, d in self.data.items()}
        if self.folder is not None:
            built = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
            return {"kind": "embedded", "folder": str(self.folder), **built}
        files = {s: {"path": str(p), "sha256": sha256_file(p)} for s, p in self.files.items() if p}
        return {"kind": "own", "format": self.format, "files": files, "counts": counts}
