"""Sentence-level sentiment corpora built from the VADER ground-truth data.

Source: ``additional_resources/hutto_ICWSM_2014.tar.gz`` in the PyPI source distribution of
``vaderSentiment==3.3.2`` (MIT, see :mod:`toolkit.data.vader`): the human-rated sentences of
Hutto & Gilbert (ICWSM 2014) as ``id<TAB>mean score (-4..+4)<TAB>text`` files. The word
lexicon (:func:`load_vader_lexicon`), the domain files and :func:`domain_sentences` live in
:mod:`toolkit.data.vader` (the speech recipe reads the same sentences) and are re-exported
here.

Own data are read with :func:`read_labelled_file` (re-exported here from
:mod:`toolkit.data.labelled`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.data.cache import (
    DataError,
    locked_build,
    sha256_file,
    write_json_atomic,
)
from toolkit.data.labelled import (
    Example,
    LabelMap,
    load_labelled_splits,
    read_labelled_file,
)
from toolkit.data.text import normalised_key
from toolkit.data.vader import (
    DOMAIN_FILES,
    corpus_member,
    domain_sentences,
    load_vader_lexicon,
    read_rows,
    source_record,
    vader_sdist,
)
from toolkit.paths import cache_root

__all__ = [
    "DOMAIN_FILES",
    "LABELS",
    "SPLITS",
    "Example",
    "LabelMap",
    "build_sentiment_corpus",
    "domain_sentences",
    "load_labelled_splits",
    "load_sentiment_splits",
    "load_vader_lexicon",
    "read_labelled_file",
    "vader_sdist",
]

LABELS = ("negative", "positive")
SPLITS = ("train", "valid", "test")
_DEFAULT_SPLIT = (0.8, 0.1, 0.1)
_MANIFEST_FORMAT = 1


# --------------------------------------------------------------------------- parsing


def _parse_rows(
    data: bytes, member: str, desc: str
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Parse a ground-truth file into unique ``(text, label)`` pairs, dropping score 0."""
    stats = {"rows": 0, "zero_score": 0, "duplicate": 0, "conflicting": 0, "cp1252_lines": 0}
    labels_of: dict[str, set[str]] = {}
    first_text: dict[str, str] = {}
    for score, text in read_rows(data, member, desc, stats):
        if score == 0:
            stats["zero_score"] += 1
            continue
        # The tweets (and a few product snippets) repeat sentences with only case or
        # punctuation changed ("YAY!!! Another good phone interview!!!"): merge those so one
        # sentence never lands in two splits. The first occurrence is kept.
        key = normalised_key(text)
        if key in labels_of:
            stats["duplicate"] += 1
        else:
            first_text[key] = text
        labels_of.setdefault(key, set()).add("positive" if score > 0 else "negative")
    pairs = []
    for key, labels in labels_of.items():
        if len(labels) > 1:
            stats["conflicting"] += 1  # raters disagreed in sign between copies: unusable
            continue
        pairs.append((first_text[key], next(iter(labels))))
    return pairs, stats


# --------------------------------------------------------------------------- building


def _rank(seed: int, salt: str, text: str) -> bytes:
    # Hash-based order: independent of file order and of Python's RNG across versions.
    return hashlib.sha256(f"{seed}\x00{salt}\x00{text}".encode()).digest()


def _check_split(split: Sequence[float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in split)
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or fractions[0] <= 0
        or abs(sum(fractions) - 1.0) > 1e-6
    ):
        raise ValueError(f"split must be 3 fractions (train, valid, test) summing to 1: {split}")
    return fractions  # type: ignore[return-value]


def _folder_name(domain: str, limit: int | None, seed: int, split: tuple[float, ...]) -> str:
    name = domain if limit is None else f"{domain}-limit{limit}"
    name += f"-seed{seed}"
    if split != _DEFAULT_SPLIT:
        name += "-split" + "-".join(f"{f * 100:g}" for f in split)
    return name


def _split_pairs(
    pairs: list[tuple[str, str]], limit: int | None, seed: int, split: tuple[float, ...]
) -> dict[str, list[tuple[str, str]]]:
    """Take a balanced subset (if ``limit``) and a stratified, seeded train/valid/test split."""
    by_label: dict[str, list[str]] = {label: [] for label in LABELS}
    for text, label in pairs:
        by_label[label].append(text)
    for label, texts in by_label.items():
        texts.sort(key=lambda t: _rank(seed, "split", t))
        if limit is not None:
            # Spread the remainder of an odd limit over the labels in sorted order.
            quota = limit // len(LABELS) + (LABELS.index(label) < limit % len(LABELS))
            del texts[quota:]
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for label, texts in by_label.items():
        n = len(texts)
        # Round half up; give valid/test at least one item per label when asked for any,
        # so that tiny test builds still have every split. Train takes the remainder.
        n_valid, n_test = (
            max(int(f > 0 and n >= 3), int(n * f + 0.5)) for f in (split[1], split[2])
        )
        n_train = n - n_valid - n_test
        bounds = {
            "train": (0, n_train),
            "valid": (n_train, n_train + n_valid),
            "test": (n_train + n_valid, n),
        }
        for name, (lo, hi) in bounds.items():
            out[name].extend((text, label) for text in texts[lo:hi])
    for name, fraction in zip(SPLITS, split):
        if fraction > 0 and not out[name]:
            raise ValueError(f"limit={limit} leaves the {name} split empty; use a larger limit")
        out[name].sort(key=lambda pair: _rank(seed, name, pair[0]))
    return out


def _write_jsonl(path: Path, pairs: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for text, label in pairs:
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _check_manifest(path: Path, expected: dict[str, Any]) -> None:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise DataError(
                path,
                None,
                key,
                f"folder was built with {manifest.get(key)!r}, asked for {value!r}; "
                "delete the folder to rebuild it",
            )


def build_sentiment_corpus(
    domain: str = "movie",
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    split: Sequence[float] = _DEFAULT_SPLIT,
) -> Path:
    """Build (or reuse) a labelled train/valid/test split of one VADER ground-truth corpus.

    Label is ``"positive"`` for a mean rating above 0 and ``"negative"`` below 0; sentences
    rated exactly 0 are dropped; sentences that repeat up to case and punctuation keep only
    their first occurrence, or are dropped when the copies disagree in sign. HTML entities
    are decoded. The folder holds ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``
    (``{"text": ..., "label": ...}`` per line) and ``manifest.json`` (source, checksums,
    counts, parameters).

    Args:
        domain: One of ``movie``, ``tweets``, ``products``, ``editorials``.
        root: Base folder used instead of :func:`cache_root`; the corpus goes to
            ``<root>/sentiment/<domain>[-limit<N>]-seed<seed>[-split..]/``.
        limit: Total number of sentences in a label-balanced subset (for tests), or None.
            A label with fewer sentences than its share contributes all it has.
        seed: Seed of the subset choice, the split and the order within each split.
        split: Train, valid and test fractions, applied per label (stratified).

    Returns:
        The corpus folder.

    Raises:
        ValueError: Unknown domain, bad ``limit`` or ``split``, or a ``limit`` too small to
            fill every split.
        DataError: A checksum mismatch, a malformed source row, or an existing folder built
            with other parameters.
    """
    if domain not in DOMAIN_FILES:
        raise ValueError(f"unknown sentiment domain {domain!r}; valid: {', '.join(DOMAIN_FILES)}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < len(LABELS)):
        raise ValueError(f"limit must be None or an integer >= {len(LABELS)}, got {limit!r}")
    limit = None if limit is None else int(limit)
    fractions = _check_split(split)
    base = Path(root).expanduser() if root is not None else cache_root()
    out = base / "sentiment" / _folder_name(domain, limit, seed, fractions)
    params = {"domain": domain, "limit": limit, "seed": seed, "split": dict(zip(SPLITS, fractions))}

    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        _check_manifest(manifest_path, params)
        return out
    if out.exists():
        raise DataError(out, None, None, "folder exists but has no manifest.json; delete it")

    sdist = vader_sdist()
    member = DOMAIN_FILES[domain]
    data = corpus_member(sdist, member)
    pairs, stats = _parse_rows(data, member, desc=f"sentiment/{domain}")
    splits = _split_pairs(pairs, limit, seed, fractions)

    with locked_build(out) as tmp:
        if tmp is None:  # another process built it while this one parsed
            _check_manifest(manifest_path, params)
            return out
        files = {}
        for name, items in splits.items():
            _write_jsonl(tmp / f"{name}.jsonl", items)
            files[name] = {"name": f"{name}.jsonl", "sha256": sha256_file(tmp / f"{name}.jsonl")}
        counts = {
            name: {
                **{label: sum(lab == label for _, lab in items) for label in LABELS},
                "total": len(items),
            }
            for name, items in splits.items()
        }
        manifest = {
            "format": _MANIFEST_FORMAT,
            "task": "sentiment",
            **params,
            "labels": list(LABELS),
            "source": source_record(member, data),
            "source_stats": {**stats, "kept": len(pairs)},
            "counts": counts,
            "files": files,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return out


def load_sentiment_splits(folder: str | os.PathLike[str]) -> dict[str, list[tuple[str, str]]]:
    """Read the ``train``/``valid``/``test`` pairs of a folder made by the builder."""
    folder = Path(folder)
    return {name: read_labelled_file(folder / f"{name}.jsonl") for name in SPLITS}
