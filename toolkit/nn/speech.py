"""Speech front end and encoders: log-mel, SpecAugment, conv subsampling, Conformer layers.

Pipeline of an attention speech encoder::

    wave (B, N) --LogMelFrontend--> (B, T, 80) --SpecAugment (train)--> (B, T, 80)
        --Conv2dSubsampling (x4)--> (B, T/4, E) --positions--> --layers--> (B, T/4, E)

The self-attention inside every layer is ``build_attention_layer(attention, ...)``: any
registered type (multihead, local, linear, additive ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torchaudio

from .attention_layer import build_attention_layer
from .positions import build_positions
from .transformer import FeedForward, TransformerEncoderLayer

Tensor = torch.Tensor


class LogMelFrontend(nn.Module):
    """16 kHz waveforms -> per-utterance normalised log-mel features.

    Args:
        sample_rate: input rate.
        n_mels: mel bins (80).
        win_ms, hop_ms: analysis window and hop (25 / 10 ms).
    """

    def __init__(
        self, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25, hop_ms: float = 10
    ) -> None:
        super().__init__()
        win = int(sample_rate * win_ms / 1000)
        self.hop, self.n_fft = int(sample_rate * hop_ms / 1000), 512
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, win_length=win, hop_length=self.hop,
            n_mels=n_mels, center=True, power=2.0,
        )  # fmt: skip

    def frames(self, lengths: Tensor) -> Tensor:
        """Feature frames of waveforms of ``lengths`` samples: only frames whose window ends
        inside the signal, so zero padding in a batch never changes an utterance's frames."""
        return ((lengths - self.n_fft // 2).clamp(min=0) // self.hop + 1).long()

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``wave (B, N)``, ``lengths (B,)`` -> ``feats (B, T, n_mels)``, ``frames (B,)``."""
        with torch.autocast(wave.device.type, enabled=False):
            feats = torch.log(self.mel(wave.float()) + 1e-6).transpose(1, 2)  # (B, T, M)
        frames = self.frames(lengths).clamp(max=feats.shape[1])
        valid = (torch.arange(feats.shape[1], device=wave.device)[None] < frames[:, None])[
            ..., None
        ]
        # Mean/variance over each utterance's own frames, per mel bin: level- and
        # channel-invariant features, without statistics from the training set.
        n = frames[:, None, None].clamp(min=1)
        mean = (feats * valid).sum(1, keepdim=True) / n
        var = (((feats - mean) * valid) ** 2).sum(1, keepdim=True) / n
        feats = (feats - mean) / torch.sqrt(var + 1e-5)
        return feats * valid, frames


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019); only active in training.

    Args:
        freq_masks, freq_width: number and maximum width (bins) of frequency masks.
        time_masks, time_ratio: number and maximum width (fraction of the frames) of time masks.
    """

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2,
        time_ratio: float = 0.05,
    ) -> None:  # fmt: skip
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_ratio = time_masks, time_ratio

    def forward(self, feats: Tensor, frames: Tensor) -> Tensor:
        """``feats (B, T, F)`` -> masked copy (masks drawn per utterance)."""
        if not self.training:
            return feats
        b, t, f = feats.shape
        keep = torch.ones_like(feats, dtype=torch.bool)
        ar_f = torch.arange(f, device=feats.device)[None]
        ar_t = torch.arange(t, device=feats.device)[None]
        for _ in range(self.freq_masks):
            width = torch.randint(0, self.freq_width + 1, (b, 1), device=feats.device)
            start = (torch.rand(b, 1, device=feats.device) * (f - width)).long()
            keep &= ~((ar_f >= start) & (ar_f < start + width))[:, None, :]
        for _ in range(self.time_masks):
            limit = (frames.float() * self.time_ratio).long().clamp(min=1)[:, None]
            width = (torch.rand(b, 1, device=feats.device) * (limit + 1)).long()
            start = (torch.rand(b, 1, device=feats.device) * (frames[:, None] - width)).long()
            keep &= ~((ar_t >= start) & (ar_t < start + width))[:, :, None]
        return feats * keep


class Conv2dSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions: ``(B, T, F) -> (B, ~T/4, E)``."""

    def __init__(self, in_dim: int, embed_dim: int, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )  # fmt: skip
        freq = ((in_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, embed_dim)

    @staticmethod
    def out_lengths(frames: Tensor) -> Tensor:
        return ((frames - 1) // 2 - 1) // 2

    def forward(self, feats: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv(feats[:, None])  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', E)
        return x, self.out_lengths(frames).clamp(min=1, max=t)


class ConvModule(nn.Module):
    """Conformer convolution: pointwise+GLU, depthwise conv, BatchNorm, SiLU, pointwise."""

    def __init__(self, embed_dim: int, kernel_size: int = 15, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.pointwise1 = nn.Conv1d(embed_dim, 2 * embed_dim, 1)
        self.depthwise = nn.Conv1d(
            embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=embed_dim
        )
        self.bn = nn.BatchNorm1d(embed_dim)
        self.pointwise2 = nn.Conv1d(embed_dim, embed_dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x (B, T, E)``, ``mask (B, T)`` True = frame -> ``(B, T, E)``."""
        y = self.norm(x)  # padded frames must not leak into valid ones through the kernel:
        y = nn.functional.glu(self.pointwise1(y.transpose(1, 2)), dim=1)  # (B, E, T)
        if mask is not None:  # the pointwise bias makes padded frames non-zero again
            y = y * mask[:, None, :]
        y = self.pointwise2(nn.functional.silu(self.bn(self.depthwise(y))))
        return self.drop(y.transpose(1, 2))


class ConformerLayer(nn.Module):
    """Conformer block (Gulati et al. 2020), self-attention of any registered type::

    x = x + 1/2 ffn1(x);  x = x + mhsa(x);  x = x + conv(x);  x = x + 1/2 ffn2(x);  norm
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attention: str = "multihead",
        attention_options: Mapping[str, Any] | None = None,
        kernel_size: int = 15,
    ) -> None:
        super().__init__()
        ffn_dim = ffn_dim or 4 * embed_dim
        self.ffn1 = nn.Sequential(
            nn.LayerNorm(embed_dim), FeedForward(embed_dim, ffn_dim, "silu", dropout)
        )
        self.ffn2 = nn.Sequential(
            nn.LayerNorm(embed_dim), FeedForward(embed_dim, ffn_dim, "silu", dropout)
        )
        self.norm_attn = nn.LayerNorm(embed_dim)
        self.self_attn = build_attention_layer(
            attention, embed_dim, num_heads, dropout=dropout, **dict(attention_options or {})
        )
        self.conv = ConvModule(embed_dim, kernel_size, dropout)
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        x = x + 0.5 * self.drop(self.ffn1(x))
        y = self.norm_attn(x)
        out, weights = self.self_attn(y, y, y, mask, need_weights)
        x = x + self.drop(out)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.drop(self.ffn2(x))
        return self.norm(x), weights


class SpeechEncoder(nn.Module):
    """Log-mel front end, SpecAugment, x4 conv subsampling and attention layers.

    Args:
        embed_dim, num_heads, num_layers, ffn_dim, dropout: layer sizes.
        layer: ``conformer`` or ``transformer`` (pre-norm Transformer encoder layers).
        attention, attention_options: self-attention type of every layer.
        positions: ``sinusoidal`` | ``learned`` | ``none`` (added after subsampling).
        n_mels: front-end mel bins; ``spec_augment``: options of ``SpecAugment`` or None.
        kernel_size: Conformer depthwise kernel.
        subsample_channels: channels of the two convolutions of the x4 subsampling (their
            backward pass is the largest single cost of a training step on CPU).
    """

    def __init__(
        self,
        embed_dim: int = 144,
        num_heads: int = 4,
        num_layers: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        layer: str = "conformer",
        attention: str = "multihead",
        attention_options: Mapping[str, Any] | None = None,
        positions: str = "sinusoidal",
        n_mels: int = 80,
        spec_augment: Mapping[str, Any] | None = None,
        kernel_size: int = 15,
        subsample_channels: int = 64,
    ) -> None:
        super().__init__()
        self.frontend = LogMelFrontend(n_mels=n_mels)
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment is not None else None
        self.subsample = Conv2dSubsampling(n_mels, embed_dim, subsample_channels)
        self.positions = build_positions(positions, embed_dim, max_len=2048, dropout=dropout)
        options = {"attention": attention, "attention_options": attention_options,
                   "ffn_dim": ffn_dim, "dropout": dropout}  # fmt: skip
        if layer == "conformer":
            layers = [ConformerLayer(embed_dim, num_heads, kernel_size=kernel_size, **options)
                      for _ in range(num_layers)]  # fmt: skip
            self.norm: nn.Module = nn.Identity()  # every Conformer block ends with a norm
        elif layer == "transformer":
            layers = [TransformerEncoderLayer(embed_dim, num_heads, activation="gelu", **options)
                      for _ in range(num_layers)]  # fmt: skip
            self.norm = nn.LayerNorm(embed_dim)
        else:
            raise ValueError(f"unknown encoder layer {layer!r}; valid: conformer, transformer")
        self.layers = nn.ModuleList(layers)

    def forward(
        self, wave: Tensor, lengths: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor] | None, Tensor]:
        """``wave (B, N)``, ``lengths (B,)`` samples ->

        ``memory (B, S, E)``, ``memory_mask (B, S)`` (True = frame), per-layer self-attention
        maps ``(B, H, S, S)`` (with ``need_weights``) and the log-mel ``feats (B, T, n_mels)``.
        """
        feats, frames = self.frontend(wave, lengths)
        x = self.spec_augment(feats, frames) if self.spec_augment is not None else feats
        x, out_len = self.subsample(x, frames)
        mask = torch.arange(x.shape[1], device=x.device)[None] < out_len[:, None]  # (B, S)
        x = self.positions(x)
        maps = [] if need_weights else None
        for layer in self.layers:
            x, w = layer(x, mask, need_weights)
            if maps is not None:
                maps.append(w)
        return self.norm(x), mask, maps, feats
