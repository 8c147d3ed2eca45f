"""Data layer shared by the recipes: cache helpers, labelled-text readers, tokenizer and
vocabulary, the VADER source (lexicon and rated sentences). Each recipe's corpus builder lives
in its own package (``recipes/<name>/``)."""

from toolkit.data.cache import DataError, atomic_dir, sha256_file, write_json_atomic
from toolkit.data.labelled import LabelMap, load_labelled_splits, read_labelled_file
from toolkit.data.text import Vocab, collate_text_batch, tokenize
from toolkit.data.vader import load_vader_lexicon
from toolkit.paths import cache_root

__all__ = [
    "DataError",
    "LabelMap",
    "Vocab",
    "atomic_dir",
    "cache_root",
    "collate_text_batch",
    "load_labelled_splits",
    "load_vader_lexicon",
    "read_labelled_file",
    "sha256_file",
    "tokenize",
    "write_json_atomic",
]
