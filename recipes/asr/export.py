"""ASR export hook for ``python -m toolkit.export``: the speech encoder with its CTC head,
``(wave (B,N) float32 at the model's rate, lengths (B,) int64 samples) -> log_probs (B,S,V)
CTC log-posteriors, frames (B,) int64 valid encoder frames``. That is the whole of the
default decoding (``decode.mode=ctc_greedy``): :func:`toolkit.decoding.ctc.ctc_greedy`
(best class per frame, repeats merged, blanks dropped) runs outside the graph. The attention
decoder's beam search (``attention_beam``, ``joint``) is not exported. Blank id, EOS id, the
token list and the sample rate are in export.json.

The graph computes the log-mel spectrum with a real DFT (frames times cosine and sine
tables, in float64) instead of ``torch.stft``: ONNX has no complex numbers. It matches the
eager front end to float32 rounding (the parity check in export.json says by how much)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recipes.asr.predict import sample_rate
from toolkit.commands.export import ExportGraph


class DFTMelSpectrogram(nn.Module):
    """``torchaudio.transforms.MelSpectrogram`` (power 2, centred reflect padding) as real
    matrix products: ``wave (B, N) -> mel power (B, n_mels, T)``, exportable to ONNX."""

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        spec = mel.spectrogram
        if spec.power != 2.0 or not spec.center or spec.normalized or spec.pad:
            raise ValueError("DFTMelSpectrogram reproduces power=2, centred, unnormalised only")
        self.n_fft, self.hop = int(spec.n_fft), int(spec.hop_length)
        win = spec.window.double()
        window = torch.zeros(self.n_fft, dtype=torch.float64)
        left = (self.n_fft - win.numel()) // 2  # torch.stft centres a shorter window
        window[left : left + win.numel()] = win
        n = torch.arange(self.n_fft, dtype=torch.float64)[:, None]
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[None]
        angle = 2 * math.pi * n * k / self.n_fft
        self.register_buffer("cos", window[:, None] * torch.cos(angle))  # (n_fft, F)
        self.register_buffer("sin", window[:, None] * torch.sin(angle))
        self.register_buffer("fb", mel.mel_scale.fb.double())  # (F, n_mels)
        # framing as a strided convolution with an identity kernel: exact, and exportable
        self.register_buffer("eye", torch.eye(self.n_fft)[:, None, :])  # (n_fft, 1, n_fft)

    def forward(self, wave: Tensor) -> Tensor:
        half = self.n_fft // 2
        x = F.pad(wave[:, None], (half, half), mode="reflect")[:, 0]
        frames = F.conv1d(x[:, None], self.eye, stride=self.hop)  # (B, n_fft, T)
        frames = frames.transpose(1, 2).double()  # (B, T, n_fft)
        real, imag = frames @ self.cos, frames @ self.sin
        return ((real * real + imag * imag) @ self.fb).float().transpose(1, 2)


class CTCEncoder(nn.Module):
    """Waveforms -> log-mel -> encoder -> CTC log-posteriors and valid frame counts (on a
    copy of the model whose front end uses :class:`DFTMelSpectrogram`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        frontend = self.model.encoder.frontend
        frontend.mel = DFTMelSpectrogram(frontend.mel)

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        memory, mask, _, _ = self.model.encode(wave, lengths)
        return self.model.ctc_log_probs(memory).float(), mask.sum(1)


def export_graph(module) -> ExportGraph:
    rate = sample_rate(module)

    def example(n: int = 2, length: int = 7, seed: int = 0) -> tuple[Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        samples = rate // 10 * length  # 0.1 s per unit of length
        wave = torch.randn(n, samples, generator=gen) * 0.1
        lengths = torch.full((n,), samples, dtype=torch.long)
        lengths[1:] = samples - rate // 20  # 50 ms of padding in the second row
        wave[1:, samples - rate // 20 :] = 0.0
        return wave, lengths

    tok = module.tokenizer
    axes = {"wave": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"}, "frames": {0: "batch"}}  # fmt: skip
    return ExportGraph(
        CTCEncoder(module.model).eval(), "ctc_encoder", ["wave", "lengths"],
        ["log_probs", "frames"], axes, example,
        {"sample_rate": rate, "blank_id": int(tok.blank_id), "eos_id": int(tok.eos_id),
         "tokens": tok.labels(list(range(len(tok)))), "decode": "ctc_greedy"},
    )  # fmt: skip
