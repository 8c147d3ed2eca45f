"""Sentiment data checks for ``python -m toolkit.data validate recipe=sentiment`` and the
check ``toolkit.train`` runs on own data (:mod:`toolkit.data.validate`): labelled text
(TSV/CSV/JSONL), and labels of valid/test that training lacks."""

from __future__ import annotations

from typing import Any

from toolkit.data.validate import Report, check_labelled


def validate_files(files: dict[str, Any], options: dict[str, Any], report: Report) -> None:
    if "train" not in files and len(files) > 1 and all(k.startswith("path") for k in files):
        # path=a path=b ...: the first is the training split for the label-set comparison
        keys = list(files)
        files = {"train": files[keys[0]], **{f"split{i}": files[k] for i, k in enumerate(keys[1:])}}
    check_labelled(files, options.get("text_field", "text"), options.get("label_field", "label"),
                   report)  # fmt: skip
