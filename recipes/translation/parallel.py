"""Own parallel data for translation: two aligned plain-text files, or one TSV/CSV/JSONL
file with source and target columns. Every problem is a ``DataError`` naming file and line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from toolkit.data.cache import DataError
from toolkit.data.labelled import read_labelled_file, read_utf8_text

PathLike = str | os.PathLike[str]


def _lines(path: Path) -> list[str]:
    text = read_utf8_text(path)  # DataError with the line of the first undecodable byte
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]


def read_aligned_files(source: PathLike, target: PathLike) -> list[tuple[str, str]]:
    """Pairs from two files with one sentence per line, line ``i`` aligned with line ``i``."""
    source, target = Path(source), Path(target)
    for path in (source, target):
        if not path.is_file():
            raise DataError(path, None, None, "file not found")
    src, tgt = _lines(source), _lines(target)
    if len(src) != len(tgt):
        raise DataError(
            target, min(len(src), len(tgt)) + 1, None,
            f"parallel files differ in length: {source} has {len(src)} lines, "
            f"{target} has {len(tgt)}",
        )  # fmt: skip
    pairs = []
    for i, (s, t) in enumerate(zip(src, tgt, strict=True), start=1):
        for path, value, field in ((source, s, "source"), (target, t, "target")):
            if not value.strip():
                raise DataError(path, i, field, "empty line (every line must hold a sentence)")
        pairs.append((s.strip(), t.strip()))
    if not pairs:
        raise DataError(source, None, None, "no sentence pairs found")
    return pairs


def read_parallel(
    spec: PathLike | Sequence[PathLike],
    source_field: str = "source",
    target_field: str = "target",
) -> list[tuple[str, str]]:
    """``spec`` is ``[source.txt, target.txt]`` or one ``.tsv``/``.csv``/``.jsonl`` file."""
    if isinstance(spec, (list, tuple)) or (
        not isinstance(spec, (str, os.PathLike)) and hasattr(spec, "__len__")
    ):
        paths = list(spec)
        if len(paths) != 2:
            raise ValueError(f"expected [source_file, target_file], got {paths}")
        return read_aligned_files(paths[0], paths[1])
    path = Path(spec)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    return [(s, t) for s, t in read_labelled_file(path, source_field, target_field)]
