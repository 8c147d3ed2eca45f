"""Translation data checks for ``python -m toolkit.data validate recipe=translation`` and
the check ``toolkit.train`` runs on own data (:mod:`toolkit.data.validate`): aligned
``[source.txt, target.txt]`` or one TSV/CSV/JSONL file with both columns."""

from __future__ import annotations

from typing import Any

from toolkit.data.validate import Report, check_parallel


def validate_files(files: dict[str, Any], options: dict[str, Any], report: Report) -> None:
    for spec in files.values():
        check_parallel(spec, options.get("source_field", "source"),
                       options.get("target_field", "target"), report)  # fmt: skip
