"""Audio I/O and the user's own speech manifests.

Audio is read and written with ``soundfile`` (libsndfile; torchaudio's loaders need FFmpeg),
mixed down to mono float32 and resampled to the requested rate with a polyphase filter.
Three manifest formats are read, each validated with errors that name file, line and field:

* JSONL: one object a line, ``{"audio": path, "text": ..., "speaker"?: ..., "duration"?: s}``;
  relative paths are relative to the manifest's folder.
* LibriSpeech layout: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` lines
  ``<utt-id> TEXT`` next to ``<utt-id>.flac``.
* Kaldi data folder: ``wav.scp`` (``<utt-id> <path>``; piped commands are refused) + ``text``
  (``<utt-id> TEXT``), optional ``utt2spk``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from toolkit.data.cache import DataError
from toolkit.data.labelled import jsonl_objects, read_utf8_text

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Utterance:
    """One manifest entry: where the audio is and what was said."""

    audio: str
    text: str
    speaker: str = ""
    duration: float | None = None
    source: str = ""  # manifest file and line, for error messages ("file:line")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling ``(N,) -> (N * target / orig,)`` (scipy's anti-aliasing FIR)."""
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, orig_sr // g).astype(np.float32)


MAX_AUDIO_SECONDS = 3600.0  # a longer file is refused before it is read (max_seconds=)


def read_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    source: str | None = None,
    max_seconds: float | None = MAX_AUDIO_SECONDS,
) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``; bad files raise ``DataError``.

    Args:
        path: any format libsndfile reads (wav, flac, ogg ...).
        sample_rate: output rate; other rates are resampled.
        source: ``"manifest:line"`` the path came from, named in the error instead of the
            audio file itself (so the user knows which line to fix).
        max_seconds: a longer file (by its header) is refused before any sample is read,
            so hours of audio never fill the memory; ``None`` = no limit.
    """
    where, line = _where(source, path)
    if not Path(path).is_file():
        raise DataError(where, line, "audio", f"audio file not found: {path}")
    try:
        with sf.SoundFile(str(path)) as f:  # one open: the header first, then the samples
            seconds = f.frames / max(f.samplerate, 1)
            if max_seconds is not None and seconds > max_seconds:
                raise DataError(
                    where, line, "audio", f"{path} lasts {seconds:,.0f} s, more than the limit "
                    f"of {max_seconds:,.0f} s (read_audio max_seconds=; long recordings are "
                    "cut into utterances first)",
                )  # fmt: skip
            data, sr = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise DataError(where, line, "audio", f"unreadable audio {path}: {err}") from None
    if data.shape[0] == 0:
        raise DataError(where, line, "audio", f"zero-length audio: {path}")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DataError(where, line, "audio", f"non-finite samples in {path}")
    return resample(mono, sr, sample_rate)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono ``audio`` as 16-bit PCM WAV."""
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")


def _where(source: str | None, path: str | Path) -> tuple[str, int | None]:
    if source and ":" in source:
        file, _, line = source.rpartition(":")
        if line.isdigit():
            return file, int(line)
    return str(source or path), None


# --------------------------------------------------------------------------- manifests


def read_jsonl_manifest(path: str | Path, allow_outside: bool = False) -> list[Utterance]:
    """Read a JSONL audio manifest (see the module docstring). A relative audio path must
    stay inside the manifest's folder (``..`` that leaves it is refused unless
    ``allow_outside``); absolute paths are taken as given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "manifest not found")
    out = []
    for line_no, row in jsonl_objects(path, read_utf8_text(path)):
        audio, text = row.get("audio"), row.get("text")
        if not isinstance(audio, str) or not audio:
            raise DataError(path, line_no, "audio", "missing or not a string")
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, line_no, "text", "empty transcript")
        duration = row.get("duration")
        if duration is not None and not (isinstance(duration, (int, float)) and duration > 0):
            raise DataError(path, line_no, "duration", f"not a positive number: {duration!r}")
        full = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        if not Path(audio).is_absolute() and not allow_outside:
            inside = path.parent.resolve()
            if not full.resolve().is_relative_to(inside):
                raise DataError(
                    path, line_no, "audio", f"{audio!r} points outside the manifest's folder "
                    f"{inside}; give an absolute path, or allow it with "
                    "allow_outside=True (data.allow_paths_outside_manifest=true)",
                )  # fmt: skip
        out.append(
            Utterance(
                str(full),
                text.strip(),
                str(row.get("speaker") or ""),
                duration,
                f"{path}:{line_no}",
            )
        )
    if not out:
        raise DataError(path, None, None, "manifest has no utterances")
    return out


def _read_id_lines(path: Path, field: str) -> dict[str, tuple[str, int]]:
    """``<id> rest`` lines -> {id: (rest, line)}; an id without content is an error."""
    out: dict[str, tuple[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) < 2 or not parts[1].strip():
                raise DataError(path, line_no, field, f"expected '<id> <{field}>'")
            if parts[0] in out:
                raise DataError(path, line_no, "id", f"duplicate utterance id {parts[0]!r}")
            out[parts[0]] = (parts[1].strip(), line_no)
    return out


def read_kaldi_dir(folder: str | Path) -> list[Utterance]:
    """Read a Kaldi data folder: ``wav.scp`` + ``text`` (+ ``utt2spk``)."""
    folder = Path(folder)
    for name in ("wav.scp", "text"):
        if not (folder / name).is_file():
            raise DataError(folder / name, None, None, "missing Kaldi file")
    wavs = _read_id_lines(folder / "wav.scp", "path")
    texts = _read_id_lines(folder / "text", "text")
    spk = _read_id_lines(folder / "utt2spk", "speaker") if (folder / "utt2spk").is_file() else {}
    out = []
    for utt, (wav, line_no) in wavs.items():
        if wav.endswith("|"):
            raise DataError(folder / "wav.scp", line_no, "path", "piped commands not supported")
        if utt not in texts:
            raise DataError(folder / "text", None, "text", f"no transcript for {utt!r}")
        full = Path(wav) if Path(wav).is_absolute() else folder / wav
        speaker = spk.get(utt, ("", 0))[0]
        out.append(
            Utterance(str(full), texts[utt][0], speaker, None, f"{folder / 'wav.scp'}:{line_no}")
        )
    return out


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Read a LibriSpeech-style tree (``*.trans.txt`` beside ``<id>.flac`` files)."""
    root = Path(root)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise DataError(root, None, None, "no *.trans.txt files (LibriSpeech layout)")
    out = []
    for trans in transcripts:
        for utt, (text, line_no) in _read_id_lines(trans, "text").items():
            audio = next(
                (
                    trans.parent / f"{utt}{ext}"
                    for ext in (".flac", ".wav")
                    if (trans.parent / f"{utt}{ext}").is_file()
                ),
                trans.parent / f"{utt}.flac",
            )
            out.append(Utterance(str(audio), text, utt.split("-")[0], None, f"{trans}:{line_no}"))
    return out


def read_speech_manifest(path: str | Path, allow_outside: bool = False) -> list[Utterance]:
    """Any supported own-data format: a ``.jsonl`` file, a Kaldi folder or a LibriSpeech tree."""
    path = Path(path)
    if path.is_file():
        return read_jsonl_manifest(path, allow_outside)
    if (path / "wav.scp").is_file():
        return read_kaldi_dir(path)
    if path.is_dir():
        return read_librispeech(path)
    raise DataError(path, None, None, "not found (expected .jsonl, Kaldi folder or LibriSpeech)")
