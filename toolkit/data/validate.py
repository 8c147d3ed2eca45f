"""Check a user's dataset and list EVERY problem by file and line (the readers stop at the
first): ``python -m toolkit.data validate recipe=<name> path=<file> ...``.

Checks: missing files, undecodable bytes (UTF-8), invalid JSON / wrong column counts /
missing columns or keys, empty text or labels, label sets that differ between splits,
parallel files of different lengths, and for audio and image data: unreadable or
zero-length audio, the wrong channel count, unreadable images. ``validate_config`` runs the
same checks on the files named in a training config (toolkit.train calls it first).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.data.cache import DataError
from toolkit.recipe_hooks import config_package, named_package, package_hook_module

TEXT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".csv": "csv"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        return str(DataError(self.path, self.line, self.field, self.message))


@dataclass
class Report:
    """Every problem found, and what was checked."""

    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    records: int = 0

    def add(self, path: Any, line: int | None, fld: str | None, message: str) -> None:
        self.problems.append(Problem(str(path), line, fld, message))

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        kinds = Counter(p.message.split(" (")[0].split(":")[0] for p in self.problems)
        order = {path: i for i, path in enumerate(dict.fromkeys(p.path for p in self.problems))}
        ranked = sorted(self.problems, key=lambda p: (order[p.path], p.line or 0))
        lines = [str(p) for p in ranked]
        by_kind = ", ".join(f"{n}× {k}" for k, n in kinds.most_common())
        lines.append(
            f"{len(self.problems)} problem(s) in {len({p.path for p in self.problems})} of "
            f"{self.files} file(s), {self.records} record(s) checked"
            + (f": {by_kind}" if by_kind else "")
        )
        return "\n".join(lines)

    def raise_if_bad(self, limit: int = 20) -> None:
        if self.problems:
            first = self.problems[0]
            shown = "\n".join(str(p) for p in self.problems[:limit])
            more = len(self.problems) - limit
            tail = f"\n... and {more} more" if more > 0 else ""
            raise DataError(
                first.path, first.line, first.field,
                f"{first.message}\n{len(self.problems)} data problem(s) found "
                f"(python -m toolkit.data validate lists them all):\n{shown}{tail}",
            )  # fmt: skip


# ----- text ------------------------------------------------------------------------------------
def read_lines(path: Path, report: Report) -> list[str] | None:
    """The file's lines; undecodable lines are reported (each one) and kept with U+FFFD."""
    report.files += 1
    if not path.exists():
        report.add(path, None, None, "file not found")
        return None
    if not path.is_file():
        report.add(path, None, None, "not a file")
        return None
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            report.add(path, i, None, f"not valid UTF-8 (byte {raw[e.start]:#04x})")
            out.append(raw.decode("utf-8", errors="replace").rstrip("\r"))
    return out


def _check_value(
    report: Report, path: Path, line: int, fld: str, value: Any, kind: str
) -> str | None:
    if isinstance(value, bool) or value is None:
        report.add(path, line, fld, f"expected a string {kind}, got {value!r}")
        return None
    if kind == "label" and isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        report.add(path, line, fld, f"expected a string {kind}, got {type(value).__name__}")
        return None
    if not value.strip():
        report.add(path, line, fld, f"empty {kind}")
        return None
    return value.strip()


def check_table(
    path: str | os.PathLike[str], fields: Sequence[str], report: Report,
    kinds: Sequence[str] | None = None,
) -> list[tuple[int, dict[str, str]]]:  # fmt: skip
    """Rows of a JSONL/TSV/CSV file with the given fields; every bad row is reported.

    Returns ``(line, {field: value})`` for the good rows.
    """
    path = Path(path)
    kinds = list(kinds or ["text"] * len(fields))
    fmt = TEXT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        report.files += 1
        if path.exists():
            report.add(
                path, None, None, f"unknown format {path.suffix!r}: use .tsv, .csv or .jsonl"
            )
        else:
            report.add(path, None, None, "file not found")
        return []
    lines = read_lines(path, report)
    if lines is None:
        return []
    rows: list[tuple[int, dict[str, str]]] = []
    if fmt == "jsonl":
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            report.records += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                report.add(path, i, None, f"invalid JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(record, dict):
                report.add(path, i, None, f"expected a JSON object, got {type(record).__name__}")
                continue
            values = {}
            for fld, kind in zip(fields, kinds, strict=True):
                if fld not in record:
                    report.add(
                        path,
                        i,
                        fld,
                        f"missing key (keys present: {', '.join(map(str, record)) or 'none'})",
                    )
                    continue
                value = _check_value(report, path, i, fld, record[fld], kind)
                if value is not None:
                    values[fld] = value
            if len(values) == len(fields):
                rows.append((i, values))
    else:
        delimiter = "\t" if fmt == "tsv" else ","
        quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
        reader = csv.reader(io.StringIO("\n".join(lines), newline=""), delimiter=delimiter,
                            quoting=quoting)  # fmt: skip
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            report.add(path, None, None, "empty file: expected a header row")
            return []
        except csv.Error as e:
            report.add(path, 1, None, f"malformed header: {e}")
            return []
        missing = [f for f in fields if f not in header]
        for fld in missing:
            report.add(path, 1, fld, f"missing column (header has {', '.join(map(repr, header))})")
        if missing:
            return []
        line_no = reader.line_num
        while True:
            start = line_no + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                report.add(path, start, None, f"malformed row: {e}")
                break  # the csv module cannot resynchronise after this
            line_no = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            report.records += 1
            if len(row) != len(header):
                report.add(path, start, None, f"expected {len(header)} columns, found {len(row)}")
                continue
            values = {}
            for fld, kind in zip(fields, kinds, strict=True):
                value = _check_value(report, path, start, fld, row[header.index(fld)], kind)
                if value is not None:
                    values[fld] = value
            if len(values) == len(fields):
                rows.append((start, values))
    if not rows and not any(p.path == str(path) for p in report.problems):
        report.add(path, None, None, "no examples found")
    return rows


def check_labelled(
    splits: dict[str, str], text_field: str = "text", label_field: str = "label",
    report: Report | None = None,
) -> Report:  # fmt: skip
    """Labelled text (sentiment): per-row checks, then labels of valid/test that the
    training split does not have (each with its first line and count)."""
    report = report or Report()
    labels: dict[str, dict[str, tuple[int, int]]] = {}
    for split, path in splits.items():
        rows = check_table(path, [text_field, label_field], report, ["text", "label"])
        seen: dict[str, tuple[int, int]] = {}
        for line, values in rows:
            first, n = seen.get(values[label_field], (line, 0))
            seen[values[label_field]] = (first, n + 1)
        labels[split] = seen
    train = labels.get("train")
    if train:
        for split, seen in labels.items():
            if split == "train":
                continue
            for label, (line, n) in sorted(seen.items()):
                if label not in train:
                    report.add(splits[split], line, label_field,
                               f"label set mismatch: {label!r} ({n} row(s)) is not a training "
                               f"label (train has {', '.join(map(repr, sorted(train)))})",
                    )  # fmt: skip
    return report


def check_parallel(
    spec: Any, source_field: str = "source", target_field: str = "target",
    report: Report | None = None,
) -> Report:  # fmt: skip
    """Parallel text (translation): ``[source.txt, target.txt]`` aligned line by line, or
    one TSV/CSV/JSONL file with both columns."""
    report = report or Report()
    if isinstance(spec, (list, tuple)) or (
        not isinstance(spec, (str, os.PathLike)) and hasattr(spec, "__len__")
    ):
        paths = [Path(p) for p in spec]
        if len(paths) != 2:
            report.add(paths[0] if paths else "?", None, None,
                       f"expected [source_file, target_file], got {len(paths)} file(s)",
            )  # fmt: skip
            return report
        src, tgt = (read_lines(p, report) for p in paths)
        if src is None or tgt is None:
            return report
        if len(src) != len(tgt):
            report.add(paths[1], min(len(src), len(tgt)) + 1, None,
                       f"mismatched parallel files: {paths[0]} has {len(src)} lines, "
                       f"{paths[1]} has {len(tgt)}")  # fmt: skip
        for i, (s, t) in enumerate(zip(src, tgt), start=1):
            report.records += 1
            for path, value, fld in ((paths[0], s, "source"), (paths[1], t, "target")):
                if not value.strip():
                    report.add(path, i, fld, "empty text (every line must hold a sentence)")
        return report
    check_table(spec, [source_field, target_field], report)
    return report


# ----- audio and images -------------------------------------------------------------------------
def check_audio_file(path: Path, report: Report, where: tuple[Any, int | None, str | None],
                     channels: int | None = 1) -> None:  # fmt: skip
    import soundfile as sf

    file, line, fld = where
    if not path.is_file():
        report.add(file, line, fld, f"audio file not found: {path}")
        return
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile's errors are RuntimeError/LibsndfileError/TypeError
        report.add(file, line, fld, f"unreadable audio {path}: {str(err).splitlines()[0][:160]}")
        return
    if info.frames <= 0:
        report.add(file, line, fld, f"zero-length audio: {path}")
    if channels is not None and info.channels != channels:
        report.add(file, line, fld,
                   f"wrong channel count: {path} has {info.channels}, expected {channels}",
        )  # fmt: skip


def check_image_file(path: Path, report: Report, where: tuple[Any, int | None, str | None]) -> None:
    from PIL import Image

    file, line, fld = where
    if not path.is_file():
        report.add(file, line, fld, f"image file not found: {path}")
        return
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:  # verify() does not decode the pixels
            img.load()
    except Exception as err:
        report.add(file, line, fld, f"unreadable image {path}: {str(err)[:160]}")


def check_audio_manifest(path: str | os.PathLike[str], report: Report | None = None,
                         audio_field: str = "audio", text_field: str = "text",
                         channels: int | None = 1) -> Report:  # fmt: skip
    """JSONL ``{"audio": path (relative to the manifest), "text": transcript}`` rows."""
    report = report or Report()
    path = Path(path)
    for line, values in check_table(path, [audio_field, text_field], report):
        audio = Path(values[audio_field])
        full = audio if audio.is_absolute() else path.parent / audio
        check_audio_file(full, report, (path, line, audio_field), channels)
    return report


def check_media_paths(paths: Iterable[Path], report: Report, channels: int | None = 1) -> Report:
    """Audio/image files given directly (or every such file in a folder)."""
    for p in paths:
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            suffix = f.suffix.lower()
            if suffix in AUDIO_SUFFIXES:
                report.files += 1
                report.records += 1
                check_audio_file(f, report, (f, None, None), channels)
            elif suffix in IMAGE_SUFFIXES:
                report.files += 1
                report.records += 1
                check_image_file(f, report, (f, None, None))
            elif not f.exists():
                report.add(f, None, None, "file not found")
    return report


# ----- by recipe ------------------------------------------------------------------------------
def validate_files(
    recipe: str, files: dict[str, Any], options: dict[str, Any] | None = None,
    package: str | None = None,
) -> Report:  # fmt: skip
    """Validate ``files`` (split -> path, or ``path<i>`` -> path, or a list of paths) for
    ``recipe`` (a ``conf/recipe/<name>.yaml`` name, or a recipe package's dotted name; or
    give ``package``). The recipe's ``<package>.validate.validate_files(files, options,
    report)`` hook does the checks (:mod:`toolkit.recipe_hooks`); a recipe without one gets
    its files checked as audio/image files or folders."""
    opts = dict(options or {})
    report = Report()
    splits = {k: v for k, v in files.items() if v is not None}
    helper = package_hook_module(package or named_package(recipe), "validate")
    check = getattr(helper, "validate_files", None)
    if check is not None:
        check(splits, opts, report)
    else:
        for spec in splits.values():
            check_media_paths([Path(spec)], report, opts.get("channels", 1) or None)
    return report


def validate_config(cfg: Any) -> Report:
    """The checks above on the own-data files named in a training config; raises a
    DataError listing the problems (embedded corpora are built by us and skipped)."""
    data = cfg.get("data") or {}
    files = {s: data.get(f"{s}_file") for s in ("train", "valid", "test")}
    files = {k: (list(v) if not isinstance(v, (str, os.PathLike)) and v is not None else v)
             for k, v in files.items()}  # fmt: skip
    if not any(v is not None for v in files.values()):
        return Report()
    options = {k: data.get(k) for k in ("text_field", "label_field", "source_field",
                                         "target_field", "image_dir", "format")
               if data.get(k)}  # fmt: skip
    options["channels"] = None  # the readers downmix: several channels are fine to train on
    report = validate_files(str(cfg.recipe.name), files, options, config_package(cfg))
    report.raise_if_bad()
    return report
