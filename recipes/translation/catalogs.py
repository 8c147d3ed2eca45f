"""The embedded translation corpus: human translations from Debian message catalogs.

Every Debian machine carries ``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``: the English
messages of installed programs with their translations. :func:`build_catalog_corpus` reads
the catalogs owned by a pinned list of Debian packages (``make setup`` installs them),
cleans and filters the pairs, splits them by a hash of the English sentence's normalised key
and writes ``train/valid/test.jsonl`` with a ``manifest.json`` holding each catalog's package
and SHA-256.

Deduplication and split use :func:`toolkit.data.text.normalised_key` of the source (NFKC,
case-folded, everything but letters and digits removed), not the exact string: catalogs
repeat messages with only case or punctuation changed (``Yes``/``yes``,
``WARNING``/``Warning:``), and an exact-string split put about 5 % of the test sources in
training under another spelling. All variants of a key hash to the same split, and only the
first pair of each key is kept (catalogs in path order, messages in catalog order): as
before, one pair per English sentence, since the other variants are the same message
translated again and would only weight it twice. The manifest counts exact repeats as
``dropped.duplicate`` and case/punctuation variants as ``dropped.normalised_duplicate``.

Filters (shares measured on en-de): plural entries, format specifiers
(``%s``, ``{0}``), command-line option lines, more than ``max_words`` words and duplicate
sources are dropped; by default also the ISO code lists (``iso_639-3``, ``iso_3166-2``...:
38 % of the pairs, mostly names) and pairs whose translation equals the source (30 %).
"""

from __future__ import annotations

import gettext
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from toolkit.data.cache import (
    DataError,
    build_lock,
    locked_build,
    sha256_file,
    write_json_atomic,
)
from toolkit.data.text import normalised_key
from toolkit.paths import cache_root

log = logging.getLogger(__name__)

LOCALE_ROOT = Path("/usr/share/locale")
SPLITS = ("train", "valid", "test")
LANGS = ("de", "fr", "ja")
# Bumped whenever the same parameters build a different corpus; a cached folder of an older
# format is rebuilt. 2: dedupe and split on the normalised source (format 1: exact string).
CORPUS_FORMAT = 2

# Debian packages whose catalogs make the corpus (catalog_packages.txt, also read by
# `make setup`, which installs them). Catalogs of other packages are ignored so the corpus
# does not depend on what else a machine happens to have; missing ones go in the manifest.
PACKAGES_FILE = Path(__file__).with_name("catalog_packages.txt")
PINNED_PACKAGES = tuple(
    line.strip()
    for line in PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
)

FORMAT_SPEC = re.compile(
    r"%(\d+\$)?[-+ #0']*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGcsSpn]"
    r"|%\(\w+\)|%<\w+>|\{\w*\}|\$\{?\w+\}?"
)
OPTION_LINE = re.compile(r"^\s*-|\s--?[a-zA-Z][\w-]*|\s{3,}")
MNEMONIC = re.compile(r"(?<!\w)_(?=\w)")


def is_iso_catalog(domain: str) -> bool:
    """ISO code lists (language, country, currency and script names)."""
    return domain.startswith("iso_") or domain.startswith("iso-")


def clean(text: str) -> str:
    """Whitespace collapsed, GTK mnemonic underscores (``_Open``) removed."""
    return MNEMONIC.sub("", " ".join(text.split()))


def keep_pair(source: str, target: str, max_words: int) -> str | None:
    """``None`` when the pair is usable, else the reason it is dropped."""
    if not source or not target:
        return "empty"
    if FORMAT_SPEC.search(source) or FORMAT_SPEC.search(target):
        return "format_specifier"
    if OPTION_LINE.search(source):
        return "option_line"
    if len(source.split()) > max_words or len(target.split()) > max_words:
        return "too_long"
    if not re.search(r"[A-Za-z]", source):
        return "no_letters"
    return None


def catalog_packages(lang: str, root: Path = LOCALE_ROOT) -> dict[Path, str]:
    """Map each ``.mo`` file of ``lang`` to its Debian package (``"?"`` without dpkg)."""
    folder = root / lang / "LC_MESSAGES"
    files = sorted(folder.glob("*.mo")) if folder.is_dir() else []
    owners: dict[Path, str] = {f: "?" for f in files}
    if not files:
        return owners
    try:
        out = subprocess.run(
            ["dpkg-query", "-S", str(folder / "*.mo")],
            capture_output=True, text=True, check=False, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return owners
    for line in out.splitlines():
        packages, _, path = line.partition(": ")
        if path:
            owners[Path(path.strip())] = packages.split(",")[0].strip().split(":")[0]
    return owners


def read_catalog(path: Path) -> Iterable[tuple[str, str]]:
    """(msgid, msgstr) of a compiled catalog; plural entries and the header are skipped."""
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # noqa: SLF001 (stdlib, documented)
    for key, value in catalog.items():
        if not isinstance(key, str) or not key:
            continue  # plural entries have (msgid, n) keys; "" is the header
        yield key.split("\x04")[-1], value  # drop a msgctxt prefix


def split_of(source: str, fractions: Sequence[float]) -> str:
    """Deterministic split from a hash of the source sentence's :func:`normalised_key`, so
    every case/punctuation variant of a sentence falls in the same split."""
    key = normalised_key(source)
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 16**8
    edge = 0.0
    for name, share in zip(SPLITS, fractions, strict=True):
        edge += share
        if h < edge:
            return name
    return SPLITS[-1]


def _folder_name(
    lang: str, include_iso: bool, keep_identical: bool, max_words: int, limit: int | None
) -> str:
    name = f"en-{lang}"
    name += "-iso" if include_iso else ""
    name += "-identical" if keep_identical else ""
    name += f"-max{max_words}" if max_words != 40 else ""
    return name + (f"-limit{limit}" if limit else "")


def _current_format(folder: Path) -> bool:
    """Whether the built ``folder`` is of :data:`CORPUS_FORMAT` (older ones leak)."""
    saved = json.loads((folder / "manifest.json").read_text())
    return saved.get("format", 1) == CORPUS_FORMAT


def _remove_stale(folder: Path) -> None:
    """Move a corpus of an older format out of the way (under the build lock, rechecked
    there: another process may have rebuilt it meanwhile) so that it is built again."""
    with build_lock(folder):
        if not (folder / "manifest.json").is_file() or _current_format(folder):
            return
        log.warning("%s was built by an older corpus format; rebuilding it", folder)
        stale = folder.with_name(f".{folder.name}.stale-{os.getpid()}")
        os.rename(folder, stale)  # atomic; a reader with open files keeps reading them
        shutil.rmtree(stale, ignore_errors=True)


def build_catalog_corpus(
    target_lang: str = "de",
    root: str | os.PathLike[str] | None = None,
    include_iso: bool = False,
    keep_identical: bool = False,
    max_words: int = 40,
    limit: int | None = None,
    split: Sequence[float] = (0.9, 0.05, 0.05),
    locale_root: str | os.PathLike[str] = LOCALE_ROOT,
    packages: Sequence[str] = PINNED_PACKAGES,
) -> Path:
    """Build (or reuse) the en→``target_lang`` corpus; returns its folder.

    Args:
        target_lang: ``de``, ``fr`` or ``ja``.
        root: base folder instead of :func:`cache_root` (``<root>/translation/<name>/``).
        include_iso: keep the ISO code-list catalogs.
        keep_identical: keep pairs whose translation equals the source.
        max_words: longest source/target kept, in whitespace words.
        limit: keep only this many pairs per split at most (tiny corpora for tests).
        split: train/valid/test shares of the source-hash split.
        locale_root: where the ``<lang>/LC_MESSAGES`` folders are.
        packages: the Debian packages whose catalogs are read.
    """
    if target_lang not in LANGS:
        raise ValueError(f"unknown target_lang {target_lang!r}; valid: {', '.join(LANGS)}")
    if abs(sum(split) - 1.0) > 1e-6 or len(split) != 3:
        raise ValueError(f"split must be three shares summing to 1, got {list(split)}")
    base = Path(root).expanduser() if root is not None else cache_root()
    out = (
        base
        / "translation"
        / _folder_name(target_lang, include_iso, keep_identical, max_words, limit)
    )
    params = {
        "target_lang": target_lang,
        "include_iso": include_iso,
        "keep_identical": keep_identical,
        "max_words": max_words,
        "limit": limit,
        "split": list(split),
    }
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        if _current_format(out):
            saved = json.loads(manifest_path.read_text())
            if saved.get("params") != params:
                raise DataError(manifest_path, None, "params", f"built with {saved.get('params')}")
            return out
        _remove_stale(out)

    owners = catalog_packages(target_lang, Path(locale_root))
    wanted = set(packages)
    # a catalog whose package cannot be told (no dpkg, or a file no package owns) is left
    # out: the corpus depends only on the pinned package list, never on machine state
    unknown = sorted(str(f) for f, pkg in owners.items() if pkg == "?")
    if unknown:
        log.warning("%d catalogs of no known package left out: %s", len(unknown), unknown[:5])
    files = [f for f, pkg in owners.items() if pkg in wanted]
    if not files:
        raise DataError(
            Path(locale_root) / target_lang / "LC_MESSAGES", None, None,
            "no message catalogs found: install the pinned Debian packages (make setup)",
        )  # fmt: skip
    dropped: Counter[str] = Counter()
    seen: set[str] = set()  # exact sources met (kept, or dropped as a variant)
    seen_keys: set[str] = set()  # their normalised keys
    items: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    sources = []
    for path in tqdm(files, desc=f"translation/en-{target_lang} catalogs", unit="file"):
        domain = path.stem
        record = {"file": str(path), "package": owners[path], "sha256": sha256_file(path)}
        if is_iso_catalog(domain) and not include_iso:
            record["used"] = "no (ISO code list)"
            sources.append(record)
            continue
        try:
            pairs = list(read_catalog(path))
        except (UnicodeDecodeError, OSError, ValueError) as err:
            log.warning("skipping catalog %s: %s", path, err)
            record["used"] = f"no ({type(err).__name__})"
            sources.append(record)
            continue
        kept = 0
        for msgid, msgstr in pairs:
            source, target = clean(msgid), clean(msgstr)
            reason = keep_pair(source, target, max_words)
            if reason is None and source == target and not keep_identical:
                reason = "identical"
            key = normalised_key(source)
            if reason is None and source in seen:
                reason = "duplicate"
            if reason is None and key in seen_keys:
                reason = "normalised_duplicate"  # a case/punctuation variant of a kept one
                seen.add(source)  # its exact repeats count as plain duplicates
            if reason:
                dropped[reason] += 1
                continue
            seen.add(source)
            seen_keys.add(key)
            items[split_of(source, split)].append(
                {"source": source, "target": target, "origin": domain}
            )
            kept += 1
        record["used"] = "yes"
        record["pairs"] = kept
        sources.append(record)
    for name in SPLITS:  # order by hash: stable across machines, mixes catalogs
        items[name].sort(key=lambda r: hashlib.sha1(r["source"].encode()).hexdigest())
        if limit:
            items[name] = items[name][:limit]
    found = {r["package"] for r in sources}
    with locked_build(out) as tmp:
        if tmp is None:  # another process built it meanwhile
            return out
        for name in SPLITS:
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for row in items[name]:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        checksums = {f"{name}.jsonl": sha256_file(tmp / f"{name}.jsonl") for name in SPLITS}
        write_json_atomic(
            tmp / "manifest.json",
            {
                "corpus": f"debian-catalogs en-{target_lang}",
                "format": CORPUS_FORMAT,
                "params": params,
                "dedupe_key": "normalised source (NFKC, case-folded, letters and digits only)",
                "counts": {name: len(items[name]) for name in SPLITS},
                "dropped": dict(sorted(dropped.items())),
                "packages_missing": sorted(wanted - found),
                "excluded_unknown_owner": unknown,
                "files": checksums,  # python -m toolkit.data verify compares these
                "catalogs": sources,
            },
        )
    return out


def load_catalog_splits(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """``{split: [(source, target), ...]}`` of a built corpus folder."""
    out = {}
    for name in SPLITS:
        with open(Path(folder) / f"{name}.jsonl", encoding="utf-8") as f:
            out[name] = [(r["source"], r["target"]) for r in map(json.loads, f)]
    return out


def describe(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "manifest.json").read_text())
