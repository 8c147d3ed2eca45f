"""The embedded speech corpus: voice commands or movie-review sentences synthesised with
espeak-ng.

Two text sources (``text``):

* ``commands`` (default): a small grammar (lights, alarms, music, timers, weather,
  reminders; numbers and clock times spelled as words, about 150 words) generates commands.
  Every distinct command belongs to one split, chosen by a seeded hash of its words
  (:func:`command_split`), so the test and validation commands are word sequences that never
  occur in training: the test set holds out sentences as well as voices.
* ``sentences``: open vocabulary, English sentences from two offline sources: the
  movie-review sentences (Rotten Tomatoes snippets) of the sentiment recipe's VADER source
  (:func:`toolkit.data.vader.domain_sentences`) and the quoted usage examples of the
  WordNet 3.0 glosses (Debian ``wordnet-base``, :func:`wordnet_sentences`), normalised for
  speech by :func:`speech_text` (lower case, accents stripped, numbers 0-999 spelled,
  punctuation dropped; a sentence with anything else left is dropped), kept at 4-14 words
  and deduplicated. The sentences are ordered by a seeded hash and cut into test, valid and
  train, so no sentence is in two splits.

Each text is spoken by one espeak-ng voice variant (language + ``+m1..m7``/``+f1..f5``) at a
random speed and pitch, resampled to 16 kHz mono and stored as 16-bit WAV. Training and
validation use ``TRAIN_VOICES``; the test set is spoken only by ``TEST_VOICES`` (variants and
an accent never heard in training).

The corpus is built once into ``cache_root()/asr/<text>-<n>-seed<k>`` (atomically, with a
progress bar and a ``manifest.json`` recording the text source, espeak-ng's version, voices,
counts and seed) and reused. ``limit`` builds a tiny version for tests.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import tempfile
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from toolkit.data.audio import SAMPLE_RATE, Utterance, read_jsonl_manifest, resample, write_audio
from toolkit.data.cache import DataError, locked_build, write_json_atomic
from toolkit.data.vader import domain_sentences
from toolkit.paths import cache_root

ESPEAK = "espeak-ng"
TRAIN_VOICES = (
    "en-us+m1", "en-us+f1", "en-us+m3", "en-us+f2",
    "en+m2", "en+f3", "en+m4", "en-gb-x-rp+m1",
    "en-gb-x-rp+f2", "en-gb-x-rp+m5", "en-gb-scotland+m3", "en-gb-scotland+f1",
    "en-029+m2", "en-029+f4", "en-gb-x-gbclan+m4", "en-us-nyc+f3",
)  # fmt: skip
# Held out: variants m6, m7, f5 and the West Midlands accent never occur in training.
TEST_VOICES = ("en-gb-x-gbcwmd+m6", "en-us+f5", "en-gb-x-rp+m7")
SPLIT_SIZES = {"train": 4000, "valid": 300, "test": 240}
# The open-vocabulary corpus: many more distinct sentences, so more (cheap) utterances.
SENTENCE_SPLIT_SIZES = {"train": 16000, "valid": 300, "test": 240}
TEXT_SOURCES = ("commands", "sentences")
SENTENCE_WORDS = (4, 14)  # kept sentence lengths (words, inclusive)
# Shares of the distinct commands held out for test and validation (by hash, see command_split).
COMMAND_HELD_OUT = {"test": 0.08, "valid": 0.08}
WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_FORMAT = 2  # 2: held-out command sentences, WordNet sentences (folder names carry it)

# ----------------------------------------------------------------------------- grammar
ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ROOMS = ["kitchen", "bedroom", "bathroom", "hallway", "office", "garage", "garden",
         "living room", "dining room", "basement"]  # fmt: skip
COLOURS = ["red", "blue", "green", "yellow", "white", "purple", "orange", "pink", "warm"]
GENRES = ["jazz", "rock", "classical", "pop", "blues", "country", "folk", "dance"]
CITIES = ["london", "paris", "berlin", "tokyo", "boston", "chicago", "madrid", "rome",
          "dublin", "sydney"]  # fmt: skip
DAYS = ["today", "tomorrow", "tonight", "this weekend", "on monday", "on tuesday",
        "on wednesday", "on thursday", "on friday", "on saturday", "on sunday"]  # fmt: skip
TASKS = ["call mum", "water the plants", "take out the rubbish", "feed the cat", "buy milk",
         "lock the door", "check the oven"]  # fmt: skip
UNITS = ["seconds", "minutes", "hours"]


def number_words(n: int) -> str:
    """0..999 as English words (``45`` -> ``forty five``)."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


def clock_time(rng: random.Random) -> str:
    hour = number_words(rng.randint(1, 12))
    kind = rng.randrange(6)
    if kind == 0:
        text = f"{hour} o'clock"
    elif kind == 1:
        text = f"half past {hour}"
    elif kind == 2:
        text = f"quarter {rng.choice(['past', 'to'])} {hour}"
    else:
        text = f"{hour} {number_words(rng.choice([5, 10, 15, 20, 30, 40, 45, 50]))}"
    if rng.random() < 0.4:
        text += rng.choice([" in the morning", " in the evening", " at night"])
    return text


def _templates(r: random.Random) -> list[str]:
    """One candidate command of each template (the caller picks one)."""
    n = number_words
    room, day, city = r.choice(ROOMS), r.choice(DAYS), r.choice(CITIES)
    return [
        f"turn {r.choice(['on', 'off'])} the {room} lights",
        f"switch {r.choice(['on', 'off'])} the lights in the {room}",
        f"dim the {room} lights to {n(r.randrange(10, 100, 10))} percent",
        f"set the {room} lights to {r.choice(COLOURS)}",
        f"make the {room} {r.choice(['brighter', 'darker'])}",
        f"set an alarm for {clock_time(r)}",
        f"wake me up at {clock_time(r)} {r.choice(['tomorrow', 'on monday', 'on friday'])}",
        f"cancel my alarm for {clock_time(r)}",
        f"snooze the alarm for {n(r.randint(2, 15))} minutes",
        f"play some {r.choice(GENRES)} music in the {room}",
        r.choice(
            [
                "play the next song",
                "skip this song",
                "pause the music",
                "stop the music",
                "resume the music",
                "what song is this",
            ]
        ),  # fmt: skip
        f"turn the volume {r.choice(['up', 'down'])}",
        f"set the volume to {n(r.randint(1, 10))}",
        f"set a timer for {n(r.randint(1, 59))} {r.choice(UNITS)}",
        f"start a {n(r.randint(2, 30))} minute timer for the {r.choice(['pasta', 'eggs', 'rice'])}",
        r.choice(["how much time is left on the timer", "cancel the timer", "what time is it"]),
        f"what is the weather {day}",
        f"what is the weather in {city} {day}",
        f"will it rain in {city} {day}",
        f"how {r.choice(['hot', 'cold', 'windy'])} will it be {day}",
        f"what is the temperature in {city}",
        f"remind me to {r.choice(TASKS)} at {clock_time(r)}",
    ]


def generate_commands(count: int, seed: int) -> list[str]:
    """``count`` commands drawn uniformly over the templates (duplicates allowed)."""
    rng = random.Random(seed)
    return [rng.choice(_templates(rng)) for _ in range(count)]


def command_split(text: str, seed: int = 0) -> str:
    """The split a distinct command belongs to (``test``, ``valid`` or ``train``), from a
    seeded hash of its words: the same command is always in the same split."""
    digest = hashlib.sha256(f"{seed}\x00asr-commands\x00{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < COMMAND_HELD_OUT["test"]:
        return "test"
    return "valid" if u < COMMAND_HELD_OUT["test"] + COMMAND_HELD_OUT["valid"] else "train"


def command_splits(sizes: dict[str, int], seed: int = 0) -> dict[str, list[str]]:
    """``sizes[split]`` commands per split, drawn uniformly over the templates, each kept
    only for the split :func:`command_split` assigns it to: no command is in two splits.
    Training may repeat a command (spoken by another voice); test and valid commands are
    distinct, so a few short fixed commands cannot fill the held-out sets.

    Raises:
        ValueError: the grammar cannot fill a split (a split share too small).
    """
    rng = random.Random(f"{seed}-commands")
    out: dict[str, list[str]] = {split: [] for split in sizes}
    seen: dict[str, set[str]] = {split: set() for split in sizes}
    budget = 200 * max(1, sum(sizes.values()))
    while any(len(out[s]) < n for s, n in sizes.items()):
        budget -= 1
        if budget < 0:
            raise ValueError(f"the command grammar cannot fill the splits {sizes}")
        text = rng.choice(_templates(rng))
        split = command_split(text, seed)
        fresh = split == "train" or text not in seen.get(split, ())
        if split in out and len(out[split]) < sizes[split] and fresh:
            out[split].append(text)
            seen[split].add(text)
    return out


def grammar_vocabulary(samples: int = 20000, seed: int = 0) -> set[str]:
    """Words the grammar produces (estimated by sampling; ~150)."""
    return {w for text in generate_commands(samples, seed) for w in text.split()}


# ----------------------------------------------------------------------------- sentences
_APOSTROPHES = re.compile("[\u2018\u2019\u00b4`]")
# A stand-alone 0..999 (not part of 1,000 / 7.5 / 21st / 1990s): spelled out.
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?!\w|[.,]\d)")
# Punctuation that is not spoken: becomes a space.
_SILENT = re.compile('[\\s.,;:!?"()\\[\\]{}/\u2010-\u2015\u2026\u201c\u201d-]+')
_EDGE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")  # quotes, not contractions
_UNSPEAKABLE = re.compile(r"[^a-z' ]")


def speech_text(text: str) -> str | None:
    """``text`` as the corpus speaks and writes it: lower case, accents stripped, numbers
    0..999 spelled as words, unspoken punctuation removed, apostrophes kept inside words
    only. None when anything else is left (other digits, ``&``, ``$``, ``%``, non-Latin
    letters), since espeak-ng would say something the transcript does not show.

    >>> speech_text("Jackson's 90-minute ''epic''!")
    "jackson's ninety minute epic"
    """
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("'", text)
    text = _NUMBER.sub(lambda m: f" {number_words(int(m.group()))} ", text)  # before "," goes
    text = _SILENT.sub(" ", text)
    text = " ".join(_EDGE_APOSTROPHE.sub(" ", text).split())
    return None if not text or _UNSPEAKABLE.search(text) else text


def _dpkg_version(package: str) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


_QUOTED = re.compile(r'"([^"]+)"')


def wordnet_sentences(folder: str | Path = WORDNET_DIR) -> tuple[list[str], dict[str, Any]]:
    """The quoted usage examples of the WordNet 3.0 glosses (``data.noun`` ... ``data.adv``
    of Debian ``wordnet-base``), in file order, repeats kept.

    Returns:
        The examples and the source record (package version, sha256 of each file, counts).

    Raises:
        DataError: a data file is missing (with how to install it).
    """
    folder = Path(folder)
    texts: list[str] = []
    files: dict[str, str] = {}
    for name in WORDNET_FILES:
        path = folder / name
        if not path.is_file():
            raise DataError(
                path, None, None,
                "WordNet data file missing: the open-vocabulary speech corpus needs it "
                "(Debian: apt-get install wordnet-base)",
            )  # fmt: skip
        data = path.read_bytes()
        files[name] = hashlib.sha256(data).hexdigest()
        for line in data.decode("utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:  # licence header, no gloss
                continue
            texts += [m.strip() for m in _QUOTED.findall(line.split(" | ", 1)[1])]
    record = {
        "package": "wordnet-base",
        "version": _dpkg_version("wordnet-base"),
        "folder": str(folder),
        "sha256": files,
        "rows": len(texts),
    }
    return texts, record


def speech_sentences(
    domain: str = "movie", wordnet: bool = True
) -> tuple[list[str], dict[str, Any]]:
    """The sentiment corpus's sentences of ``domain`` (then, with ``wordnet``, the WordNet
    usage examples) that :func:`speech_text` can speak, of ``SENTENCE_WORDS`` words, without
    repeats (first occurrence, file order).

    Returns:
        The sentences and the source record (VADER sdist and member checksum, WordNet
        package and file checksums, counts of rows dropped as unspeakable, too short or
        long, or repeated, and how many sentences each source gave).
    """
    texts, source = domain_sentences(domain)
    sources = {"movie": len(texts)}
    if wordnet:
        extra, wordnet_record = wordnet_sentences()
        texts = texts + extra
        source = {**source, "wordnet": wordnet_record}
    low, high = SENTENCE_WORDS
    kept: dict[str, None] = {}
    stats = {"unspeakable": 0, "length": 0, "duplicate": 0}
    for text in texts:
        spoken = speech_text(text)
        if spoken is None:
            stats["unspeakable"] += 1
        elif not low <= len(spoken.split()) <= high:
            stats["length"] += 1
        elif spoken in kept:
            stats["duplicate"] += 1
        else:
            kept[spoken] = None
    stats["kept"] = len(kept)
    if wordnet:  # how many of the kept sentences came from each source
        movie = {t for t in (speech_text(x) for x in texts[: sources["movie"]]) if t in kept}
        stats["kept_movie"], stats["kept_wordnet"] = len(movie), len(kept) - len(movie)
    return list(kept), {**source, "words": [low, high], "selection": stats}


def _sentence_rank(seed: int, text: str) -> bytes:
    # Hash order: independent of the file order and of Python's RNG across versions.
    return hashlib.sha256(f"{seed}\x00asr-sentences\x00{text}".encode()).digest()


def sentence_splits(
    sizes: dict[str, int], seed: int = 0, sentences: list[str] | None = None
) -> dict[str, list[str]]:
    """Disjoint splits of the movie sentences: ordered by a seeded hash of the sentence, the
    first ``sizes["test"]`` are the test set, the next ``sizes["valid"]`` the validation set
    and the rest the training set, repeated (each repeat spoken by another voice) up to
    ``sizes["train"]`` utterances. Test and valid are filled
    first, so a smaller ``sizes`` (``limit``) takes a prefix of the same order.

    Raises:
        ValueError: too few sentences to leave any for training.
    """
    pool = speech_sentences()[0] if sentences is None else list(sentences)
    order = sorted(set(pool), key=lambda t: _sentence_rank(seed, t))
    out: dict[str, list[str]] = {}
    start = 0
    for split in ("test", "valid", "train"):
        out[split] = order[start : start + sizes[split]]
        start += len(out[split])
    if not out["train"]:
        raise ValueError(f"{len(order)} sentences leave none for training (sizes {sizes})")
    # Fewer training sentences than utterances asked for: the list repeats, and since voices
    # are assigned round-robin over the rows, a repeat is spoken by another voice.
    train = out["train"]
    out["train"] = [train[i % len(train)] for i in range(sizes["train"])]
    return {split: out[split] for split in sizes}


# ----------------------------------------------------------------------------- synthesis


def espeak_version() -> str:
    try:
        out = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(
            "espeak-ng is needed to build the embedded speech corpus "
            "(Debian: apt-get install espeak-ng)"
        ) from err
    return out.stdout.strip()


def trim_silence(audio: np.ndarray, threshold: float = 0.01, pad: int = 1600) -> np.ndarray:
    """Cut leading/trailing samples below ``threshold`` (keeping ``pad`` samples each side)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    return audio[max(0, loud[0] - pad) : loud[-1] + 1 + pad]


def synthesize(text: str, voice: str, speed: int, pitch: int, out: Path) -> float:
    """Speak ``text`` with espeak-ng into ``out`` (16 kHz mono WAV); return seconds."""
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=out.parent) as tmp:
        cmd = [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text]
        subprocess.run(cmd, check=True, capture_output=True)
        raw, sr = sf.read(tmp.name, dtype="float32")
    audio = trim_silence(resample(raw, sr, SAMPLE_RATE))
    audio = audio * (0.5 / max(float(np.abs(audio).max()), 1e-6))  # peak at -6 dBFS
    write_audio(out, audio)
    return len(audio) / SAMPLE_RATE


def _synth_job(job: tuple[str, str, int, int, str]) -> float:
    text, voice, speed, pitch, out = job
    return synthesize(text, voice, speed, pitch, Path(out))


def _rows(name: str, texts: list[str], voices: tuple[str, ...], rng: random.Random) -> list[dict]:
    rows = []
    for i, text in enumerate(texts):
        voice = voices[i % len(voices)]
        rows.append(
            {
                "id": f"{name}-{i:05d}",
                "audio": f"{name}/{name}-{i:05d}.wav",
                "text": text,
                "speaker": voice,
                "speed": rng.randint(130, 200),
                "pitch": rng.randint(25, 75),
            }
        )
    return rows


def corpus_sizes(limit: int | None = None, text: str = "commands") -> dict[str, int]:
    """Utterances per split asked for: ``SPLIT_SIZES`` (``SENTENCE_SPLIT_SIZES`` for the
    open-vocabulary text), or a tiny version for ``limit``."""
    sizes = SENTENCE_SPLIT_SIZES if text == "sentences" else SPLIT_SIZES
    if not limit:
        return dict(sizes)
    return {k: max(len(TEST_VOICES), min(v, limit if k == "train" else max(6, limit // 4)))
            for k, v in sizes.items()}  # fmt: skip


def held_out_record(texts: dict[str, list[str]]) -> dict[str, int]:
    """How far test and valid texts are held out from training: sentences (word sequences)
    found in training (0 by construction) and distinct test words never heard in training."""
    train = set(texts["train"])
    train_words = {w for t in train for w in t.split()}
    test_words = {w for t in texts["test"] for w in t.split()}
    return {
        "test_sentences_in_train": sum(t in train for t in texts["test"]),
        "valid_sentences_in_train": sum(t in train for t in texts["valid"]),
        "distinct_test_sentences": len(set(texts["test"])),
        "test_words_unseen_in_train": len(test_words - train_words),
        "test_words": len(test_words),
    }


def corpus_folder(
    root: str | Path | None = None, limit: int | None = None, seed: int = 0, text: str = "commands"
) -> Path:
    """Where :func:`build_speech_corpus` puts the corpus of these settings."""
    if text not in TEXT_SOURCES:
        raise ValueError(f"unknown speech text {text!r}; valid: {', '.join(TEXT_SOURCES)}")
    name = f"{text}-v{_FORMAT}-{corpus_sizes(limit, text)['train']}-seed{seed}"
    return Path(root or cache_root()) / "asr" / name


def build_speech_corpus(
    root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 2,
    text: str = "commands",
) -> Path:
    """Build (once) and return the folder of the embedded speech corpus.

    Args:
        root: cache folder (default ``cache_root()``).
        limit: if set, at most ``limit`` training utterances (valid/test scaled down too).
        seed: the text, voice speed/pitch draw.
        workers: synthesis processes.
        text: ``commands`` (the grammar, test and valid commands never in training) or
            ``sentences`` (movie-review and WordNet sentences; test and valid have distinct
            sentences, training repeats its sentences with other voices when there are
            fewer than asked).

    Returns:
        The folder with ``{train,valid,test}.jsonl``, the WAVs and ``manifest.json``.
    """
    final = corpus_folder(root, limit, seed, text)
    if (final / "manifest.json").is_file():
        return final
    sizes = corpus_sizes(limit, text)
    version = espeak_version()
    voices = {"train": TRAIN_VOICES, "valid": TRAIN_VOICES, "test": TEST_VOICES}
    if text == "sentences":
        sentences, source = speech_sentences()
        texts = sentence_splits(sizes, seed, sentences)
        text_source: dict[str, Any] = {"kind": "sentences", **source}
    else:
        texts = command_splits(sizes, seed)
        text_source = {
            "kind": "commands",
            "grammar": "recipes.asr.corpus.command_splits",
            "held_out_shares": COMMAND_HELD_OUT,
        }
    splits = {s: _rows(s, texts[s], voices[s], random.Random(f"{seed}-{s}")) for s in sizes}
    with locked_build(final) as tmp:
        if tmp is None:  # another process built it meanwhile
            return final
        jobs = []
        for split, rows in splits.items():
            (tmp / split).mkdir()
            jobs += [(r["text"], r["speaker"], r["speed"], r["pitch"], str(tmp / r["audio"]))
                     for r in rows]  # fmt: skip
        with ProcessPoolExecutor(max(1, workers)) as pool:
            durations = list(
                tqdm(pool.map(_synth_job, jobs, chunksize=16), total=len(jobs),
                     desc="synthesising speech (espeak-ng)", unit="utt")
            )  # fmt: skip
        k = 0
        for split, rows in splits.items():
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as fh:
                for row in rows:
                    row["duration"] = round(durations[k], 3)
                    k += 1
                    fh.write(json.dumps(row) + "\n")
        write_json_atomic(
            tmp / "manifest.json",
            {
                "format": _FORMAT,
                "name": final.name,
                "text": text,
                "text_source": text_source,
                "source": f"{version} (Debian espeak-ng)",
                "sample_rate": SAMPLE_RATE,
                "seed": seed,
                "counts": {s: len(r) for s, r in splits.items()},
                "hours": {
                    s: round(sum(r["duration"] for r in rows) / 3600, 3)
                    for s, rows in splits.items()
                },  # fmt: skip
                "voices": {s: list(v) for s, v in voices.items()},
                "held_out": held_out_record(texts),
                "vocabulary_size": len(
                    {w for rows in splits.values() for r in rows for w in r["text"].split()}
                ),  # fmt: skip
            },
        )
    return final


def load_speech_splits(folder: str | Path) -> dict[str, list[Utterance]]:
    """Read the three JSONL manifests of a built corpus."""
    folder = Path(folder)
    return {s: read_jsonl_manifest(folder / f"{s}.jsonl") for s in ("train", "valid", "test")}


def corpus_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise DataError(path, None, None, "corpus manifest missing (rebuild the corpus)")
    return json.loads(path.read_text(encoding="utf-8"))
