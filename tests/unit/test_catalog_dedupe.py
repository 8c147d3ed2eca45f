"""The translation corpus deduplicates and splits on the normalised English source, so no
case/punctuation variant of a training sentence is in valid or test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from recipes.translation import catalogs
from recipes.translation.catalogs import SPLITS, build_catalog_corpus, describe, load_catalog_splits
from toolkit.data.text import normalised_key

HAS_CATALOGS = Path("/usr/share/locale/de/LC_MESSAGES").is_dir()
needs_catalogs = pytest.mark.skipif(not HAS_CATALOGS, reason="no Debian message catalogs")
HEADER = "Content-Type: text/plain; charset=UTF-8\n"


def write_mo(path: Path, messages: list[tuple[str, str]]) -> None:
    """A compiled catalog (GNU .mo, no hash table) with a UTF-8 header, entries sorted by
    msgid as msgfmt writes them."""
    entries = sorted([("", HEADER), *messages], key=lambda m: m[0].encode())
    ids = [m[0].encode() for m in entries]
    strs = [m[1].encode() for m in entries]
    n = len(entries)
    start = 28 + 16 * n
    blob, id_table, str_table = b"", [], []
    for table, values in ((id_table, ids), (str_table, strs)):
        for value in values:
            table.append((len(value), start + len(blob)))
            blob += value + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 28 + 16 * n)
    tables = b"".join(struct.pack("<2I", *e) for e in id_table + str_table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + tables + blob)


def build_hand_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "locale" / "de" / "LC_MESSAGES"
    write_mo(folder / "a.mo", [
        ("Yes", "Ja"), ("yes", "ja"), ("YES!", "JA!"),
        ("Warning:", "Warnung:"), ("WARNING", "WARNUNG"),
        ("Open file", "Datei öffnen"), ("Open file…", "Datei öffnen …"),
        ("Log in", "Anmelden"), ("Login", "Anmeldung"),
        ("Save", "Speichern"), ("Quit", "Beenden"),
    ])  # fmt: skip
    write_mo(folder / "b.mo", [("Yes", "Ja"), ("Save.", "Speichern."), ("Close", "Schließen")])
    owners = {folder / "a.mo": "pkg-a", folder / "b.mo": "pkg-b"}
    monkeypatch.setattr(catalogs, "catalog_packages", lambda lang, root: dict(owners))
    return build_catalog_corpus(
        "de", root=tmp_path / "cache", locale_root=tmp_path / "locale",
        packages=("pkg-a", "pkg-b"), split=(0.4, 0.3, 0.3),
    )  # fmt: skip


def test_normalised_key_folds_case_punctuation_and_width():
    assert normalised_key("Yes") == normalised_key("yes.") == normalised_key("YES!") == "yes"
    assert normalised_key("Warning:") == normalised_key("WARNING") == "warning"
    assert normalised_key("Open file…") == normalised_key("open  FILE") == "openfile"
    assert normalised_key("ﬁle") == "file"  # NFKC: the ligature is two letters
    assert normalised_key("Ｓａｖｅ") == "save"  # NFKC: full-width letters
    assert normalised_key("Datei öffnen") == "dateiöffnen"  # letters of any script stay
    assert normalised_key("Step 2") != normalised_key("Step 3")
    assert normalised_key("...") == "..."  # nothing left: the folded text itself


def test_variants_share_one_split_and_one_pair(tmp_path, monkeypatch):
    folder = build_hand_corpus(tmp_path, monkeypatch)
    splits = load_catalog_splits(folder)
    kept = {src: name for name in SPLITS for src, _ in splits[name]}
    # first variant of each key in catalog order (a.mo, then b.mo; msgid byte order inside)
    assert sorted(kept) == ["Close", "Log in", "Open file", "Quit", "Save", "WARNING", "YES!"]
    keys = [normalised_key(src) for src in kept]
    assert len(keys) == len(set(keys))  # one pair per key, so each key is in one split
    for variants in (["Yes", "yes", "YES!"], ["Warning:", "WARNING"], ["Save", "Save."],
                     ["Open file", "Open file…"], ["Log in", "Login"]):  # fmt: skip
        assert len({catalogs.split_of(v, (0.4, 0.3, 0.3)) for v in variants}) == 1
    for src, name in kept.items():
        assert catalogs.split_of(src, (0.4, 0.3, 0.3)) == name
    manifest = describe(folder)
    assert manifest["format"] == catalogs.CORPUS_FORMAT
    assert manifest["counts"] == {"train": 3, "valid": 0, "test": 4}
    # 14 entries: 7 kept; Yes, yes, Warning:, Open file…, Login, Save. are variants of kept
    # sources; b.mo's "Yes" repeats a.mo's "Yes" exactly
    assert manifest["dropped"] == {"normalised_duplicate": 6, "duplicate": 1}
    assert {c["file"].rsplit("/", 1)[1]: c["pairs"] for c in manifest["catalogs"]} == {
        "a.mo": 6, "b.mo": 1,
    }  # fmt: skip


def test_corpus_of_an_older_format_is_rebuilt(tmp_path, monkeypatch):
    folder = build_hand_corpus(tmp_path, monkeypatch)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["format"]  # as format 1 wrote it (exact-string dedupe, leaky split)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "test.jsonl").write_text('{"source": "leaked", "target": "x", "origin": "a"}\n')
    assert build_hand_corpus(tmp_path, monkeypatch) == folder
    assert describe(folder)["format"] == catalogs.CORPUS_FORMAT
    assert all(src != "leaked" for src, _ in load_catalog_splits(folder)["test"])
    assert not list(folder.parent.glob(".*stale*"))


@needs_catalogs
def test_built_corpus_has_no_normalised_source_in_two_splits(tmp_path):
    folder = build_catalog_corpus("de", root=tmp_path)  # the full default corpus (~5 s)
    splits = load_catalog_splits(folder)
    keys = {name: {normalised_key(src) for src, _ in splits[name]} for name in SPLITS}
    overlap = {
        name: sorted(src for src, _ in splits[name] if normalised_key(src) in keys["train"])
        for name in ("valid", "test")
    }
    assert overlap == {"valid": [], "test": []}, {k: len(v) for k, v in overlap.items()}
    assert not keys["valid"] & keys["test"]
    assert describe(folder)["dropped"]["normalised_duplicate"] > 0
