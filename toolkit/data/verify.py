"""``python -m toolkit.data verify <corpus folder> [reference=<manifest.json>]``: did this
machine build the same corpus?

Checks the folder's files against the SHA-256 checksums its own ``manifest.json`` recorded
when it was built (``files``), and, with ``reference=``, compares those checksums and the
input catalogs' (``catalogs``: package and SHA-256 of every source file) with another
machine's manifest, naming every difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.data.cache import sha256_file


def verify_corpus(folder: str | Path, reference: str | Path | None = None) -> list[str]:
    """Every difference found, as sentences naming the file; empty when all agree."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path}: no manifest (not a corpus folder built by the toolkit)"]
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    files: dict[str, str] = manifest.get("files") or {}
    if not files:
        return [f"{manifest_path}: no file checksums (built by an older version: delete the "
                "folder and build it again)"]  # fmt: skip
    problems = []
    for name, digest in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: content differs from the checksum its manifest recorded")
    if reference is not None:
        problems += compare_manifests(manifest, json.loads(Path(reference).read_text("utf-8")))
    return problems


def _catalogs(manifest: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {Path(c["file"]).name: (c.get("package", "?"), c.get("sha256", ""))
            for c in manifest.get("catalogs") or []}  # fmt: skip


def compare_manifests(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Differences between two manifests: parameters, split files, input catalogs."""
    problems = []
    if ours.get("params") != theirs.get("params"):
        problems.append(f"params differ: {ours.get('params')} here, {theirs.get('params')} there")
    for name in sorted(set(ours.get("files") or {}) | set(theirs.get("files") or {})):
        a, b = (ours.get("files") or {}).get(name), (theirs.get("files") or {}).get(name)
        if a != b:
            problems.append(f"{name}: checksum {a} here, {b} in the reference")
    mine, other = _catalogs(ours), _catalogs(theirs)
    for name in sorted(set(mine) | set(other)):
        if name not in other:
            problems.append(f"catalog {name} ({mine[name][0]}) is used here, not there")
        elif name not in mine:
            problems.append(f"catalog {name} ({other[name][0]}) is used there, not here")
        elif mine[name] != other[name]:
            problems.append(f"catalog {name}: package/checksum {mine[name]} here, "
                            f"{other[name]} there")  # fmt: skip
    return problems
