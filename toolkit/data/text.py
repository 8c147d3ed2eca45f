"""Word tokenizer, vocabulary and batch collation for text classification, and the
normalised key under which corpus builders count two sentences as the same."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

PAD = "<pad>"
UNK = "<unk>"
CLS = "<cls>"

# Typographic quotes are folded to ASCII first; Pang & Lee's movie sentences write a double
# quote as two apostrophes (''Conan'') and some sources use LaTeX-style ``quotes``.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "`": "'"})
_DOUBLE_APOSTROPHE = re.compile(r"''")

_NON_ALNUM = re.compile(r"[\W_]+")


def normalised_key(text: str) -> str:
    """The key under which corpus builders treat two sentences as one: Unicode NFKC,
    case-folded, every character that is not a letter or digit removed (punctuation, symbols
    and whitespace). ``"Yes"``, ``"yes."`` and ``"YES!"`` share a key, as do ``"Warning:"``
    and ``"WARNING"``. A text without letters or digits keys on its folded form.

    Used to deduplicate and split the sentiment and translation corpora, so that variants
    of one sentence never land in two splits.

    Example:
        >>> normalised_key("Log in…") == normalised_key("LOGIN") == "login"
        True
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NON_ALNUM.sub("", folded) or folded


_TOKEN_RE = re.compile(
    r"""
    https?://\S+ | www\.\S+                         # URLs stay whole
    | (?<![^\W_])[:;=]-?[()\[\]dp/\\|*](?![^\W_])   # common emoticons (after lower-casing)
    | <3
    | [^\W_]+(?=n't\b)                              # "don't" -> "do" + "n't"
    | n't\b
    | '(?:s|m|d|ll|re|ve)\b                         # clitics: "it's" -> "it" + "'s"
    | \d+(?:[.,:]\d+)+(?![^\W_])                    # numbers such as 3.5, 1,000, 10:30
    | [^\W_]+(?:-[^\W_]+)*                          # words, hyphenated words kept whole
    | \.{2,} | [!?]+                                # "...", "!!!", "?!" carry sentiment
    | [^\w\s]                                       # any other symbol on its own
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into word, contraction and punctuation tokens.

    Example:
        >>> tokenize("It's not bad -- I don't hate it!!")
        ['it', "'s", 'not', 'bad', '-', '-', 'i', 'do', "n't", 'hate', 'it', '!!']
    """
    text = _DOUBLE_APOSTROPHE.sub('"', text.translate(_QUOTES)).lower()
    return _TOKEN_RE.findall(text)


class Vocab:
    """Token <-> id mapping with ``<pad>`` = 0, ``<unk>`` = 1 and an optional ``<cls>`` = 2.

    Args:
        tokens: The full id order, starting with the special tokens.
        cls: Whether ``<cls>`` is present (id 2) and prepended by :meth:`encode`.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, tokens: Sequence[str], cls: bool = False) -> None:
        specials = self.specials(cls)
        if list(tokens[: len(specials)]) != specials:
            raise ValueError(f"vocabulary must start with {specials}, got {list(tokens[:3])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        self.cls_id: int | None = 2 if cls else None

    @staticmethod
    def specials(cls: bool = False) -> list[str]:
        """Return the special tokens in id order."""
        return [PAD, UNK, CLS] if cls else [PAD, UNK]

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_freq: int = 1,
        max_size: int | None = None,
        add_cls: bool = False,
    ) -> Vocab:
        """Count tokens over ``texts`` and keep the frequent ones.

        Args:
            texts: Training texts (raw strings; tokenized with :func:`tokenize`).
            min_freq: Drop tokens seen fewer times.
            max_size: Largest vocabulary size, special tokens included; None for no cap.
            add_cls: Reserve ``<cls>`` (id 2) and prepend it when encoding.

        Returns:
            A vocabulary ordered by descending frequency, ties broken alphabetically so
            that the same texts always give the same ids.
        """
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        specials = cls.specials(add_cls)
        if max_size is not None and max_size < len(specials):
            raise ValueError(f"max_size must be at least {len(specials)} (the special tokens)")
        words = sorted(
            (tok for tok, n in counts.items() if n >= min_freq and tok not in specials),
            key=lambda tok: (-counts[tok], tok),
        )
        if max_size is not None:
            words = words[: max_size - len(specials)]
        return cls(specials + words, cls=add_cls)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.cls_id == other.cls_id

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, cls={self.cls_id is not None})"

    def encode_tokens(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """Map tokens to ids, prepend ``<cls>`` if present, then truncate to ``max_len``.

        An empty input gives ``[<unk>]`` (after ``<cls>``), so every sequence has at least
        one real position and a masked softmax over it is always defined.
        """
        ids = [self.stoi.get(tok, self.unk_id) for tok in tokens] or [self.unk_id]
        if self.cls_id is not None:
            ids.insert(0, self.cls_id)
        if max_len is not None:
            if max_len < 1:
                raise ValueError(f"max_len must be positive, got {max_len}")
            ids = ids[:max_len]
        return ids

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Tokenize ``text`` and return its ids (see :meth:`encode_tokens`)."""
        return self.encode_tokens(tokenize(text), max_len)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Join the tokens of ``ids`` with spaces, leaving out ``<pad>``/``<cls>`` by default.

        ``<unk>`` is always kept so that a reader sees where words were unknown.
        """
        skip = {self.pad_id, self.cls_id} if skip_special else set()
        return " ".join(self.itos[int(i)] for i in ids if int(i) not in skip)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form, to be saved with a checkpoint."""
        return {"tokens": list(self.itos), "cls": self.cls_id is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocab:
        """Rebuild a vocabulary saved with :meth:`to_dict`."""
        return cls(data["tokens"], cls=bool(data.get("cls", False)))


def collate_text_batch(
    items: Sequence[tuple[Sequence[int] | torch.Tensor, int]], pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch of ``(token ids, label id)`` pairs.

    Use with a DataLoader through ``functools.partial(collate_text_batch, pad_id=...)``.

    Returns:
        ``ids`` LongTensor (B, T) padded with ``pad_id``; ``mask`` BoolTensor (B, T), True
        at real tokens; ``labels`` LongTensor (B,). T is the longest sequence (at least 1).
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    seqs = [torch.as_tensor(ids, dtype=torch.long).reshape(-1) for ids, _ in items]
    length = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.long)
    return ids, mask, labels
