"""Absolute positional encodings that ADD positions to ``(B, T, D)`` inputs.

All share ``forward(x, offset=0)``: ``offset`` is the position of ``x[:, 0]``, so an
incremental decoder feeding one step at a time passes the number of steps already decoded.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

Tensor = torch.Tensor

POSITION_KINDS = ("sinusoidal", "learned", "none")


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """``(length, dim)`` table: ``[p, 2i] = sin(p / base^(2i/dim))``, ``[p, 2i+1] = cos(...)``."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    angles = position * inv_freq[None, :]  # (L, ceil(D/2))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine positions (Vaswani et al. 2017); grows past ``max_len`` on demand.

    Args:
        dim: feature size ``D``.
        max_len: length of the precomputed table.
        dropout: dropout after adding positions.
        base: wavelength base.
    """

    def __init__(
        self, dim: int, max_len: int = 1024, dropout: float = 0.0, base: float = 10000.0
    ) -> None:
        super().__init__()
        self.dim, self.base = dim, base
        self.drop = nn.Dropout(dropout)
        self.register_buffer("table", sinusoidal_table(max_len, dim, base), persistent=False)

    def encoding(self, length: int, offset: int = 0) -> Tensor:
        """Positions ``offset .. offset + length - 1`` as ``(length, D)``."""
        end = offset + length
        if end > self.table.shape[0]:
            grown = sinusoidal_table(max(end, 2 * self.table.shape[0]), self.dim, self.base)
            self.table = grown.to(self.table.device)
        return self.table[offset:end]

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x (B, T, D)`` -> ``x + PE[offset : offset + T]`` ``(B, T, D)``."""
        return self.drop(x + self.encoding(x.shape[1], offset).to(x.dtype))


class LearnedPositionalEmbedding(nn.Module):
    """Trained absolute positions (BERT/GPT style), at most ``max_len`` of them.

    Args:
        max_len: number of positions.
        dim: feature size ``D``.
        dropout: dropout after adding positions.
    """

    def __init__(self, max_len: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def encoding(self, length: int, offset: int = 0) -> Tensor:
        """Positions ``offset .. offset + length - 1`` as ``(length, D)``."""
        if offset + length > self.max_len:
            raise ValueError(
                f"positions up to {offset + length} requested but only max_len={self.max_len} "
                "were learned; raise max_len or shorten the input"
            )
        idx = torch.arange(offset, offset + length, device=self.embedding.weight.device)
        return self.embedding(idx)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x (B, T, D)`` -> ``x + P[offset : offset + T]`` ``(B, T, D)``."""
        return self.drop(x + self.encoding(x.shape[1], offset).to(x.dtype))


class NoPositions(nn.Module):
    """No positional information (only dropout): for models whose input already has it."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x (B, T, D)`` -> ``x`` (after dropout)."""
        return self.drop(x)


def build_positions(kind: str, dim: int, max_len: int = 1024, dropout: float = 0.0) -> nn.Module:
    """Build a positional encoding by name: ``sinusoidal``, ``learned`` or ``none``.

    Args:
        kind: one of ``POSITION_KINDS``.
        dim: feature size ``D``.
        max_len: table size (a hard limit for ``learned``).
        dropout: dropout after adding positions.

    Returns:
        A module with ``forward(x (B, T, D), offset=0) -> (B, T, D)``.
    """
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(dim, max_len, dropout=dropout)
    if kind == "learned":
        return LearnedPositionalEmbedding(max_len, dim, dropout=dropout)
    if kind == "none":
        return NoPositions(dropout)
    raise ValueError(f"unknown positions kind {kind!r}; valid choices: {', '.join(POSITION_KINDS)}")
