"""The generated scene corpus: geometry, caption-to-box mapping, determinism, caching."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from recipes.captioning.scenes import (
    COLOURS,
    FASHION_DIR,
    OBJECT_WORDS,
    SceneConfig,
    _overlap,
    build_scene_corpus,
    generate_scene,
    load_scene_split,
    read_idx,
)
from toolkit.data.cache import DataError

pytestmark = pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
TINY = SceneConfig(train=40, valid=8, test=8, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_scene_corpus(TINY, root=tmp_path_factory.mktemp("cache"), progress=False)


def test_scene_geometry_and_captions(corpus):
    images, records = load_scene_split(corpus, "train")
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    for rec in records:
        objects = rec["objects"]
        assert TINY.min_objects <= len(objects) <= TINY.max_objects
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            lo, hi = TINY.small if o["size"] == "small" else TINY.large
            assert lo <= x1 - x0 <= hi and x1 - x0 == y1 - y0
        for a in range(len(objects)):
            for b in range(a + 1, len(objects)):
                assert _overlap(objects[a]["box"], objects[b]["box"]) <= TINY.max_overlap
        assert len({c["text"] for c in rec["captions"]}) >= 3  # worded differently
        for cap in rec["captions"]:
            tokens = cap["text"].split()
            assert len(tokens) == len(cap["refs"])
            named = set()
            for tok, ref in zip(tokens, cap["refs"], strict=True):
                if tok in OBJECT_WORDS:  # every object word maps to the box of that object
                    assert ref >= 0 and objects[ref]["label"] == tok
                    named.add(ref)
                if ref >= 0:
                    o = objects[ref]
                    assert tok in (o["label"], o["colour"], o["size"])
            assert named == set(range(len(objects)))  # every object is mentioned


def test_objects_are_drawn_in_their_colour(corpus):
    images, records = load_scene_split(corpus, "valid")
    for img, rec in zip(images, records, strict=True):
        for o in rec["objects"]:
            if o["kind"] != "shape":
                continue
            x0, y0, x1, y1 = o["box"]
            # a point inside every shape (circle, square, triangle): centre, 2/3 down
            pixel = img[y0 + 2 * (y1 - y0) // 3, (x0 + x1) // 2]
            assert tuple(pixel) == COLOURS[o["colour"]], (rec["id"], o)


def test_same_seed_same_corpus(corpus, tmp_path):
    again = build_scene_corpus(TINY, root=tmp_path, progress=False)
    assert again != corpus
    for split in ("train", "test"):
        a_img, a_rec = load_scene_split(corpus, split)
        b_img, b_rec = load_scene_split(again, split)
        assert np.array_equal(a_img, b_img) and a_rec == b_rec
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 40, "valid": 8, "test": 8}
    assert len(manifest["sources"]["files"]) == 4
    # cached: a second call returns the same folder without rebuilding
    assert build_scene_corpus(TINY, root=tmp_path, progress=False) == again
    other = build_scene_corpus(
        SceneConfig(train=40, valid=8, test=8, seed=4), root=tmp_path, progress=False
    )
    assert not np.array_equal(load_scene_split(other, "train")[0], a_img)


def test_generate_scene_is_deterministic():
    items = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5)
    a = generate_scene(random.Random(7), TINY, items, labels)
    b = generate_scene(random.Random(7), TINY, items, labels)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]


def test_bad_idx_file(tmp_path):
    bad = tmp_path / "x-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") * 3 + b"\x00" * 5)
    with pytest.raises(DataError, match="dims"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
