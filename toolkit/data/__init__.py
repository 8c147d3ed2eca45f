"""Data layer: cache helpers, text-classification corpora, tokenizer and vocabulary."""

from toolkit.data.cache import DataError, atomic_dir, cache_root, sha256_file, write_json_atomic
from toolkit.data.labelled import LabelMap, load_labelled_splits, read_labelled_file
from toolkit.data.sentiment import (
    build_sentiment_corpus,
    load_sentiment_splits,
    load_vader_lexicon,
)
from toolkit.data.text import Vocab, collate_text_batch, tokenize

__all__ = [
    "DataError",
    "LabelMap",
    "Vocab",
    "atomic_dir",
    "build_sentiment_corpus",
    "cache_root",
    "collate_text_batch",
    "load_labelled_splits",
    "load_sentiment_splits",
    "load_vader_lexicon",
    "read_labelled_file",
    "sha256_file",
    "tokenize",
    "write_json_atomic",
]
