"""Hostile inputs get a clear, bounded error (or a documented limit with an option to raise
it), never an out-of-memory kill or a hang: an image header claiming gigapixels, hours of
audio, a megabyte text line, a link loop in an input folder, a manifest escaping its folder."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.captioning.captions import load_image
from toolkit.commands.predict import read_inputs
from toolkit.data.audio import read_audio, read_jsonl_manifest
from toolkit.data.cache import DataError
from toolkit.data.labelled import read_labelled_file


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels, with one tiny data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    # 100 MP: PIL alone would only warn, then decode 300 MB; our limit stops it first
    bomb = _png_header_only(tmp_path / "bomb.png", 10_000, 10_000)
    assert bomb.stat().st_size < 200
    with pytest.raises(DataError, match=r"claims 10000x10000 pixels, more than the limit"):
        load_image(bomb, 64)
    # 10 GP: PIL refuses it while opening; still a DataError naming the file
    huge = _png_header_only(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(DataError, match=r"huge\.png: unreadable image .*decompression bomb"):
        load_image(huge, 64)


def test_hours_of_audio_are_refused_before_reading(tmp_path):
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(50):  # 5,000 s of silence: a small file, 40 M samples once decoded
            f.write(np.zeros(800_000, dtype=np.int16))
    with pytest.raises(DataError, match=r"lasts 5,000 s, more than the limit of 3,600 s"):
        read_audio(path)
    assert len(read_audio(path, max_seconds=None, sample_rate=8000)) == 5000 * 8000


def test_megabyte_line_is_a_clear_error(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("text\tlabel\n" + "word " * 400_000 + "\tpos\nfine\tneg\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"reviews\.tsv:2: line of 2,000,004 characters"):
        read_labelled_file(path, "text", "label")
    with pytest.raises(DataError, match=r"reviews\.tsv:2: line of 2,000,004 characters"):
        read_inputs(str(path))


def test_link_loop_in_an_input_folder_is_named(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    _png_header_only(folder / "a.png", 4, 4)
    os.symlink(folder / "loop", folder / "loop")  # a link to itself
    with pytest.raises(DataError, match=r"loop: a link that leads nowhere"):
        read_inputs(str(folder), kind="image")
    (folder / "loop").unlink()
    os.symlink(folder, folder / "self")  # a link to the folder itself: not walked into
    assert [p for p, _ in read_inputs(str(folder), kind="image")] == [str(folder / "a.png")]


def test_manifest_escaping_its_folder_is_refused(tmp_path):
    (tmp_path / "secret.wav").write_bytes(b"")
    folder = tmp_path / "data"
    folder.mkdir()
    manifest = folder / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "../secret.wav", "text": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl:1: field 'audio': '\.\./secret\.wav' points "
                       r"outside the manifest's folder"):  # fmt: skip
        read_jsonl_manifest(manifest)
    (utt,) = read_jsonl_manifest(manifest, allow_outside=True)
    assert Path(utt.audio).resolve() == (tmp_path / "secret.wav").resolve()
