"""The pinned ``vaderSentiment==3.3.2`` source distribution and its word lexicon.

The PyPI sdist (MIT) carries more than the wheel: ``additional_resources/
hutto_ICWSM_2014.tar.gz`` with the human-rated sentences of Hutto & Gilbert (ICWSM 2014),
read by :func:`read_rows` and :func:`domain_sentences` (the sentiment corpus
and the speech recipe's ``sentences`` text), and ``vaderSentiment/vader_lexicon.txt`` with the
word valences. It is fetched once per machine with pip and checked against a pinned SHA-256.
"""

from __future__ import annotations

import codecs
import html
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from toolkit.data.cache import DataError, sha256_bytes, sha256_file, write_json_atomic
from toolkit.paths import cache_root

VADER_PACKAGE = "vaderSentiment"
VADER_VERSION = "3.3.2"
VADER_SDIST_NAME = f"{VADER_PACKAGE}-{VADER_VERSION}.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
SDIST_ENV = "ATTN_TOOLKIT_VADER_SDIST"

_SDIST_TOP = f"{VADER_PACKAGE}-{VADER_VERSION}"
CORPUS_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
LEXICON_MEMBER = "vaderSentiment/vader_lexicon.txt"


def vader_sdist() -> Path:
    """Return a verified local copy of the ``vaderSentiment`` sdist, downloading it once.

    ``$ATTN_TOOLKIT_VADER_SDIST`` may point to a local copy; otherwise the file is kept in
    ``cache_root()/downloads/`` and fetched with ``pip download`` when missing.

    Raises:
        DataError: The file's SHA-256 is not the pinned one.
        RuntimeError: pip could not download it.
    """
    override = os.environ.get(SDIST_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{SDIST_ENV}={override}: no such file")
        _verify_sdist(path)
        return path
    dest = cache_root() / "downloads" / VADER_SDIST_NAME
    if dest.is_file():
        if sha256_file(dest) == VADER_SDIST_SHA256:
            return dest
        dest.unlink()  # a corrupt or truncated copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Download into a private folder, then rename: concurrent builders never see a partial file.
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest.parent) as tmp:
        args = "download --no-deps --no-binary :all: --disable-pip-version-check -d"
        spec = f"{VADER_PACKAGE.lower()}=={VADER_VERSION}"
        cmd = [sys.executable, "-m", "pip", *args.split(), tmp, spec]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = [p for p in Path(tmp).iterdir() if p.name.lower() == VADER_SDIST_NAME.lower()]
        if proc.returncode != 0 or not got:
            raise RuntimeError(
                f"could not download {VADER_SDIST_NAME} with `{' '.join(cmd)}`; set "
                f"{SDIST_ENV} to a local copy instead.\n{(proc.stderr or proc.stdout)[-2000:]}"
            )
        _verify_sdist(got[0])
        os.replace(got[0], dest)
    return dest


def _verify_sdist(path: Path) -> None:
    digest = sha256_file(path)
    if digest != VADER_SDIST_SHA256:
        expected = f"expected {VADER_SDIST_SHA256} ({VADER_SDIST_NAME})"
        raise DataError(path, None, None, f"sha256 is {digest}, {expected}")


def sdist_member(sdist: Path, member: str) -> bytes:
    with tarfile.open(sdist, "r:gz") as outer:
        f = outer.extractfile(f"{_SDIST_TOP}/{member}")
        if f is None:
            raise DataError(sdist, None, None, f"{member} is not a regular file")
        return f.read()


def corpus_member(sdist: Path, member: str) -> bytes:
    inner = sdist_member(sdist, CORPUS_ARCHIVE)
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as archive:
        f = archive.extractfile(member)
        if f is None:
            raise DataError(sdist, None, None, f"{CORPUS_ARCHIVE}:{member} is not a regular file")
        return f.read()


def decode_lines(data: bytes) -> tuple[list[str], int]:
    """Split bytes into lines, decoding each as UTF-8 and falling back to Windows-1252.

    The 3.3.2 files are all valid UTF-8 (the movie file has accented names, "–", "’") with
    CRLF line ends; the per-line fallback keeps a stray legacy byte from failing a build.

    Returns:
        The lines without line ends, and how many needed the fallback.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines, fallback = [], 0
    for raw in data.split(b"\n"):
        raw = raw.rstrip(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("cp1252", errors="replace"))
            fallback += 1
    if lines and not lines[-1]:
        lines.pop()
    return lines, fallback


def load_vader_lexicon() -> dict[str, float]:
    """Return VADER's word lexicon: token -> mean valence (-4..+4).

    Parsed once from ``vaderSentiment/vader_lexicon.txt`` in the sdist and cached as JSON in
    ``cache_root()/lexicons/``. Tokens are as in the file (lower case words, emoticons).
    A few tokens appear twice in 3.3.2; the later entry wins, as in vaderSentiment itself.
    """
    cached = cache_root() / "lexicons" / f"vader_lexicon-{VADER_VERSION}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))["lexicon"]
    data = sdist_member(vader_sdist(), LEXICON_MEMBER)
    lexicon: dict[str, float] = {}
    lines, _ = decode_lines(data)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        try:
            value = float(parts[1]) if len(parts) > 1 else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(LEXICON_MEMBER, line_no, "mean", "expected token<TAB>mean valence")
        lexicon[parts[0]] = value
    record = {
        "package": VADER_PACKAGE,
        "version": VADER_VERSION,
        "sdist_sha256": VADER_SDIST_SHA256,
        "member": LEXICON_MEMBER,
        "member_sha256": sha256_bytes(data),
        "entries": len(lexicon),
        "lexicon": lexicon,
    }
    write_json_atomic(cached, record)
    return lexicon


# ----- the human-rated sentences (hutto_ICWSM_2014) --------------------------------------
#: Domain name -> member of ``hutto_ICWSM_2014.tar.gz``.
DOMAIN_FILES: dict[str, str] = {
    "movie": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "products": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "editorials": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}


def clean_text(text: str) -> str:
    # The files carry HTML entities (&amp; &lt;3), some escaped twice (&amp;amp; &amp;#39;);
    # some rows have runs of spaces or trailing blanks.
    for _ in range(3):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return " ".join(text.split())


def read_rows(
    data: bytes, member: str, desc: str, stats: dict[str, int]
) -> Iterator[tuple[float, str]]:
    """``(score, cleaned text)`` of every non-blank row of a ground-truth file; counts
    ``rows`` and ``cp1252_lines`` into ``stats``."""
    lines, stats["cp1252_lines"] = decode_lines(data)
    for line_no, line in enumerate(tqdm(lines, desc=desc, unit="row", leave=False), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) < 3:
            raise DataError(member, line_no, "text", "expected id<TAB>score<TAB>text")
        try:
            score = float(parts[1])
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise DataError(member, line_no, "score", f"not a number: {parts[1]!r}")
        text = clean_text(parts[2])
        if not text:
            raise DataError(member, line_no, "text", "empty text")
        stats["rows"] += 1
        yield score, text


def source_record(member: str, data: bytes) -> dict[str, Any]:
    return {
        "package": VADER_PACKAGE,
        "version": VADER_VERSION,
        "license": "MIT",
        "sdist": VADER_SDIST_NAME,
        "sdist_sha256": VADER_SDIST_SHA256,
        "archive": CORPUS_ARCHIVE,
        "member": member,
        "member_sha256": sha256_bytes(data),
    }


def domain_sentences(domain: str = "movie") -> tuple[list[str], dict[str, Any]]:
    """Every sentence of one ground-truth corpus whatever its rating, as plain English text
    for other corpora (the speech recipe's ``sentences`` corpus).

    Returns:
        The sentences in file order (HTML entities decoded, blanks squeezed, repeats kept)
        and the source record for a manifest (package, sdist and member checksums, row
        counts).
    """
    if domain not in DOMAIN_FILES:
        raise ValueError(f"unknown sentiment domain {domain!r}; valid: {', '.join(DOMAIN_FILES)}")
    member = DOMAIN_FILES[domain]
    data = corpus_member(vader_sdist(), member)
    stats = {"rows": 0, "cp1252_lines": 0}
    texts = [text for _, text in read_rows(data, member, f"sentences/{domain}", stats)]
    return texts, {**source_record(member, data), "source_stats": stats}
