"""Captioning data checks for ``python -m toolkit.data validate recipe=captioning`` and the
check ``toolkit.train`` runs on own data (:mod:`toolkit.data.validate`): a COCO captions JSON
(``image_dir=`` or its folder holds the images) or image files and folders. Karpathy and
Flickr8k files (``data.format``) are checked by their readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.data.validate import Report, check_image_file, check_media_paths, read_lines


def validate_files(files: dict[str, Any], options: dict[str, Any], report: Report) -> None:
    if options.get("format") not in (None, "coco"):
        return  # karpathy / flickr8k are checked by their readers
    for spec in files.values():
        p = Path(spec)
        if p.suffix.lower() == ".json" and p.is_file():
            check_coco(p, Path(options.get("image_dir") or p.parent), report)
        else:
            check_media_paths([p], report)


def check_coco(path: Path, image_dir: Path, report: Report) -> None:
    """Every problem of a COCO captions file: images (each opened), annotations."""
    lines = read_lines(path, report)
    if lines is None:
        return
    try:
        data = json.loads("\n".join(lines))
    except json.JSONDecodeError as e:
        report.add(path, e.lineno, None, f"invalid JSON ({e.msg})")
        return
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        report.add(path, None, None, "expected a COCO object with 'images' and 'annotations'")
        return
    ids = set()
    for i, entry in enumerate(data["images"]):
        report.records += 1
        if not isinstance(entry, dict) or "file_name" not in entry or "id" not in entry:
            report.add(path, None, f"images[{i}]", "needs 'id' and 'file_name'")
            continue
        ids.add(entry["id"])
        check_image_file(image_dir / str(entry["file_name"]), report, (path, None, f"images[{i}]"))
    for i, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict) or ann.get("image_id") not in ids:
            report.add(path, None, f"annotations[{i}]", "unknown image id")
        elif not isinstance(ann.get("caption"), str) or not ann["caption"].strip():
            report.add(path, None, f"annotations[{i}].caption", "empty caption")
