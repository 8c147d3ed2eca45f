"""Additive noise at a controlled SNR, and simulated reverberation.

Noise types: ``white``, ``pink`` (1/f power), ``brown`` (1/f^2), ``babble`` (a sum of other
utterances), ``recorded`` (a noise recording, by default alsa-utils' ``Noise.wav``).

The SNR is a **speech-band SNR**: speech and noise powers are both measured above
``BAND_LOW_HZ`` (50 Hz, :func:`band_power`), and every noise is high-passed at that same
cut-off before mixing. Without this a 1/f^2 noise generated down to the lowest FFT bin puts
almost all of its power below any frequency speech uses, so a "0 dB" brown-noise mix sounds
(and scores) like clean speech. With it, a 0 dB mix of any type has as much power as the speech
where the speech is, which is what a listener expects of 0 dB. The realised SNR of a mix is the
requested one (measured the same way). If the mix would clip, speech and noise are scaled down
together (the SNR is unchanged) and the mix reports it.

``reverb`` convolves speech with a synthetic room impulse response (exponentially decaying
noise with a given RT60), a crude but standard stand-in for measured room responses.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.data.audio import SAMPLE_RATE, read_audio

NOISE_TYPES = ("white", "pink", "brown", "babble", "recorded")
# generated with no power below BAND_LOW_HZ (:func:`_coloured`): mixed without the high-pass
BAND_LIMITED = ("white", "pink", "brown")
DEFAULT_RECORDED = "/usr/share/sounds/alsa/Noise.wav"
BAND_LOW_HZ = 50.0  # the SNR band starts here; noise is high-passed here
_EPS = 1e-12


def power(x: np.ndarray) -> float:
    """Mean power of a signal (all frequencies)."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def _high_pass_with_power(
    x: np.ndarray, cutoff_hz: float = BAND_LOW_HZ, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, float]:
    """:func:`high_pass` of ``x`` and its mean power, the latter read off the spectrum the
    filter already computed (Parseval), so the pair costs two FFTs instead of three."""
    if len(x) < 2:
        return np.zeros_like(x), 0.0
    spectrum = _band_spectrum(x, cutoff_hz, sample_rate)
    filtered = np.fft.irfft(spectrum, len(x)).astype(np.asarray(x).dtype, copy=False)
    return filtered, _spectrum_power(spectrum, len(x))


def _band_spectrum(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """The one-sided spectrum of ``x`` (float64) with every bin below ``cutoff_hz`` zeroed."""
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64))
    spectrum[np.fft.rfftfreq(len(x), 1.0 / sample_rate) < cutoff_hz] = 0.0
    return spectrum


def _spectrum_power(spectrum: np.ndarray, n: int) -> float:
    """Mean power of the length-``n`` real signal whose one-sided spectrum is ``spectrum``."""
    energy = np.abs(spectrum) ** 2
    weight = np.full(len(energy), 2.0)  # one-sided spectrum: Parseval's weights
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return float(np.sum(weight * energy) / n**2)


def high_pass(
    x: np.ndarray, cutoff_hz: float = BAND_LOW_HZ, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """``x`` with every FFT bin below ``cutoff_hz`` (DC included) set to zero."""
    return _high_pass_with_power(x, cutoff_hz, sample_rate)[0]


def band_power(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean power of ``x`` above ``BAND_LOW_HZ`` (the power the SNR is defined on)."""
    if len(x) < 2:
        return power(x)
    return _spectrum_power(_band_spectrum(x, BAND_LOW_HZ, sample_rate), len(x))


def realised_snr(speech: np.ndarray, noise: np.ndarray) -> float:
    """Speech-band SNR in dB of ``speech`` against the noise component actually added."""
    return 10.0 * np.log10(max(band_power(speech), _EPS) / max(band_power(noise), _EPS))


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as ``1 / f**exponent`` above
    ``BAND_LOW_HZ`` and is zero below it (unit variance)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    keep = freqs >= BAND_LOW_HZ
    spectrum[~keep] = 0.0
    spectrum[keep] = spectrum[keep] / freqs[keep] ** (exponent / 2.0)
    out = np.fft.irfft(spectrum, n)
    return (out / (out.std() + _EPS)).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _coloured(n, rng, 0.0)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _coloured(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _coloured(n, rng, 2.0)


def _crop_or_loop(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(audio) >= n:
        start = int(rng.integers(0, len(audio) - n + 1))
        return audio[start : start + n]
    reps = -(-n // len(audio))
    start = int(rng.integers(0, len(audio)))
    return np.tile(audio, reps + 1)[start : start + n]


def babble_noise(
    n: int, rng: np.random.Generator, pool: Sequence[np.ndarray], talkers: int = 4
) -> np.ndarray:
    """Sum of ``talkers`` random utterances from ``pool``, each cropped/looped to ``n``."""
    if not pool:
        raise ValueError("babble noise needs a pool of utterances")
    out = np.zeros(n, dtype=np.float32)
    for _ in range(talkers):
        utt = pool[int(rng.integers(0, len(pool)))]
        out += _crop_or_loop(utt, n, rng) / (np.sqrt(power(utt)) + 1e-6)
    return out


def mix_at_snr(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    peak: float = 0.99,
    band_limited: bool = False,
) -> tuple[np.ndarray, dict[str, float | bool]]:
    """Add ``noise`` to ``speech`` so that the speech-band power ratio is ``snr_db``.

    ``noise`` is high-passed at ``BAND_LOW_HZ`` first (what lies below would add power no
    SNR counts), then scaled from the two band powers (:func:`band_power`).
    ``band_limited=True`` says the noise has no power below ``BAND_LOW_HZ`` already (the
    generated colours, :func:`_coloured`): the filter is then skipped and its band power is
    its power, the same quantity without two of the FFTs.

    Returns:
        ``(mix, info)``: ``info["noise_gain"]`` the factor applied to the noise,
        ``info["rescaled"]`` whether the mix was scaled down to stay below ``peak`` (both
        components together, so the SNR holds), ``info["gain"]`` that common factor.
    """
    if len(noise) != len(speech):
        raise ValueError(f"noise has {len(noise)} samples, speech {len(speech)}")
    if band_limited:
        pn = power(noise)
    else:
        noise, pn = _high_pass_with_power(noise)
    ps = band_power(speech)
    noise_gain = float(np.sqrt(ps / max(pn, _EPS) / 10.0 ** (snr_db / 10.0)))
    mix = speech + noise_gain * noise
    top = float(np.abs(mix).max())
    gain = peak / top if top > peak else 1.0
    return (mix * gain).astype(np.float32), {
        "noise_gain": noise_gain * gain,
        "gain": gain,
        "rescaled": gain < 1.0,
    }


def room_impulse_response(
    rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Synthetic RIR: a direct path then exponentially decaying noise (-60 dB at ``rt60``)."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078
    tail[: int(0.002 * sample_rate)] = 0.0  # first reflections arrive after ~2 ms
    rir = 0.3 * tail / (np.sqrt(np.sum(tail**2)) + _EPS)
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverb(
    speech: np.ndarray, rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Convolve with a synthetic RIR; same length, same peak as the input."""
    from scipy.signal import fftconvolve

    out = fftconvolve(speech, room_impulse_response(rt60, rng, sample_rate))[: len(speech)]
    return (out * (np.abs(speech).max() / (np.abs(out).max() + _EPS))).astype(np.float32)


def stable_seed(*parts: object) -> int:
    """A seed from strings/numbers that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass
class NoiseMixer:
    """Makes noise of each type and mixes it in: on the fly in training, fixed in testing.

    Args:
        types: noise types drawn from in training.
        snr_range: ``(low, high)`` dB, drawn uniformly in training.
        prob: chance that a training utterance gets noise.
        reverb_prob: chance that a training utterance is reverberated first.
        rt60_range: ``(low, high)`` seconds for training reverberation.
        babble_pool: utterances babble is made of (other training utterances).
        recorded: path of the recorded noise file.
    """

    types: Sequence[str] = NOISE_TYPES
    snr_range: tuple[float, float] = (0.0, 20.0)
    prob: float = 0.5
    reverb_prob: float = 0.0
    rt60_range: tuple[float, float] = (0.2, 0.8)
    babble_pool: list[np.ndarray] = field(default_factory=list)
    recorded: str | None = DEFAULT_RECORDED
    _recorded_audio: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in NOISE_TYPES]
        if unknown:
            raise ValueError(f"unknown noise type(s) {unknown}; valid: {', '.join(NOISE_TYPES)}")

    def recorded_audio(self) -> np.ndarray:
        if self._recorded_audio is None:
            if not self.recorded or not Path(self.recorded).is_file():
                raise FileNotFoundError(
                    f"recorded noise file not found: {self.recorded} "
                    "(Debian: apt-get install alsa-utils, or set data.noise.recorded)"
                )
            self._recorded_audio = read_audio(self.recorded, SAMPLE_RATE)
        return self._recorded_audio

    def noise(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples of noise ``kind``."""
        if kind == "white":
            return white_noise(n, rng)
        if kind == "pink":
            return pink_noise(n, rng)
        if kind == "brown":
            return brown_noise(n, rng)
        if kind == "babble":
            return babble_noise(n, rng, self.babble_pool)
        if kind == "recorded":
            return _crop_or_loop(self.recorded_audio(), n, rng)
        raise ValueError(f"unknown noise type {kind!r}; valid: {', '.join(NOISE_TYPES)}")

    def augment(self, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training augmentation: maybe reverberate, maybe add noise at a random SNR."""
        if self.reverb_prob > 0 and rng.random() < self.reverb_prob:
            speech = reverb(speech, float(rng.uniform(*self.rt60_range)), rng)
        if self.types and rng.random() < self.prob:
            kind = self.types[int(rng.integers(0, len(self.types)))]
            if kind == "babble" and not self.babble_pool:
                return speech
            snr = float(rng.uniform(*self.snr_range))
            noise = self.noise(kind, len(speech), rng)
            speech, _ = mix_at_snr(speech, noise, snr, band_limited=kind in BAND_LIMITED)
        return speech

    def condition(self, speech: np.ndarray, kind: str, snr: float | None, seed: int) -> np.ndarray:
        """A fixed, seeded test condition: ``clean``, ``kind`` in NOISE_TYPES at ``snr`` dB,
        or ``reverb`` with ``snr`` read as the RT60 in seconds."""
        rng = np.random.default_rng(seed)
        if kind == "clean":
            return speech
        if kind == "reverb":
            return reverb(speech, float(snr), rng)
        noise = self.noise(kind, len(speech), rng)
        mix, _ = mix_at_snr(speech, noise, float(snr), band_limited=kind in BAND_LIMITED)
        return mix


def condition_name(kind: str, level: float | None) -> str:
    """Metric suffix of a test condition: ``clean``, ``babble_10``, ``reverb_0.5``."""
    if kind == "clean":
        return "clean"
    return f"{kind}_{level:g}"


def condition_grid(
    types: Sequence[str], snrs: Sequence[float], rt60s: Sequence[float] = ()
) -> list[tuple[str, float | None]]:
    """The grid of test conditions: clean, every type at every SNR, reverb at every RT60."""
    grid: list[tuple[str, float | None]] = [("clean", None)]
    grid += [(t, float(s)) for t in types for s in snrs]
    grid += [("reverb", float(r)) for r in rt60s]
    return grid
