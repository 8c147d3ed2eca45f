"""Property tests for every manifest/TSV/JSONL reader: on random bytes and on random
malformed rows each one returns valid records or raises a ValueError (DataError) whose
message names the file; never another exception."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recipes.translation.parallel import read_aligned_files, read_parallel
from toolkit.data.cache import DataError
from toolkit.data.labelled import read_labelled_file
from toolkit.data.validate import Report, check_labelled, check_table

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
TEXT = st.text(alphabet=string.printable + "äöü€\u2028\x00", max_size=30)
CELL = st.one_of(TEXT, st.just(""), st.just("\t"), st.just('"'), st.just("\n"))
VALUE = st.one_of(
    TEXT,
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(TEXT, TEXT, max_size=2),
)


def _file(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="prop-"))
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    return path


def _valid_or_clear_error(fn, path: Path) -> list | None:
    try:
        out = fn()
    except ValueError as err:  # DataError is a ValueError
        assert str(path.parent) in str(err) or path.name in str(err), str(err)
        assert str(err).strip()
        return None
    assert isinstance(out, list)
    return out


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
@SETTINGS
@given(data=st.binary(max_size=300))
def test_labelled_reader_random_bytes(suffix, data):
    path = _file(data, suffix)
    out = _valid_or_clear_error(lambda: read_labelled_file(path), path)
    for text, label in out or []:
        assert text.strip() == text and text and label.strip() == label and label


@SETTINGS
@given(rows=st.lists(st.lists(CELL, min_size=0, max_size=4), max_size=6),
       header=st.lists(st.sampled_from(["text", "label", "x", ""]), max_size=3))  # fmt: skip
def test_labelled_reader_malformed_delimited_rows(rows, header):
    for suffix, sep in ((".tsv", "\t"), (".csv", ",")):
        body = sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows)
        path = _file(body.encode(), suffix)
        out = _valid_or_clear_error(lambda p=path: read_labelled_file(p), path)
        for text, label in out or []:
            assert text and label


@SETTINGS
@given(rows=st.lists(st.one_of(st.dictionaries(st.sampled_from(["text", "label", "x"]), VALUE),
                               VALUE), max_size=6))  # fmt: skip
def test_labelled_reader_malformed_jsonl_rows(rows):
    body = "\n".join(json.dumps(r) for r in rows)
    path = _file(body.encode(), ".jsonl")
    out = _valid_or_clear_error(lambda: read_labelled_file(path), path)
    for text, label in out or []:
        assert isinstance(text, str) and isinstance(label, str) and text and label


@SETTINGS
@given(src=st.binary(max_size=200), tgt=st.binary(max_size=200))
def test_aligned_files_random_bytes(src, tgt):
    s, t = _file(src, ".txt"), _file(tgt, ".txt")
    try:
        pairs = read_aligned_files(s, t)
    except DataError as err:
        assert str(s) in str(err) or str(t) in str(err)
        return
    assert all(a and b for a, b in pairs)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
@SETTINGS
@given(data=st.binary(max_size=300))
def test_parallel_table_random_bytes(suffix, data):
    path = _file(data, suffix)
    _valid_or_clear_error(lambda: read_parallel(path), path)


@SETTINGS
@given(rows=st.lists(st.lists(CELL, max_size=4), max_size=6), data=st.binary(max_size=100))
def test_validator_agrees_with_reader(rows, data):
    """The validator finds no problem exactly when the reader accepts the file."""
    body = "text\tlabel\n" + "\n".join("\t".join(r) for r in rows)
    for raw in (body.encode(), body.encode() + data):
        path = _file(raw, ".tsv")
        report = Report()
        rows_ok = check_table(path, ["text", "label"], report, ["text", "label"])
        try:
            read_labelled_file(path)
            accepted = True
        except DataError:
            accepted = False
        assert accepted == report.ok, report.summary()
        if accepted:
            assert len(rows_ok) == report.records
    assert check_labelled({"train": str(path)}).files == 1


def _speech_reader():
    from toolkit.data.audio import read_jsonl_manifest  # in the repo: an import error fails

    return read_jsonl_manifest


def _caption_readers():
    from recipes.captioning import captions

    return [captions.read_coco_captions, captions.read_karpathy_split,
            captions.read_flickr8k_tokens]  # fmt: skip


@SETTINGS
@given(data=st.binary(max_size=300))
def test_audio_manifest_random_bytes(data):
    path = _file(data, ".jsonl")
    _valid_or_clear_error(lambda: _speech_reader()(path), path)


@SETTINGS
@given(rows=st.lists(st.one_of(st.dictionaries(st.sampled_from(["audio", "text", "duration"]),
                                               VALUE), VALUE), max_size=5))  # fmt: skip
def test_audio_manifest_malformed_rows(rows):
    reader = _speech_reader()
    path = _file("\n".join(json.dumps(r) for r in rows).encode(), ".jsonl")
    _valid_or_clear_error(lambda: reader(path), path)


@pytest.mark.parametrize("index", range(3))
@SETTINGS
@given(data=st.one_of(st.binary(max_size=300), st.builds(
    lambda v: json.dumps(v).encode(),
    st.dictionaries(st.sampled_from(["images", "annotations", "x"]),
                    st.lists(st.dictionaries(st.sampled_from(
                        ["id", "file_name", "image_id", "caption", "filename", "sentences",
                         "split"]), VALUE), max_size=3)))))  # fmt: skip
def test_caption_readers_random_input(index, data):
    readers = _caption_readers()
    path = _file(data, ".txt" if index == 2 else ".json")
    _valid_or_clear_error(lambda: readers[index](path, path.parent), path)
