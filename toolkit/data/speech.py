"""The embedded speech corpus: voice commands synthesised with espeak-ng.

A small grammar (lights, alarms, music, timers, weather, reminders; numbers and clock times
spelled as words, about 150 words) generates commands; each is spoken by one espeak-ng voice
variant (language + ``+m1..m7``/``+f1..f5``) at a random speed and pitch, resampled to
16 kHz mono and stored as 16-bit WAV. Training and validation use ``TRAIN_VOICES``; the test
set is spoken only by ``TEST_VOICES`` (variants and an accent never heard in training).

The corpus is built once into ``cache_root()/asr/commands-<n>-seed<k>`` (atomically, with a
progress bar and a ``manifest.json`` recording espeak-ng's version, voices, counts and seed)
and reused. ``limit`` builds a tiny version for tests.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from toolkit.data.audio import SAMPLE_RATE, Utterance, read_jsonl_manifest, resample, write_audio
from toolkit.data.cache import DataError, atomic_dir, cache_root, write_json_atomic

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
_FORMAT = 1

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


def grammar_vocabulary(samples: int = 20000, seed: int = 0) -> set[str]:
    """Words the grammar produces (estimated by sampling; ~150)."""
    return {w for text in generate_commands(samples, seed) for w in text.split()}


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


def _split_jobs(name: str, count: int, voices: tuple[str, ...], seed: int) -> list[dict]:
    rng = random.Random(f"{seed}-{name}")
    texts = generate_commands(count, seed=rng.randrange(1 << 30))
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


def build_speech_corpus(
    root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 2,
) -> Path:
    """Build (once) and return the folder of the embedded command corpus.

    Args:
        root: cache folder (default ``cache_root()``).
        limit: if set, at most ``limit`` training utterances (valid/test scaled down too).
        seed: the text, voice speed/pitch draw.
        workers: synthesis processes.

    Returns:
        The folder with ``{train,valid,test}.jsonl``, the WAVs and ``manifest.json``.
    """
    sizes = dict(SPLIT_SIZES)
    if limit:
        sizes = {k: max(len(TEST_VOICES), min(v, limit if k == "train" else max(6, limit // 4)))
                 for k, v in sizes.items()}  # fmt: skip
    name = f"commands-{sizes['train']}-seed{seed}"
    final = Path(root or cache_root()) / "asr" / name
    if (final / "manifest.json").is_file():
        return final
    version = espeak_version()
    voices = {"train": TRAIN_VOICES, "valid": TRAIN_VOICES, "test": TEST_VOICES}
    splits = {s: _split_jobs(s, n, voices[s], seed) for s, n in sizes.items()}
    with atomic_dir(final) as tmp:
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
                "name": name,
                "source": f"{version} (Debian espeak-ng)",
                "sample_rate": SAMPLE_RATE,
                "seed": seed,
                "counts": {s: len(r) for s, r in splits.items()},
                "hours": {
                    s: round(sum(r["duration"] for r in rows) / 3600, 3)
                    for s, rows in splits.items()
                },  # fmt: skip
                "voices": {s: list(v) for s, v in voices.items()},
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
