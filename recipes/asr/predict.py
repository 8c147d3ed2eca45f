"""Speech inference for ``python -m toolkit.predict`` and ``toolkit.api``: the transcript of
each audio file (any format libsndfile reads, any sample rate: resampled to the model's),
and the decoder's cross-attention over the encoder frames, one row per output token (npz,
and a spectrogram picture with ``plot``).

A file longer than the model's limit (the checkpoint's ``data.max_seconds``, the longest
utterance it was trained on; ``max_seconds=`` raises it) is refused before it is read, with
its name and duration; an unreadable or empty file fails with its name (and manifest line).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

from toolkit.data.audio import SAMPLE_RATE, read_audio, resample
from toolkit.data.cache import DataError
from toolkit.viz.audio import spectrogram_attention

INPUT_KIND = "audio"
INPUT_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64")
MIN_SAMPLES = 1600  # shorter waves are zero-padded (the lengths keep the padding out)


def sample_rate(module) -> int:
    """The rate the model was trained at (its front end's)."""
    return int(module.data_state.get("sample_rate", SAMPLE_RATE))


def audio_limit(module, override: float | None = None) -> float:
    """The longest input accepted: ``override``, else the checkpoint's ``data.max_seconds``
    (20 s by default); learned encoder positions cap it at what they cover."""
    limit = float(override if override is not None else module.cfg.data.get("max_seconds", 20.0))
    positions = module.model.encoder.positions
    cap = getattr(positions, "max_len", None)
    if cap is not None and not hasattr(positions, "table"):  # learned positions: a hard cap
        hop = module.model.encoder.frontend.hop
        limit = min(limit, (int(cap) * 4 - 1) * hop / sample_rate(module))
    return limit


def _where(where: str) -> tuple[str, int | None]:
    file, _, line = where.rpartition(":")
    return (file, int(line)) if file and line.isdigit() else (where, None)


def load_wave(
    module, item: Any, where: str | None = None, limit: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """``item`` (a path, or ``(samples, rate)``, or samples at the model's rate) as mono
    float32 at the model's rate, with ``duration`` (s) and the input's ``sample_rate``."""
    rate = sample_rate(module)
    limit = audio_limit(module) if limit is None else limit
    if isinstance(item, (str, Path)):
        path = Path(item)
        file, line = _where(where or str(path))
        if not path.is_file():
            raise DataError(file, line, "audio", f"audio file not found: {path}")
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise DataError(file, line, "audio", f"unreadable audio {path}: {err}") from None
        seconds = info.frames / max(info.samplerate, 1)
        if seconds > limit:
            raise DataError(
                file, line, "audio", f"{path} lasts {seconds:.1f} s, longer than this model's "
                f"limit of {limit:g} s (the longest utterance it was trained on, "
                "data.max_seconds); cut it into shorter files, or raise the limit with "
                "+options.max_seconds=<s>",
            )  # fmt: skip
        wave = read_audio(path, rate, source=where, max_seconds=None)
        return wave, {"duration": round(seconds, 3), "sample_rate": int(info.samplerate)}
    if isinstance(item, tuple):
        samples, item_rate = item
    else:
        samples, item_rate = item, rate
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:  # (N, channels)
        samples = samples.mean(axis=1)
    name = where or "<array>"
    if samples.ndim != 1 or samples.size == 0 or not np.isfinite(samples).all():
        raise DataError(name, None, "audio", "expected a non-empty, finite 1-D array of samples")
    seconds = samples.size / int(item_rate)
    if seconds > limit:
        raise DataError(name, None, "audio", f"lasts {seconds:.1f} s, longer than this model's "
                        f"limit of {limit:g} s (data.max_seconds)")  # fmt: skip
    wave = resample(samples, int(item_rate), rate)
    return wave, {"duration": round(seconds, 3), "sample_rate": int(item_rate)}


@contextlib.contextmanager
def _decoding(module, beam_size: int | None):
    """The module's decode settings with ``beam_size`` for the duration of a call."""
    saved = module.cfg
    if beam_size is not None:
        module.cfg = OmegaConf.merge(saved, {"decode": {"beam_size": int(beam_size)}})
    try:
        yield
    finally:
        module.cfg = saved


@torch.no_grad()
def _cross_attention(module, memory: torch.Tensor, tokens: list[int]) -> np.ndarray:
    """The decoder's last-layer cross-attention (head mean) over ``memory (1, S, E)`` with
    the hypothesis teacher-forced: ``(len(tokens) + 1, S)``, one row per output token and
    EOS, each a distribution over the frames."""
    model = module.model
    inputs = torch.tensor([[model.eos, *tokens]], device=memory.device)
    valid = torch.ones_like(inputs, dtype=torch.bool)
    mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
    _, maps = model.decode_train(memory, mask, inputs, valid, need_weights=True)
    cross = maps["cross"][-1]
    cross = cross.mean(1) if cross.dim() == 4 else cross
    return cross[0].float().cpu().numpy()


@torch.no_grad()
def transcribe(
    module, inputs: list[Any], wheres: list[str] | None = None, mode: str | None = None,
    beam_size: int | None = None, max_seconds: float | None = None, batch_size: int = 16,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per input: ``transcript``, ``token_ids``, ``tokens`` (labels), ``attention``
    ``(len(tokens) + 1, frames)``, ``feats`` (log-mel), ``duration``, ``sample_rate``."""
    module.eval()
    wheres = wheres or [str(x) if isinstance(x, (str, Path)) else f"<input {i}>"
                        for i, x in enumerate(inputs)]  # fmt: skip
    limit = audio_limit(module, max_seconds)
    mode = mode or module.decode_cfg()["mode"]
    from recipes.asr.module import feature_frames

    results: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = [load_wave(module, x, w, limit)
                 for x, w in zip(inputs[start : start + batch_size],
                                 wheres[start : start + batch_size], strict=True)]  # fmt: skip
        lengths = torch.tensor([len(w) for w, _ in chunk])
        wave = torch.zeros(len(chunk), max(int(lengths.max()), MIN_SAMPLES))
        for i, (w, _) in enumerate(chunk):
            wave[i, : len(w)] = torch.from_numpy(w)
        wave, lengths = wave.to(module.device), lengths.to(module.device)
        with _decoding(module, beam_size):
            out = module.transcribe(wave, lengths, mode=mode, return_attention=True)
        for i, (_, meta) in enumerate(chunk):
            frames = int(out["mask"][i].sum())
            tokens = [int(t) for t in out["tokens"][i]]
            attn = out["attention"][i]
            if attn is not None:
                attn = attn[:, :frames].float().cpu().numpy()
            else:  # CTC greedy: where the decoder looks when it reads this transcript
                attn = _cross_attention(module, out["memory"][i : i + 1, :frames], tokens)
            n_feat = feature_frames(module, lengths[i].cpu())
            result = {
                "transcript": module.tokenizer.decode(tokens),
                "token_ids": tokens,
                "tokens": module.tokenizer.labels(tokens),
                "mode": mode,
                "attention": attn,
                "feats": out["feats"][i, :n_feat].float().cpu().numpy(),
                "frames": frames,
                **meta,
            }
            if mode != "ctc_greedy":
                result["ctc_greedy"] = module.tokenizer.decode(out["ctc"][i])
            results.append(result)
    return results


def predict_arrays(module, inputs: list[Any], **options: Any) -> list[dict[str, Any]]:
    """``toolkit.api``: per input the transcript (``output``) and the cross-attention
    ``(tokens + EOS, frames)`` with its axis labels."""
    out = []
    for r in transcribe(module, list(inputs), **options):
        out.append({
            "output": r["transcript"], **{k: v for k, v in r.items() if k != "feats"},
            "rows": [*r["tokens"], "</s>"], "columns": [f"frame {s}" for s in range(r["frames"])],
            "feats": r["feats"],
        })  # fmt: skip
    return out


def predict_records(
    module, inputs: list[str], out_dir: Path | None = None, plot: bool = False,
    mode: str | None = None, beam_size: int | None = None, max_seconds: float | None = None,
    batch_size: int = 16, wheres: list[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per audio file: ``transcript``, ``tokens``, ``duration``, ``sample_rate``
    (the file's), ``mode``; ``attention_file`` (feats, cross-attention) and ``picture``
    (spectrogram with the attention of every output token under it) when written."""
    results = transcribe(module, list(inputs), wheres, mode, beam_size, max_seconds, batch_size)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    records = []
    for index, r in enumerate(results):
        record: dict[str, Any] = {
            "transcript": r["transcript"],
            "tokens": r["tokens"],
            "duration": r["duration"],
            "sample_rate": r["sample_rate"],
            "mode": r["mode"],
        }
        if "ctc_greedy" in r:
            record["ctc_greedy"] = r["ctc_greedy"]
        if not r["transcript"]:
            record["warning"] = "empty transcript"
        if out_dir is not None:
            name = f"{index:06d}.npz"
            np.savez_compressed(
                Path(out_dir) / name, feats=r["feats"], cross_attention=r["attention"],
                tokens=np.array([*r["tokens"], "</s>"], dtype=str), transcript=r["transcript"],
            )  # fmt: skip
            record["attention_file"] = name
            if plot:
                picture = f"{index:06d}.png"
                title = f"#{index} {Path(str(inputs[index])).name}\n{r['transcript']}"
                spectrogram_attention(r["feats"], r["attention"], [*r["tokens"], "</s>"],
                                      Path(out_dir) / picture, title)  # fmt: skip
                record["picture"] = picture
        records.append(record)
    return records
