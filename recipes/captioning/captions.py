"""The user's own captioned images: COCO captions JSON, Karpathy split JSON, Flickr8k tokens.

Every reader returns ``CaptionRecord``s (image path, captions, optional split) after checking
that each image file exists and each caption is non-empty; a bad entry raises ``DataError``
naming the file, the line (Flickr8k) or entry (JSON: ``line=None``, the field says which
entry) and the field. ``load_image`` reads any PIL image (greyscale, RGBA, palette, odd
sizes) into an RGB ``uint8`` array of a fixed size.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from toolkit.data.cache import DataError
from toolkit.data.labelled import read_utf8_text


@dataclass
class CaptionRecord:
    """One image: its file, its reference captions and (Karpathy) its split."""

    image: Path
    captions: list[str] = field(default_factory=list)
    split: str | None = None
    id: str = ""


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(path, None, None, "file not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise DataError(path, line, None, f"invalid JSON: {err}") from err


def _check_caption(path: Path, line: int | None, where: str, text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, where, "empty or missing caption")
    return text.strip()


def _check_image(path: Path, line: int | None, where: str, image: Path) -> Path:
    if not image.is_file():
        raise DataError(path, line, where, f"image file not found: {image}")
    return image


def read_coco_captions(json_path: str | Path, image_dir: str | Path) -> list[CaptionRecord]:
    """COCO captions: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
    "caption"}]}`` with the files under ``image_dir``. Images without captions are dropped."""
    path, image_dir = Path(json_path), Path(image_dir)
    data = _read_json(path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(path, None, None, "expected an object with 'images' and 'annotations'")
    images: dict[object, CaptionRecord] = {}
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(path, None, where, "needs 'id' and 'file_name'")
        if not isinstance(entry["id"], (int, str)):
            raise DataError(path, None, f"{where}.id", "expected an integer or string id")
        if not isinstance(entry["file_name"], str):
            raise DataError(path, None, f"{where}.file_name", "expected a file name string")
        image = _check_image(path, None, f"{where}.file_name", image_dir / entry["file_name"])
        images[entry["id"]] = CaptionRecord(image, id=str(entry["id"]))
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(path, None, where, "expected an object")
        if not isinstance(ann.get("image_id"), (int, str)) or ann["image_id"] not in images:
            raise DataError(
                path, None, f"{where}.image_id", f"unknown image id {ann.get('image_id')!r}"
            )
        text = _check_caption(path, None, f"{where}.caption", ann.get("caption"))
        images[ann["image_id"]].captions.append(text)
    return [r for r in images.values() if r.captions]


def read_karpathy_split(json_path: str | Path, image_dir: str | Path) -> list[CaptionRecord]:
    """Karpathy's split file: ``{"images": [{"filepath"?, "filename", "split",
    "sentences": [{"raw"}]}]}``; ``restval`` counts as ``train``."""
    path, image_dir = Path(json_path), Path(image_dir)
    data = _read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise DataError(path, None, None, "expected an object with 'images'")
    records = []
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DataError(path, None, f"{where}.filename", "missing")
        if not isinstance(entry["filename"], str) or not isinstance(entry.get("filepath", ""), str):
            raise DataError(path, None, f"{where}.filename", "expected a file name string")
        image = image_dir / entry.get("filepath", "") / entry["filename"]
        _check_image(path, None, f"{where}.filename", image)
        split = {"restval": "train", "val": "valid"}.get(entry.get("split"), entry.get("split"))
        if split not in ("train", "valid", "test"):
            raise DataError(path, None, f"{where}.split", f"unknown split {split!r}")
        sentences = entry.get("sentences") or []
        if not sentences:
            raise DataError(path, None, f"{where}.sentences", "no captions")
        caps = [
            _check_caption(path, None, f"{where}.sentences[{k}].raw", s.get("raw"))
            for k, s in enumerate(sentences)
        ]
        records.append(CaptionRecord(image, caps, split, str(entry.get("imgid", i))))
    return records


def read_flickr8k_tokens(token_file: str | Path, image_dir: str | Path) -> list[CaptionRecord]:
    """Flickr8k ``Flickr8k.token.txt``: ``<image>#<n><TAB><caption>`` per line."""
    path, image_dir = Path(token_file), Path(image_dir)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    grouped: dict[str, CaptionRecord] = defaultdict(lambda: CaptionRecord(Path()))
    for line_no, line in enumerate(read_utf8_text(path).split("\n"), 1):
        if not line.strip():
            continue
        name, sep, text = line.rstrip("\r").partition("\t")
        if not sep:
            raise DataError(path, line_no, None, "expected '<image>#<n><TAB><caption>'")
        image_name = name.split("#", 1)[0]
        text = _check_caption(path, line_no, "caption", text)
        rec = grouped[image_name]
        if not rec.captions:
            rec.image = _check_image(path, line_no, "image", image_dir / image_name)
            rec.id = image_name
        rec.captions.append(text)
    return list(grouped.values())


# Larger images are refused from their header, before decoding (a "decompression bomb"
# claims gigapixels in a few bytes); raise it for genuinely huge photographs.
MAX_IMAGE_PIXELS = 40_000_000


def load_image(path: str | Path, size: int, where: tuple[Path, int | None, str] | None = None):
    """Read an image as RGB ``uint8 (size, size, 3)`` (any mode, any size: resized).

    Args:
        where: ``(file, line, field)`` of the entry naming the image, for the error.
    """
    file, line, fld = where or (Path(path), None, None)
    try:
        with Image.open(path) as img:  # reads the header only
            pixels = img.size[0] * img.size[1]
            if pixels > MAX_IMAGE_PIXELS:
                raise DataError(
                    file, line, fld, f"image {path} claims {img.size[0]}x{img.size[1]} pixels, "
                    f"more than the limit of {MAX_IMAGE_PIXELS:,} (captions.MAX_IMAGE_PIXELS); "
                    "nothing was decoded",
                )  # fmt: skip
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(file, line, fld, f"unreadable image {path}: {err}") from err
