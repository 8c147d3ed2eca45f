"""The translation corpus depends only on the pinned packages, and a second machine can
verify it built the same corpus from the manifest's checksums."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recipes.translation import catalogs
from toolkit.data.verify import verify_corpus

ROOT = Path(__file__).resolve().parents[2]


def test_two_builds_agree_and_tampering_is_named(tmp_path):
    a = catalogs.build_catalog_corpus("de", root=tmp_path / "a", limit=30)
    b = catalogs.build_catalog_corpus("de", root=tmp_path / "b", limit=30)
    manifest = json.loads((a / "manifest.json").read_text())
    assert set(manifest["files"]) == {"train.jsonl", "valid.jsonl", "test.jsonl"}
    assert verify_corpus(a) == [] and verify_corpus(a, b / "manifest.json") == []
    proc = subprocess.run([sys.executable, "-m", "toolkit.data", "verify", str(a),
                           f"reference={b / 'manifest.json'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "the same corpus" in proc.stdout
    with open(a / "test.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"source": "x", "target": "y"}\n')
    assert verify_corpus(a) == [f"{a / 'test.jsonl'}: content differs from the checksum its "
                                "manifest recorded"]  # fmt: skip
    other = json.loads((b / "manifest.json").read_text())
    first = other["catalogs"][0]
    first["sha256"] = "0" * 64
    (tmp_path / "ref.json").write_text(json.dumps(other))
    problems = verify_corpus(b, tmp_path / "ref.json")
    assert len(problems) == 1 and Path(first["file"]).name in problems[0]


def test_catalogs_of_unknown_owner_are_left_out(tmp_path, monkeypatch):
    real = catalogs.catalog_packages

    def some_unknown(lang, root=catalogs.LOCALE_ROOT):
        owners = real(lang, root)
        first = sorted(owners)[0]
        return {**owners, first: "?"}

    monkeypatch.setattr(catalogs, "catalog_packages", some_unknown)
    folder = catalogs.build_catalog_corpus("de", root=tmp_path, limit=30)
    manifest = json.loads((folder / "manifest.json").read_text())
    (unknown,) = manifest["excluded_unknown_owner"]
    assert unknown not in {c["file"] for c in manifest["catalogs"]}
