"""Speech data checks for ``python -m toolkit.data validate recipe=asr`` and the check
``toolkit.train`` runs on own data (:mod:`toolkit.data.validate`): JSONL manifests
``{"audio", "text"}`` (every audio file opened) or audio files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.data.validate import Report, check_audio_manifest, check_media_paths


def validate_files(files: dict[str, Any], options: dict[str, Any], report: Report) -> None:
    channels = options.get("channels", 1) or None  # 0/None: any count (the reader downmixes)
    for spec in files.values():
        p = Path(spec)
        if p.suffix.lower() in (".jsonl", ".json"):
            check_audio_manifest(p, report, channels=channels)
        else:
            check_media_paths([p], report, channels)
