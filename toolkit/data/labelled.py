"""Reading own text-classification data (JSONL, TSV, CSV) and mapping labels to ids.

Every problem in an input file is reported as a :class:`DataError` naming the file, the
1-based line (header line included for TSV/CSV) and the field, so a user can fix it directly.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.data.cache import DataError

FORMATS = ("jsonl", "tsv", "csv")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".tsv": "tsv", ".csv": "csv"}


class Example(tuple):
    """A ``(text, label)`` pair that also remembers the line it was read from.

    It unpacks and compares like a plain 2-tuple; ``line`` (or None) lets later checks,
    such as :meth:`LabelMap.check`, point at the offending line.
    """

    line: int | None

    def __new__(cls, text: str, label: str, line: int | None = None) -> Example:
        self = super().__new__(cls, (text, label))
        self.line = line
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # tuple's default pickling would call __new__ with a single argument.
        return (type(self), (self[0], self[1], self.line))

    @property
    def text(self) -> str:
        return self[0]

    @property
    def label(self) -> str:
        return self[1]


def _format_for(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    try:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{path}: cannot tell the format from suffix {path.suffix!r}; pass fmt="
            f"one of {', '.join(FORMATS)}"
        ) from None


# Limits a hostile or broken file hits with a clear error instead of exhausting memory.
MAX_LINE_CHARS = 1_000_000  # one line (a sentence, a JSON record)
MAX_FILE_BYTES = 2 << 30  # one text file read whole


def check_line_lengths(path: str | Path, text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` unchanged, or a DataError naming the first line longer than ``limit``."""
    for line_no, line in enumerate(text.split("\n"), start=1):
        if len(line) > limit:
            raise DataError(
                path, line_no, None, f"line of {len(line):,} characters, more than the limit "
                f"of {limit:,} (toolkit.data.labelled.MAX_LINE_CHARS)",
            )  # fmt: skip
    return text


def read_utf8_text(path: Path) -> str:
    """The file as text (UTF-8, optional BOM); undecodable bytes -> DataError with line;
    a file over :data:`MAX_FILE_BYTES` or a line over :data:`MAX_LINE_CHARS` -> DataError."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(path, None, None, f"{size:,} bytes, more than the limit of "
                        f"{MAX_FILE_BYTES:,} for a text file read whole")  # fmt: skip
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte {data[e.start]:#04x})") from None
    return check_line_lengths(path, text)


def jsonl_objects(path: Path, text: str):
    """``(line number, object)`` for every non-blank line of a JSONL file's ``text``; a line
    that is not JSON or not an object -> DataError naming the file and line."""
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, line_no, None, f"not JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise DataError(path, line_no, None, "expected a JSON object")
        yield line_no, row


def _value(path: Path, line: int, field: str, value: Any, kind: str) -> str:
    """Validate one text or label value and return it stripped."""
    if isinstance(value, bool) or value is None:
        raise DataError(path, line, field, f"expected a string {kind}, got {value!r}")
    if kind == "label" and isinstance(value, int):
        value = str(value)  # integer class ids are common in JSONL exports
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string {kind}, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise DataError(path, line, field, f"empty {kind}")
    return value


def _iter_jsonl(path: Path, text: str, text_field: str, label_field: str) -> Iterator[Example]:
    # Split on newlines only: str.splitlines would also break at U+2028 and similar
    # characters, which json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                path, line_no, None, f"invalid JSON ({e.msg}, column {e.colno})"
            ) from None
        if not isinstance(record, dict):
            raise DataError(path, line_no, None, f"expected a JSON object, got {record!r:.40}")
        for field in (text_field, label_field):
            if field not in record:
                keys = ", ".join(map(str, record)) or "none"
                raise DataError(path, line_no, field, f"missing key (keys present: {keys})")
        yield Example(
            _value(path, line_no, text_field, record[text_field], "text"),
            _value(path, line_no, label_field, record[label_field], "label"),
            line_no,
        )


def _iter_delimited(
    path: Path, text: str, delimiter: str, text_field: str, label_field: str
) -> Iterator[Example]:
    # TSV is read without quote handling: a tab never occurs inside a TSV field, whereas
    # quote characters occur in ordinary text and must stay as they are.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, None, None, "empty file: expected a header row") from None
    header = [name.strip() for name in header]
    columns = {}
    for field in (text_field, label_field):
        if field not in header:
            found = ", ".join(repr(h) for h in header)
            raise DataError(path, 1, field, f"missing column (header has {found})")
        columns[field] = header.index(field)
    line_no = reader.line_num
    while True:
        start = line_no + 1  # a quoted CSV field may span lines: report where the row starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(path, start, None, f"malformed row: {e}") from None
        line_no = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            field = header[len(row)] if len(row) < len(header) else None
            raise DataError(path, start, field, f"expected {len(header)} columns, found {len(row)}")
        yield Example(
            _value(path, start, text_field, row[columns[text_field]], "text"),
            _value(path, start, label_field, row[columns[label_field]], "label"),
            start,
        )


def read_labelled_file(
    path: str | os.PathLike[str],
    text_field: str = "text",
    label_field: str = "label",
    fmt: str | None = None,
) -> list[tuple[str, str]]:
    """Read ``(text, label)`` pairs from a JSONL, TSV or CSV file.

    TSV and CSV files need a header row naming the columns. Blank lines are skipped, text
    and labels are stripped, integer labels in JSONL become strings.

    Args:
        path: The file (UTF-8, optionally with a byte-order mark).
        text_field: Key or column holding the text.
        label_field: Key or column holding the label.
        fmt: ``"jsonl"``, ``"tsv"`` or ``"csv"``; taken from the suffix when None.

    Returns:
        The pairs in file order, as :class:`Example` tuples that also carry their line.

    Raises:
        DataError: A missing column or key, empty text or label, invalid JSON or UTF-8,
            a row with the wrong number of columns, or a file without examples.
    """
    path = Path(path)
    kind = _format_for(path, fmt)
    text = read_utf8_text(path)
    if kind == "jsonl":
        rows = _iter_jsonl(path, text, text_field, label_field)
    else:
        delimiter = "\t" if kind == "tsv" else ","
        rows = _iter_delimited(path, text, delimiter, text_field, label_field)
    examples = list(rows)
    if not examples:
        raise DataError(path, None, None, "no examples found")
    return examples


class LabelMap:
    """A fixed, sorted mapping between string labels and class ids.

    Build it from the training labels; save :meth:`to_dict` with a checkpoint so that ids
    mean the same classes when the model is loaded again.
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels: list[str] = sorted(set(labels))
        if not self.labels:
            raise ValueError("LabelMap needs at least one label")
        self._index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_examples(cls, examples: Iterable[tuple[str, str]]) -> LabelMap:
        """Build the map from ``(text, label)`` pairs."""
        return cls(label for _, label in examples)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.labels == other.labels

    def __repr__(self) -> str:
        return f"LabelMap({self.labels!r})"

    def encode(self, label: str) -> int:
        """Return the id of ``label``; raises KeyError naming the known labels."""
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(f"unknown label {label!r}; known labels: {self.labels}") from None

    def decode(self, index: int) -> str:
        """Return the label with id ``index``."""
        return self.labels[index]

    def check(self, items: Iterable[str | tuple[str, str]], path: str | os.PathLike[str]) -> None:
        """Raise DataError if any label is not in this map.

        Args:
            items: Labels, or ``(text, label)`` pairs as returned by :func:`read_labelled_file`
                (their line numbers then appear in the error).
            path: The file the items came from, for the message.

        Raises:
            DataError: At the first unknown label, naming file, line and the label field.
        """
        for item in items:
            label = item if isinstance(item, str) else item[1]
            if label not in self._index:
                line = getattr(item, "line", None)
                raise DataError(
                    path,
                    line,
                    "label",
                    f"label {label!r} does not occur in the training data "
                    f"(training labels: {', '.join(self.labels)})",
                )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form."""
        return {"labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelMap:
        """Rebuild a map saved with :meth:`to_dict`, keeping its exact id order."""
        labels = list(data["labels"])
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels in saved label map: {labels}")
        obj = cls(labels)
        # Ids must match the checkpoint even if a saved order was not sorted.
        obj.labels = labels
        obj._index = {label: i for i, label in enumerate(labels)}
        return obj


def load_labelled_splits(
    train: str | os.PathLike[str],
    valid: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    text_field: str = "text",
    label_field: str = "label",
    fmt: str | None = None,
) -> tuple[LabelMap, dict[str, list[tuple[str, str]]]]:
    """Read own train/valid/test files and check their labels against the training set.

    Returns:
        The label map built from the training file and the examples per split name
        (only the splits that were given).

    Raises:
        DataError: Any problem in a file, including a valid/test label unseen in training.
    """
    splits: dict[str, list[tuple[str, str]]] = {}
    paths: Sequence[tuple[str, str | os.PathLike[str] | None]] = (
        ("train", train),
        ("valid", valid),
        ("test", test),
    )
    for name, path in paths:
        if path is not None:
            splits[name] = read_labelled_file(path, text_field, label_field, fmt)
    label_map = LabelMap.from_examples(splits["train"])
    for name, path in paths[1:]:
        if path is not None:
            label_map.check(splits[name], path)
    return label_map, splits
