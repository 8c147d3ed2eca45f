"""Tests for the text-classification data layer (toolkit.data)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

from recipes.sentiment.corpus import DOMAIN_FILES, build_sentiment_corpus, load_sentiment_splits
from toolkit.data.cache import DataError, atomic_dir, sha256_file, write_json_atomic
from toolkit.data.labelled import LabelMap, load_labelled_splits, read_labelled_file
from toolkit.data.text import Vocab, collate_text_batch, tokenize
from toolkit.data.vader import (
    CORPUS_ARCHIVE,
    VADER_SDIST_SHA256,
    decode_lines,
    load_vader_lexicon,
    vader_sdist,
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdist_path: Path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ATTN_TOOLKIT_CACHE", str(root))
    monkeypatch.setenv("ATTN_TOOLKIT_VADER_SDIST", str(sdist_path))
    return root


# --------------------------------------------------------------------------- corpus build


def test_tiny_build_counts_balance_and_disjoint(cache: Path) -> None:
    out = build_sentiment_corpus("movie", limit=40, seed=0)
    assert out == cache / "sentiment" / "movie-limit40-seed0"
    splits = load_sentiment_splits(out)
    sizes = {name: len(items) for name, items in splits.items()}
    assert sizes == {"train": 32, "valid": 4, "test": 4}
    for name, items in splits.items():
        labels = [label for _, label in items]
        assert labels.count("positive") == labels.count("negative") == sizes[name] // 2
    texts = [set(text for text, _ in items) for items in splits.values()]
    assert len(texts[0] | texts[1] | texts[2]) == 40
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    built = cache.joinpath("sentiment").iterdir()
    # the build's lock file (".<name>.lock") stays beside the folder on purpose
    assert sorted(p.name for p in built if p.suffix != ".lock") == ["movie-limit40-seed0"]


def test_tiny_build_manifest_checksums(cache: Path, sdist_path: Path) -> None:
    out = build_sentiment_corpus("movie", limit=40)
    manifest = json.loads((out / "manifest.json").read_text())
    src = manifest["source"]
    assert (src["package"], src["version"]) == ("vaderSentiment", "3.3.2")
    assert src["sdist_sha256"] == VADER_SDIST_SHA256 == sha256_file(sdist_path)
    assert src["member"] == "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    with tarfile.open(sdist_path) as outer:
        inner = outer.extractfile(f"vaderSentiment-3.3.2/{CORPUS_ARCHIVE}").read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as archive:
        member = archive.extractfile(src["member"]).read()
    assert src["member_sha256"] == hashlib.sha256(member).hexdigest()
    assert manifest["seed"] == 0 and manifest["limit"] == 40
    assert manifest["counts"]["train"] == {"negative": 16, "positive": 16, "total": 32}
    assert manifest["counts"]["test"] == {"negative": 2, "positive": 2, "total": 4}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(out / f"{name}.jsonl")


def test_build_is_deterministic(cache: Path, tmp_path: Path) -> None:
    a = build_sentiment_corpus("movie", root=tmp_path / "a", limit=40, seed=3)
    b = build_sentiment_corpus("movie", root=tmp_path / "b", limit=40, seed=3)
    c = build_sentiment_corpus("movie", root=tmp_path / "c", limit=40, seed=4)
    assert a == tmp_path / "a" / "sentiment" / "movie-limit40-seed3"
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    assert not cache.exists()  # an explicit root leaves the cache alone


def test_build_is_reused_not_rebuilt(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build_sentiment_corpus("movie", limit=40)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def fail(*args: object) -> None:
        raise AssertionError("corpus was rebuilt")

    monkeypatch.setattr("recipes.sentiment.corpus.corpus_member", fail)
    assert build_sentiment_corpus("movie", limit=40) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert len(stamps) == 4


@pytest.mark.parametrize(
    ("domain", "kept", "zero", "dup", "conflicting", "train", "test"),
    [
        ("movie", 10566, 37, 2, 0, (4259, 4193), (533, 524)),
        ("tweets", 4040, 4, 155, 1, (979, 2253), (122, 282)),
        ("products", 3592, 98, 18, 0, (1182, 1692), (148, 211)),
        ("editorials", 4878, 244, 62, 6, (2160, 1742), (270, 218)),
    ],
)
def test_full_domain_counts(
    cache: Path,
    domain: str,
    kept: int,
    zero: int,
    dup: int,
    conflicting: int,
    train: tuple[int, int],
    test: tuple[int, int],
) -> None:
    out = build_sentiment_corpus(domain)
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["source_stats"]
    assert manifest["source"]["member"] == DOMAIN_FILES[domain]
    assert (stats["kept"], stats["zero_score"], stats["duplicate"]) == (kept, zero, dup)
    assert (stats["conflicting"], stats["cp1252_lines"]) == (conflicting, 0)
    counts = manifest["counts"]
    assert (counts["train"]["negative"], counts["train"]["positive"]) == train
    assert (counts["test"]["negative"], counts["test"]["positive"]) == test
    assert sum(c["total"] for c in counts.values()) == kept
    text = "".join((out / f"{name}.jsonl").read_text(encoding="utf-8") for name in counts)
    assert "&amp;" not in text and "&#" not in text  # entities decoded, even double-escaped ones
    assert len(text.splitlines()) == kept
    if domain == "movie":
        assert "Château" in text  # UTF-8 text kept intact


def test_unknown_domain_and_bad_arguments(cache: Path) -> None:
    with pytest.raises(ValueError, match="movie, tweets, products, editorials"):
        build_sentiment_corpus("books")
    with pytest.raises(ValueError, match="limit"):
        build_sentiment_corpus("movie", limit=1)
    with pytest.raises(ValueError, match="split"):
        build_sentiment_corpus("movie", split=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="limit=4 leaves the valid split empty"):
        build_sentiment_corpus("movie", limit=4)
    assert not (cache / "sentiment").exists()


def test_odd_limit_and_custom_split(cache: Path) -> None:
    out = build_sentiment_corpus("tweets", limit=11, seed=1, split=(0.6, 0.2, 0.2))
    assert out.name == "tweets-limit11-seed1-split60-20-20"
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert {k: (v["negative"], v["positive"]) for k, v in counts.items()} == {
        "train": (4, 3),
        "valid": (1, 1),
        "test": (1, 1),
    }


def test_sdist_checksum_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    fake.write_bytes(b"not the sdist")
    monkeypatch.setenv("ATTN_TOOLKIT_VADER_SDIST", str(fake))
    with pytest.raises(DataError, match="sha256"):
        vader_sdist()


def test_decode_lines_falls_back_to_cp1252() -> None:
    lines, fallback = decode_lines(b"\xef\xbb\xbf1\t1.0\tna\xc3\xafve\r\n2\t-1\tcaf\xe9\r\n")
    assert lines == ["1\t1.0\tnaïve", "2\t-1\tcafé"]
    assert fallback == 1


def test_vader_lexicon(cache: Path) -> None:
    lexicon = load_vader_lexicon()
    assert len(lexicon) == 7506  # 7,520 lines, 14 tokens listed twice
    assert lexicon["good"] == 1.9 and lexicon["bad"] == -2.5 and lexicon[":)"] == 2.0
    assert lexicon["lol"] == 1.8  # the later duplicate wins, as in vaderSentiment
    assert (cache / "lexicons" / "vader_lexicon-3.3.2.json").is_file()
    assert load_vader_lexicon() == lexicon


# --------------------------------------------------------------------------- cache helpers


def test_atomic_dir_success_failure_and_existing(tmp_path: Path) -> None:
    final = tmp_path / "built"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "x").write_text("partial")
        raise RuntimeError("boom")
    # nothing half-written is left; only the (empty) lock file of the build
    assert [p.name for p in tmp_path.iterdir()] == [".built.lock"]
    with atomic_dir(final) as tmp:
        (tmp / "x").write_text("first")
    with atomic_dir(final) as tmp:  # a concurrent builder that finished second
        (tmp / "x").write_text("second")
    assert (final / "x").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".built.lock", "built"]


def test_json_and_checksum_helpers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    write_json_atomic(path, {"b": "é", "n": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": "é", "n": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_file(tmp_path / "abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    err = pickle.loads(pickle.dumps(DataError("f.tsv", 3, "text", "empty text")))
    assert (str(err), err.line, err.field) == ("f.tsv:3: field 'text': empty text", 3, "text")


# --------------------------------------------------------------------------- own data


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "line", "field"),
    [
        ("missing_col.tsv", "sentence\tlabel\nfine\tpos\n", 1, "text"),
        ("missing_key.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', 2, "label"),
        ("empty_text.csv", "text,label\ngood,pos\n  ,neg\n", 3, "text"),
        ("empty_label.tsv", "text\tlabel\nok\tpos\n\nmeh\t \n", 4, "label"),
        ("short_row.tsv", "text\tlabel\nok\tpos\nnothing\n", 3, "label"),
    ],
)
def test_bad_own_data_names_file_line_field(
    tmp_path: Path, name: str, content: str, line: int, field: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read_labelled_file(path)
    message = str(info.value)
    assert name in message and f":{line}:" in message and f"'{field}'" in message
    assert (info.value.line, info.value.field) == (line, field)


def test_bad_json_and_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", label}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        read_labelled_file(path)
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"text\tlabel\ncaf\xe9\tpos\n")
    with pytest.raises(DataError, match=r"latin\.tsv:2: not valid UTF-8"):
        read_labelled_file(latin)


def test_unknown_label_in_test_split(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.tsv", "text\tlabel\na\tpos\nb\tneg\n")
    test = _write(tmp_path / "test.tsv", "text\tlabel\nc\tneg\nd\tneutral\n")
    with pytest.raises(DataError) as info:
        load_labelled_splits(train, test=test)
    message = str(info.value)
    assert "test.tsv:3:" in message and "'label'" in message and "'neutral'" in message


def test_round_trip_all_formats(tmp_path: Path) -> None:
    rows = [
        ('He said "great", didn\'t he?', "très bon"),
        ("tabs\u2028and commas, here", "a,b"),
        ("plain", "1"),
        ("third class", "label with space"),
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"sentence": t, "y": y}, ensure_ascii=False) + "\n" for t, y in rows),
        encoding="utf-8",
    )
    tsv = _write(
        tmp_path / "d.tsv",
        "id\tsentence\ty\n" + "".join(f"{i}\t{t}\t{y}\n" for i, (t, y) in enumerate(rows)),
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["y", "sentence"])
    writer.writerows([(y, t) for t, y in rows])
    csv_path = _write(tmp_path / "d.csv", buf.getvalue())
    for path in (jsonl, tsv, csv_path):
        assert read_labelled_file(path, text_field="sentence", label_field="y") == rows
    # fmt overrides the suffix
    txt = _write(tmp_path / "d.txt", tsv.read_text(encoding="utf-8"))
    assert read_labelled_file(txt, "sentence", "y", fmt="tsv") == rows

    label_map = LabelMap(y for _, y in rows)
    assert label_map.labels == ["1", "a,b", "label with space", "très bon"]
    assert [label_map.encode(y) for _, y in rows] == [3, 1, 0, 2]
    restored = LabelMap.from_dict(json.loads(json.dumps(label_map.to_dict())))
    assert restored == label_map and restored.decode(3) == "très bon"
    with pytest.raises(KeyError, match="known labels"):
        label_map.encode("other")
    example = read_labelled_file(tsv, "sentence", "y")[2]
    assert pickle.loads(pickle.dumps(example)).line == example.line == 4


# --------------------------------------------------------------------------- text


def test_tokenizer() -> None:
    assert tokenize("The Rock's ''Conan'' isn't BAD... :) well-made, 3.5/5!!") == [
        "the", "rock", "'s", '"', "conan", '"', "is", "n't", "bad", "...", ":)",
        "well-made", ",", "3.5", "/", "5", "!!",
    ]  # fmt: skip
    assert tokenize("I can’t; we’ve") == ["i", "ca", "n't", ";", "we", "'ve"]
    assert tokenize("   ") == []


def test_vocab_round_trip() -> None:
    texts = ["good good movie", "bad movie", "good plot", "a rare word"]
    vocab = Vocab.build(texts, min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "good", "movie"]
    assert vocab.encode("Good bad movie") == [2, 1, 3]
    assert vocab.decode(vocab.encode("good movie") + [0, 0]) == "good movie"
    assert vocab.encode("") == [1]
    capped = Vocab.build(texts, max_size=3, add_cls=True)
    assert capped.itos == ["<pad>", "<unk>", "<cls>"] and capped.cls_id == 2
    full = Vocab.build(texts, add_cls=True)
    assert len(full) == 3 + 7 and full.itos[3:5] == ["good", "movie"]
    ids = full.encode("good plot twist", max_len=3)
    assert ids == [2, 3, full.stoi["plot"]]
    assert full.decode(ids) == "good plot"
    assert full.decode(full.encode("twist")) == "<unk>"
    assert Vocab.from_dict(json.loads(json.dumps(full.to_dict()))) == full


def test_collate_padding_and_mask() -> None:
    items = [([5, 6, 7], 1), ([8], 0), (torch.tensor([9, 10]), 2)]
    ids, mask, labels = collate_text_batch(items, pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and labels.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    assert labels.tolist() == [1, 0, 2]
    ids, mask, _ = collate_text_batch([([4], 1)], pad_id=7)
    assert ids.shape == mask.shape == (1, 1)
    padded, _, _ = collate_text_batch([([1, 2], 0), ([3], 1)], pad_id=7)
    assert padded.tolist() == [[1, 2], [3, 7]]
